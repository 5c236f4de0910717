"""A loopback site of real agent processes: the uplink carries each byte once.

Every agent is a real ``frumitcache agent`` process on its own 127.0.B.N address; the origin is
the real test server, rate-limited like a site uplink; every member pulls through its own agent
with the real CLI. The origin's byte counters are the ground truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.errors import PeerError
from frumitcache.store import Store
from frumitcache.swarm import HttpChunkClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB


async def pull(
    agent: AgentProcess, url: str, digest: str, out: Path
) -> subprocess.CompletedProcess[bytes]:
    """``frumitcache pull URL --sha256 DIGEST -o OUT`` at ``agent`` (other tests use it too)."""
    return await agent.pull(url, "--sha256", digest, "-o", str(out))


async def site_status(agent: AgentProcess) -> dict[str, Any]:
    return await agent.site_status()


async def wait_for_seeder(site: LoopbackSite) -> str:
    with trio.fail_after(30):
        while True:
            views = [await site_status(a) for a in site.agents if a.proc and a.proc.poll() is None]
            seeders = {v.get("seeder") for v in views}
            if (
                len(seeders) == 1
                and None not in seeders
                and all(len(v["members"]) == len(views) for v in views)
            ):
                return str(seeders.pop())
            await trio.sleep(0.2)


@dataclass(frozen=True)
class Seated:
    """A formed site seen from the test: the seeder agent, the others, every agent's name."""

    first: str
    seeder: AgentProcess
    survivors: list[AgentProcess]
    name: dict[AgentProcess, str]


async def seated(site: LoopbackSite) -> Seated:
    """Waits for one agreed seeder and splits the site around it."""
    first = await wait_for_seeder(site)
    name = {a: str(a.settings["node"]["name"]) for a in site.agents}
    seeder = next(a for a in site.agents if name[a] == first)
    return Seated(first, seeder, [a for a in site.agents if a is not seeder], name)


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    # 4 MiB/s: a 32 MiB object takes about 8 s, long enough to pull while it is fetched.
    server = OriginServer(rate=4 * MiB)
    await nursery.start(server.serve, loopback_address())
    return server


async def test_herd_fetches_the_origin_once(origin: OriginServer, tmp_path: Path) -> None:
    data = os.urandom(32 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/herd.bin", data)
    site = LoopbackSite(tmp_path / "site", 5)
    try:
        await site.start()
        await wait_for_seeder(site)
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, origin.url("/herd.bin"), digest, tmp_path / f"out{i}")

        with trio.fail_after(150):
            async with trio.open_nursery() as nursery:
                for i, agent in enumerate(site.agents):
                    nursery.start_soon(one, i, agent)
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, site.agents[i].log())
            assert (tmp_path / f"out{i}").read_bytes() == data
        assert origin.stats.requests["/herd.bin"] == 1
        assert origin.stats.bytes_sent["/herd.bin"] == len(data)
        # The members really got it from the site, not each from the origin.
        sources = sorted(
            r.stderr.decode().rsplit(" from ", 1)[1].split(",")[0] for r in results.values()
        )
        assert sources.count("site") == 4, sources
        # Member-to-member bytes went through libtorrent, not a star of peer HTTP around the
        # seeder: the members' libtorrent uploads exceed a whole copy of the object.
        seeder = await wait_for_seeder(site)
        views = [await site_status(a) for a in site.agents]
        members = [v for v in views if v["node"] != seeder]
        traded = sum(int(v["swarm_uploaded"]) for v in members)
        assert traded > len(data), [
            (v["node"], v["swarm_uploaded"], v["peer_http_served"]) for v in views
        ]
    finally:
        site.kill()


async def test_seeder_killed_half_way(origin: OriginServer, tmp_path: Path) -> None:
    data = os.urandom(24 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/kill.bin", data)
    site = LoopbackSite(tmp_path / "site", 5)
    try:
        await site.start()
        first = await wait_for_seeder(site)
        victim = next(a for a in site.agents if a.settings["node"]["name"] == first)
        term_before = (await site_status(victim))["term"]
        survivors = [a for a in site.agents if a is not victim]
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, origin.url("/kill.bin"), digest, tmp_path / f"out{i}")

        async def kill_half_way() -> None:
            while origin.stats.bytes_sent["/kill.bin"] < len(data) // 2:  # noqa: ASYNC110
                await trio.sleep(0.02)
            victim.kill()

        with trio.fail_after(150):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_half_way)
                for i, agent in enumerate(survivors):
                    nursery.start_soon(one, i, agent)
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, survivors[i].log())
            assert (tmp_path / f"out{i}").read_bytes() == data
        # The new seeder resumed after the chunks the site still held. The kill lands right
        # after the seeder stored a chunk (half of 24 MiB is a chunk boundary), the worst case:
        # that chunk is lost unless a member already pulled it (the assigned fetcher pulls each
        # fresh chunk over peer HTTP at once), plus the bytes already in flight.
        sent = origin.stats.bytes_sent["/kill.bin"]
        assert sent <= len(data) + CHUNK + 512 * 1024, sent
        view = await site_status(survivors[0])
        assert view["seeder"] not in (None, first)
        assert int(view["term"]) > int(term_before)
    finally:
        site.kill()


