"""The :class:`Config` tree: one field per section, in the order the example config shows them.

A new section (a new front door's, say) is a module beside this one holding a
:class:`~frumitcache.config._field.Section` dataclass, plus one field here and one name in the
package's ``__all__``; the loader, ``--set``, ``describe`` and the example config pick it up
from the field.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frumitcache.config._apt import AptConfig
from frumitcache.config._control import ControlConfig
from frumitcache.config._federation import FederationConfig
from frumitcache.config._log import LogConfig
from frumitcache.config._node import NodeConfig
from frumitcache.config._oci import OciConfig
from frumitcache.config._origin import OriginConfig
from frumitcache.config._paths import default_socket_path, default_state_path, default_store_path
from frumitcache.config._site import SiteConfig
from frumitcache.config._store import StoreConfig
from frumitcache.config._swarm import SwarmConfig


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    origin: OriginConfig = field(default_factory=OriginConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    apt: AptConfig = field(default_factory=AptConfig)
    oci: OciConfig = field(default_factory=OciConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    log: LogConfig = field(default_factory=LogConfig)

    # Paths with their defaults resolved; the raw fields stay as written.
    @property
    def store_path(self) -> Path:
        return Path(self.store.path).expanduser() if self.store.path else default_store_path()

    @property
    def state_path(self) -> Path:
        return (
            Path(self.node.state_dir).expanduser() if self.node.state_dir else default_state_path()
        )

    @property
    def socket_path(self) -> Path:
        return (
            Path(self.control.socket).expanduser() if self.control.socket else default_socket_path()
        )


def sections() -> dict[str, type[Any]]:
    """Each section's name and dataclass, in declaration order."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def section_fields(section: type[Any]) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    """Each key of a section with its type and its field (doc and unit in the metadata)."""
    hints = typing.get_type_hints(section, include_extras=False)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(section)}
