"""A pull of an object of zeros and data (a disk image) into a file keeps the zeros as holes:
the store holds a full chunk of zeros as a hole, and the client's copy of a passed chunk file
extends its target over a hole instead of writing it, so the file takes the data's room only.
Hostile cases: a target with old bytes past its position, a pipe, a range that holds data. The
apt door, which sends the chunk files themselves, serves such an object whole and in ranges."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import trio

from frumitcache.client import AgentClient, _copy
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from tests.agent.test_agent_pull import blob
from tests.control.test_fd_pull import cli_pull

MiB = 1024 * 1024
CHUNK = 4 * MiB  # the agents' default store.chunk_size


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def sparse_source(path: Path) -> bytes:
    """A file of 1 MiB of data, 2 MiB of hole, 1 MiB of data, 1 MiB of hole; its bytes."""
    data = blob(MiB, seed=7)
    with path.open("wb") as f:
        f.write(data)
        f.seek(3 * MiB)
        f.write(data)
        f.truncate(5 * MiB)
    return data + bytes(2 * MiB) + data + bytes(MiB)


def test_holes_stay_holes_in_a_file_written_at_its_end(tmp_path: Path) -> None:
    want = sparse_source(tmp_path / "src")
    sfd = os.open(tmp_path / "src", os.O_RDONLY)
    dfd = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        ways = [_copy.copy_range(sfd, dfd, at, n) for at, n in
                [(0, MiB), (MiB, 2 * MiB), (3 * MiB, MiB), (4 * MiB, MiB), (MiB, MiB)]]  # fmt: skip
    finally:
        os.close(sfd)
        os.close(dfd)
    assert ways[1] == ways[3] == ways[4] == "hole", ways
    assert "hole" not in (ways[0], ways[2]), ways
    assert (tmp_path / "dst").read_bytes() == want + bytes(MiB)  # a trailing hole has its length
    assert allocated(tmp_path / "dst") < 3 * MiB


def test_a_hole_is_written_as_zeros_where_a_hole_would_not_read_as_zeros(tmp_path: Path) -> None:
    sparse_source(tmp_path / "src")
    old = b"\xff" * (3 * MiB)
    (tmp_path / "dst").write_bytes(old)
    sfd = os.open(tmp_path / "src", os.O_RDONLY)
    dfd = os.open(tmp_path / "dst", os.O_WRONLY)  # not truncated: old bytes past the position
    try:
        assert _copy.copy_range(sfd, dfd, MiB, 2 * MiB) != "hole"
        # A range holding some data is copied whole.
        assert _copy.copy_range(sfd, dfd, 2 * MiB, 2 * MiB) != "hole"
    finally:
        os.close(sfd)
        os.close(dfd)
    assert (tmp_path / "dst").read_bytes() == bytes(3 * MiB) + blob(MiB, seed=7)


def test_a_hole_into_a_pipe_is_zeros(tmp_path: Path) -> None:
    sparse_source(tmp_path / "src")
    sfd = os.open(tmp_path / "src", os.O_RDONLY)
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        assert _copy.copy_range(sfd, w, 4 * MiB + MiB - 1000, 1000) != "hole"
        assert os.read(r, 2000) == bytes(1000)
    finally:
        for fd in (sfd, r, w):
            os.close(fd)


async def test_pull_of_a_disk_image_is_sparse(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = blob(CHUNK, seed=8) + bytes(6 * CHUNK) + blob(CHUNK, seed=9) + bytes(3 * CHUNK + 5)
    origin.add("/disk.img", data)
    url = origin.url("/disk.img")
    for name in ("first.img", "again.img"):  # from the origin, then from the store
        with trio.fail_after(60):
            done = await cli_pull(agent, url, tmp_path / name)
        assert done.returncode == 0, done.stderr
        out = tmp_path / name
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert out.stat().st_size == len(data)
        # Two chunks of data and the short tail (5 bytes, one block): the 9 chunks of zeros
        # take no room.
        assert allocated(out) <= 2 * CHUNK + 64 * 1024, allocated(out)
    zero_chunk = agent.store / "chunks" / hashlib.sha256(bytes(CHUNK)).hexdigest()[:2]
    assert allocated(zero_chunk / hashlib.sha256(bytes(CHUNK)).hexdigest()) == 0


async def _proxy_get(proxy: tuple[str, int], url: str, extra: str = "") -> bytes:
    """One absolute-form GET through the apt door; the whole answer (it closes)."""
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream(*proxy)
        async with stream:
            host = url.split("/")[2]
            head = f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
            await stream.send_all(head.encode())
            answer = b""
            while chunk := await stream.receive_some(1 << 20):
                answer += chunk
            return answer


async def test_the_apt_door_serves_repeated_and_hole_chunks(
    origin: OriginServer, tmp_path: Path
) -> None:
    # The door sends chunk files (sendfile) by index: the same file at many indexes, a hole.
    chunk = 64 * 1024
    a = blob(chunk, seed=10)
    data = a + bytes(3 * chunk) + a + a + bytes(chunk) + bytes(77)
    origin.add("/debian/pool/main/d/disk_1.0_all.deb", data)
    url = origin.url("/debian/pool/main/d/disk_1.0_all.deb")
    agent = AgentProcess(
        tmp_path / "node",
        address=loopback_address(),
        settings={
            "apt": {"enabled": True, "port": 0, "allowed_hosts": [f"{origin.address}:*"]},
            "store": {"chunk_size": chunk},
        },
    )
    await agent.start()
    try:
        host, _, port = (await AgentClient(agent.socket).status()).apt.rpartition(":")
        for _ in range(2):  # from the origin, then from the store
            whole = await _proxy_get((host, int(port)), url)
            head, _, body = whole.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert body == data
        part = await _proxy_get(
            (host, int(port)), url, f"Range: bytes={chunk - 5}-{6 * chunk + 9}\r\n"
        )
        head, _, body = part.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206"), head
        assert body == data[chunk - 5 : 6 * chunk + 10]
        assert origin.stats.requests["/debian/pool/main/d/disk_1.0_all.deb"] == 1
    finally:
        agent.kill()
