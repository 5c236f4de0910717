"""The federation in network namespaces (root): a core site with the origin beyond the backbone
and edge sites, each behind its own shaped uplink, addressed from an IPv6 ULA prefix and IPv4
(one edge names the core's agents by IPv6, the other by IPv4). Every Pi of every site pulls the
same object: the origin sends it once, also when the core's seeder is SIGKILLed mid-transfer
(then at most one chunk plus what was in flight to the dead seeder more)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import trio

from bench._fedfaults import seeder_of
from bench._netfed import (
    ORIGIN_PORT,
    ShapedFederation,
    origin_stats,
    site_agents,
    start_origin,
    wait_origin_sent,
)
from frumitcache.testing.agents import AgentProcess
from tests.agent.test_site_herd import pull
from tests.federation.sites import SITE_TIMERS, new_key, shaped_unsupported, uplink

_UNSUPPORTED = shaped_unsupported()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(_UNSUPPORTED is not None, reason=f"shaped sites: {_UNSUPPORTED}"),
]

MiB = 1024 * 1024
CHUNK = 4 * MiB  # store.chunk_size's default
UPLINK = 20 * 1000 * 1000 // 8  # 20 Mbit/s per site, both ways


async def test_shaped_federation_the_origin_sends_once(tmp_path: Path) -> None:
    data = os.urandom(16 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    www = tmp_path / "www"
    www.mkdir()
    (www / "release.bin").write_bytes(data)
    fed = ShapedFederation([2, 2, 2], uplink=UPLINK)
    agents: list[AgentProcess] = []
    origin: subprocess.Popen[bytes] | None = None
    try:
        fed.build()
        origin = start_origin(fed, www)
        key = new_key()
        core = [f"[{fed.pi_v6(0, i)}]:3147" for i in range(2)]  # by IPv6 ...
        core_v4 = [f"{fed.pi_v4(0, i)}:3147" for i in range(2)]  # ... and by IPv4
        sites = [
            site_agents(fed, 0, tmp_path, key, [], site=SITE_TIMERS),
            site_agents(fed, 1, tmp_path, key, core, site=SITE_TIMERS),
            site_agents(fed, 2, tmp_path, key, core_v4, site=SITE_TIMERS),
        ]
        agents = [a for site in sites for a in site]
        async with trio.open_nursery() as nursery:
            for agent in agents:
                nursery.start_soon(agent.start)
        url = f"http://{fed.origin_v4}:{ORIGIN_PORT}/release.bin"
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, url, digest, tmp_path / f"out{i}")

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i, agent in enumerate(agents):
                    nursery.start_soon(one, i, agent)
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, agents[i].log())
            assert (tmp_path / f"out{i}").read_bytes() == data
        stats = origin_stats(fed)
        assert stats["bytes_sent"]["/release.bin"] == len(data), stats
        for site in sites[1:]:
            counters = [await uplink(a) for a in site]
            assert sum(c["origin_bytes"] for c in counters) == 0, counters
            assert sum(c["federation_bytes"] for c in counters) == len(data), counters
        links = [k for a in sites[1] for k in (await uplink(a)) if k.startswith("federation ")]
        assert any("[fd42:98:0::" in k for k in links), links  # edge 1 went over IPv6
    finally:
        for agent in agents:
            agent.kill()
        if origin is not None:
            origin.kill()
            origin.wait(timeout=10)
            if origin.stdout is not None:
                origin.stdout.close()
        fed.teardown()
    assert not fed.exists()


async def test_shaped_the_parents_seeder_killed_mid_transfer(tmp_path: Path) -> None:
    """The core's seeder is SIGKILLed once the origin has sent half the object: the core's
    survivor takes over and resumes the origin after the chunks it holds, the edge (naming the
    core's Pis by their ULA addresses) resumes from it, every Pi verifies, and the origin sent
    at most one chunk plus what was in flight to the dead seeder (the origin's bytes to it past
    the chunks it had stored) more than the object."""
    data = os.urandom(4 * CHUNK)
    digest = hashlib.sha256(data).hexdigest()
    www = tmp_path / "www"
    www.mkdir()
    (www / "release.bin").write_bytes(data)
    # A 24 Mbit core uplink gives a chunk every 1.3 s (as the loopback kill test: the lone
    # survivor keeps pace with the seeder on a loaded box); the edge's uplink is 20 Mbit.
    fed = ShapedFederation([2, 2], uplink=UPLINK, core_uplink=3 * MiB)
    agents: list[AgentProcess] = []
    origin: subprocess.Popen[bytes] | None = None
    try:
        fed.build()
        origin = start_origin(fed, www)
        key = new_key()
        core_v6 = [f"[{fed.pi_v6(0, i)}]:3147" for i in range(2)]
        core = site_agents(fed, 0, tmp_path, key, [], site=SITE_TIMERS)
        edge = site_agents(fed, 1, tmp_path, key, core_v6, site=SITE_TIMERS)
        agents = core + edge
        async with trio.open_nursery() as nursery:
            for agent in agents:
                nursery.start_soon(agent.start)
        victim = await seeder_of(core)
        await seeder_of(edge)
        pulling = [a for a in agents if a is not victim]
        url = f"http://{fed.origin_v4}:{ORIGIN_PORT}/release.bin"
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}
        killed_at: list[int | None] = []

        async def kill_half_way() -> None:
            killed_at.append(await wait_origin_sent(fed, "/release.bin", len(data) // 2, 60))
            victim.kill()

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, url, digest, tmp_path / f"out{i}")

        with trio.fail_after(75):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_half_way)
                for i, agent in enumerate(pulling):
                    nursery.start_soon(one, i, agent)
        logs = [a.log() for a in pulling]
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, logs[i])
            assert (tmp_path / f"out{i}").read_bytes() == data
        assert killed_at[0] is not None, "the origin never sent half the object"
        assert killed_at[0] < len(data), killed_at  # the kill landed mid-transfer
        stats = origin_stats(fed)
        sent = stats["bytes_sent"]["/release.bin"]
        # In flight: what the origin sent the dead seeder past the whole chunks it had stored.
        to_victim = sum(e["bytes_sent"] for e in stats["log"] if e["peer"] == victim.address)
        stored = 0
        while stored < 4 and _holds(victim, data[stored * CHUNK : (stored + 1) * CHUNK]):
            stored += 1
        in_flight = to_victim - stored * CHUNK
        print(
            f"origin sent {sent} for {len(data)}: extra {sent - len(data)}; "
            f"to the killed seeder {to_victim} ({stored} chunks stored, {in_flight} in flight); "
            f"requests {[(e['peer'], e['range'], e['bytes_sent']) for e in stats['log']]}"
        )
        assert sent - len(data) <= CHUNK + in_flight, stats
        counters = [await uplink(a) for a in edge]
        assert sum(c["federation_bytes"] for c in counters) > 0, counters
    finally:
        for agent in agents:
            agent.kill()
        if origin is not None:
            origin.kill()
            origin.wait(timeout=10)
            if origin.stdout is not None:
                origin.stdout.close()
        fed.teardown()
    assert not fed.exists()


def _holds(agent: AgentProcess, chunk: bytes) -> bool:
    """Is ``chunk`` in the agent's store (a chunk file is renamed into place whole)?"""
    name = hashlib.sha256(chunk).hexdigest()
    return (agent.store / "chunks" / name[:2] / name).exists()


async def test_shaped_a_1mbit_federation_link_is_left_while_the_parent_still_fetches(
    tmp_path: Path,
) -> None:
    """The edge's federation link (its path to the core's Pis) is shaped to 1 Mbit/s inside its
    20 Mbit uplink; the core fetches from the origin at 16 Mbit/s. With federation.min_rate
    2 Mbit/s the edge finds each core Pi's link slower than that while the core is still
    fetching (the link is busy: the core has bytes to spare), leaves it after slow_window_s,
    and resumes from the origin after the bytes it has: nothing the parent sent is fetched
    again, and the core's own fetch stays the only other one at the origin."""
    data = os.urandom(6 * CHUNK)
    digest = hashlib.sha256(data).hexdigest()
    www = tmp_path / "www"
    www.mkdir()
    (www / "release.bin").write_bytes(data)
    fed = ShapedFederation([2, 2], uplink=UPLINK, core_uplink=2 * MiB, slow_links={1: 125_000})
    agents: list[AgentProcess] = []
    origin: subprocess.Popen[bytes] | None = None
    try:
        fed.build()
        origin = start_origin(fed, www)
        key = new_key()
        core_v6 = [f"[{fed.pi_v6(0, i)}]:3147" for i in range(2)]
        core = site_agents(fed, 0, tmp_path, key, [], site=SITE_TIMERS)
        edge = site_agents(fed, 1, tmp_path, key, core_v6, site=SITE_TIMERS)
        for agent in edge:
            agent.settings["federation"].update(min_rate=250_000, slow_window_s=3.0)
        agents = core + edge
        async with trio.open_nursery() as nursery:
            for agent in agents:
                nursery.start_soon(agent.start)
        await seeder_of(core)
        await seeder_of(edge)
        url = f"http://{fed.origin_v4}:{ORIGIN_PORT}/release.bin"
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}
        core_had: list[int] = []  # the origin's bytes to the core when the edge left a link

        async def watch_the_edge() -> None:
            while not any(_LEFT in a.log() for a in edge):  # noqa: ASYNC110 (a log file)
                await trio.sleep(0.1)
            log = (await trio.to_thread.run_sync(origin_stats, fed))["log"]
            core_had.append(sum(e["bytes_sent"] for e in log if e["peer"].startswith(_CORE)))

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, url, digest, tmp_path / f"out{i}")

        with trio.fail_after(75):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_the_edge)
                async with trio.open_nursery() as pulls:
                    for i, agent in enumerate(agents):
                        pulls.start_soon(one, i, agent)
                nursery.cancel_scope.cancel()  # the edge never left a link: core_had is empty
        logs = [a.log() for a in agents]
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, logs[i])
            assert (tmp_path / f"out{i}").read_bytes() == data
        assert core_had, logs[2:]  # the edge left a link ...
        assert core_had[0] < len(data), core_had  # ... while the core was still fetching
        counters = [await uplink(a) for a in edge]
        federation = sum(c["federation_bytes"] for c in counters)
        from_origin = sum(c["origin_bytes"] for c in counters)
        assert 0 < federation < len(data), counters
        assert federation + from_origin == len(data), counters  # resumed after the parent's
        sent = origin_stats(fed)["bytes_sent"]["/release.bin"]
        assert sent == len(data) + from_origin, (sent, counters)
        print(f"edge: {federation} from the core, {from_origin} from the origin; origin {sent}")
    finally:
        for agent in agents:
            agent.kill()
        if origin is not None:
            origin.kill()
            origin.wait(timeout=10)
            if origin.stdout is not None:
                origin.stdout.close()
        fed.teardown()
    assert not fed.exists()


_LEFT = "slower than federation.min_rate"
_CORE = "10.98.10."  # ShapedFederation.pi_v4 of site 0
