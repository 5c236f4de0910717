"""apt's behaviours through what ships: a real agent process, and a real 3-agent site with the
apt client at a member that is not the seeder (tests/apt tests the same on an in-process
assembly): offline mode, a corrupt .deb at the origin, two mirrors -> one object, the by-hash
republish race, auto-apt-proxy's detection.

The repository is built and signed in the test and served by the real test origin (and a second
one on the same files, the mirror); the clients are real apt-get.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.errors import NotInStoreError
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.aptrepo import PACKAGES, AptClient, RepoBuilder, make_client
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import wait_for_seeder

pytestmark = pytest.mark.slow

ALL = tuple(sorted(PACKAGES))
APT_PORT = 3142
APT_HELPER = Path("/usr/lib/apt/apt-helper")
# Long enough for a republish race to happen inside it, short enough to wait out (offline).
WINDOW_S = 8.0
TOPOLOGIES = ["agent", "site"]


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out
    assert "hash sum mismatch" not in out.lower(), out
    return out


async def raw_get(address: str, target: str) -> tuple[int, bytes]:
    """One proxy GET on a fresh connection: (status, body)."""
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream(address, APT_PORT)
        async with stream:
            request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            answer = bytearray()
            while chunk := await stream.receive_some(65536):
                answer += chunk
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    return int(head.split(b"\r\n", 1)[0].split()[1]), body


async def metric(address: str, name: str) -> float:
    status, body = await raw_get(address, "/metrics")  # the proxy's own page
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"{name} not in /metrics")


@dataclass
class AptNodes:
    """The origin, its mirror, the agents; ``at`` is the agent the tests' clients use (on a
    site, a member that is not the seeder), ``other`` a second agent (the same one alone)."""

    root: Path
    builder: RepoBuilder
    tmp: Path
    origin: OriginServer
    mirror: OriginServer
    authority: str
    mirror_authority: str
    agents: list[AgentProcess] = field(default_factory=list)
    at: AgentProcess = field(init=False)
    other: AgentProcess = field(init=False)
    origin_scope: trio.CancelScope = field(init=False)
    clients: int = 0

    def client(self, agent: AgentProcess, *, via_mirror: bool = False, **options: str) -> AptClient:
        self.clients += 1
        authority = self.mirror_authority if via_mirror else self.authority
        return make_client(
            self.tmp / f"client{self.clients}",
            self.builder.keyring,
            f"http://{authority}/debian",
            f"http://{agent.address}:{APT_PORT}",
            options,
        )

    def debs(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (self.root / "debian/pool/main").glob("*.deb")}

    def logs(self) -> str:
        return "\n".join(a.log() for a in self.agents)


@asynccontextmanager
async def apt_nodes(
    topology: str, builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[AptNodes]:
    root = tmp_path / "origin"
    builder.publish(root, dict.fromkeys(ALL, "1.0"))
    origin, mirror = OriginServer(root), OriginServer(root)
    scope = trio.CancelScope()

    async def serve_origin(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await origin.serve(origin_address, task_status=task_status)

    origin_address, mirror_address = loopback_address(), loopback_address()
    port = await nursery.start(serve_origin)
    mirror_port = await nursery.start(mirror.serve, mirror_address)
    authority, mirror_authority = f"{origin_address}:{port}", f"{mirror_address}:{mirror_port}"
    apt = {
        "enabled": True,
        "port": APT_PORT,
        "allowed_hosts": [authority, mirror_authority],
        "index_window_s": WINDOW_S,
    }
    site: LoopbackSite | None = None
    if topology == "site":
        site = LoopbackSite(tmp_path / "site", 3, settings={"apt": apt})
        agents = site.agents
    else:
        agents = [
            AgentProcess(tmp_path / "node", address=loopback_address(), settings={"apt": apt})
        ]
    try:
        if site is not None:
            await site.start()
            seeder = await wait_for_seeder(site)
            members = [a for a in agents if a.settings["node"]["name"] != seeder]
            at, other = members
        else:
            await agents[0].start()
            at = other = agents[0]
        nodes = AptNodes(root, builder, tmp_path, origin, mirror, authority, mirror_authority)
        nodes.agents, nodes.at, nodes.other, nodes.origin_scope = agents, at, other, scope
        try:
            yield nodes
        except BaseException:
            print(nodes.logs())
            raise
    finally:
        for agent in agents:
            agent.kill()


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_corrupt_deb_at_origin(
    topology: str, repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with apt_nodes(topology, repo_builder, tmp_path, nursery) as nodes:
        client = nodes.client(nodes.at)
        deb = nodes.root / "debian/pool/main/pkgb_1.0_all.deb"
        good = deb.read_bytes()
        with trio.fail_after(90):
            ok(await client.run("update"))
            bad = bytearray(good)
            bad[-100] ^= 0xFF  # same size, wrong bytes: does not match Packages
            deb.write_bytes(bytes(bad))
            result = await client.run("download", "pkgb")
            assert result.returncode != 0
            assert client.downloaded() == {}
            url = f"http://{nodes.authority}/debian/pool/main/pkgb_1.0_all.deb"
            for agent in nodes.agents:  # held nowhere in the site, under the URL or the digest
                lib = AgentClient(agent.socket)
                assert not (await lib.locate(url)).complete
                with pytest.raises(NotInStoreError):
                    await lib.locate(hashlib.sha256(bad).hexdigest())
            deb.write_bytes(good)  # the origin is fixed: the same client gets the good package
            ok(await client.run("download", "pkgb"))
        assert client.downloaded() == {"pkgb_1.0_all.deb": good}


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_corrupt_deb_at_origin_is_an_honest_502(
    topology: str, repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with apt_nodes(topology, repo_builder, tmp_path, nursery) as nodes:
        deb = nodes.root / "debian/pool/main/pkgb_1.0_all.deb"
        with trio.fail_after(90):
            ok(await nodes.client(nodes.at).run("update"))  # the proxy learns the hashes
            bad = bytearray(deb.read_bytes())
            bad[-100] ^= 0xFF
            deb.write_bytes(bytes(bad))
            url = f"http://{nodes.authority}/debian/pool/main/pkgb_1.0_all.deb"
            status, body = await raw_get(nodes.at.address, url)
            mismatches = await metric(nodes.at.address, "frumitcache_apt_digest_mismatches_total")
        assert status == 502, body
        assert b"SHA-256" in body
        assert mismatches >= 1


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_offline_mode(
    topology: str, repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with apt_nodes(topology, repo_builder, tmp_path, nursery) as nodes:
        warm = nodes.client(nodes.other)
        with trio.fail_after(120):
            ok(await warm.run("update"))
            ok(await warm.run("download", *ALL))
            nodes.origin_scope.cancel()  # the uplink is gone
            # Wait out the index window: the indexes are due, the origin cannot answer.
            await trio.sleep(WINDOW_S + 0.5)
            cold = nodes.client(nodes.at)
            ok(await cold.run("update"))
            ok(await cold.run("download", *ALL))
        assert cold.downloaded() == nodes.debs()
        # Served from the held copies (on a site by the seeder, for the member), and said so.
        assert "fetch.offline" in nodes.logs()
        # Something never fetched cannot be served: an honest 504 naming the cause.
        never = f"http://{nodes.authority}/debian/pool/main/never_1.0_all.deb"
        status, body = await raw_get(nodes.at.address, never)
        assert status == 504, body
        assert b"unreachable" in body


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_same_deb_through_two_mirrors_is_one_object(
    topology: str, repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with apt_nodes(topology, repo_builder, tmp_path, nursery) as nodes:
        first = nodes.client(nodes.other)
        second = nodes.client(nodes.at, via_mirror=True)
        with trio.fail_after(150):
            for client in (first, second):
                ok(await client.run("update"))
                ok(await client.run("download", *ALL))
        assert second.downloaded() == nodes.debs()
        # The mirror served its indexes, not one .deb: the site held them under the origin's
        # URLs, and the Packages hashes named them.
        assert nodes.mirror.stats.requests["/debian/dists/stable/InRelease"] == 1
        served = {p: n for p, n in nodes.mirror.stats.requests.items() if n}
        assert not [p for p in served if p.endswith(".deb")], served
        for name in nodes.debs():
            assert nodes.origin.stats.requests[f"/debian/pool/main/{name}"] == 1


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_pinned_index_survives_a_republish_race(
    topology: str, repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A plain Packages request after the origin republished, while the InRelease served is
    still current: the answer is the version that InRelease lists (its by-hash twin at the
    origin), never the new file apt would reject."""
    async with apt_nodes(topology, repo_builder, tmp_path, nursery) as nodes:
        base = f"http://{nodes.authority}/debian/dists/stable"
        packages = nodes.root / "debian/dists/stable/main/binary-amd64/Packages.xz"
        with trio.fail_after(60):
            status, _ = await raw_get(nodes.at.address, f"{base}/InRelease")
            assert status == 200
            started = trio.current_time()
            old = packages.read_bytes()
            nodes.builder.publish(nodes.root, {"pkga": "2.0", "pkgb": "1.0", "pkgc": "1.0"})
            assert packages.read_bytes() != old
            status, body = await raw_get(nodes.at.address, f"{base}/main/binary-amd64/Packages.xz")
            assert trio.current_time() - started < WINDOW_S, "too slow to test the race"
        assert status == 200, body
        assert body == old
        sha = hashlib.sha256(old).hexdigest()
        base_path = "/debian/dists/stable"
        by_hash = f"{base_path}/main/binary-amd64/by-hash/SHA256/{sha}"
        assert nodes.origin.stats.requests[by_hash] == 1
        assert (
            nodes.origin.stats.requests["/debian/dists/stable/main/binary-amd64/Packages.xz"] == 0
        )


@pytest.mark.skipif(not APT_HELPER.exists(), reason="apt-helper not installed")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_auto_apt_proxy_detection(
    topology: str, repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """auto-apt-proxy's check at every agent: apt-helper fetches the proxy's root and looks for
    ``406.*usage.information`` in what it prints."""
    async with apt_nodes(topology, repo_builder, tmp_path, nursery) as nodes:
        for agent in nodes.agents:
            with trio.fail_after(30):
                result = await trio.run_process(
                    [
                        str(APT_HELPER),
                        "-o",
                        "Acquire::http::Proxy=DIRECT",
                        "-o",
                        "Acquire::Retries=0",
                        "download-file",
                        f"http://{agent.address}:{APT_PORT}",
                        str(tmp_path / "out"),
                    ],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            text = (result.stdout + result.stderr).decode(errors="replace")
            assert re.search("406.*usage.information", text, re.IGNORECASE), text
