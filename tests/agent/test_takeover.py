"""A seeder replaced while it is alive, through real agent processes: the seeder holds an
object whole, is paused (SIGSTOP) past its lease so the site elects another, and the new
seeder is asked for the object at once, before any report reached it. The origin's byte
counters are the ground truth.

- the old seeder comes back: its ``Have`` report names the whole object, the new seeder
  waits for it (it is alive and has not reported) and takes every chunk from it; the origin
  sends the object once;
- hostile: the old seeder never comes back while the new seeder pulls (alive in the members'
  view, silent): the new seeder waits only a bounded time (``takeover.no-report``), then
  fetches from the origin. (Only the new seeder pulls: a member's pull also offers its chunks
  to the paused member, which stalls it for about 80 s, on main as well: not this test's
  subject);
- hostile: the old seeder comes back with rotten chunk files: its report names the whole
  object, but no bad byte is taken (each chunk is checked against its digest); the new seeder
  fetches from the origin and every copy is right.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_corrupt_holder import _chunk_files, _rot
from tests.agent.test_site_herd import pull, seated, site_status

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB
# The paused seeder stays a member (member_timeout_s) for longer than the failover and the
# new seeder's wait for its report (3 leases from its term's start).
SETTINGS = {"site": {"lease_s": 2.0, "member_timeout_s": 12.0, "member_forget_s": 30.0}}


async def _origin(nursery: trio.Nursery) -> OriginServer:
    server = OriginServer()
    await nursery.start(server.serve, loopback_address())
    return server


async def _heir(survivors: list[AgentProcess], first: str) -> str:
    """Until every survivor names one seeder other than ``first`` (not asking the paused one)."""
    while True:
        seeders = {(await site_status(a)).get("seeder") for a in survivors}
        if len(seeders) == 1 and None not in seeders and first not in seeders:
            return str(seeders.pop())
        await trio.sleep(0.1)


async def _replace_the_seeder(
    site: LoopbackSite,
    tmp_path: Path,
    origin: OriginServer,
    *,
    comes_back: bool,
    rot: bool = False,
    member_pulls: bool = True,
) -> tuple[bytes, str, dict[str, subprocess.CompletedProcess[bytes]]]:
    """The old seeder pulls the object whole and is paused; once the other two name a new
    seeder both pull it (the new seeder's own flight and a member's request to it). The old
    seeder is resumed 1 s later if ``comes_back`` (after its chunk files rotted, if ``rot``),
    else after the pulls (only the heir pulls unless ``member_pulls``). Returns the data,
    the heir and the pulls' results."""
    data = os.urandom(4 * CHUNK + 12345)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/whole.bin", data)
    url = origin.url("/whole.bin")
    await site.start()
    seats = await seated(site)
    first, old, survivors, name = seats.first, seats.seeder, seats.survivors, seats.name
    with trio.fail_after(60):
        got = await pull(old, url, digest, tmp_path / "old")
    assert got.returncode == 0, got.stderr
    assert origin.stats.bytes_sent["/whole.bin"] == len(data)
    if rot:
        chunks = [
            hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)
        ]
        for path in _chunk_files(old.directory / "store", chunks).values():
            _rot(path)
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}
    os.kill(old.pid, signal.SIGSTOP)
    try:
        with trio.fail_after(30):
            heir = await _heir(survivors, first)

        async def one(agent: AgentProcess) -> None:
            results[name[agent]] = await pull(agent, url, digest, tmp_path / name[agent])

        async def resume() -> None:
            await trio.sleep(1.0)
            os.kill(old.pid, signal.SIGCONT)

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for agent in survivors:
                    if member_pulls or name[agent] == heir:
                        nursery.start_soon(one, agent)
                if comes_back:
                    nursery.start_soon(resume)
    finally:
        os.kill(old.pid, signal.SIGCONT)
    return data, heir, results


def _every_copy_right(
    site: LoopbackSite,
    tmp_path: Path,
    data: bytes,
    results: dict[str, subprocess.CompletedProcess[bytes]],
) -> dict[str, str]:
    """Every pull succeeded with the object's bytes; the agents' logs by node name."""
    logs = {a.settings["node"]["name"]: a.log() for a in site.agents}
    for node, result in results.items():
        assert result.returncode == 0, (result.stderr, logs)
        assert (tmp_path / node).read_bytes() == data
    return logs


async def test_a_replaced_seeder_that_holds_the_object_whole_is_the_source(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    origin = await _origin(nursery)
    site = LoopbackSite(tmp_path / "site", 3, settings=SETTINGS)
    try:
        data, heir, results = await _replace_the_seeder(site, tmp_path, origin, comes_back=True)
        logs = _every_copy_right(site, tmp_path, data, results)
        assert "takeover.whole" in logs[heir], logs[heir]
        assert origin.stats.requests["/whole.bin"] == 1, logs
        assert origin.stats.bytes_sent["/whole.bin"] == len(data), logs
    finally:
        site.kill()


async def test_a_replaced_seeder_that_stays_silent_holds_the_new_one_a_bounded_time(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    origin = await _origin(nursery)
    site = LoopbackSite(tmp_path / "site", 3, settings=SETTINGS)
    try:
        data, heir, results = await _replace_the_seeder(
            site, tmp_path, origin, comes_back=False, member_pulls=False
        )
        logs = _every_copy_right(site, tmp_path, data, results)
        assert "takeover.no-report" in logs[heir], logs[heir]
        assert origin.stats.bytes_sent["/whole.bin"] == 2 * len(data), logs
    finally:
        site.kill()


async def test_a_replaced_seeder_with_rotten_chunks_passes_on_no_bad_byte(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    origin = await _origin(nursery)
    site = LoopbackSite(tmp_path / "site", 3, settings=SETTINGS)
    try:
        data, heir, results = await _replace_the_seeder(
            site, tmp_path, origin, comes_back=True, rot=True
        )
        logs = _every_copy_right(site, tmp_path, data, results)
        assert "resume.chunk-unavailable" in logs[heir], logs[heir]
        assert "takeover.whole" not in logs[heir], logs[heir]
    finally:
        site.kill()
