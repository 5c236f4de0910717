"""Bodies made on the fly (frumitcache.testing.generated): any range of them is the same bytes,
every piece differs, the digest is the served body's, and the origin (in a test and as a
process) serves them with Range and validators like a file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.testing.generated import PIECE, Generated, parse_spec
from frumitcache.testing.origin import OriginServer

SIZE = 5 * PIECE + 1234  # not a whole number of pieces


def whole(body: Generated) -> bytes:
    return b"".join(body.read(0, body.size))


def test_ranges_agree_with_the_whole_and_the_digest() -> None:
    body = Generated(SIZE, seed=7)
    data = whole(body)
    assert len(data) == SIZE
    assert body.sha256() == hashlib.sha256(data).hexdigest()
    for start, end in [(0, 1), (PIECE - 3, PIECE + 5), (100, 3 * PIECE + 17), (SIZE - 9, SIZE)]:
        assert b"".join(body.read(start, end)) == data[start:end]
    assert all(len(p) <= PIECE for p in body.read(5, SIZE))


def test_past_the_end_and_empty_ranges_are_clipped() -> None:
    body = Generated(SIZE, seed=7)
    assert b"".join(body.read(SIZE - 2, SIZE + 100)) == whole(body)[-2:]
    assert b"".join(body.read(SIZE, SIZE + 5)) == b""
    assert b"".join(Generated(0).read(0, 10)) == b""
    with pytest.raises(ValueError, match="size"):
        Generated(-1)


def test_every_piece_differs_and_seeds_differ() -> None:
    # A content-addressed store must not fold chunks of the body into one.
    body = Generated(64 * PIECE, seed=1)
    pieces = list(body.read(0, body.size))
    assert len(set(pieces)) == len(pieces) == 64
    assert whole(Generated(SIZE, seed=1)) != whole(Generated(SIZE, seed=2))
    assert whole(Generated(SIZE, seed=1)) == whole(Generated(SIZE, seed=1))


def test_parse_spec() -> None:
    assert parse_spec("/a.bin=3GiB:9") == ("/a.bin", Generated(3 << 30, 9))
    assert parse_spec("/b=100") == ("/b", Generated(100, 0))
    assert parse_spec("/c=2MiB") == ("/c", Generated(2 << 20, 0))
    for bad in ("a.bin=3", "/a.bin", "/a=x", "/a=1:y"):
        with pytest.raises(ValueError, match=r"want|invalid literal"):
            parse_spec(bad)


async def test_origin_serves_a_generated_body(origin: OriginServer) -> None:
    body = Generated(SIZE, seed=3)
    data = whole(body)
    origin.add_generated("/g.bin", body)
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            r = await client.get(origin.url("/g.bin"))
            assert (r.status_code, r.content) == (200, data)
            etag = r.headers["etag"]
            r = await client.get(origin.url("/g.bin"), headers={"Range": "bytes=16000-40000"})
            assert (r.status_code, r.content) == (206, data[16000:40001])
            r = await client.get(origin.url("/g.bin"), headers={"If-None-Match": etag})
            assert r.status_code == 304
    assert origin.stats.bytes_sent["/g.bin"] == SIZE + 24001


def test_origin_process_generates(tmp_path: Path, address: str) -> None:
    body = Generated(SIZE, seed=5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "frumitcache.testing.origin", "--address", address,
         "--dir", str(tmp_path), "--generate", f"/big.bin={SIZE}:5"],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    watchdog = threading.Timer(30, proc.kill)  # bounds the blocking reads below
    watchdog.start()
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        with httpx.Client(timeout=10) as client:
            r = client.get(f"http://{address}:{port}/big.bin")
            assert hashlib.sha256(r.content).hexdigest() == body.sha256()
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_sparse_body_is_zeros_but_for_a_drawn_run_per_period() -> None:
    every, run = 5 * PIECE, PIECE + 100  # a run that ends inside a piece
    body = Generated(4 * every + 7, seed=9, every=every, run=run)
    data = whole(body)
    assert len(data) == body.size
    assert body.sha256() == hashlib.sha256(data).hexdigest()
    dense = whole(Generated(body.size, seed=9))
    for start in range(0, body.size, every):
        assert data[start : start + run] == dense[start : start + run]
        assert data[start + run : start + every] == bytes(len(data[start + run : start + every]))
    for start, end in [(0, 1), (run - 3, run + 5), (every - 1, every + 2), (100, body.size)]:
        assert b"".join(body.read(start, end)) == data[start:end]
    assert all(len(p) <= PIECE for p in body.read(0, body.size))
    # A chunk of every zeros repeats; each drawn one differs.
    chunks = [data[i : i + PIECE] for i in range(0, 4 * every, PIECE)]
    assert chunks.count(bytes(PIECE)) == 4 * 3
    with pytest.raises(ValueError, match="run"):
        Generated(10, every=4, run=5)


def test_parse_sparse_spec() -> None:
    assert parse_spec("/d.img=50GiB:7:1GiB") == ("/d.img", Generated(50 << 30, 7, every=1 << 30))
    assert parse_spec("/d=8MiB:1:1MiB:16KiB") == ("/d", Generated(8 << 20, 1, 1 << 20, 16 << 10))
    with pytest.raises(ValueError, match="want"):
        parse_spec("/d=1:2:3:4:5")
