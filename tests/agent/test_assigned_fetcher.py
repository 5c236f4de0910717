"""Chunks assigned to a member that will never trade them: it died, or it is idle.

Each chunk of a complete object is taken from the seeder by one assigned member; the others
wait for it to trade the chunk on. A member that waited ``swarm.seeder_grace_s`` asks the
assigned one over the peer port; while it says it is fetching (or has the chunk queued) the
wait goes on, up to ``swarm.assigned_grace_s``; otherwise the waiting member turns to the
seeder; a member the seeder says pulls alone turns to it without waiting. Here the long grace
and the libtorrent stall timeout are 600 s: the pulls finish within the tests' bounds only if a
dead or idle member is not waited for (the unit side: tests/swarm/test_widen.py,
tests/swarm/test_pull_alone.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess

from .test_site_herd import pull
from .warm_site import MiB, warm_site

pytestmark = pytest.mark.slow


SLOW = {"swarm": {"assigned_grace_s": 600.0, "stall_timeout_s": 600.0}}


async def test_survivors_take_a_dead_members_chunks_from_the_seeder(tmp_path: Path) -> None:
    # The seeder's port at 4 MiB/s: each member's assigned copies take seconds, so the victim
    # dies holding none of them whole.
    settings = {"swarm": {**SLOW["swarm"], "upload_rate": 4 * MiB}}
    async with warm_site(tmp_path, settings) as warm:
        victim, *survivors = warm.members
        results = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, warm.url, warm.digest, tmp_path / f"out{i}")

        with trio.fail_after(120):
            async with trio.open_nursery() as pulls:
                pulls.start_soon(
                    victim.pull, warm.url, "--sha256", warm.digest, "-o", str(tmp_path / "v")
                )
                for i, agent in enumerate(survivors):
                    pulls.start_soon(one, i, agent)
                await trio.sleep(1.0)
                victim.kill()
        assert not (tmp_path / "v").exists()  # it died before it had the object
        for i, result in results.items():
            assert result.returncode == 0, (result.stderr, survivors[i].log())
            assert (tmp_path / f"out{i}").read_bytes() == warm.data
        assert warm.origin.stats.requests[warm.path] == 1


async def test_a_lone_puller_among_idle_members(tmp_path: Path) -> None:
    """One Pi pulls what the seeder holds while the other two do nothing: 3 of 4 of the
    chunks are assigned to idle members. The seeder tells the puller that nobody else asked for
    the object; a second answer a second later says so again, and the puller takes those chunks
    from the seeder. Both graces are 600 s here, so waiting for the idle members, or asking
    them after the short grace, would take 600 s."""
    settings = {"swarm": {**SLOW["swarm"], "seeder_grace_s": 600.0}}
    async with warm_site(tmp_path, settings, name="lone.bin") as warm:
        puller = warm.members[0]
        with trio.fail_after(120):
            result = await pull(puller, warm.url, warm.digest, tmp_path / "out.bin")
        assert result.returncode == 0, (result.stderr, puller.log())
        assert (tmp_path / "out.bin").read_bytes() == warm.data
        assert warm.origin.stats.requests[warm.path] == 1