async def test_outsider_with_the_wrong_key_learns_and_gets_nothing(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(2 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/secret.bin", data)
    site = LoopbackSite(tmp_path / "site", 3)
    outsider_address = loopback_address()
    outsider_key = tmp_path / "wrong.key"
    outsider_key.write_text("not-the-site-key-" + "x" * 32 + "\n")
    outsider_key.chmod(0o600)
    outsider = AgentProcess(
        tmp_path / "outsider",
        address=outsider_address,
        settings={
            "node": {"name": "outsider"},
            "site": {"peers": site.addresses, "discovery": False, "key_file": str(outsider_key)},
        },
    )
    try:
        await site.start()
        await outsider.start()
        await wait_for_seeder(site)
        with trio.fail_after(60):
            ok = await pull(site.agents[0], origin.url("/secret.bin"), digest, tmp_path / "in.bin")
        assert ok.returncode == 0, ok.stderr
        # The outsider has tried its luck once every member has dropped a few of its frames
        # (state, polled; not a guess at how long that takes).
        with trio.fail_after(30):
            while True:
                views = [await site_status(agent) for agent in site.agents]
                if all(int(v["dropped_frames"]) >= 3 for v in views):
                    break
                await trio.sleep(0.1)
        seen = await site_status(outsider)
        assert [m["node"] for m in seen["members"]] == ["outsider"]
        for agent in site.agents:
            view = await site_status(agent)
            assert "outsider" not in json.dumps(view["members"])
            assert int(view["dropped_frames"]) > 0
        # Chunks over the peer port need the key: the outsider's requests are refused.
        member = await AgentClient(site.agents[0].socket).status()
        assert member.node == "pi-00"
        nothing = Store.open(tmp_path / "outsider-client", max_bytes=1 << 30, chunk_size=1 << 20)
        client = HttpChunkClient(nothing, b"not-the-site-key-" + b"x" * 32)
        chunk_digest = hashlib.sha256(data).digest()  # a 2 MiB object is one chunk
        with pytest.raises(PeerError, match="403"):
            await client.fetch(chunk_digest, len(data), [(site.addresses[0], 3144)])
        assert not nothing.has_chunk(chunk_digest)
        nothing.close()
    finally:
        outsider.kill()
        site.kill()


async def test_status_shows_members_seeder_term_and_capabilities(tmp_path: Path) -> None:
    site = LoopbackSite(tmp_path / "site", 3, priorities=[0, 5, 1])
    try:
        await site.start()
        # Which node wins depends on who was up at the first election (no preemption later);
        # the preference order itself is tested on the pure election machine.
        seeder = await wait_for_seeder(site)
        result = await trio.run_process(
            [
                sys.executable,
                "-m",
                "frumitcache",
                "status",
                "--json",
                "--socket",
                str(site.agents[2].socket),
            ],
            capture_stdout=True,
            check=True,
        )
        status = json.loads(result.stdout)
        assert status["site"]["seeder"] == seeder
        assert status["site"]["term"] >= 1
        members = {m["node"]: m for m in status["site"]["members"]}
        assert set(members) == {"pi-00", "pi-01", "pi-02"}
        assert members["pi-01"]["priority"] == 5
        for member in members.values():
            assert member["ram_bytes"] > 0
            assert member["free_disk_bytes"] > 0
            assert isinstance(member["model"], str)
        plain = await trio.run_process(
            [sys.executable, "-m", "frumitcache", "status", "--socket", str(site.agents[2].socket)],
            capture_stdout=True,
            check=True,
        )
        assert f"site seeder: {seeder}".encode() in plain.stdout
        assert b"member: pi-00" in plain.stdout
    finally:
        site.kill()


async def test_a_deb_imported_on_one_member_spares_the_uplink_for_all(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(3 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/pool/pkg_1.0_all.deb", data)
    archives = tmp_path / "archives"
    archives.mkdir()
    (archives / "pkg_1.0_all.deb").write_bytes(data)
    site = LoopbackSite(tmp_path / "site", 3)
    try:
        await site.start()
        seeder = await wait_for_seeder(site)
        importer = next(a for a in site.agents if a.settings["node"]["name"] != seeder)
        asker = next(
            a for a in site.agents if a not in (importer,) and a.settings["node"]["name"] != seeder
        )
        imported = await trio.run_process(
            [
                sys.executable,
                "-m",
                "frumitcache",
                "cache",
                "import",
                str(archives),
                "--socket",
                str(importer.socket),
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert imported.returncode == 0, imported.stderr
        with trio.fail_after(60):
            result = await pull(
                asker, origin.url("/pool/pkg_1.0_all.deb"), digest, tmp_path / "got.deb"
            )
        assert result.returncode == 0, (result.stderr, asker.log())
        assert (tmp_path / "got.deb").read_bytes() == data
        assert origin.stats.requests["/pool/pkg_1.0_all.deb"] == 0
    finally:
        site.kill()
