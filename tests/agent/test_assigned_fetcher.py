"""Chunks assigned to a member that will never trade them: it died, or it is idle.

Each chunk of a complete object is taken from the seeder by one assigned member; the others
wait for it to trade the chunk on. A member that waited ``swarm.seeder_grace_s`` asks the
assigned one over the peer port; while it says it is fetching (or has the chunk queued) the
wait goes on, up to ``swarm.assigned_grace_s``; otherwise the waiting member turns to the
seeder. Here the long grace and the libtorrent stall timeout are 600 s: the pulls finish within
the tests' bounds only if a dead or idle member is not waited for (the unit side:
tests/swarm/test_widen.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

from .test_site_herd import pull, wait_for_seeder

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


SLOW = {"swarm": {"assigned_grace_s": 600.0, "stall_timeout_s": 600.0}}


async def test_survivors_take_a_dead_members_chunks_from_the_seeder(tmp_path: Path) -> None:
    data = os.urandom(32 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin = OriginServer()
    site = LoopbackSite(
        tmp_path / "site",
        4,
        priorities=[10, 0, 0, 0],
        settings={
            # The seeder's port at 4 MiB/s: each member's assigned copies take seconds, so the
            # victim dies holding none of them whole.
            "swarm": {**SLOW["swarm"], "upload_rate": 4 * MiB},
        },
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(origin.serve, loopback_address())
        origin.add("/warm.bin", data)
        url = origin.url("/warm.bin")
        try:
            await site.start()
            seeder_name = await wait_for_seeder(site)
            by_name = {f"pi-{i:02d}": a for i, a in enumerate(site.agents)}
            seeder = by_name[seeder_name]
            victim, *survivors = [a for n, a in by_name.items() if n != seeder_name]
            with trio.fail_after(120):
                first = await pull(seeder, url, digest, tmp_path / "seeder.bin")
                assert first.returncode == 0, first.stderr
                results = {}

                async def one(i: int, agent: AgentProcess) -> None:
                    results[i] = await pull(agent, url, digest, tmp_path / f"out{i}")

                async with trio.open_nursery() as pulls:
                    pulls.start_soon(
                        victim.pull, url, "--sha256", digest, "-o", str(tmp_path / "v")
                    )
                    for i, agent in enumerate(survivors):
                        pulls.start_soon(one, i, agent)
                    await trio.sleep(1.0)
                    victim.kill()
                assert not (tmp_path / "v").exists()  # it died before it had the object
            for i, result in results.items():
                assert result.returncode == 0, (result.stderr, survivors[i].log())
                assert (tmp_path / f"out{i}").read_bytes() == data
            assert origin.stats.requests["/warm.bin"] == 1
        finally:
            site.kill()
            nursery.cancel_scope.cancel()


async def test_a_lone_puller_among_idle_members(tmp_path: Path) -> None:
    """One Pi pulls what the seeder holds while the other two do nothing: 3 of 4 of the
    chunks are assigned to idle members, who say so; the puller takes them from the seeder.
    (Waiting the long grace for them would take 600 s.)"""
    data = os.urandom(32 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin = OriginServer()
    site = LoopbackSite(tmp_path / "site", 4, priorities=[10, 0, 0, 0], settings=SLOW)
    async with trio.open_nursery() as nursery:
        await nursery.start(origin.serve, loopback_address())
        origin.add("/lone.bin", data)
        url = origin.url("/lone.bin")
        try:
            await site.start()
            seeder_name = await wait_for_seeder(site)
            by_name = {f"pi-{i:02d}": a for i, a in enumerate(site.agents)}
            seeder = by_name[seeder_name]
            puller = next(a for n, a in by_name.items() if n != seeder_name)
            with trio.fail_after(120):
                first = await pull(seeder, url, digest, tmp_path / "seeder.bin")
                assert first.returncode == 0, first.stderr
                result = await pull(puller, url, digest, tmp_path / "out.bin")
            assert result.returncode == 0, (result.stderr, puller.log())
            assert (tmp_path / "out.bin").read_bytes() == data
            assert origin.stats.requests["/lone.bin"] == 1
        finally:
            site.kill()
            nursery.cancel_scope.cancel()
