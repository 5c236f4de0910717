"""The upstream allow-list through real agent processes: every door and every redirect obeys it,
and the seeder checks what a member asks for, even a member configured to allow anything.

The "internal service" is a second test origin on a loopback address of its own: it stands for
what lives behind the seeder (its loopback services, the management network). The allowed
origin is named explicitly (``<address>:*``); ``*`` never reaches loopback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from frumitcache.cli import _exit
from frumitcache.client import AgentClient
from frumitcache.errors import NotAllowedError
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import Fault, OriginServer
from frumitcache.testing.site import LoopbackSite

SECRET = b"management console\n"


@pytest.fixture
async def internal(nursery: trio.Nursery) -> OriginServer:
    server = OriginServer()
    await nursery.start(server.serve, loopback_address())
    server.add("/secret", SECRET)
    return server


async def cli(agent: AgentProcess, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "frumitcache", *args, "--socket", str(agent.socket)],
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def only(origin: OriginServer) -> dict[str, list[str]]:
    return {"allow": ["*", f"{origin.address}:*"]}


async def test_pull_of_a_disallowed_url_is_refused(
    origin: OriginServer, internal: OriginServer, tmp_path: Path
) -> None:
    agent = AgentProcess(
        tmp_path / "node", address=loopback_address(), settings={"origin": only(origin)}
    )
    await agent.start()
    try:
        origin.add("/ok.bin", b"public artifact")
        ok = await cli(agent, "pull", origin.url("/ok.bin"), "-o", "ok.bin", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        for url in (
            internal.url("/secret"),  # the seeder's loopback: a pattern never reaches it
            f"http://localhost:{internal.port}/secret",  # this host's own name
            f"http://[::ffff:{internal.address}]:{internal.port}/secret",  # v4-mapped
        ):
            refused = await cli(agent, "pull", url, "-o", "x.bin", cwd=tmp_path)
            assert refused.returncode == _exit.NOT_ALLOWED, refused.stderr
            assert b"not allowed" in refused.stderr
            assert b"origin.allow" in refused.stderr
        assert not (tmp_path / "x.bin").exists()
        assert internal.stats.total_requests == 0
        # file: and other schemes: refused by the CLI already, and by the agent (library).
        for url in ("file:///etc/passwd", "ftp://127.0.0.1/x"):
            bad = await cli(agent, "pull", url, "-o", "y.bin", cwd=tmp_path)
            assert bad.returncode != 0
        # The library's estimate sends HEADs through the same uplink client: refused too.
        with trio.fail_after(20), pytest.raises(NotAllowedError):
            await AgentClient(agent.socket).estimate([internal.url("/secret")])
    except BaseException:
        print(agent.log())
        raise
    finally:
        agent.kill()
    assert internal.stats.total_requests == 0


async def test_a_redirect_to_a_disallowed_host_is_refused(
    origin: OriginServer, internal: OriginServer, tmp_path: Path
) -> None:
    agent = AgentProcess(
        tmp_path / "node", address=loopback_address(), settings={"origin": only(origin)}
    )
    await agent.start()
    try:
        origin.add("/hop", b"never served")
        origin.misbehave("/hop", Fault(redirect=internal.url("/secret")))
        result = await cli(agent, "pull", origin.url("/hop"), "-o", "hop.bin", cwd=tmp_path)
        assert result.returncode == _exit.NOT_ALLOWED, result.stderr
        assert b"redirects to" in result.stderr
        assert b"not allowed" in result.stderr
        origin.misbehave("/hop", Fault(redirect="file:///etc/passwd"))
        result = await cli(agent, "pull", origin.url("/hop"), "-o", "hop.bin", cwd=tmp_path)
        assert result.returncode == _exit.NOT_ALLOWED, result.stderr
        assert b"never file:" in result.stderr
    except BaseException:
        print(agent.log())
        raise
    finally:
        agent.kill()
    assert not (tmp_path / "hop.bin").exists()
    assert origin.stats.requests["/hop"] == 2
    assert internal.stats.total_requests == 0


async def wait_for_seeder(site: LoopbackSite) -> str:
    with trio.fail_after(30):
        while True:
            views = [(await AgentClient(a.socket).status()).site for a in site.agents]
            seeders = {v.get("seeder") for v in views}
            if (
                len(seeders) == 1
                and None not in seeders
                and all(len(v["members"]) == len(views) for v in views)
            ):
                return str(seeders.pop())
            await trio.sleep(0.2)


async def test_the_seeder_refuses_what_a_compromised_member_asks_for(
    origin: OriginServer, internal: OriginServer, tmp_path: Path
) -> None:
    # Both agents allow only the public origin. Once a seeder is elected, the other one is
    # "compromised": restarted with a list that admits every loopback address, so only the
    # seeder stands in the way (a rejoining node follows the live seeder: no preemption).
    site = LoopbackSite(tmp_path / "site", 2, priorities=[10, 0], settings={"origin": only(origin)})
    await site.start()
    try:
        name = await wait_for_seeder(site)
        seeder, member = sorted(site.agents, key=lambda a: a.settings["node"]["name"] != name)
        await member.stop()
        member.settings["origin"]["allow"] = ["127.0.0.0/8:*", "*:*"]
        await member.start()
        assert await wait_for_seeder(site) == name
        origin.add("/ok.bin", b"public artifact")
        ok = await cli(member, "pull", origin.url("/ok.bin"), "-o", "ok.bin", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        # UDP FetchRequest: the member's pull goes to the seeder, which refuses.
        refused = await cli(member, "pull", internal.url("/secret"), "-o", "x.bin", cwd=tmp_path)
        assert refused.returncode == _exit.NOT_ALLOWED, refused.stderr
        assert b"origin.allow or apt.allowed_hosts" in refused.stderr  # the seeder's union
        # Peer POST /prefetch: the member asks the seeder to prefetch; the seeder refuses.
        pre = await cli(member, "prefetch", internal.url("/secret"), "--node", name, cwd=tmp_path)
        assert pre.returncode == _exit.SITE, pre.stderr
        assert b"not allowed" in pre.stderr
        assert internal.stats.total_requests == 0
        status = await AgentClient(seeder.socket).status()
        assert status.origin.get("fetches", 0) == 1  # only /ok.bin crossed the uplink
    except BaseException:
        for agent in site.agents:
            print(agent.log())
        raise
    finally:
        site.kill()
    assert internal.stats.total_requests == 0


async def apt_get(proxy: tuple[str, int], url: str) -> bytes:
    """One absolute-form GET through the apt proxy; the whole answer (it closes)."""
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream(*proxy)
        async with stream:
            host = url.split("/")[2]
            await stream.send_all(
                f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
            return answer


async def test_the_apt_door_refuses_disallowed_hosts_and_redirects(
    origin: OriginServer, internal: OriginServer, tmp_path: Path
) -> None:
    address = loopback_address()
    agent = AgentProcess(
        tmp_path / "node",
        address=address,
        settings={
            "apt": {"enabled": True, "port": 0, "allowed_hosts": [f"{origin.address}:*"]},
            "origin": {"allow": ["*"]},
        },
    )
    await agent.start()
    try:
        status = await AgentClient(agent.socket).status()
        host, _, port = status.apt.rpartition(":")
        proxy = (host, int(port))
        origin.add("/debian/pool/main/ok.deb", b"deb")
        assert (await apt_get(proxy, origin.url("/debian/pool/main/ok.deb"))).startswith(
            b"HTTP/1.1 200"
        )
        # Not on apt.allowed_hosts: 403 before anything is fetched.
        early = await apt_get(proxy, internal.url("/secret"))
        assert early.startswith(b"HTTP/1.1 403"), early
        # An allowed mirror redirecting to the internal service: 403 from the uplink client.
        origin.add("/debian/pool/main/hop.deb", b"never")
        origin.misbehave("/debian/pool/main/hop.deb", Fault(redirect=internal.url("/secret")))
        hop = await apt_get(proxy, origin.url("/debian/pool/main/hop.deb"))
        assert hop.startswith(b"HTTP/1.1 403"), hop
        assert b"redirects to" in hop
    except BaseException:
        print(agent.log())
        raise
    finally:
        agent.kill()
    assert internal.stats.total_requests == 0
