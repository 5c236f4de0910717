"""What differs on a 32-bit Pi: `time_t` ends in 2038 on Debian bookworm armel/armhf, file
offsets and object sizes pass 2 GiB and 4 GiB, and every integer that crosses sqlite or msgpack
must keep 64 bits. These run natively in the main suite and inside the ARM roots of
`deploy/arm-check.sh`, where the 2038 case failed before `apt._http.http_date` stopped using
the platform's `time_t`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import trio

from frumitcache.content import http_date, parse_http_date
from frumitcache.site._codec import FrameCodec, derive_mac_key
from frumitcache.site._messages import ObjectInfo, ObjectManifest
from frumitcache.store._manifest import Manifest
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

GiB = 1024**3
AFTER_2038 = 4_102_444_800  # 2100-01-01T00:00:00Z, past a 32-bit time_t
AFTER_2038_HTTP = "Fri, 01 Jan 2100 00:00:00 GMT"


def test_http_dates_after_2038() -> None:
    assert http_date(AFTER_2038) == AFTER_2038_HTTP
    assert parse_http_date(AFTER_2038_HTTP) == AFTER_2038


def test_offsets_past_4_gib_in_a_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    with path.open("wb") as f:
        f.seek(5 * GiB)
        f.write(b"pi")
    assert path.stat().st_size == 5 * GiB + 2
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 2, 5 * GiB) == b"pi"
        assert os.lseek(fd, 0, os.SEEK_END) == 5 * GiB + 2
    finally:
        os.close(fd)


def test_sizes_past_4_gib_in_sqlite_and_manifests() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (size INTEGER)")
    db.execute("INSERT INTO t VALUES (?)", (5 * GiB + 7,))
    assert db.execute("SELECT size FROM t").fetchone() == (5 * GiB + 7,)
    chunk = 4 * 1024 * 1024
    size = 5 * GiB + 7
    count = -(-size // chunk)
    digests = tuple(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(count))
    manifest = Manifest(hashlib.sha256(b"big").digest(), size, chunk, digests)
    assert manifest.chunk_offset(count - 1) == (count - 1) * chunk > 4 * GiB
    assert manifest.chunk_len(count - 1) == 7


def test_frames_with_sizes_past_4_gib_and_clocks_past_2038() -> None:
    key = derive_mac_key(b"k" * 32, "site")
    alice = FrameCodec(key, "alice", boot=1)
    bob = FrameCodec(key, "bob", boot=2)
    chunks = tuple(hashlib.sha256(bytes([i])).digest() for i in range(16))
    info = ObjectInfo(
        request_id=2**63 + 5,
        url="http://origin.example/big.img",
        manifest=ObjectManifest(
            url="http://origin.example/big.img",
            digest=hashlib.sha256(b"big").digest(),
            size=5 * GiB + 7,
            chunk_size=4 * 1024 * 1024,
            chunks=chunks,
            complete=False,
        ),
    )
    frame = alice.encode(info, to="bob", wall=AFTER_2038)
    assert bob.decode(frame, wall=AFTER_2038) == ("alice", info)


async def test_apt_proxy_passes_a_last_modified_after_2038(tmp_path: Path) -> None:
    """An origin's validator past 2038 is passed on, not a 500 (or a dead agent) on a Pi."""
    origin = OriginServer()
    data = os.urandom(200_000)
    origin.add("/debian/pool/main/far_1.0_all.deb", data, last_modified=AFTER_2038_HTTP)
    address = loopback_address()
    async with trio.open_nursery() as nursery:
        await nursery.start(origin.serve, loopback_address())
        authority = origin.url("/").split("/")[2]
        agent = AgentProcess(
            tmp_path / "pi",
            address=address,
            settings={
                "apt": {"enabled": True, "listen": address, "port": 0, "allowed_hosts": [authority]}
            },
        )
        try:
            with trio.fail_after(300):
                await agent.start(patience_s=300)
                port = int(
                    agent.banner().split("apt proxy       http://")[1].split()[0].rsplit(":", 1)[1]
                )
                stream = await trio.open_tcp_stream(address, port)
                url = origin.url("/debian/pool/main/far_1.0_all.deb")
                await stream.send_all(
                    f"GET {url} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode()
                )
                response = b""
                while chunk := await stream.receive_some(65536):
                    response += chunk
                await stream.aclose()
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head + agent.log().encode()
            headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:])
            assert {k.lower(): v for k, v in headers.items()}["last-modified"] == AFTER_2038_HTTP
            assert body == data
        finally:
            agent.kill()
            nursery.cancel_scope.cancel()
