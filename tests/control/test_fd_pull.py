"""A local pull gets the agent's verified chunk files (SCM_RIGHTS) and copies them itself.

Through a real agent process: the bytes arrive as passed files (no Data frames), also while the
object is still being fetched; a chunk file corrupted after it was verified is never handed
over (the agent checks the bytes behind the descriptor as it opens it: the pull fails clearly,
no FILE is left, and the next pull heals it); ``pull -o`` onto another file system (a tmpfs)
falls back from ``copy_file_range``; an agent older than ``PullFiles`` still serves a new
client (frames), and a new agent still serves ``Pull`` (frames) to old clients; a client that
sends descriptors *to* the agent changes nothing there.
"""

from __future__ import annotations

import array
import errno
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from frumitcache.cli import _exit
from frumitcache.client import AgentClient, PullOutcome, _copy
from frumitcache.control import Data, Failed, MessageStream, PullDone, PullStarted, StatusRequest
from frumitcache.control._protocol import PullFiles
from frumitcache.errors import CorruptChunkError, ProtocolError
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.origin import OriginServer
from tests.agent.test_agent_pull import blob

MiB = 1024 * 1024
CHUNK = 4 * MiB

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


async def cli_pull(agent: AgentProcess, url: str, out: Path) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [
            sys.executable,
            "-m",
            "frumitcache",
            "pull",
            url,
            "-o",
            str(out),
            "--socket",
            str(agent.socket),
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def pull_to(
    client: AgentClient, url: str, path: Path, sha256: bytes | None = None
) -> PullOutcome:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return await client.pull_into(url, fd, sha256=sha256)
    finally:
        os.close(fd)


def open_fds(agent: AgentProcess) -> int:
    return len(os.listdir(f"/proc/{agent.pid}/fd"))


def chunk_fds(agent: AgentProcess) -> list[str]:
    """The agent's open descriptors of its own chunk files."""
    out = []
    for name in os.listdir(f"/proc/{agent.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{agent.pid}/fd/{name}")
        except FileNotFoundError:
            continue
        if target.startswith(str(agent.store / "chunks")):
            out.append(target)
    return out


async def test_files_are_passed_live_and_stored_and_frames_still_work(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = blob(9 * MiB + 5, seed=1)
    origin.add("/obj.bin", data)
    client = AgentClient(agent.socket)
    with trio.fail_after(60):
        # First pull: the object is fetched while it is passed (a live object, chunk by chunk).
        live = await pull_to(client, origin.url("/obj.bin"), tmp_path / "live.bin")
        stored = await pull_to(client, origin.url("/obj.bin"), tmp_path / "stored.bin")
        # An old client's request (Pull) still gets Data frames from this agent.
        async with client.pull(origin.url("/obj.bin")) as stream:
            framed = b"".join([d async for d in stream])
    assert (live.files, live.source) == (True, "origin")
    assert (stored.files, stored.source) == (True, "store")
    assert (tmp_path / "live.bin").read_bytes() == data
    assert (tmp_path / "stored.bin").read_bytes() == data
    assert stored.digest == hashlib.sha256(data).digest()
    assert framed == data
    assert origin.stats.requests["/obj.bin"] == 1
    # Every chunk file the agent opened to pass is closed again (bounded wait: the agent
    # ends its side of a connection after the client).
    with trio.fail_after(10):
        while chunk_fds(agent):  # noqa: ASYNC110 (another process's state: nothing to wait on)
            await trio.sleep(0.05)


async def test_a_chunk_corrupted_after_verification_is_never_passed(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = blob(3 * CHUNK, seed=2)
    origin.add("/rot.bin", data)
    with trio.fail_after(60):
        first = await cli_pull(agent, origin.url("/rot.bin"), tmp_path / "first.bin")
    assert first.returncode == 0, first.stderr
    # Bit rot in the middle chunk after the agent verified and stored it (same size).
    middle = hashlib.sha256(data[CHUNK : 2 * CHUNK]).hexdigest()
    path = agent.store / "chunks" / middle[:2] / middle
    rotten = bytearray(path.read_bytes())
    rotten[12345] ^= 0x40
    path.write_bytes(bytes(rotten))

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with trio.fail_after(60):
        bad = await cli_pull(agent, origin.url("/rot.bin"), out_dir / "rot.bin")
    assert bad.returncode == _exit.STORE, bad.stderr
    assert b"corrupt" in bad.stderr
    assert list(out_dir.iterdir()) == []  # neither FILE nor its temp file
    with trio.fail_after(60):
        healed = await cli_pull(agent, origin.url("/rot.bin"), out_dir / "healed.bin")
    # The agent dropped the rotten chunk on the failed pull: this pull refetched it, whole.
    assert healed.returncode == 0, healed.stderr
    assert (out_dir / "healed.bin").read_bytes() == data
    assert origin.stats.requests["/rot.bin"] == 2


async def test_store_open_chunk_refuses_rot_through_the_descriptor(tmp_path: Path) -> None:
    from frumitcache.store import Store

    with Store.open(tmp_path / "store", max_bytes=64 * MiB, chunk_size=CHUNK) as store:
        chunk = blob(CHUNK, seed=3)
        digest = hashlib.sha256(chunk).digest()
        await store.put_chunk(chunk, digest)
        fd = await store.open_chunk(digest)
        try:
            assert os.pread(fd, CHUNK + 1, 0) == chunk
            assert os.fstat(fd).st_mode & 0o222 != 0o222  # others cannot write through it
        finally:
            os.close(fd)
        path = store.chunk_path(digest)
        path.write_bytes(b"\0" + chunk[1:])
        with pytest.raises(CorruptChunkError):
            await store.open_chunk(digest)
        assert not store.has_chunk(digest)


@needs_root
async def test_pull_onto_another_file_system(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = blob(6 * MiB + 7, seed=4)
    origin.add("/far.bin", data)
    mount = tmp_path / "fdpass-tmpfs"
    mount.mkdir()
    await trio.run_process(["mount", "-t", "tmpfs", "-o", "size=64m", "fdpass-tmpfs", str(mount)])
    try:
        with trio.fail_after(60):
            done = await cli_pull(agent, origin.url("/far.bin"), mount / "far.bin")
            again = await cli_pull(agent, origin.url("/far.bin"), mount / "again.bin")
        assert done.returncode == 0, done.stderr
        assert again.returncode == 0, again.stderr
        assert (mount / "far.bin").read_bytes() == data
        assert (mount / "again.bin").read_bytes() == data
        # The copy itself, from a store file on this disk into the tmpfs.
        src = tmp_path / "src.bin"
        src.write_bytes(data)
        sfd = os.open(src, os.O_RDONLY)
        dfd = os.open(mount / "copy.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            way = _copy.copy_range(sfd, dfd, 5, len(data) - 5)
        finally:
            os.close(sfd)
            os.close(dfd)
        assert (mount / "copy.bin").read_bytes() == data[5:]
        assert way in ("copy_file_range", "sendfile"), way
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(["umount", str(mount)])


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.EINVAL, errno.ENOSYS])
def test_copy_falls_back_when_copy_file_range_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    data = blob(3 * MiB + 1, seed=5)
    (tmp_path / "src").write_bytes(data)

    def refuse(*args: object) -> int:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(os, "copy_file_range", refuse)
    sfd = os.open(tmp_path / "src", os.O_RDONLY)
    dfd = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(dfd, b"head")
        assert _copy.copy_range(sfd, dfd, 1, len(data) - 1) == "sendfile"
        monkeypatch.setattr(os, "sendfile", refuse)
        assert _copy.copy_range(sfd, dfd, 0, 10) == "read"
    finally:
        os.close(sfd)
        os.close(dfd)
    assert (tmp_path / "dst").read_bytes() == b"head" + data[1:] + data[:10]


def test_a_short_source_is_an_error_not_a_short_file(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"x" * 100)
    sfd = os.open(tmp_path / "src", os.O_RDONLY)
    dfd = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(ProtocolError, match="ended 50 bytes early"):
            _copy.copy_range(sfd, dfd, 0, 150)
    finally:
        os.close(sfd)
        os.close(dfd)


async def test_a_new_client_pulls_from_an_agent_older_than_pullfiles(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The old agent's answer to a tag it does not know: Failed (protocol), connection closed."""
    data = blob(600_000, seed=6)
    seen: list[str] = []

    async def old_agent(stream: trio.SocketStream) -> None:
        conn = MessageStream(stream)
        msg = await conn.receive_required()
        seen.append(msg.tag)
        if isinstance(msg, PullFiles):
            await conn.send(Failed.from_error(ProtocolError("unknown control message type")))
        else:
            await conn.send(PullStarted(size=len(data), source="store"))
            await conn.send(Data(data))
            await conn.send(PullDone(digest=hashlib.sha256(data).digest(), size=len(data)))
        await conn.aclose()

    path = tmp_path / "old.sock"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(os.fspath(path))
    sock.listen(8)
    await nursery.start(trio.serve_listeners, old_agent, [trio.SocketListener(sock)])
    client = AgentClient(path)
    with trio.fail_after(20):
        first = await pull_to(
            client,
            "http://example.test/a.bin",
            tmp_path / "a.bin",
            sha256=hashlib.sha256(data).digest(),
        )
        second = await pull_to(client, "http://example.test/a.bin", tmp_path / "b.bin")
    assert (first.files, second.files) == (False, False)
    assert (tmp_path / "a.bin").read_bytes() == data == (tmp_path / "b.bin").read_bytes()
    assert seen == ["pull-fd", "pull", "pull"]  # asked once, then remembered


async def test_descriptors_sent_to_the_agent_are_dropped(
    agent: AgentProcess, tmp_path: Path
) -> None:
    """Hostile: a client passes descriptors to the agent with its requests."""
    before = open_fds(agent)
    junk = [os.open(tmp_path, os.O_RDONLY) for _ in range(8)]
    try:
        for _ in range(20):
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            raw.connect(os.fspath(agent.socket))
            from frumitcache.control import encode

            raw.sendmsg(
                [encode(StatusRequest())],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", junk).tobytes())],
            )
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
            conn = MessageStream(stream)
            with trio.fail_after(10):
                reply = await conn.receive_required()
            await conn.aclose()
            assert reply.tag == "status", reply
    finally:
        for fd in junk:
            os.close(fd)
    with trio.fail_after(10):
        while open_fds(agent) > before:  # noqa: ASYNC110 (the agent winds connections down)
            await trio.sleep(0.05)
    assert open_fds(agent) <= before
