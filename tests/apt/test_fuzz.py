"""Fuzz the apt port of a real agent: named hostile requests and a bounded random corpus (fixed
seed) of malformed request lines, headers, absolute-form URLs and Range values. Afterwards the
agent must still serve a good request, and no request may have hit an unexpected error (a 500).
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

from ._fakes import read_all

APT_PORT = 3142
GOOD = b"good bytes\n" * 50
PATH = "/debian/pool/main/g/good/good_1_all.deb"

NAMED = [
    b"\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET  HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://HTTPS/// HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://HTTPS///%00/x HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /%ff%fe/x HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT :0 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT [::1]:99999 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /metrics HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
]
RANGES = [
    "bytes=\u00b2-",
    "bytes=-\u0661",
    "bytes=1" + "0" * 5000 + "-",
    "bytes=--1",
    "bytes=0-0,0-0",
    "bytes=\x7f-",
    "bytes = 1 - 2",
    "=",
    "bytes=18446744073709551616-",
]
DATES = ["Mon, 01 Jan 99999999 00:00:00 GMT", "\u00b2", "0", "Thu, 01 Jan 1970 00:00:00 +9999"]


def random_request(rng: random.Random, authority: str) -> bytes:
    """One malformed-ish request: good skeleton, random damage."""
    method = rng.choice([b"GET", b"HEAD", b"POST", b"CONNECT", b"get", b"G\x00T", b"PRI"])
    target = rng.choice(
        [
            f"http://{authority}{PATH}",
            f"/{authority}{PATH}",
            f"http://{authority}/debian/dists/stable/main/binary-all/Packages.xz",
            f"http://{authority}/debian/dists/stable/InRelease",
            f"http://HTTPS///{authority}{PATH}",
            f"http://{authority}:{rng.randint(-5, 99999)}/x",
            f"http://{authority}{PATH}?" + "a" * rng.randint(0, 50),
            f"http://{authority}/" + "%" + "".join(rng.choices("0123456789abcdefg%/.", k=8)),
        ]
    ).encode("latin-1")
    version = rng.choice([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b""])
    headers = [b"Host: x"]
    for _ in range(rng.randint(0, 4)):
        name = rng.choice([b"Range", b"If-Range", b"If-Modified-Since", b"Connection", b"X"])
        value = rng.choice(RANGES + DATES + ["close", "keep-alive", "\x01\x02"])
        headers.append(name + b": " + value.encode("utf-8"))
    raw = bytearray(method + b" " + target + b" " + version + b"\r\n" + b"\r\n".join(headers))
    raw += b"\r\n\r\n"
    for _ in range(rng.randint(0, 3)):  # random byte damage
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    if rng.random() < 0.1:
        raw = raw[: rng.randrange(len(raw))]  # truncated
    return bytes(raw)


@pytest.fixture
async def agent(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[tuple[AgentProcess, str]]:
    origin = OriginServer()
    origin.add(PATH, GOOD)
    address = loopback_address()
    port = await nursery.start(origin.serve, address)
    authority = f"{address}:{port}"
    node = AgentProcess(
        tmp_path / "agent",
        address=loopback_address(),
        settings={
            "apt": {
                "enabled": True,
                "allowed_hosts": [authority],
                "port": APT_PORT,
                "first_request_timeout_s": 1.0,
                "header_timeout_s": 1.0,
            }
        },
    )
    try:
        await node.start()
        yield node, authority
    finally:
        node.kill()


async def send(agent: AgentProcess, raw: bytes) -> bytes:
    stream = await trio.open_tcp_stream(agent.address, APT_PORT)
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(raw)
            await stream.send_eof()
        with contextlib.suppress(trio.BrokenResourceError):
            return await read_all(stream)
    return b""


async def test_apt_port_survives_hostile_and_random_requests(
    agent: tuple[AgentProcess, str],
) -> None:
    node, authority = agent
    rng = random.Random(16)  # fixed: a failure is reproducible
    corpus = NAMED + [
        f"GET http://{authority}{PATH} HTTP/1.1\r\nHost: x\r\nRange: {r}\r\n\r\n".encode()
        for r in RANGES
    ]
    corpus += [random_request(rng, authority) for _ in range(300)]
    statuses: list[bytes] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            limit = trio.CapacityLimiter(20)

            async def one(raw: bytes) -> None:
                async with limit:
                    reply = await send(node, raw)
                    statuses.append(reply[9:12])

            for raw in corpus:
                nursery.start_soon(one, raw)
        assert b"500" not in statuses
        good = await send(
            node, f"GET http://{authority}{PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert good.startswith(b"HTTP/1.1 200")
        assert good.endswith(GOOD)
        metrics = await send(node, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert re.search(rb"^frumitcache_apt_internal_errors_total 0$", metrics, re.M), metrics
    assert node.proc is not None
    assert node.proc.poll() is None
    assert "Traceback" not in node.log()
