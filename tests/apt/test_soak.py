"""Many clients and many idle connections on one real agent (issue 16, findings 6 and the soak).

Idle connections (opened, nothing sent) are held only briefly and never crowd out apt: past
``apt.max_pending_connections`` the oldest idle one is closed for each new connection, and an
agent that runs out of descriptors closes idle ones and keeps accepting, without a traceback
per connection.
"""

from __future__ import annotations

import contextlib
import re
import resource
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

from ._fakes import exchange

APT_PORT = 3142
FILES = {f"/debian/pool/main/p/p{i}_1_all.deb": bytes([i]) * (2000 + i) for i in range(10)}


def get(url: str) -> bytes:
    return f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Room for 1,000+ client sockets in this process (and the agent child inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if want < 2600:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for 1,000 idle connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def start_agent(
    tmp_path: Path, nursery: trio.Nursery, **apt: object
) -> tuple[AgentProcess, str]:
    origin = OriginServer()
    for path, data in FILES.items():
        origin.add(path, data)
    address = loopback_address()
    port = await nursery.start(origin.serve, address)
    authority = f"{address}:{port}"
    agent = AgentProcess(
        tmp_path / "agent",
        address=loopback_address(),
        settings={"apt": {"enabled": True, "allowed_hosts": [authority], "port": APT_PORT, **apt}},
    )
    await agent.start()
    return agent, authority


async def metric(agent: AgentProcess, name: str) -> int:
    reply = await exchange((agent.address, APT_PORT), get("/metrics"))
    match = re.search(rf"^{re.escape(name)} (\d+)$", reply.body.decode(), re.M)
    return int(match.group(1)) if match else 0


async def clients(agent: AgentProcess, authority: str, count: int) -> list[bool]:
    """``count`` concurrent apt-like clients, each one GET; True for each exact answer."""
    ok: list[bool] = []
    paths = list(FILES)

    async def one(i: int) -> None:
        path = paths[i % len(paths)]
        reply = await exchange((agent.address, APT_PORT), get(f"http://{authority}{path}"))
        ok.append(reply.status == 200 and reply.body == FILES[path])

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    return ok


@contextlib.asynccontextmanager
async def idle_connections(
    agent: AgentProcess, count: int
) -> AsyncIterator[list[trio.SocketStream]]:
    streams: list[trio.SocketStream] = []
    try:
        for _ in range(count):
            streams.append(await trio.open_tcp_stream(agent.address, APT_PORT))
        yield streams
    finally:
        for s in streams:
            s.socket.close()


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def test_100_clients_beside_1000_idle_connections(
    tmp_path: Path, nursery: trio.Nursery, many_fds: None
) -> None:
    # The cap is above the 100 clients that connect at once: clients never push each other out
    # while the agent has not read their requests yet, only the older idle connections.
    agent, authority = await start_agent(tmp_path, nursery, max_pending_connections=128)
    try:
        with trio.fail_after(60):
            async with idle_connections(agent, 1000):
                ok = await clients(agent, authority, 100)
                assert ok == [True] * 100  # nothing lost
                # The agent holds no more than the cap of idle ones (plus its own files).
                assert open_fds(agent.pid) < 128 + 100 + 60
                dropped = await metric(agent, "frumitcache_apt_connections_dropped_total")
                assert dropped >= 1000 - 128
            assert await metric(agent, "frumitcache_apt_internal_errors_total") == 0
        assert agent.proc is not None
        assert agent.proc.poll() is None
        assert "Traceback" not in agent.log()
    finally:
        agent.kill()


async def test_idle_connection_closed_before_its_first_request(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    agent, _authority = await start_agent(tmp_path, nursery, first_request_timeout_s=0.3)
    try:
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(agent.address, APT_PORT)
            async with stream:
                assert await stream.receive_some(100) == b""  # closed by the agent
            assert await metric(agent, "frumitcache_apt_connections_dropped_total") == 1
    finally:
        agent.kill()


async def test_out_of_descriptors_is_survived(
    tmp_path: Path, nursery: trio.Nursery, many_fds: None
) -> None:
    agent, authority = await start_agent(tmp_path, nursery, max_pending_connections=4096)
    try:
        with trio.fail_after(60):
            assert await clients(agent, authority, len(FILES)) == [True] * len(FILES)  # held
            _soft, hard = resource.prlimit(agent.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(agent.pid, resource.RLIMIT_NOFILE, (open_fds(agent.pid) + 30, hard))
            async with idle_connections(agent, 200):
                # Out of descriptors, a request may fail (its file cannot be opened): answered,
                # never a crash; the agent closes idle connections to make room.
                await clients(agent, authority, 20)
                assert await metric(agent, "frumitcache_apt_accept_errors_total") > 0
            assert await clients(agent, authority, 20) == [True] * 20
        assert agent.proc is not None
        assert agent.proc.poll() is None
        log = agent.log()
        assert "Traceback" not in log
        assert log.count("cannot accept connections") == 1  # once a minute, not per attempt
    finally:
        agent.kill()
