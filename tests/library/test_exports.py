"""The library's public surface, pinned: names, docstrings, and the sync/async parity."""

from __future__ import annotations

import inspect

import frumitcache
from frumitcache import AgentClient, Client, Prefetch, PrefetchHandle

PUBLIC = {
    # clients
    "AgentClient",
    "Client",
    "Prefetch",
    "PrefetchHandle",
    "PullStream",
    "default_download_dir",
    # results
    "CacheContents",
    "CacheStats",
    "CachedObject",
    "Estimate",
    "EstimateItem",
    "GcReport",
    "Holding",
    "ImportReport",
    "Location",
    "Member",
    "PinState",
    "PrefetchProgress",
    "SiteInfo",
    "UplinkStats",
    "VerifyReport",
    # errors
    "AgentError",
    "AgentUnavailableError",
    "BadUrlError",
    "ConfigError",
    "CorruptChunkError",
    "DigestMismatchError",
    "FrumitcacheError",
    "NotInStoreError",
    "NotAllowedError",
    "NotPermittedError",
    "OriginError",
    "OriginStatusError",
    "OriginTruncatedError",
    "OriginUnreachableError",
    "PeerError",
    "ProtocolError",
    "StoreError",
    "StoreFullError",
    # configuration
    "Config",
    "load_config",
    "__version__",
}

CALLS = {
    "site",
    "status",
    "fetch",
    "stream",
    "prefetch",
    "pin",
    "unpin",
    "locate",
    "estimate",
    "cache_list",
    "verify",
    "gc",
    "import_debs",
}


def public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def test_all_is_pinned_and_importable() -> None:
    assert set(frumitcache.__all__) == PUBLIC
    assert len(frumitcache.__all__) == len(PUBLIC)
    for name in PUBLIC:
        assert getattr(frumitcache, name) is not None


def test_every_public_name_and_method_has_a_docstring() -> None:
    for name in PUBLIC - {"__version__"}:
        obj = getattr(frumitcache, name)
        assert inspect.getdoc(obj), name
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    assert inspect.getdoc(member), f"{name}.{attr}"


def test_sync_client_mirrors_the_async_one() -> None:
    assert public_methods(AgentClient) >= CALLS
    assert public_methods(Client) >= CALLS
    for name in CALLS:
        sync_sig = inspect.signature(getattr(Client, name))
        async_sig = inspect.signature(getattr(AgentClient, name))
        assert list(sync_sig.parameters) == list(async_sig.parameters), name
        assert not inspect.iscoroutinefunction(getattr(Client, name)), name
    assert {"status", "wait"} <= public_methods(PrefetchHandle)
    assert {"status", "wait"} <= public_methods(Prefetch)
