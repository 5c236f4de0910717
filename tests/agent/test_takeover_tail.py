"""A seeder fenced mid-chunk hands its unfinished chunk to the seeder that replaces it,
through real agent processes: the seeder pulls from a slow origin and is paused (SIGSTOP)
in the middle of its first or second chunk, past its lease, so the other two elect another; they
pull at once, and the old seeder comes back 1 s later. The new seeder takes the whole chunk, if
any, and then the old one's unfinished bytes (``takeover.tail``), and its origin request resumes
with Range at the byte after them, not at the chunk's start (on main before this, it
resumed at the chunk boundary and the origin sent those bytes again). Every copy is right:
the pulls name the object's SHA-256, which checks every byte, the handed ones included.

The hostile answers (another site's key, another object's tail, changed bytes, a tail that
does not start where the new seeder's chunks end) are in tests/agent/test_tail.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, seated
from tests.agent.test_takeover import SETTINGS, _every_copy_right, _heir

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB
PATH = "/tail.bin"
_TAKEN = re.compile(r"takeover\.tail(?![-\w])[^\n]*?\bat=(\d+)[^\n]*?\bbytes=(\d+)")


async def _fenced_at(
    tmp_path: Path, nursery: trio.Nursery, pause_sent: int
) -> tuple[str, dict[str, str], list[str]]:
    """The old seeder pulls from a 4 MiB/s origin and is paused once the origin sent
    ``pause_sent`` bytes; the others elect an heir and pull, the old one comes back 1 s later.
    Every copy right; the heir's name, the logs by name and the origin's Range headers."""
    origin = OriginServer(rate=4 * MiB)
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(4 * CHUNK + 12345)
    digest = hashlib.sha256(data).hexdigest()
    origin.add(PATH, data)
    url = origin.url(PATH)
    site = LoopbackSite(tmp_path / "site", 3, settings=SETTINGS)
    try:
        await site.start()
        seats = await seated(site)
        first, old, survivors, name = seats.first, seats.seeder, seats.survivors, seats.name
        results: dict[str, subprocess.CompletedProcess[bytes]] = {}

        async def one(agent: AgentProcess) -> None:
            results[name[agent]] = await pull(agent, url, digest, tmp_path / name[agent])

        with trio.fail_after(120):
            async with trio.open_nursery() as pulls:
                pulls.start_soon(one, old)
                while origin.stats.bytes_sent[PATH] < pause_sent:  # noqa: ASYNC110
                    await trio.sleep(0.02)
                os.kill(old.pid, signal.SIGSTOP)
                try:
                    with trio.fail_after(30):
                        heir = await _heir(survivors, first)
                    for agent in survivors:
                        pulls.start_soon(one, agent)
                    await trio.sleep(1.0)
                finally:
                    os.kill(old.pid, signal.SIGCONT)
        logs = _every_copy_right(site, tmp_path, data, results)
        ranges = [r.headers.get("range", "") for r in origin.stats.log if r.path == PATH]
        return heir, logs, ranges
    finally:
        site.kill()


# Paused in its first chunk (the site holds no whole chunk: the tail is all the new seeder
# takes) or in its second (after the first, taken whole).
@pytest.mark.parametrize("pause_at", [0.5, 1.5])
async def test_the_new_seeder_takes_the_fenced_seeders_unfinished_chunk(
    tmp_path: Path, nursery: trio.Nursery, pause_at: float
) -> None:
    heir, logs, ranges = await _fenced_at(tmp_path, nursery, int(pause_at * CHUNK))
    taken = _TAKEN.search(logs[heir])
    assert taken is not None, logs
    at, count = int(taken[1]), int(taken[2])
    assert at == int(pause_at) * CHUNK
    assert 0 < count < CHUNK
    assert f"bytes={at + count}-" in ranges, (ranges, logs[heir])


async def test_a_chunk_the_fenced_seeders_drain_completed_is_taken_before_its_tail(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Paused 100 KB short of the second boundary, with more than that waiting in its socket:
    its drain completes the second chunk and keeps what follows (issue 14's keep4 run, 1.0195
    x F: the drain stopped at the boundary, and what had crossed after it crossed again). The
    heir takes that chunk from it, announced as its fetch stopped, then the tail after it;
    the origin resumes after the tail, past the boundary."""
    heir, logs, ranges = await _fenced_at(tmp_path, nursery, 2 * CHUNK - 100_000)
    taken = _TAKEN.search(logs[heir])
    assert taken is not None, logs
    at, count = int(taken[1]), int(taken[2])
    assert at == 2 * CHUNK, logs[heir]
    assert 0 < count < CHUNK
    assert f"bytes={at + count}-" in ranges, (ranges, logs[heir])
