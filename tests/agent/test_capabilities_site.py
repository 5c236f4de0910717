"""README site capabilities through real agent processes: ``site.fallback`` (no seeder
reachable: go to the origin after the configured delay, logged and counted; or refuse with a
clear error) and multicast discovery (``site.discovery = true``, no static peers) over IPv4 and
IPv6.

Every agent is killed by pid at the end; every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from frumitcache.cli import _exit
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

pytestmark = pytest.mark.slow

KiB = 1024


async def wait_for_one_seeder(agents: list[AgentProcess], members: int) -> str:
    """Until every agent sees ``members`` members and all name the same seeder."""
    while True:
        views = [await a.site_status() for a in agents]
        seeders = {v.get("seeder") for v in views}
        if (
            len(seeders) == 1
            and None not in seeders
            and all(len(v["members"]) == members for v in views)
        ):
            return str(seeders.pop())
        await trio.sleep(0.2)


# --- site.fallback ---------------------------------------------------------------------------


async def seeder_and_other(site: LoopbackSite) -> tuple[AgentProcess, AgentProcess]:
    name = await wait_for_one_seeder(site.agents, 2)
    seeder = next(a for a in site.agents if a.settings["node"]["name"] == name)
    return seeder, next(a for a in site.agents if a is not seeder)


def fallback_site(tmp_path: Path, fallback: str) -> LoopbackSite:
    """Two agents. After the seeder dies the survivor cannot elect itself for a long while
    (``member_forget_s``: a lone member of two is a minority), so for the rest of the test
    there is no seeder reachable."""
    return LoopbackSite(
        tmp_path / "site",
        2,
        settings={
            "site": {
                "fallback": fallback,
                "fallback_timeout_s": 1.0,  # short for the test (default 15 s)
                "member_forget_s": 600.0,
            }
        },
    )


async def test_fallback_goes_to_the_origin_after_the_delay(
    tmp_path: Path, origin: OriginServer
) -> None:
    data = hashlib.sha256(b"fallback").digest() * (64 * KiB // 32)
    origin.add("/direct.bin", data)
    site = fallback_site(tmp_path, "after-timeout")
    try:
        with trio.fail_after(120):
            await site.start()
            seeder, survivor = await seeder_and_other(site)
            seeder.kill()  # SIGKILL: the only other member, and the seeder, is gone
            result = await survivor.pull(origin.url("/direct.bin"), "-o", str(tmp_path / "out.bin"))
            view = await survivor.site_status()
    finally:
        site.kill()
    assert result.returncode == 0, result.stderr.decode() + survivor.log()
    assert (tmp_path / "out.bin").read_bytes() == data
    assert origin.stats.requests["/direct.bin"] == 1
    assert view["seeder"] is None  # it really fetched with no seeder, not as a new seeder
    assert view["fallbacks"] == 1  # counted
    assert view["fetched_origin"] == 1
    lines = [line for line in survivor.log().splitlines() if "fetch.fallback-origin" in line]
    assert len(lines) == 1, survivor.log()  # logged, once
    assert "/direct.bin" in lines[0]
    waited = re.search(r"waited_s[=\": ]+([0-9.]+)", lines[0])
    assert waited is not None, lines[0]
    assert float(waited.group(1)) >= 1.0  # not before the configured delay


async def test_fallback_never_fails_with_a_clear_error(
    tmp_path: Path, origin: OriginServer
) -> None:
    origin.add("/never.bin", b"x" * 1000)
    site = fallback_site(tmp_path, "never")
    try:
        with trio.fail_after(120):
            await site.start()
            seeder, survivor = await seeder_and_other(site)
            seeder.kill()
            result = await survivor.pull(origin.url("/never.bin"), "-o", str(tmp_path / "out.bin"))
            view = await survivor.site_status()
    finally:
        site.kill()
    stderr = result.stderr.decode()
    assert result.returncode == _exit.SITE, stderr
    assert "site.fallback = never" in stderr
    assert "Traceback" not in stderr
    assert origin.stats.requests["/never.bin"] == 0
    assert not (tmp_path / "out.bin").exists()
    assert view["fallbacks"] == 0


# --- multicast discovery -----------------------------------------------------------------------
#
# Each agent runs in a network namespace of its own, joined to the others by veth pairs on a
# bridge in a hub namespace, all created here and deleted afterwards: a small LAN where IPv4
# and IPv6 multicast behave as on a real one. (The host's loopback is no place for it: with
# IPv6 it has one address only and no multicast route, and the test must send nothing outside
# loopback or its own namespaces.) The addresses exist only inside these namespaces.


class Lan:
    """A hub namespace with a bridge and ``n`` host namespaces with one veth each."""

    def __init__(self, n: int) -> None:
        tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.hub = f"fct-hub-{tag}"
        self.hosts = [f"fct-{tag}-{i}" for i in range(n)]
        self.veths = [f"fv{tag}{i}"[:15] for i in range(n)]
        self.v4 = [f"10.231.0.{i + 11}" for i in range(n)]
        self.v6 = [f"fd42:231::{i + 11}" for i in range(n)]
        self.made: list[str] = []

    def up(self) -> None:
        ip("netns", "add", self.hub)
        self.made.append(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for ns, veth, v4, v6 in zip(self.hosts, self.veths, self.v4, self.v6, strict=True):
            ip("netns", "add", ns)
            self.made.append(ns)
            ip(
                "-n",
                self.hub,
                "link",
                "add",
                veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            ip("-n", self.hub, "link", "set", veth, "master", "br0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{v4}/24", "dev", "eth0")
            ip("-n", ns, "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
            ip("-n", ns, "link", "set", "eth0", "up")

    def down(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self.made.clear()


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@pytest.fixture
def lan() -> Iterator[Lan]:
    if os.geteuid() != 0:
        pytest.skip("multicast discovery runs in network namespaces, which need root")
    if shutil.which("ip") is None:
        pytest.skip("multicast discovery needs iproute2 (ip) for its network namespaces")
    net = Lan(3)
    try:
        net.up()
    except RuntimeError as exc:
        net.down()
        pytest.skip(f"cannot build the namespace LAN here: {exc}")
    try:
        yield net
    finally:
        net.down()


@pytest.mark.root
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
async def test_multicast_discovery_elects_one_seeder(tmp_path: Path, lan: Lan, family: str) -> None:
    key = tmp_path / "site.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    addresses = lan.v4 if family == "ipv4" else lan.v6
    agents = [
        AgentProcess(
            tmp_path / f"pi-{i}",
            address=address,
            settings={
                "node": {"name": f"pi-{i}"},
                # No static peers: multicast beacons are the only way to meet.
                "site": {"discovery": True, "peers": [], "key_file": str(key)},
            },
            prefix=["ip", "netns", "exec", ns],
        )
        for i, (ns, address) in enumerate(zip(lan.hosts, addresses, strict=True))
    ]
    try:
        with trio.fail_after(60):
            for agent in agents:
                await agent.start()
                # The groups are joined before the agent says it is ready.
                assert "multicast" not in agent.log().replace(str(tmp_path), ""), agent.log()
            seeder = await wait_for_one_seeder(agents, 3)
            views = [await a.site_status() for a in agents]
    finally:
        for agent in agents:
            agent.kill()
    assert seeder in {"pi-0", "pi-1", "pi-2"}
    for view in views:
        assert view["solo"] is False
        assert sorted(m["address"] for m in view["members"]) == sorted(addresses)
