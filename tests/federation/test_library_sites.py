"""The Python library through a federation of real agents: a core site (2 agents) with the
origin behind it and an edge site (2 agents) whose seeder asks the core. A scheduler at the
edge fetches what the core already holds with the library, unchanged: the origin sent it once,
and the library says where the bytes came from."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from frumitcache import AgentClient, Client
from frumitcache.testing.origin import OriginServer
from tests.agent.test_site_herd import wait_for_seeder
from tests.federation.sites import fed_site, members, new_key

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


async def test_the_library_at_an_edge_gets_what_the_core_holds(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(6 * MiB)  # two chunks of the default 4 MiB
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/lib/model.bin", data)
    url = origin.url("/lib/model.bin")
    key = new_key()
    core = fed_site(tmp_path / "core", 2, key)
    edge = fed_site(tmp_path / "edge", 2, key, parents=members(core), name="edge")
    try:
        await core.start()
        await edge.start()
        await wait_for_seeder(core)
        named = await wait_for_seeder(edge)
        seeder = next(a for a in edge.agents if a.settings["node"]["name"] == named)
        member = next(a for a in edge.agents if a is not seeder)
        with trio.fail_after(90):
            # The core fetches it first (a scheduler there, say): the parent site holds it.
            held = await AgentClient(core.agents[0].socket).fetch(
                url, sha256=digest, dest=tmp_path / "core.bin"
            )
            assert held.read_bytes() == data
            assert origin.stats.bytes_sent["/lib/model.bin"] == len(data)

            # At the edge's seeder, the library's stream: the core's copy, labelled so.
            got = bytearray()
            async with AgentClient(seeder.socket).pull(url, sha256=bytes.fromhex(digest)) as stream:
                assert stream.source == "federation"
                async for block in stream:
                    got += block
            assert bytes(got) == data
            assert stream.digest == bytes.fromhex(digest)

            # At the edge's other Pi, the synchronous client's fetch: from its own site.
            client = Client(member.socket)
            path = await trio.to_thread.run_sync(
                lambda: client.fetch(url, sha256=digest, dest=tmp_path / "edge.bin")
            )
            assert path.read_bytes() == data
            where = await trio.to_thread.run_sync(client.locate, url)
            assert sorted(h.node for h in where.holders) == sorted(
                a.settings["node"]["name"] for a in edge.agents
            )
            infos = [await AgentClient(a.socket).site() for a in (seeder, member)]

        # The origin sent the object once for the federation.
        assert origin.stats.bytes_sent["/lib/model.bin"] == len(data), origin.stats.requests
        # What the library reports per agent: the seeder served it from the federation (one
        # parent link carried it all), the member from its site, neither from the origin.
        at_seeder, at_member = (i.uplink for i in infos)
        assert at_seeder.served_by_source["federation"] == len(data), at_seeder
        assert at_seeder.bytes_from_federation == len(data), at_seeder
        assert at_seeder.bytes_from_origin == 0, at_seeder
        assert sum(at_seeder.federation_by_link.values()) == len(data), at_seeder
        assert all(k.startswith("parent@") for k in at_seeder.federation_by_link), at_seeder
        assert at_member.served_by_source["site"] == len(data), at_member
        assert at_member.served_by_source["origin"] == 0, at_member
        assert at_member.bytes_from_origin == 0, at_member
    finally:
        core.kill()
        edge.kill()
