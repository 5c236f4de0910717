"""Hostile parents through real agent processes on loopback: a "parent" that answers the
federation wire (``GET /federation/v1/object?url=...``, Range honoured) with other bytes. A
real HTTP server (the test origin, serving the lie at the federation path) plays it. The
child's check of the object's SHA-256 (``pull --sha256``) finds the lie: the link is left,
named in the log and counted per link in ``frumitcache site``, everything it sent is dropped,
and the object comes again from the next parent or the origin. Nothing wrong is stored or
handed out, and every pull completes. One level further up (a liar as the parent of the
child's parent) the child is still right, at the cost of the whole object from the origin."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.federation import object_target
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from tests.agent.test_site_herd import pull, wait_for_seeder
from tests.federation.sites import fed_site, members, new_key, uplink

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB
PATH = object_target("http://o/").partition("?")[0]  # every federation request's path


async def hostile_parent(nursery: trio.Nursery, lie: bytes) -> tuple[OriginServer, str]:
    """A server answering every federation request with ``lie``; its member address."""
    server = OriginServer()
    await nursery.start(server.serve, loopback_address())
    server.add(PATH, lie)
    return server, f"{server.address}:{server.port}"


async def test_hostile_parent_lying_about_one_chunk_the_edge_completes_from_the_next_parent(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The edge (2 agents) names the hostile parent first, then a real core site. The hostile
    one sends the object with chunk 1 of 3 replaced: the edge's seeder leaves it when the
    whole SHA-256 fails, drops what it stored (the members are told, and ask again), and
    takes the object from the core; the origin sends it once, to the core. A pull at the
    seeder and the library's fetch at the member, both under way when the lie is found,
    complete with the right bytes."""
    origin = OriginServer(rate=6 * MiB)
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(3 * CHUNK)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/mid.bin", data)
    lie = data[:CHUNK] + os.urandom(CHUNK) + data[2 * CHUNK :]
    liar, liar_member = await hostile_parent(nursery, lie)
    key = new_key()
    core = fed_site(tmp_path / "core", 1, key)
    edge = fed_site(tmp_path / "edge", 2, key, parents=[liar_member, *members(core)])
    try:
        await core.start()
        await edge.start()
        seeder_name = await wait_for_seeder(edge)
        seeder = next(a for a in edge.agents if a.settings["node"]["name"] == seeder_name)
        member = next(a for a in edge.agents if a is not seeder)
        url = origin.url("/mid.bin")
        got: dict[str, object] = {}

        async def by_pull() -> None:
            got["pull"] = await pull(seeder, url, digest, tmp_path / "pulled")

        async def by_library() -> None:
            got["library"] = await AgentClient(member.socket).fetch(
                url, sha256=digest, dest=tmp_path / "fetched"
            )

        with trio.fail_after(90):
            async with trio.open_nursery() as both:
                both.start_soon(by_pull)
                both.start_soon(by_library)
        logs = [a.log() for a in edge.agents]
        result = got["pull"]
        assert isinstance(result, subprocess.CompletedProcess)
        assert result.returncode == 0, (result.stderr, logs)
        assert " from federation, " in result.stderr.decode(), result.stderr
        assert (tmp_path / "pulled").read_bytes() == data
        assert got["library"] == tmp_path / "fetched"
        assert (tmp_path / "fetched").read_bytes() == data
        assert liar.stats.requests[PATH] >= 1
        assert origin.stats.bytes_sent["/mid.bin"] == len(data), origin.stats.requests
        named = f"parent@{liar_member}"
        assert any("fetch.link-rejected" in log and named in log for log in logs), logs
        counters = [await uplink(a) for a in edge.agents]
        assert sum(c["origin_bytes"] for c in counters) == 0, counters
        infos = [await AgentClient(a.socket).site() for a in edge.agents]
        rejected = [i.uplink.federation_rejected for i in infos]
        assert sum(r.get(named, 0) for r in rejected) == 1, (rejected, logs)
    finally:
        core.kill()
        edge.kill()


