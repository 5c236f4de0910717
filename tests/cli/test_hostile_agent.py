"""A pull against an agent that breaks the protocol: a clear error, and no FILE and no partial
file left behind, from the command line (blocking, no trio) and the library (trio) alike —
both drive the one set of rules (:class:`frumitcache.client._receiver.PullReceiver`).

The "agent" is a scripted server on a real Unix socket that passes real descriptors; the
command line is a real ``python -m frumitcache pull`` process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from frumitcache.cli import _exit
from frumitcache.client import AgentClient
from frumitcache.control import (
    Data,
    FileData,
    MessageStream,
    PullDone,
    PullFiles,
    PullStarted,
)
from frumitcache.errors import DigestMismatchError, FrumitcacheError, ProtocolError

BODY = bytes(range(256)) * 64
DIGEST = hashlib.sha256(BODY).digest()
URL = "http://example.test/a.bin"

Script = Callable[[MessageStream, int], Awaitable[None]]


async def descriptor_without_frame(conn: MessageStream, fd: int) -> None:
    await conn.send(PullStarted(size=len(BODY), source="store"))
    await conn.send(FileData(skip=0, count=len(BODY)), fd=fd)
    await conn.send(PullDone(digest=DIGEST, size=len(BODY)), fd=fd)


async def frame_without_descriptor(conn: MessageStream, fd: int) -> None:
    await conn.send(PullStarted(size=len(BODY), source="store"))
    await conn.send(FileData(skip=0, count=1000), fd=fd)
    await conn.send(FileData(skip=1000, count=len(BODY) - 1000))


async def bytes_before_the_answer(conn: MessageStream, fd: int) -> None:
    await conn.send(Data(BODY))
    await conn.send(PullStarted(size=len(BODY), source="store"))


async def more_than_the_object(conn: MessageStream, fd: int) -> None:
    await conn.send(PullStarted(size=1000, source="store"))
    await conn.send(FileData(skip=0, count=len(BODY)), fd=fd)


async def a_different_object(conn: MessageStream, fd: int) -> None:
    other = hashlib.sha256(b"another object").digest()
    await conn.send(PullStarted(size=len(BODY), source="store"))
    await conn.send(FileData(skip=0, count=len(BODY)), fd=fd)
    await conn.send(PullDone(digest=other, size=len(BODY)))


async def closed_mid_pull(conn: MessageStream, fd: int) -> None:
    await conn.send(PullStarted(size=len(BODY), source="store"))
    await conn.send(FileData(skip=0, count=1000), fd=fd)


CASES: list[tuple[Script, type[FrumitcacheError], str]] = [
    (descriptor_without_frame, ProtocolError, "descriptor without a frame"),
    (frame_without_descriptor, ProtocolError, "without its descriptor"),
    (bytes_before_the_answer, ProtocolError, "unexpected data to a pull"),
    (more_than_the_object, ProtocolError, "of a 1000-byte object"),
    (a_different_object, DigestMismatchError, "expected"),
    (closed_mid_pull, ProtocolError, "connection closed"),
]


async def serve(nursery: trio.Nursery, tmp_path: Path, script: Script) -> Path:
    """A scripted agent on a Unix socket; each pull gets a descriptor of a file of BODY."""
    chunk = tmp_path / "chunk"
    chunk.write_bytes(BODY)

    async def agent(stream: trio.SocketStream) -> None:
        conn = MessageStream(stream)
        msg = await conn.receive_required()
        assert isinstance(msg, PullFiles), msg
        fd = os.open(chunk, os.O_RDONLY)
        try:
            # The client may hang up at the first wrong frame: that is what the test wants.
            with contextlib.suppress(trio.BrokenResourceError):
                await script(conn, fd)
        finally:
            os.close(fd)
            await conn.aclose()

    path = tmp_path / "agent.sock"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(os.fspath(path))
    sock.listen(8)
    await nursery.start(trio.serve_listeners, agent, [trio.SocketListener(sock)])
    return path


def pull_command(path: Path, out: Path) -> list[str]:
    """A pull that expects BODY (``--sha256``: an agent's word alone would do otherwise)."""
    return [
        *(sys.executable, "-m", "frumitcache", "pull", URL, "-o", str(out)),
        *("--socket", str(path), "--sha256", DIGEST.hex()),
    ]


@pytest.mark.parametrize(("script", "error", "text"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_the_command_line_refuses_and_leaves_nothing(
    nursery: trio.Nursery,
    tmp_path: Path,
    script: Script,
    error: type[FrumitcacheError],
    text: str,
) -> None:
    path = await serve(nursery, tmp_path, script)
    outdir = tmp_path / "out"
    outdir.mkdir()
    with trio.fail_after(60):
        done = await trio.run_process(
            pull_command(path, outdir / "a.bin"), capture_stderr=True, check=False
        )
    stderr = done.stderr.decode()
    assert done.returncode == _exit.code_for(error("")), stderr
    assert text in stderr, stderr
    assert list(outdir.iterdir()) == []


@pytest.mark.parametrize(("script", "error", "text"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_the_library_refuses_and_leaves_nothing(
    nursery: trio.Nursery,
    tmp_path: Path,
    script: Script,
    error: type[FrumitcacheError],
    text: str,
) -> None:
    path = await serve(nursery, tmp_path, script)
    outdir = tmp_path / "out"
    outdir.mkdir()
    with trio.fail_after(60), pytest.raises(error, match=text):
        await AgentClient(path).fetch(URL, sha256=DIGEST, dest=outdir)
    assert list(outdir.iterdir()) == []


async def stalled(conn: MessageStream, fd: int) -> None:
    await conn.send(PullStarted(size=len(BODY), source="store"))
    await conn.send(FileData(skip=0, count=1000), fd=fd)
    await trio.sleep_forever()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_an_interrupted_pull_leaves_nothing(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Ctrl-C while the blocking client waits for the agent: exit 130, no partial file."""
    path = await serve(nursery, tmp_path, stalled)
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc = await trio.lowlevel.open_process(
        pull_command(path, outdir / "a.bin"),
        stderr=subprocess.DEVNULL,
        # A shell's background job inherits SIGINT ignored, and Python then never turns it
        # into KeyboardInterrupt: the client gets Ctrl-C as a terminal would send it.
        preexec_fn=_default_sigint,
    )
    try:
        with trio.fail_after(60):
            # The first 1000 bytes are in the partial file: the client is in its receive.
            while not any(p.stat().st_size == 1000 for p in outdir.iterdir()):  # noqa: ASYNC110
                await trio.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == _exit.INTERRUPTED
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert list(outdir.iterdir()) == []
