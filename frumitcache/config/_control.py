"""``[control]``: the local control socket used by the CLI and the library."""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.config._field import Section, opt
from frumitcache.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ControlConfig(Section):
    socket: str = opt(
        "",
        "Unix socket of the local control API used by the CLI and the library; empty means "
        "$XDG_RUNTIME_DIR/frumitcache/agent.sock (/run/frumitcache/agent.sock as root).",
    )
    allow: list[str] = opt(
        [],
        "Upstream allow-list of the control socket's door (frumitcache pull, the library's "
        "fetch and prefetch), with origin.allow's syntax; empty means origin.allow.",
    )
    idle_timeout_s: float = opt(
        60.0,
        "A control connection is closed when its client sends no complete request, or reads "
        "nothing the agent sends, for this long (a request's own work is not limited).",
        "s",
    )
    max_connections: int = opt(
        64,
        "Control connections open at once from users other than root and the agent's own; "
        "more are refused at once, so local users cannot exhaust the agent's file descriptors.",
    )

    def check(self) -> None:
        if self.idle_timeout_s <= 0 or self.max_connections < 1:
            raise ConfigError(
                "control.idle_timeout_s and control.max_connections: must be positive"
            )
