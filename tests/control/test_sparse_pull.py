"""A pull of an object of zeros and data (a disk image) into a file keeps the zeros as holes:
the store holds a full chunk of zeros as a hole, and the client's copy of a passed chunk file
extends its target over a hole instead of writing it, so the file takes the data's room only.
Hostile cases: a target with old bytes past its position, a pipe, a range that holds data."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import trio

from frumitcache.client import _copy
from frumitcache.testing.agents import AgentProcess
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