async def test_hostile_parent_sending_a_wrong_whole_object_the_edge_completes_from_the_origin(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The edge's only parent sends other bytes of the right length for the whole object: the
    edge leaves it, drops them and fetches the object from the origin, which sends it once
    (what the edge lacked: no byte it had was verified). The pull completes, says where the
    bytes came from, and `frumitcache site` names the link that lied."""
    origin = OriginServer(rate=6 * MiB)
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(2 * CHUNK + 12345)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/whole.bin", data)
    _, liar_member = await hostile_parent(nursery, os.urandom(len(data)))
    edge = fed_site(tmp_path / "edge", 1, new_key(), parents=[liar_member])
    agent = edge.agents[0]
    try:
        await edge.start()
        with trio.fail_after(60):
            result = await pull(agent, origin.url("/whole.bin"), digest, tmp_path / "o")
        assert result.returncode == 0, (result.stderr, agent.log())
        assert (tmp_path / "o").read_bytes() == data
        said = result.stderr.decode()
        assert "Traceback" not in said, said
        assert " from origin, " in said, said
        assert origin.stats.bytes_sent["/whole.bin"] == len(data), origin.stats.requests
        named = f"parent@{liar_member}"
        log = agent.log()
        assert "fetch.link-rejected" in log, log
        assert named in log, log
        info = await AgentClient(agent.socket).site()
        assert info.uplink.federation_rejected == {named: 1}, info.uplink
        assert info.uplink.bytes_from_origin == len(data), info.uplink
        shown = await trio.run_process(
            [sys.executable, "-m", "frumitcache", "site", "--socket", str(agent.socket)],
            capture_stdout=True,
            check=False,
        )
        text = shown.stdout.decode()
        assert named in text, text
        assert "wrong bytes for 1 object(s)" in text, text
    finally:
        edge.kill()


async def test_a_lying_grandparent_the_child_completes_and_the_origin_sends_again(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A three-level chain: the child's parent is a middle site whose parents are a hostile
    one (first) and the honest core, which already holds the object. The middle does not know
    the object's SHA-256 (the wire carries none), so it takes the liar's bytes; the child,
    which knows it (``pull --sha256``), leaves the middle, drops them and fetches the whole
    object from the origin: correct, but the origin sends it a second time (the core had it),
    and the middle never learns it was lied to."""
    origin = OriginServer(rate=6 * MiB)
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(2 * CHUNK + 4321)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/chain.bin", data)
    lie = data[:CHUNK] + os.urandom(CHUNK) + data[2 * CHUNK :]
    liar, liar_member = await hostile_parent(nursery, lie)
    key = new_key()
    core = fed_site(tmp_path / "core", 1, key)
    middle = fed_site(tmp_path / "middle", 1, key, parents=[liar_member, *members(core)])
    child = fed_site(tmp_path / "child", 1, key, parents=members(middle))
    sites = [core, middle, child]
    try:
        for site in sites:
            await site.start()
        url = origin.url("/chain.bin")
        with trio.fail_after(90):
            first = await pull(core.agents[0], url, digest, tmp_path / "core.out")
            assert first.returncode == 0, (first.stderr, core.agents[0].log())
            result = await pull(child.agents[0], url, digest, tmp_path / "child.out")
        log = child.agents[0].log()
        assert result.returncode == 0, (result.stderr, log)
        assert (tmp_path / "child.out").read_bytes() == data
        assert " from origin, " in result.stderr.decode(), result.stderr
        assert liar.stats.requests[PATH] >= 1
        assert "fetch.link-rejected" in log, log
        assert f"parent@{members(middle)[0]}" in log, log
        assert "fetch.link-rejected" not in middle.agents[0].log()
        # The cost: the core's copy, then the whole object again for the child.
        assert origin.stats.bytes_sent["/chain.bin"] == 2 * len(data), origin.stats.requests
        counters = await uplink(middle.agents[0])
        print(f"middle: {counters}; origin requests {origin.stats.requests}")
    finally:
        for site in sites:
            site.kill()
