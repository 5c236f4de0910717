"""Seeder failover through real agent processes: the seeder is SIGKILLed while a large object
is half fetched from a throttled origin. The origin's byte counters are the ground truth for
"each byte crosses the uplink once"."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, seated, site_status, wait_for_seeder

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    # 6 MiB/s: a 64 MiB object takes about 11 s, the kill lands in the middle of it.
    server = OriginServer(rate=6 * MiB)
    await nursery.start(server.serve, loopback_address())
    return server


async def test_seeder_killed_half_way_through_a_large_object(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(64 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/big.bin", data)
    site = LoopbackSite(tmp_path / "site", 3)
    try:
        await site.start()
        seats = await seated(site)
        first, victim, survivors = seats.first, seats.seeder, seats.survivors
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, origin.url("/big.bin"), digest, tmp_path / f"out{i}")

        async def kill_half_way() -> None:
            while origin.stats.bytes_sent["/big.bin"] < len(data) // 2:  # noqa: ASYNC110
                await trio.sleep(0.02)
            victim.kill()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_half_way)
                for i, agent in enumerate(survivors):
                    nursery.start_soon(one, i, agent)
        logs = [a.log() for a in survivors]
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, logs)
            assert (tmp_path / f"out{i}").read_bytes() == data
        sent = origin.stats.bytes_sent["/big.bin"]
        assert sent <= len(data) + CHUNK + 512 * 1024, (sent, origin.stats.requests, logs)
        view = await site_status(survivors[0])
        assert view["seeder"] not in (None, first)
        # The heir probed the killed seeder's peer port (refused) rather than waiting out its
        # report while the membership still counted it alive.
        assert not any("takeover.no-report" in log for log in logs), logs
    finally:
        site.kill()


async def test_members_that_hear_their_site_wait_out_a_failover_longer_than_the_fallback(
    origin: OriginServer, tmp_path: Path
) -> None:
    """The seeder is SIGKILLed half-way with ``site.fallback_timeout_s`` shorter than a
    failover (1 s: the survivors' evidence of death alone takes 1.5 s). Each survivor hears
    the other (2 of 3, a majority): the site will name a seeder, so neither fetches the
    origin on its own; the new seeder resumes with Range and the object crosses the uplink
    about once."""
    data = os.urandom(64 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/big.bin", data)
    site = LoopbackSite(tmp_path / "site", 3, settings={"site": {"fallback_timeout_s": 1.0}})
    try:
        await site.start()
        seats = await seated(site)
        victim, survivors = seats.seeder, seats.survivors
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, origin.url("/big.bin"), digest, tmp_path / f"out{i}")

        async def kill_half_way() -> None:
            while origin.stats.bytes_sent["/big.bin"] < len(data) // 2:  # noqa: ASYNC110
                await trio.sleep(0.02)
            victim.kill()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_half_way)
                for i, agent in enumerate(survivors):
                    nursery.start_soon(one, i, agent)
        logs = [a.log() for a in survivors]
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, logs)
            assert (tmp_path / f"out{i}").read_bytes() == data
        assert "fetch.fallback-origin" not in "".join(logs), logs
        for agent in survivors:
            assert (await site_status(agent))["fallbacks"] == 0
        sent = origin.stats.bytes_sent["/big.bin"]
        assert sent <= len(data) + CHUNK + 512 * 1024, (sent, origin.stats.requests, logs)
    finally:
        site.kill()


async def test_seeder_paused_past_its_lease(origin: OriginServer, tmp_path: Path) -> None:
    """SIGSTOP the seeder for about its lease, three times during the fetch: its lease lapses
    (the fence holds its fetch) and either comes back in the same term (the fetch goes on) or
    another member takes over (the fence stops it on that evidence, never on a timer: the
    bound, site.fallback_timeout_s, is far off). Every pull, the paused seeder's own
    included, completes with the right bytes."""
    data = os.urandom(64 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/big.bin", data)
    site = LoopbackSite(tmp_path / "site", 3)
    try:
        await site.start()
        victim = (await seated(site)).seeder
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, origin.url("/big.bin"), digest, tmp_path / f"out{i}")

        async def pause() -> None:
            for k in range(1, 4):
                while origin.stats.bytes_sent["/big.bin"] < k * len(data) // 5:  # noqa: ASYNC110
                    await trio.sleep(0.02)
                os.kill(victim.pid, signal.SIGSTOP)
                try:
                    # About a lease (3 s; the seeder's own ends 0.25 s early): sometimes the
                    # lease comes back in the same term, sometimes another member stands.
                    await trio.sleep(random.uniform(2.6, 3.0))
                finally:
                    os.kill(victim.pid, signal.SIGCONT)

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pause)
                for i, agent in enumerate(site.agents):
                    nursery.start_soon(one, i, agent)
        logs = [a.log() for a in site.agents]
        assert "seeder.held" in "".join(logs)  # the pauses did reach the fence
        fenced = [line for log in logs for line in log.splitlines() if "seeder.fenced" in line]
        assert not [line for line in fenced if "lease not back" in line], fenced
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, logs)
            assert (tmp_path / f"out{i}").read_bytes() == data
    finally:
        site.kill()


async def test_after_a_seeder_kill_the_new_seeder_names_the_survivors_as_holders(
    origin: OriginServer, tmp_path: Path
) -> None:
    """A 4-agent site: one member pulls an object whole through the seeder, which is then
    SIGKILLed. The new seeder's catalogue, rebuilt from the survivors' Have reports alone,
    names that member as holder of every chunk (locate), and a survivor that lacks the object
    gets it from the holder: the origin is not asked again (whether or not the new seeder
    holds it itself; priorities make a seeder without it likely)."""
    data = os.urandom(4 * CHUNK + 12345)  # a short last chunk too
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/held.bin", data)
    url = origin.url("/held.bin")
    site = LoopbackSite(tmp_path / "site", 4, priorities=[30, 20, 0, 0])
    try:
        await site.start()
        seats = await seated(site)
        first, seeder, name = seats.first, seats.seeder, seats.name
        holder = seats.survivors[-1]
        with trio.fail_after(60):
            pulled = await pull(holder, url, digest, tmp_path / "first")
        assert pulled.returncode == 0, pulled.stderr
        assert (tmp_path / "first").read_bytes() == data
        sent, asked = origin.stats.bytes_sent["/held.bin"], origin.stats.requests["/held.bin"]
        assert sent == len(data)

        seeder.kill()
        survivors = [a for a in site.agents if a is not seeder]
        with trio.fail_after(60):
            heir = await wait_for_seeder(site)
            assert heir != first
            lacking = next(a for a in survivors if name[a] not in (heir, name[holder]))
            # The Have reports reach the new seeder within a few resends; bounded loop.
            while True:
                where = await AgentClient(lacking.socket).locate(url)
                if where.full:
                    break
                await trio.sleep(0.2)
        assert where.complete
        assert where.digest == digest
        assert where.full == (name[holder],), where  # the dead seeder is gone
        assert where.holders[0].chunks == 5
        assert where.holders[0].bytes == len(data)

        with trio.fail_after(60):
            second = await pull(lacking, url, digest, tmp_path / "second")
        logs = [a.log() for a in survivors]
        assert second.returncode == 0, (second.stderr, logs)
        assert (tmp_path / "second").read_bytes() == data
        assert origin.stats.bytes_sent["/held.bin"] == sent, logs
        assert origin.stats.requests["/held.bin"] == asked
        after = await AgentClient(survivors[0].socket).locate(url)
        assert set(after.full) == {name[holder], name[lacking]}
    finally:
        site.kill()


def _fields(line: str) -> dict[str, str]:
    """``key=value`` fields of a text log line (values without spaces)."""
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


async def test_a_killed_seeder_is_replaced_on_evidence_before_its_lease_could_end(
    tmp_path: Path,
) -> None:
    """Election rule 8 through real agents: the seeder is SIGKILLed, its kernel refuses the
    survivors' probes of its peer port, and they elect a new seeder while their promises to
    the dead one still ran. A long lease (9 s, renewed every 3 s, a renewal late after 3.5 s)
    leaves seconds between the evidence and the promise's end whatever the box's load: without
    the evidence no survivor could vote (nor stand) before its promise ended. The proof is in
    the agents' own logs: each survivor's ``site.seeder-gone`` names the wall time its promise
    would have run to, and the heir's ``site.seeder-changed`` when it became seeder."""
    settings = {"site": {"lease_s": 9.0, "member_timeout_s": 8.0}}
    site = LoopbackSite(tmp_path / "site", 3, settings=settings)
    try:
        await site.start()
        seats = await seated(site)
        first, victim, survivors, name = seats.first, seats.seeder, seats.survivors, seats.name
        term = (await site_status(survivors[0]))["term"]
        # A renewal later each survivor holds the seeder's roster of this term (sent after
        # the first round's acks), which names where it listens: only there is it probed.
        await trio.sleep(3.5)
        victim.kill()
        heir = await wait_for_seeder(site)
        assert heir != first
        logs = {name[a]: a.log() for a in survivors}
        gone = {
            n: _fields(line)
            for n, text in logs.items()
            for line in text.splitlines()
            if "site.seeder-gone" in line
        }
        assert set(gone) == set(logs), logs  # both survivors found the evidence
        for fields in gone.values():
            assert fields["seeder"] == first
            assert int(fields["term"]) == term
        won = [
            _fields(line)
            for line in logs[heir].splitlines()
            if "site.seeder-changed" in line and f"seeder=\"('{heir}'," in line
        ]
        assert won, logs[heir]
        # The heir became seeder before its own promise to the dead seeder would have ended
        # (and before the other survivor's: the vote it needed).
        assert all(float(won[-1]["at"]) < float(g["promised"]) for g in gone.values()), (
            won,
            gone,
        )
        new = await site_status(next(a for a in survivors if name[a] == heir))
        assert new["term"] > term
    finally:
        site.kill()
