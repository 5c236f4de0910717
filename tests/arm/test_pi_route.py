"""The Raspberry Pi route, end to end: what `deploy/arm-check.sh` runs inside Debian armel and
armhf roots under emulation (and what the main suite runs natively).

Each test drives real parts the way a Pi owner does: an agent process started from its config
file, `frumitcache doctor`, `frumitcache pull --sha256` from a local origin, a two-agent
loopback site whose member pulls a multi-chunk object through libtorrent and peer HTTP, and a
real `apt-get download` through the agent's apt proxy. On 32-bit ARM this is where file offsets,
`time_t`, struct packing and the libtorrent build of the architecture meet the code.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
# Under qemu a 700 MHz-class CPU is emulated: every bound here is generous on purpose.
PATIENCE_S = 600.0 if platform.machine().startswith("arm") else 120.0


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "frumitcache", *args]


async def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


async def test_agent_doctor_and_pull_as_on_a_pi(origin: OriginServer, tmp_path: Path) -> None:
    # Three 4 MiB chunks and a tail: offsets past the first chunk, a short last chunk.
    data = os.urandom(13 * MiB + 12345)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/release.tar", data)
    agent = AgentProcess(tmp_path / "pi", address=loopback_address())
    try:
        with trio.fail_after(PATIENCE_S):
            await agent.start(patience_s=PATIENCE_S)
            doctor = await run(cli("doctor", "--json", "--config", str(agent.config_path)))
            checks = {c["name"]: c for c in json.loads(doctor.stdout)}
            # The agent's own checks must pass; the apt.conf check may not (no apt snippet in a
            # test root), so each is named rather than the exit code trusted.
            failed = [n for n, c in checks.items() if not c["ok"] and "apt" not in n]
            assert not failed, text(doctor)
            assert "the agent listens" in checks["control socket"]["message"], text(doctor)

            out = tmp_path / "release.tar"
            url = origin.url("/release.tar")
            socket_args = ("--socket", str(agent.socket))
            pulled = await run(cli("pull", url, "--sha256", digest, "-o", str(out), *socket_args))
            assert pulled.returncode == 0, text(pulled) + agent.log()
            assert out.read_bytes() == data
            # A wrong digest: exit 5 and no file left behind.
            bad = tmp_path / "bad.tar"
            wrong = await run(cli("pull", url, "--sha256", "0" * 64, "-o", str(bad), *socket_args))
            assert wrong.returncode == 5, text(wrong)
            assert not bad.exists()
        assert origin.stats.bytes_sent["/release.tar"] == len(data)
    finally:
        agent.kill()


async def _settled_seeder(site: LoopbackSite) -> str:
    while True:
        views = [(await AgentClient(a.socket).status()).site for a in site.agents]
        seeders = {v.get("seeder") for v in views}
        if (
            len(seeders) == 1
            and None not in seeders
            and all(len(v["members"]) == len(site.agents) for v in views)
        ):
            return str(seeders.pop())
        await trio.sleep(0.5)


async def test_members_pull_through_libtorrent_and_peer_http(tmp_path: Path) -> None:
    """Three agents pull one object at once while the seeder is still fetching it: each
    member takes the chunks assigned to it from the seeder over peer HTTP and trades the rest
    with the other member through libtorrent (4 MiB chunks are libtorrent-sized)."""
    data = os.urandom(16 * MiB + MiB // 2)
    digest = hashlib.sha256(data).hexdigest()
    # A slow uplink (4 MiB/s), so the members pull while the seeder is still fetching.
    origin = OriginServer(rate=4 * MiB)
    site = LoopbackSite(tmp_path / "site", 3, priorities=[10, 0, 0])
    async with trio.open_nursery() as nursery:
        await nursery.start(origin.serve, loopback_address())
        origin.add("/image.img", data)
        try:
            with trio.fail_after(PATIENCE_S):
                await site.start(patience_s=PATIENCE_S)
                await _settled_seeder(site)
                url = origin.url("/image.img")
                results: dict[int, subprocess.CompletedProcess[bytes]] = {}

                async def pull(i: int) -> None:
                    out = str(tmp_path / f"out{i}.img")
                    argv = cli(
                        "pull",
                        url,
                        "--sha256",
                        digest,
                        "-o",
                        out,
                        "--socket",
                        str(site.agents[i].socket),
                    )
                    results[i] = await run(argv)

                async with trio.open_nursery() as pulls:
                    for i in range(3):
                        pulls.start_soon(pull, i)
                views = [(await AgentClient(a.socket).status()).site for a in site.agents]
            for i, result in results.items():
                assert result.returncode == 0, text(result) + site.agents[i].log()
                assert (tmp_path / f"out{i}.img").read_bytes() == data
            assert origin.stats.requests["/image.img"] == 1  # the uplink carried it once
            assert origin.stats.bytes_sent["/image.img"] == len(data)
            members = [v for v in views if v["node"] != v["seeder"]]
            assert len(members) == 2, views
            # Both carriers really ran on this architecture.
            assert sum(int(v["swarm_downloaded"]) for v in members) > 0, members
            assert sum(int(v["peer_http_fetched"]) for v in members) > 0, members
        finally:
            site.kill()
            nursery.cancel_scope.cancel()


APT_TOOLS = ("apt-get", "dpkg-deb")


def _build_repo(root: Path, arch: str) -> dict[str, bytes]:
    """A one-package repository: a real .deb (dpkg-deb), its Packages index and a Release that
    lists it. Unsigned ([trusted=yes]): this proves the proxy path on the architecture, not
    apt's gpg (the main suite's tests/apt does that with a signed repository)."""
    tree = root / "build/pi-hello"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/share/pi-hello").mkdir(parents=True)
    (tree / "usr/share/pi-hello/payload").write_bytes(os.urandom(300_000))
    control = (
        "Package: pi-hello\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: t <t@example.invalid>\nDescription: frumitcache ARM route test\n"
    )
    (tree / "DEBIAN/control").write_text(control)
    pool = root / "repo/debian/pool/main"
    pool.mkdir(parents=True)
    deb = pool / "pi-hello_1.0_all.deb"
    subprocess.run(
        ["dpkg-deb", "-Znone", "--root-owner-group", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    body = deb.read_bytes()
    packages = (
        f"{control}Filename: pool/main/{deb.name}\nSize: {len(body)}\n"
        f"SHA256: {hashlib.sha256(body).hexdigest()}\n\n"
    ).encode()
    dist = root / "repo/debian/dists/stable"
    index = f"main/binary-{arch}/Packages"
    (dist / index).parent.mkdir(parents=True)
    (dist / index).write_bytes(packages)
    (dist / "Release").write_text(
        f"Suite: stable\nCodename: stable\nArchitectures: {arch}\nComponents: main\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} {index}\n"
    )
    return {deb.name: body}


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in APT_TOOLS), reason=f"needs {', '.join(APT_TOOLS)}"
)
async def test_apt_get_download_through_the_agent(tmp_path: Path, nursery: trio.Nursery) -> None:
    arch = _dpkg_arch()
    debs = _build_repo(tmp_path, arch)
    repo_origin = OriginServer(tmp_path / "repo")
    host = loopback_address()
    await nursery.start(repo_origin.serve, host)
    address = loopback_address()
    authority = repo_origin.url("/").split("/")[2]  # host:port
    agent = AgentProcess(
        tmp_path / "pi",
        address=address,
        settings={
            "apt": {"enabled": True, "listen": address, "port": 0, "allowed_hosts": [authority]}
        },
    )
    apt = tmp_path / "apt"
    for sub in ("lists/partial", "archives/partial", "etc/preferences.d", "dl"):
        (apt / sub).mkdir(parents=True)
    sources = apt / "etc/sources.list"
    try:
        with trio.fail_after(PATIENCE_S):
            await agent.start(patience_s=PATIENCE_S)
            proxy = (await AgentClient(agent.socket).status()).apt
            assert proxy, agent.banner()
            sources.write_text(f"deb [trusted=yes] {repo_origin.url('/debian')} stable main\n")
            options = [
                f"-oAcquire::http::Proxy=http://{proxy}",
                f"-oDir::Etc::SourceList={sources}",
                "-oDir::Etc::SourceParts=/nonexistent",
                f"-oDir::Etc::Preferences={apt}/etc/preferences",
                f"-oDir::Etc::PreferencesParts={apt}/etc/preferences.d",
                f"-oDir::State={apt}",
                f"-oDir::State::Lists={apt}/lists",
                f"-oDir::State::status={apt}/status",
                f"-oDir::Cache={apt}",
                f"-oAPT::Architecture={arch}",
                "-oDebug::NoLocking=1",
                "-oAcquire::Languages=none",
                "-oAcquire::EnableSrvRecords=false",
            ]
            (apt / "status").write_text("")
            update = await run(["apt-get", *options, "update"])
            assert update.returncode == 0, text(update) + agent.log()
            download = await trio.run_process(
                ["apt-get", *options, "download", "pi-hello"],
                cwd=apt / "dl",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert download.returncode == 0, text(download) + agent.log()
        got = {p.name: p.read_bytes() for p in (apt / "dl").glob("*.deb")}
        assert got == debs
        assert repo_origin.stats.requests["/debian/pool/main/pi-hello_1.0_all.deb"] == 1
    finally:
        agent.kill()


def _dpkg_arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
