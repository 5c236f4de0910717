"""The test origin itself: HTTP semantics, each fault, the counts, and the process mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.testing.origin import Fault, OriginServer
from tests.origin.helpers import raw_exchange, split_response

DATA = bytes(range(256)) * 400  # 102400 bytes


def get(path: str, **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: origin", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_get_range_head_and_keepalive(origin: OriginServer) -> None:
    origin.add("/a.bin", DATA, content_type="application/x-test")
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            r = await client.get(origin.url("/a.bin"))
            assert r.status_code == 200
            assert r.content == DATA
            assert r.headers["content-length"] == str(len(DATA))
            assert r.headers["content-type"] == "application/x-test"
            etag, modified = r.headers["etag"], r.headers["last-modified"]

            r = await client.get(origin.url("/a.bin"), headers={"Range": "bytes=1000-1999"})
            assert r.status_code == 206
            assert r.content == DATA[1000:2000]
            assert r.headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"

            r = await client.get(origin.url("/a.bin"), headers={"Range": "bytes=-10"})
            assert (r.status_code, r.content) == (206, DATA[-10:])
            r = await client.get(origin.url("/a.bin"), headers={"Range": "bytes=100000-"})
            assert (r.status_code, r.content) == (206, DATA[100000:])

            r = await client.get(origin.url("/a.bin"), headers={"Range": f"bytes={len(DATA)}-"})
            assert r.status_code == 416
            assert r.headers["content-range"] == f"bytes */{len(DATA)}"

            r = await client.head(origin.url("/a.bin"))
            assert r.status_code == 200
            assert r.headers["content-length"] == str(len(DATA))
            assert r.content == b""

            r = await client.get(origin.url("/a.bin"), headers={"If-None-Match": etag})
            assert (r.status_code, r.content) == (304, b"")
            r = await client.get(origin.url("/a.bin"), headers={"If-Modified-Since": modified})
            assert r.status_code == 304

            # If-Range with a stale validator: the whole (current) object instead of a range.
            r = await client.get(
                origin.url("/a.bin"), headers={"Range": "bytes=10-", "If-Range": '"stale"'}
            )
            assert (r.status_code, r.content) == (200, DATA)
            r = await client.get(
                origin.url("/a.bin"), headers={"Range": "bytes=10-", "If-Range": etag}
            )
            assert (r.status_code, r.content) == (206, DATA[10:])

            r = await client.get(origin.url("/missing"))
            assert r.status_code == 404

    # One keep-alive connection carried every request.
    assert origin.stats.connections == 1
    assert origin.stats.requests["/a.bin"] == 10
    assert origin.stats.requests["/missing"] == 1
    served = len(DATA) + 1000 + 10 + 2400 + len(DATA) + len(DATA) - 10
    served += len(b"416 Requested Range Not Satisfiable\n")
    assert origin.stats.bytes_sent["/a.bin"] == served


async def test_replacing_content_changes_validators(origin: OriginServer) -> None:
    origin.add("/idx", b"one")
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            first = await client.get(origin.url("/idx"))
            origin.add("/idx", b"two")
            r = await client.get(
                origin.url("/idx"),
                headers={
                    "If-None-Match": first.headers["etag"],
                    "If-Modified-Since": first.headers["last-modified"],
                },
            )
    assert (r.status_code, r.content) == (200, b"two")
    assert r.headers["etag"] != first.headers["etag"]
    assert r.headers["last-modified"] != first.headers["last-modified"]


@pytest.mark.parametrize("status", [404, 500, 503])
async def test_fault_status(origin: OriginServer, status: int) -> None:
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault(status=status, times=1))
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            assert (await client.get(origin.url("/a"))).status_code == status
            assert (await client.get(origin.url("/a"))).status_code == 200  # times=1


@pytest.mark.parametrize("mode", ["truncate_at", "drop_at"])
async def test_fault_cut_body(origin: OriginServer, mode: str) -> None:
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault.from_json({mode: 5000}))
    status, headers, body = split_response(await raw_exchange(origin, get("/a")))
    assert status == 200
    assert headers["content-length"] == str(len(DATA))
    assert body == DATA[:5000]
    assert origin.stats.bytes_sent["/a"] == 5000


async def test_fault_stall_keeps_connection_silent(origin: OriginServer) -> None:
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault(stall_at=3000))
    received = bytearray()

    async def read_all() -> None:
        timeout = httpx.Timeout(5, read=0.3)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", origin.url("/a")) as r,
        ):
            async for data in r.aiter_raw():
                received.extend(data)

    with trio.fail_after(10):
        with pytest.raises(httpx.ReadTimeout):
            await read_all()
        assert bytes(received) == DATA[:3000]
        # Once the client gave up, the server's handler ended too.
        while not origin.stats.log:  # noqa: ASYNC110 - the server offers no event for this
            await trio.sleep(0.01)
    assert origin.stats.log[0].bytes_sent == 3000


async def test_fault_content_length_lies(origin: OriginServer) -> None:
    origin.add("/more", DATA)
    origin.add("/less", DATA)
    origin.misbehave("/more", Fault(content_length=len(DATA) + 500))
    origin.misbehave("/less", Fault(content_length=len(DATA) - 500))
    status, headers, body = split_response(await raw_exchange(origin, get("/more")))
    assert (status, headers["content-length"], body) == (200, str(len(DATA) + 500), DATA)
    status, headers, body = split_response(await raw_exchange(origin, get("/less")))
    assert (status, headers["content-length"], body) == (200, str(len(DATA) - 500), DATA)
    # A Range request is answered truthfully: the lie is only in the 200.
    raw = await raw_exchange(origin, get("/more", range=f"bytes={len(DATA)}-"))
    assert split_response(raw)[0] == 416


async def test_fault_redirect_ignore_range_drip_and_replace(origin: OriginServer) -> None:
    origin.add("/old", b"")
    origin.add("/new", DATA)
    origin.misbehave("/old", Fault(redirect="/new"))
    origin.misbehave("/new", Fault(ignore_range=True, drip_rate=400_000, replace_with=b"v2"))
    with trio.fail_after(10):
        async with httpx.AsyncClient(follow_redirects=True) as client:
            r = await client.get(origin.url("/old"), headers={"Range": "bytes=50-"})
            assert (r.status_code, r.content) == (200, DATA)
            assert [h.status_code for h in r.history] == [302]
            r = await client.get(origin.url("/new"))
            assert r.content == b"v2"
    assert origin.stats.requests == {"/old": 1, "/new": 2}


async def test_global_rate_counts_bytes(address: str) -> None:
    server = OriginServer(rate=2_000_000)
    server.add("/a", DATA)
    server.add("/b", DATA[:5000])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, address)
            async with httpx.AsyncClient() as client, trio.open_nursery() as inner:
                for path in ("/a", "/b", "/a"):
                    inner.start_soon(client.get, server.url(path))
            nursery.cancel_scope.cancel()
    assert server.stats.bytes_sent == {"/a": 2 * len(DATA), "/b": 5000}
    assert server.stats.total_bytes_sent == 2 * len(DATA) + 5000


async def test_serves_directory_and_refuses_escape(tmp_path: Path, address: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.bin").write_bytes(DATA)
    (tmp_path.parent / "secret").write_bytes(b"no")
    server = OriginServer(tmp_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, address)
            async with httpx.AsyncClient() as client:
                r = await client.get(server.url("/sub/f.bin"), headers={"Range": "bytes=7-"})
                assert (r.status_code, r.content) == (206, DATA[7:])
            raw = await raw_exchange(server, get("/../secret"))
            assert split_response(raw)[0] == 404
            nursery.cancel_scope.cancel()


def test_process_mode(tmp_path: Path, address: str) -> None:
    (tmp_path / "f.bin").write_bytes(DATA)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "frumitcache.testing.origin",
            "--address",
            address,
            "--dir",
            str(tmp_path),
            "--rate",
            "10000000",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    watchdog = threading.Timer(30, proc.kill)  # bounds the blocking reads below
    watchdog.start()
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        base = f"http://{address}:{port}"
        with httpx.Client(timeout=10) as client:
            fault = {"path": "/f.bin", "fault": {"status": 503, "times": 1}}
            assert client.post(f"{base}/_fault", json=fault).status_code == 200
            assert client.get(f"{base}/f.bin").status_code == 503
            assert client.get(f"{base}/f.bin").content == DATA
            stats = client.get(f"{base}/_stats").json()
            assert stats["requests"] == {"/f.bin": 2}
            assert stats["bytes_sent"]["/f.bin"] == len(DATA) + len(b"503 Service Unavailable\n")
            assert client.post(f"{base}/_fault", json={"path": "/f.bin"}).status_code == 200
            bad = {"path": "/f.bin", "fault": {"nonsense": 1}}
            assert client.post(f"{base}/_fault", json=bad).status_code == 400
            assert client.post(f"{base}/_reset").status_code == 200
            assert client.get(f"{base}/_stats").json()["total_bytes_sent"] == 0
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
