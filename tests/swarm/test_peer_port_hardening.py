"""The peer HTTP port of a real agent under hostile load (issue 16, findings 6 and 9).

Hostile cases named here:
- a flood of 1,000 idle connections (no request line), with the agent short of descriptors
  (RLIMIT_NOFILE 200, so accept() itself fails with EMFILE): a signed chunk request afterwards
  still succeeds, and the log holds no traceback storm;
- a connection that sends half a request head and stalls is closed after the header timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import secrets
from collections.abc import Iterator
from pathlib import Path

import trio

from frumitcache.store import Store
from frumitcache.swarm._peer_client import get_chunk
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address

CHUNK = 1 << 20


@contextlib.contextmanager
def _child_nofile(soft: int) -> Iterator[None]:
    """Children started inside inherit a descriptor limit of ``soft``."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, old[1]), old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


async def _agent_with_chunk(
    tmp_path: Path, settings: dict[str, dict[str, object]], nofile: int
) -> tuple[AgentProcess, bytes, bytes, bytes]:
    key = secrets.token_hex(32).encode()
    (tmp_path / "site.key").write_bytes(key)
    (tmp_path / "site.key").chmod(0o600)
    data = os.urandom(50_000)
    digest = hashlib.sha256(data).digest()
    store = Store.open(tmp_path / "node" / "store", max_bytes=1 << 30, chunk_size=CHUNK)
    with store:
        await store.put_chunk(data, digest)
    address = loopback_address()
    # A static peer that never answers makes this a site member (a solo agent has no peer port).
    site = {
        "key_file": str(tmp_path / "site.key"),
        "peer_port": 3144,
        "peers": [loopback_address()],
        **settings.get("site", {}),
    }
    agent = AgentProcess(
        tmp_path / "node",
        address=address,
        settings={**settings, "site": site, "store": {"chunk_size": CHUNK}},
    )
    with _child_nofile(nofile):
        await agent.start()
    return agent, key, digest, data


async def test_idle_flood_with_emfile_then_signed_request_succeeds(tmp_path: Path) -> None:
    # A cap above the descriptor limit, so the flood reaches accept()'s EMFILE path too.
    agent, key, digest, data = await _agent_with_chunk(
        tmp_path, {"site": {"peer_preauth_max": 4096}}, nofile=200
    )
    idle: list[trio.SocketStream] = []
    try:
        with trio.fail_after(60):
            for i in range(1000):
                # Each connect completes in the kernel's backlog whether or not it's accepted.
                try:
                    idle.append(await trio.open_tcp_stream(agent.address, 3144))
                except OSError:
                    raise AssertionError(f"{i}: {agent.log()[-3000:]}") from None
            body = await get_chunk((agent.address, 3144), digest, key, max_bytes=len(data))
            assert body == data
            # Still serving after the flood, and more than once.
            body = await get_chunk((agent.address, 3144), digest, key, max_bytes=len(data))
            assert body == data
        assert agent.proc is not None
        assert agent.proc.poll() is None
        log = agent.log()
        assert "Traceback" not in log, log[-3000:]
        assert log.count("peer_http.accept_failed") <= 2, log[-3000:]
    finally:
        for s in idle:
            with contextlib.suppress(OSError):
                s.socket.close()
        agent.kill()


async def test_stalled_request_head_is_closed_after_header_timeout(tmp_path: Path) -> None:
    agent, key, digest, data = await _agent_with_chunk(
        tmp_path, {"site": {"peer_header_timeout_s": 1.0}}, nofile=1024
    )
    try:
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream(agent.address, 3144)
            async with stream:
                half = b"GET /chunk/" + digest.hex().encode() + b" HTTP/1.1\r\nHost: x\r\n"
                await stream.send_all(half)
                # The agent closes it (EOF) instead of holding it for a minute.
                with trio.fail_after(10):
                    while await stream.receive_some(4096):
                        pass
            body = await get_chunk((agent.address, 3144), digest, key, max_bytes=len(data))
            assert body == data
    finally:
        agent.kill()
