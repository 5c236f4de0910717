"""The one configuration object of an agent.

:class:`Config` is a tree of frozen dataclasses, one section per part of the agent. Each field
documents its meaning, unit and default in its metadata; the loader, the CLI overrides
(``--set section.key=value``) and the generated example config (``deploy/frumitcache.toml``)
are all driven by that data, so the three can never disagree.

Loading is strict: an unknown section or key, or a value of the wrong type or range, raises
:class:`~frumitcache.errors.ConfigError` naming the key (``store.max_bytes``).

The defaults run an embedded one-node site: everything listens on 127.0.0.1 and the store
lives under the user's cache directory (``/var/cache/frumitcache`` as root).

One module per section (``_apt.py`` holds ``[apt]``, ...). A front door adds its section as a
module of its own here, one field in :class:`Config` (``_config.py``) and one name below; the
loader, ``--set``, ``describe`` and the example config follow from the field's metadata.
"""

from frumitcache.config._apt import AptConfig
from frumitcache.config._config import Config
from frumitcache.config._control import ControlConfig
from frumitcache.config._federation import FederationConfig, split_member
from frumitcache.config._field import GiB, KiB, MiB, Section, opt
from frumitcache.config._load import (
    config_from_mapping,
    find_config_file,
    load_config,
    parse_quantity,
    with_overrides,
)
from frumitcache.config._log import LogConfig
from frumitcache.config._node import NodeConfig
from frumitcache.config._oci import REGISTRY_NAME, OciConfig, Registry, parse_registries
from frumitcache.config._origin import OriginConfig
from frumitcache.config._paths import default_socket_path, default_state_path, default_store_path
from frumitcache.config._site import SiteConfig
from frumitcache.config._store import StoreConfig
from frumitcache.config._swarm import SwarmConfig
from frumitcache.config._toml import describe, dump_toml, example_toml

__all__ = [
    "REGISTRY_NAME",
    "AptConfig",
    "Config",
    "ControlConfig",
    "FederationConfig",
    "GiB",
    "KiB",
    "LogConfig",
    "MiB",
    "NodeConfig",
    "OciConfig",
    "OriginConfig",
    "Registry",
    "Section",
    "SiteConfig",
    "StoreConfig",
    "SwarmConfig",
    "config_from_mapping",
    "default_socket_path",
    "default_state_path",
    "default_store_path",
    "describe",
    "dump_toml",
    "example_toml",
    "find_config_file",
    "load_config",
    "opt",
    "parse_quantity",
    "parse_registries",
    "split_member",
    "with_overrides",
]
