"""``[node]``: who this node is in its site and what it advertises for the election."""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.config._field import Section, opt


@dataclass(frozen=True, slots=True)
class NodeConfig(Section):
    name: str = opt("", "Stable id of this node in its site; empty means the host name.")
    address: str = opt(
        "127.0.0.1",
        "Address this node binds its site-facing ports to (IPv4 or IPv6). The default keeps "
        "the agent on loopback: a one-node site.",
    )
    priority: int = opt(0, "Seeder election preference; a higher value wins.")
    model: str = opt(
        "", "Board model advertised to the site; empty means read it from the device tree."
    )
    link_mbit: int = opt(0, "Link speed advertised to the site; 0 means detect it.", "Mbit/s")
    wired: bool = opt(True, "Whether the node's site link is wired (preferred as seeder).")
    state_dir: str = opt(
        "",
        "Directory for small state (node id, site key); empty means ~/.local/state/frumitcache "
        "(/var/lib/frumitcache as root).",
    )
