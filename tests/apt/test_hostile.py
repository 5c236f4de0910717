"""No apt request stops the agent: hostile indexes and targets through a real agent process.

Each case once stopped the agent (issue 16, finding 1): a corrupt ``Packages.gz`` / ``.xz``
raised ``zlib.error`` / ``lzma.LZMAError`` in the learning task, which ran in the listener's
nursery; a query ending in ``/Packages.xz`` made any file an index. After each, the agent
must still answer a good request.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

from ._fakes import exchange

APT_PORT = 3142  # each agent has its own loopback address
GOOD = b"a good file\n" * 100


def get(url: str, *headers: str) -> bytes:
    return "\r\n".join([f"GET {url} HTTP/1.1", "Host: x", *headers, "", ""]).encode()


class Node:
    def __init__(self, agent: AgentProcess, origin: OriginServer, authority: str) -> None:
        self.agent = agent
        self.origin = origin
        self.authority = authority

    @property
    def apt(self) -> tuple[str, int]:
        return self.agent.address, APT_PORT

    def url(self, path: str) -> str:
        return f"http://{self.authority}{path}"

    async def metric(self, name: str) -> int:
        reply = await exchange(self.apt, get("/metrics"))
        match = re.search(rf"^{re.escape(name)} (\d+)$", reply.body.decode(), re.M)
        return int(match.group(1)) if match else 0

    async def assert_serving(self) -> None:
        assert self.agent.proc is not None
        assert self.agent.proc.poll() is None, self.agent.log()
        reply = await exchange(self.apt, get(self.url("/debian/pool/good.deb")))
        assert (reply.status, reply.body) == (200, GOOD), self.agent.log()

    async def wait_learned(self, failed: int) -> None:
        """Until ``failed`` indexes were given up (the learning task ran to its end)."""
        name = 'frumitcache_apt_indexes_learned_total{outcome="failed"}'
        while await self.metric(name) < failed:  # noqa: ASYNC110 - another process's counter
            await trio.sleep(0.05)


@pytest.fixture
async def node(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Node]:
    origin = OriginServer()
    origin.add("/debian/pool/good.deb", GOOD)
    address = loopback_address()
    port = await nursery.start(origin.serve, address)
    authority = f"{address}:{port}"
    agent = AgentProcess(
        tmp_path / "agent",
        address=loopback_address(),
        settings={"apt": {"enabled": True, "allowed_hosts": [authority], "port": APT_PORT}},
    )
    try:
        await agent.start()
        yield Node(agent, origin, authority)
    finally:
        agent.kill()


async def test_corrupt_indexes_leave_the_agent_serving(node: Node) -> None:
    base = "/debian/dists/stable/main/binary-amd64/"
    node.origin.add(base + "Packages.gz", b"\x1f\x8bbad")  # 5 bytes, a gzip magic then junk
    node.origin.add(base + "Packages.xz", b"\xfd7zXZ")  # 5 bytes, not a whole xz header
    node.origin.add(base + "Packages.bz2", b"BZh9\x00")
    with trio.fail_after(30):
        for i, name in enumerate(("Packages.gz", "Packages.xz", "Packages.bz2"), 1):
            reply = await exchange(node.apt, get(node.url(base + name)))
            assert reply.status == 200  # served as the origin has it; apt judges it
            await node.wait_learned(failed=i)
            await node.assert_serving()


async def test_query_naming_an_index_is_refused_and_the_agent_serves(node: Node) -> None:
    node.origin.add("/any/file", b"not an index")
    with trio.fail_after(30):
        for target in (
            node.url("/any/file?x=/Packages.xz"),
            node.url("/debian/pool/good.deb?v=1"),
            f"/{node.authority}/any/file?x=/Packages.gz",
        ):
            reply = await exchange(node.apt, get(target))
            assert reply.status == 400, reply
            assert b"query" in reply.body
        await node.assert_serving()
    # Refused before any fetch: no variant crossed the uplink.
    assert node.origin.stats.requests["/any/file"] == 0
    assert node.origin.stats.requests["/debian/pool/good.deb"] == 1


async def test_index_bomb_is_given_up_in_bounded_memory(node: Node) -> None:
    # 256 MiB of zeros without a newline in 256 KiB of gzip: the line bound gives it up after
    # 1 MiB decompressed, and no step holds more than 1 MiB of output.
    before = _rss_kib(node.agent.pid, "VmRSS:")
    bomb = _gzip_zeros(256 << 20)
    assert len(bomb) < 1 << 20
    path = "/debian/dists/stable/main/binary-amd64/Packages.gz"
    node.origin.add(path, bomb)
    with trio.fail_after(30):
        reply = await exchange(node.apt, get(node.url(path)))
        assert reply.status == 200
        await node.wait_learned(failed=1)
        await node.assert_serving()
    peak = _rss_kib(node.agent.pid, "VmHWM:")
    assert peak - before < 96 * 1024, (before, peak)  # the bomb is 256 MiB decompressed


async def test_bad_range_headers_are_answered_cleanly(node: Node) -> None:
    url = node.url("/debian/pool/good.deb")
    with trio.fail_after(30):
        for value in ("bytes=\u00b2-", "bytes=1" + "0" * 5000 + "-", "bytes=-\u0661", "bytes=5-2"):
            # As a client sends it: UTF-8 on the wire, which the proxy reads as Latin-1.
            header = f"Range: {value}".encode().decode("latin-1")
            reply = await exchange(node.apt, get(url, header))
            assert reply.status in (200, 206, 400, 416), (value, reply)
            assert reply.status != 200 or reply.body == GOOD
        assert await node.metric("frumitcache_apt_internal_errors_total") == 0
        await node.assert_serving()


def _gzip_zeros(size: int) -> bytes:
    """A gzip stream of ``size`` zero bytes, compressed piece by piece (no big buffer here)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    out = bytearray()
    for _ in range(size // len(block)):
        out += comp.compress(block)
    out += comp.flush()
    return bytes(out)


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")
