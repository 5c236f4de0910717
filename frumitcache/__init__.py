"""frumitcache: peer-to-peer local content distribution for Raspberry Pi sites.

The agents of a site elect one seeder, which fetches each byte over the uplink once; the
members then swarm it among themselves as content-addressed chunks. This package is the agent,
its command line (``frumitcache``) and the library a scheduler imports.

The public names are the ones listed in ``__all__``; everything else is internal.

The library: :class:`AgentClient` (trio) and :class:`Client` (synchronous) talk to the local
agent — ``fetch``, ``stream``, ``prefetch``, ``pin``/``unpin``, ``locate``, ``site``,
``estimate`` and the store's ``cache_list``/``verify``/``gc``/``import_debs`` — and return the
frozen dataclasses listed below; every error is a :class:`FrumitcacheError`.
"""

import sys as _sys

# httpx imports its own command line (rich, pygments, click: about 6 MB of RSS in every agent,
# 11 % of an idle one) unless that module is missing; nothing here uses it. Only when httpx is
# not loaded yet, so a program that imported it first keeps its CLI.
if "httpx" not in _sys.modules:
    _sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from typing import TYPE_CHECKING, Any

from frumitcache._version import __version__

if TYPE_CHECKING:
    from frumitcache._results import (
        CacheContents,
        CachedObject,
        CacheStats,
        Estimate,
        EstimateItem,
        GcReport,
        Holding,
        ImportReport,
        Location,
        Member,
        PinState,
        PrefetchProgress,
        SiteInfo,
        UplinkStats,
        VerifyReport,
    )
    from frumitcache.client import AgentClient, PrefetchHandle, PullStream, default_download_dir
    from frumitcache.config import Config, load_config
    from frumitcache.errors import (
        AgentError,
        AgentUnavailableError,
        BadUrlError,
        ConfigError,
        CorruptChunkError,
        DigestMismatchError,
        FrumitcacheError,
        NotAllowedError,
        NotInStoreError,
        NotPermittedError,
        OriginError,
        OriginStatusError,
        OriginTruncatedError,
        OriginUnreachableError,
        PeerError,
        ProtocolError,
        StoreError,
        StoreFullError,
    )
    from frumitcache.sync import Client, Prefetch

__all__ = [
    "AgentClient",
    "AgentError",
    "AgentUnavailableError",
    "BadUrlError",
    "CacheContents",
    "CacheStats",
    "CachedObject",
    "Client",
    "Config",
    "ConfigError",
    "CorruptChunkError",
    "DigestMismatchError",
    "Estimate",
    "EstimateItem",
    "FrumitcacheError",
    "GcReport",
    "Holding",
    "ImportReport",
    "Location",
    "Member",
    "NotAllowedError",
    "NotInStoreError",
    "NotPermittedError",
    "OriginError",
    "OriginStatusError",
    "OriginTruncatedError",
    "OriginUnreachableError",
    "PeerError",
    "PinState",
    "Prefetch",
    "PrefetchHandle",
    "PrefetchProgress",
    "ProtocolError",
    "PullStream",
    "SiteInfo",
    "StoreError",
    "StoreFullError",
    "UplinkStats",
    "VerifyReport",
    "__version__",
    "default_download_dir",
    "load_config",
]

_LAZY = {
    "AgentClient": "frumitcache.client",
    "AgentError": "frumitcache.errors",
    "AgentUnavailableError": "frumitcache.errors",
    "BadUrlError": "frumitcache.errors",
    "CacheContents": "frumitcache._results",
    "CacheStats": "frumitcache._results",
    "CachedObject": "frumitcache._results",
    "Client": "frumitcache.sync",
    "Config": "frumitcache.config",
    "ConfigError": "frumitcache.errors",
    "CorruptChunkError": "frumitcache.errors",
    "DigestMismatchError": "frumitcache.errors",
    "Estimate": "frumitcache._results",
    "EstimateItem": "frumitcache._results",
    "FrumitcacheError": "frumitcache.errors",
    "GcReport": "frumitcache._results",
    "Holding": "frumitcache._results",
    "ImportReport": "frumitcache._results",
    "Location": "frumitcache._results",
    "Member": "frumitcache._results",
    "NotAllowedError": "frumitcache.errors",
    "NotInStoreError": "frumitcache.errors",
    "NotPermittedError": "frumitcache.errors",
    "OriginError": "frumitcache.errors",
    "OriginStatusError": "frumitcache.errors",
    "OriginTruncatedError": "frumitcache.errors",
    "OriginUnreachableError": "frumitcache.errors",
    "PeerError": "frumitcache.errors",
    "PinState": "frumitcache._results",
    "Prefetch": "frumitcache.sync",
    "PrefetchHandle": "frumitcache.client",
    "PrefetchProgress": "frumitcache._results",
    "ProtocolError": "frumitcache.errors",
    "PullStream": "frumitcache.client",
    "SiteInfo": "frumitcache._results",
    "StoreError": "frumitcache.errors",
    "StoreFullError": "frumitcache.errors",
    "UplinkStats": "frumitcache._results",
    "VerifyReport": "frumitcache._results",
    "default_download_dir": "frumitcache.client",
    "load_config": "frumitcache.config",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the library loads on first use. ``python -m frumitcache`` imports this package
    # before the command runs, and its ``pull`` must not pay for trio (a third of its start-up).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
