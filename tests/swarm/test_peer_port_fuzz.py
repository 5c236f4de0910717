"""Hostile input on a real agent's peer port; it must still serve afterwards (issue 16).

Named hostile cases (each sent on its own connection), then a bounded random corpus:
garbage and binary request lines, an over-long request line and header block, thousands of
headers, HTTP/0.9 and absolute-form targets, NUL bytes, malformed and hostile auth headers
(non-ASCII, extra colons, huge and negative times), requests signed with the site key for
traversal paths (``/chunk/../../etc/passwd``, percent-encoded dots, an absolute path),
huge and inverted ``Range`` headers, a POST claiming a huge body it never sends, a chunked
body that lies, a verify request made with GET, and signed requests naming chunks (or an
object, ``/keys/``) with something other than 64 lower-case hex digits.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import trio

from frumitcache._signing import sign
from frumitcache.swarm._peer_client import get_chunk
from tests.swarm.test_peer_port_hardening import _agent_with_chunk


def _signed(key: bytes, method: bytes, path: bytes, extra: bytes = b"") -> bytes:
    auth = sign(key, method, path, time.time())
    return (
        method
        + b" "
        + path
        + b" HTTP/1.1\r\nHost: x\r\nX-Frumit-Auth: "
        + auth
        + b"\r\n"
        + extra
        + b"\r\n"
    )


def _corpus(key: bytes, digest: bytes) -> list[bytes]:
    name = digest.hex().encode()  # the peer port's paths name chunks in hex
    chunk = b"/chunk/" + name
    named = [
        b"\x00\x01\x02\xff" * 100,
        b"GET " + b"A" * 70_000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X-A: " + b"b" * 70_000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(5000)) + b"\r\n",
        b"GET /chunk/\r\n\r\n",
        b"GET http://evil.example/chunk/" + name + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /chunk/\x00" + name + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        chunk.join([b"GET ", b" HTTP/1.1\r\nHost: x\r\nX-Frumit-Auth: \xff\xfe:\x00:zz\r\n\r\n"]),
        chunk.join([b"GET ", b" HTTP/1.1\r\nHost: x\r\nX-Frumit-Auth: 1:2:3:4:5\r\n\r\n"]),
        chunk.join(
            [
                b"GET ",
                b" HTTP/1.1\r\nHost: x\r\nX-Frumit-Auth: " + b"9" * 400 + b":abcdefgh:00\r\n\r\n",
            ]
        ),
        chunk.join(
            [
                b"GET ",
                b" HTTP/1.1\r\nHost: x\r\nX-Frumit-Auth: -5:abcdefgh:00\r\n"
                b"X-Frumit-Auth: 0:abcdefgh:00\r\n\r\n",
            ]
        ),
        _signed(key, b"GET", b"/chunk/../../etc/passwd"),
        _signed(key, b"GET", b"/chunk/%2e%2e/%2e%2e/etc/passwd"),
        _signed(key, b"GET", b"/etc/passwd"),
        _signed(key, b"GET", b"/chunk/" + b"0" * 64 + b"/../../" + name),
        # Chunk names that are not 64 lower-case hex digits: 400, never a crash.
        _signed(key, b"GET", b"/chunk/" + name.upper()),
        _signed(key, b"GET", b"/chunk/" + name[:-1] + b"/tree"),
        _signed(key, b"POST", b"/chunk/" + b"g" * 64 + b"/verify", b"Content-Length: 0\r\n"),
        _signed(key, b"GET", b"/trees/" + name + b"," + name.upper()),
        _signed(key, b"GET", b"/trees/"),
        _signed(key, b"POST", b"/keys/" + name.upper(), b"Content-Length: 0\r\n"),
        _signed(key, b"GET", chunk, b"Range: bytes=0-99999999999999999999999999\r\n"),
        _signed(key, b"GET", chunk, b"Range: bytes=500-100\r\n"),
        _signed(key, b"GET", chunk, b"Range: bytes=-1\r\n"),
        _signed(key, b"POST", b"/prefetch/" + b"A" * 3000, b"Content-Length: 0\r\n"),
        _signed(key, b"POST", b"/keys/zz", b"Content-Length: 0\r\n"),
        _signed(key, b"POST", chunk, b"Content-Length: 99999999999\r\n"),
        _signed(key, b"POST", chunk + b"/verify", b"Transfer-Encoding: chunked\r\n")[:-2]
        + b"\r\nZZZZ\r\nnot chunked\r\n",
        _signed(key, b"GET", chunk + b"/verify"),
        _signed(key, b"GET", chunk + b"/tree"),
        b"GET / HTTP/0.9\r\n\r\n",
        b"\r\n\r\n\r\n",
    ]
    rng = random.Random(16)
    tokens = [
        b"GET",
        b"POST",
        b" ",
        b"/",
        b"chunk",
        name,
        b"..",
        b"%00",
        b"\r\n",
        b"HTTP/1.1",
        b"X-Frumit-Auth:",
        b":",
        b"Range: bytes=",
        b"-",
        b"9" * 30,
        b"\x00",
    ]
    noise = [
        b"".join(rng.choice(tokens) for _ in range(rng.randrange(1, 40))) + b"\r\n\r\n"
        for _ in range(150)
    ]
    noise += [rng.randbytes(rng.randrange(1, 3000)) for _ in range(50)]
    return named + noise


async def _throw(address: str, port: int, payload: bytes) -> None:
    with contextlib.suppress(OSError, trio.BrokenResourceError), trio.move_on_after(5):
        stream = await trio.open_tcp_stream(address, port)
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(payload)
            while await stream.receive_some(65536):
                pass


async def test_hostile_requests_then_still_serving(tmp_path: Path) -> None:
    agent, key, digest, data = await _agent_with_chunk(
        tmp_path, {"site": {"peer_header_timeout_s": 1.0}}, nofile=1024
    )
    try:
        with trio.fail_after(90):
            corpus = _corpus(key, digest)
            limit = trio.CapacityLimiter(40)

            async def one(payload: bytes) -> None:
                async with limit:
                    await _throw(agent.address, 3144, payload)

            async with trio.open_nursery() as nursery:
                for payload in corpus:
                    nursery.start_soon(one, payload)
            body = await get_chunk((agent.address, 3144), digest, key, max_bytes=len(data))
            assert body == data
        assert agent.proc is not None
        assert agent.proc.poll() is None
        log = agent.log()
        assert "Traceback" not in log, log[-3000:]
        # The store still has its chunk and nothing outside it was served or dropped.
        assert "chunk_dropped" not in log
    finally:
        agent.kill()
