"""frumitcache: peer-to-peer local content distribution for Raspberry Pi sites.

The agents of a site elect one seeder, which fetches each byte over the uplink once; the
members then swarm it among themselves as content-addressed chunks. This package is the agent,
its command line (``frumitcache``) and the library a scheduler imports.

The public names are the ones listed in ``__all__``; everything else is internal.
"""

from frumitcache._version import __version__
from frumitcache.config import Config, load_config
from frumitcache.errors import (
    AgentError,
    AgentUnavailableError,
    ConfigError,
    CorruptChunkError,
    DigestMismatchError,
    FrumitcacheError,
    NotInStoreError,
    OriginError,
    OriginStatusError,
    OriginTruncatedError,
    OriginUnreachableError,
    PeerError,
    ProtocolError,
    StoreError,
    StoreFullError,
)

__all__ = [
    "AgentError",
    "AgentUnavailableError",
    "Config",
    "ConfigError",
    "CorruptChunkError",
    "DigestMismatchError",
    "FrumitcacheError",
    "NotInStoreError",
    "OriginError",
    "OriginStatusError",
    "OriginTruncatedError",
    "OriginUnreachableError",
    "PeerError",
    "ProtocolError",
    "StoreError",
    "StoreFullError",
    "__version__",
    "load_config",
]
