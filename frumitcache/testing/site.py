"""A loopback site of real agent processes: N agents on distinct 127.0.B.N addresses, one
shared site key, static peer lists (no multicast needed), for tests and benchmarks. ``env``
is added to every agent's environment."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address


class LoopbackSite:
    """``nodes`` agents forming one site; start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(
        self,
        directory: Path,
        nodes: int,
        *,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        priorities: Sequence[int] | None = None,
        addresses: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.addresses = list(addresses or [loopback_address() for _ in range(nodes)])
        directory.mkdir(parents=True, exist_ok=True)
        self.key_file = directory / "site.key"
        self.key_file.write_text(secrets.token_hex(32) + "\n")
        self.key_file.chmod(0o600)  # agents refuse a world-readable key
        self.agents: list[AgentProcess] = []
        for i, address in enumerate(self.addresses):
            merged: dict[str, dict[str, Any]] = {
                section: dict(values) for section, values in (settings or {}).items()
            }
            merged.setdefault("node", {}).update(
                name=f"pi-{i:02d}", priority=(priorities or [0] * nodes)[i]
            )
            merged.setdefault("site", {}).update(
                peers=[a for a in self.addresses if a != address],
                discovery=False,
                key_file=str(self.key_file),
            )
            self.agents.append(
                AgentProcess(directory / f"pi-{i:02d}", address=address, settings=merged, env=env)
            )

    async def start(self, *, patience_s: float = 60.0) -> None:
        async def start_one(agent: AgentProcess) -> None:
            await agent.start(patience_s=patience_s)

        async with trio.open_nursery() as nursery:
            for agent in self.agents:
                nursery.start_soon(start_one, agent)

    def kill(self) -> None:
        for agent in self.agents:
            agent.kill()

    async def stop(self) -> None:
        async with trio.open_nursery() as nursery:
            for agent in self.agents:
                nursery.start_soon(agent.stop)
