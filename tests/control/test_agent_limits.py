"""A real agent's control socket keeps its limits: idle and stalled connections are closed,
ordinary users get at most ``control.max_connections`` at once (root always gets in), and
destructive calls (``gc --free``, ``import``) need root or the agent's own user, judged by the
kernel's peer credentials. "Another user" is a forked child that drops to uid nobody, keeping
gid 0 so that it can open the socket (mode 0660, root's group) like a member of the socket's
group would."""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

from frumitcache.control import Data, Failed, Message, MessageStream, Status, StatusRequest, encode
from frumitcache.control._protocol import (
    Decoder,
    GcReply,
    GcRequest,
    ImportReply,
    ImportRequest,
    Pull,
    PullDone,
)
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address

NOBODY = 65534
MAX_CONNECTIONS = 4

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="acting as another uid needs root (CI runs the suite as root)"
)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory the other user may traverse (tmp_path's parents are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="frumitcache-ctl-"))
    path.chmod(0o750)  # group root: the child keeps gid 0
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def start_agent(directory: Path, socket_path: Path, **control: object) -> AgentProcess:
    proc = AgentProcess(
        directory,
        address=loopback_address(),
        settings={"control": {"socket": str(socket_path), **control}},
    )
    await proc.start()
    return proc


@contextlib.asynccontextmanager
async def running(proc: AgentProcess) -> AsyncIterator[AgentProcess]:
    try:
        yield proc
    finally:
        proc.kill()


# --- another user, in a forked child --------------------------------------------------------


def ask_blocking(path: Path, data: bytes, *, half_close: bool = True) -> bytes:
    """Blocking: send ``data`` on a fresh connection, return every byte until the agent closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(os.fspath(path))
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = bytearray()
        with contextlib.suppress(ConnectionResetError):  # closed with our request unread
            while chunk := sock.recv(65536):
                out += chunk
        return bytes(out)


def occupy(path: Path, count: int) -> list[socket.socket]:
    """Blocking: ``count`` idle connections to the agent (the caller closes them)."""
    idle = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.fspath(path))
        idle.append(sock)
    return idle


def as_nobody(work: Callable[[], bytes]) -> bytes:
    """Run ``work`` in a forked child with uid nobody (gid 0, no other groups); its result."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a threaded process
        pid = os.fork()
    if pid == 0:  # the child: plain blocking calls only, and always os._exit
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(0)
            os.setuid(NOBODY)
            result = work()
            code = 0
        except BaseException as exc:
            result = repr(exc).encode()
        finally:
            try:
                os.write(write_end, result)
            finally:
                os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result


def decode(data: bytes) -> list[Message]:
    decoder = Decoder()
    decoder.feed(data)
    return list(decoder)


async def nobody_asks(path: Path, request: Message) -> Message:
    raw = await trio.to_thread.run_sync(as_nobody, lambda: ask_blocking(path, encode(request)))
    [reply] = decode(raw)
    return reply


async def root_status(path: Path) -> Status:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(os.fspath(path))
    conn = MessageStream(trio.SocketStream(sock))
    try:
        await conn.send(StatusRequest())
        reply = await conn.receive_required()
    finally:
        await conn.aclose()
    assert isinstance(reply, Status)
    return reply


# --- tests ---------------------------------------------------------------------------------


@needs_root
async def test_destructive_calls_need_root_or_the_agents_user(
    tmp_path: Path, socket_dir: Path
) -> None:
    debs = socket_dir / "debs"  # readable by nobody too: only the uid check can refuse
    debs.mkdir()
    (debs / "a.deb").write_bytes(b"deb" * 1000)
    path = socket_dir / "agent.sock"
    with trio.fail_after(60):
        async with running(await start_agent(tmp_path / "node", path)):
            # An ordinary member of the socket's group: reads and gc-to-the-cap are fine ...
            assert isinstance(await nobody_asks(path, StatusRequest()), Status)
            assert isinstance(await nobody_asks(path, GcRequest(free=0)), GcReply)
            # ... evicting beyond the cap and importing a directory are not.
            for request in (GcRequest(free=1), ImportRequest(str(debs))):
                reply = await nobody_asks(path, request)
                assert isinstance(reply, Failed), reply
                assert reply.code == "not-permitted", reply
            # The agent's own user (root here) may do both.
            sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await sock.connect(os.fspath(path))
            conn = MessageStream(trio.SocketStream(sock))
            await conn.send(ImportRequest(str(debs)))
            imported = await conn.receive_required()
            assert isinstance(imported, ImportReply), imported
            assert imported.imported == 1
            await conn.send(GcRequest(free=1))
            assert isinstance(await conn.receive_required(), GcReply)
            await conn.aclose()


@needs_root
async def test_connection_cap_for_ordinary_users_root_still_gets_in(
    tmp_path: Path, socket_dir: Path
) -> None:
    path = socket_dir / "agent.sock"
    held_r, held_w = os.pipe()  # child -> parent: "I hold the cap"
    go_r, go_w = os.pipe()  # parent -> child: "root has looked in; carry on"

    def hog() -> bytes:
        idle = occupy(path, MAX_CONNECTIONS)
        refused = ask_blocking(path, encode(StatusRequest()))
        os.write(held_w, b"x")
        select.select([go_r], [], [], 30)  # bounded: never outlive a failed parent for long
        idle.pop().close()  # one slot free again ...
        answered = b""
        for _ in range(600):  # ... once the agent has seen the close (bounded: 30 s)
            answered = ask_blocking(path, encode(StatusRequest()))
            if not isinstance(decode(answered)[0], Failed):
                break
            time.sleep(0.05)
        for sock in idle:
            sock.close()
        return len(refused).to_bytes(4, "big") + refused + answered

    with trio.fail_after(60):
        agent = await start_agent(tmp_path / "node", path, max_connections=MAX_CONNECTIONS)
        async with running(agent), trio.open_nursery() as nursery:
            result: list[bytes] = []

            async def child() -> None:
                result.append(await trio.to_thread.run_sync(as_nobody, hog))

            nursery.start_soon(child)
            held = trio.lowlevel.FdStream(os.dup(held_r))  # cancellable, unlike to_thread
            await held.receive_some(1)
            await held.aclose()
            # The cap holds against ordinary users, never against root.
            assert (await root_status(path)).pid == agent.pid
            os.write(go_w, b"x")
        raw = result[0]
        size = int.from_bytes(raw[:4], "big")
        [refused] = decode(raw[4 : 4 + size])
        [answered] = decode(raw[4 + size :])
        assert isinstance(refused, Failed), refused
        assert "too many control connections" in refused.message
        assert isinstance(answered, Status), answered
    for fd in (held_r, held_w, go_r, go_w):
        os.close(fd)


@needs_root
async def test_a_refused_client_that_writes_late_still_reads_why(
    tmp_path: Path, socket_dir: Path
) -> None:
    """Over the cap, a client whose request reaches the agent only after the refusal was sent
    (a loaded machine schedules it late) still writes it and reads "too many control
    connections"; closing at once failed that write with EPIPE and the reason was lost."""
    path = socket_dir / "agent.sock"

    def late_writer() -> bytes:
        idle = occupy(path, MAX_CONNECTIONS)
        refused = b""
        for _ in range(100):  # bounded: the cap holds once the agent has taken the idle four
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(20)
                sock.connect(os.fspath(path))
                ready, _, _ = select.select([sock], [], [], 10)
                if not ready:
                    continue  # taken as a fifth: the agent waits for our request
                time.sleep(0.3)  # the refusal is in; the agent would have closed by now
                sock.sendall(encode(StatusRequest()))
                sock.shutdown(socket.SHUT_WR)
                out = bytearray()
                while chunk := sock.recv(65536):
                    out += chunk
                refused = bytes(out)
                break
        for sock in idle:
            sock.close()
        return refused

    with trio.fail_after(60):
        agent = await start_agent(tmp_path / "node", path, max_connections=MAX_CONNECTIONS)
        async with running(agent):
            raw = await trio.to_thread.run_sync(as_nobody, late_writer)
    [refused] = decode(raw)
    assert isinstance(refused, Failed), refused
    assert "too many control connections" in refused.message


async def test_idle_and_stalled_connections_are_closed(tmp_path: Path) -> None:
    agent = AgentProcess(
        tmp_path / "node",
        address=loopback_address(),
        settings={"control": {"idle_timeout_s": 0.5}},
    )
    data = os.urandom(8 * 1024 * 1024)  # far more than the socket buffers hold
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "big.deb").write_bytes(data)
    with trio.fail_after(60):
        await agent.start()
        async with running(agent):

            async def connect() -> MessageStream:
                sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                await sock.connect(os.fspath(agent.socket))
                return MessageStream(trio.SocketStream(sock))

            # Says nothing: closed.
            silent = await connect()
            assert await silent.receive() is None
            await silent.aclose()
            # Half a request, then nothing (slowloris): closed.
            half = await connect()
            await half._stream.send_all(encode(StatusRequest())[:3])
            assert await half.receive() is None
            await half.aclose()
            # Asks for 8 MiB and reads none of it: the agent gives up on it ...
            conn = await connect()
            await conn.send(ImportRequest(str(debs)))
            assert isinstance(await conn.receive_required(), ImportReply)
            key = "sha256:" + hashlib.sha256(data).hexdigest()
            await conn.send(Pull(url=key))
            # The two connections above were closed as idle; wait for the third.
            while agent.log().count("control.idle") < 3:  # noqa: ASYNC110 - a child's log
                await trio.sleep(0.1)
            # ... so what is left to read ends without a PullDone.
            got, done = 0, False
            while (msg := await conn.receive()) is not None:
                if isinstance(msg, Data):
                    got += len(msg.data)
                done = done or isinstance(msg, PullDone)
            await conn.aclose()
            assert not done
            assert got < len(data)
            # The agent carries on.
            assert (await root_status(agent.socket)).pid == agent.pid
