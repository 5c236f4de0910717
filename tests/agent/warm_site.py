"""A warm site for real-agent tests: four loopback agents, pi-00 preferred as seeder, and the
seeder already holding a random object whole (it pulled it from a local origin), so what a
test measures is how members take a complete object from the site."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

from .test_site_herd import pull, wait_for_seeder

MiB = 1024 * 1024


@dataclass
class WarmSite:
    data: bytes
    digest: str  # hex SHA-256 of ``data``
    url: str
    origin: OriginServer
    seeder: AgentProcess
    members: list[AgentProcess]  # the others, in name order
    path: str  # the object's path at the origin (its request count is ``origin.stats``)


@asynccontextmanager
async def warm_site(
    tmp_path: Path, settings: dict[str, Any], *, size: int = 32 * MiB, name: str = "warm.bin"
) -> AsyncIterator[WarmSite]:
    """The site started, agreed on its seeder, the seeder's pull done; killed on the way out."""
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    origin = OriginServer()
    site = LoopbackSite(tmp_path / "site", 4, priorities=[10, 0, 0, 0], settings=settings)
    path = f"/{name}"
    async with trio.open_nursery() as nursery:
        await nursery.start(origin.serve, loopback_address())
        origin.add(path, data)
        url = origin.url(path)
        try:
            await site.start()
            seeder_name = await wait_for_seeder(site)
            by_name = {f"pi-{i:02d}": a for i, a in enumerate(site.agents)}
            seeder = by_name[seeder_name]
            with trio.fail_after(60):
                first = await pull(seeder, url, digest, tmp_path / "seeder.bin")
            assert first.returncode == 0, first.stderr
            members = [a for n, a in by_name.items() if n != seeder_name]
            yield WarmSite(data, digest, url, origin, seeder, members, path)
        finally:
            site.kill()
            nursery.cancel_scope.cancel()
