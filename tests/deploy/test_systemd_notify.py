"""The sd_notify protocol against a fake NOTIFY_SOCKET: a real AF_UNIX datagram socket, both as
a file path and as an abstract ('@...') address."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from frumitcache.agent._systemd import (
    Notifier,
    encode_assignments,
    journal_prefix,
    parse_address,
    parse_watchdog_usec,
    stderr_is_journal,
)


def _parse(datagram: bytes) -> dict[str, str]:
    lines = datagram.decode().splitlines()
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, socket.socket]]:
    """``(value for $NOTIFY_SOCKET, the bound receiving socket)``, like systemd's."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        if request.param == "path":
            path = tmp_path / "notify"
            sock.bind(str(path))
            value = str(path)
        else:
            name = f"frumitcache-test-{uuid.uuid4().hex}"
            sock.bind(b"\0" + name.encode())
            value = "@" + name
        sock.setblocking(False)
        yield value, sock
    finally:
        sock.close()


async def _receive(sock: socket.socket) -> dict[str, str]:
    await trio.lowlevel.wait_readable(sock)
    return _parse(sock.recv(4096))


async def test_ready_status_stopping_arrive(notify_socket: tuple[str, socket.socket]) -> None:
    value, sock = notify_socket
    env = {"NOTIFY_SOCKET": value}
    notifier = Notifier.from_environ(env)
    with trio.fail_after(5), notifier:
        assert notifier.enabled
        assert notifier.ready("serving on 127.0.0.1:3142")
        assert await _receive(sock) == {"READY": "1", "STATUS": "serving on 127.0.0.1:3142"}
        assert notifier.status("seeder of site lab1\nsecond line")
        assert await _receive(sock) == {"STATUS": "seeder of site lab1 second line"}
        assert notifier.stopping()
        assert await _receive(sock) == {"STOPPING": "1"}
        assert notifier.extend_timeout(2.5)
        assert await _receive(sock) == {"EXTEND_TIMEOUT_USEC": "2500000"}
    # The variables are gone so that processes the agent starts do not inherit them.
    assert env == {}


async def test_watchdog_pings_at_half_the_period(
    notify_socket: tuple[str, socket.socket], autojump_clock: trio.testing.MockClock
) -> None:
    value, sock = notify_socket
    notifier = Notifier.from_environ(
        {"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier.watchdog_usec == 30_000_000
    assert notifier.watchdog_interval == 15.0
    times: list[float] = []
    with trio.fail_after(120), notifier:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.watchdog_loop)
            start = trio.current_time()
            for _ in range(4):
                assert await _receive(sock) == {"WATCHDOG": "1"}
                times.append(trio.current_time() - start)
            nursery.cancel_scope.cancel()
    assert times == [0.0, 15.0, 30.0, 45.0]


async def test_watchdog_loop_returns_when_off(notify_socket: tuple[str, socket.socket]) -> None:
    value, sock = notify_socket
    for env in (
        {"NOTIFY_SOCKET": value},  # no WatchdogSec=
        {"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},  # not ours
        {"WATCHDOG_USEC": "30000000"},  # no socket at all
    ):
        notifier = Notifier.from_environ(env)
        assert notifier.watchdog_interval is None
        with trio.fail_after(1):
            await notifier.watchdog_loop()
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


def test_not_under_systemd_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()
    notifier.close()


def test_sent_from_the_main_process(tmp_path: Path) -> None:
    """NotifyAccess=main drops datagrams from any other pid: check the kernel's credentials."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.settimeout(5)
        code = (
            "import os; from frumitcache.agent._systemd import Notifier; "
            "n = Notifier.from_environ(); n.ready('up'); "
            "assert 'NOTIFY_SOCKET' not in os.environ"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], env={**os.environ, "NOTIFY_SOCKET": str(path)}
        )
        try:
            # The datagram waits in our queue after the child exits; its credentials stay.
            assert proc.wait(timeout=20) == 0
            data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
        finally:
            proc.kill()
            proc.wait()
    assert _parse(data) == {"READY": "1", "STATUS": "up"}
    creds = [d for level, kind, d in ancdata if kind == socket.SCM_CREDENTIALS]
    assert len(creds) == 1
    pid, _uid, _gid = struct.unpack("3i", creds[0])
    assert pid == proc.pid


def test_parse_address() -> None:
    assert parse_address("/run/systemd/notify") == "/run/systemd/notify"
    assert parse_address("@abc") == b"\0abc"
    assert parse_address("") is None
    assert parse_address(None) is None
    assert parse_address("relative/path") is None
    assert parse_address("vsock:2:1234") is None


def test_parse_watchdog_usec() -> None:
    assert parse_watchdog_usec("5000000", None, 42) == 5_000_000
    assert parse_watchdog_usec("5000000", "42", 42) == 5_000_000
    assert parse_watchdog_usec("5000000", "43", 42) is None
    assert parse_watchdog_usec("0", None, 42) is None
    assert parse_watchdog_usec("-5", None, 42) is None
    assert parse_watchdog_usec("soon", None, 42) is None
    assert parse_watchdog_usec(None, "42", 42) is None


def test_encode_assignments() -> None:
    assert encode_assignments({"READY": "1", "STATUS": "a\nb"}) == b"READY=1\nSTATUS=a b\n"
    for bad in ("", "ready", "A=B", "A B"):
        with pytest.raises(ValueError, match="notify variable"):
            encode_assignments({bad: "1"})


def test_stderr_is_journal(tmp_path: Path) -> None:
    with (tmp_path / "log").open("w") as f:
        st = os.fstat(f.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, f.fileno())
        assert not stderr_is_journal({}, f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, f.fileno())


def test_journal_prefix() -> None:
    import logging

    assert journal_prefix(logging.ERROR) == "<3>"
    assert journal_prefix(logging.WARNING) == "<4>"
    assert journal_prefix(logging.INFO) == "<6>"
    assert journal_prefix(logging.DEBUG) == "<7>"
    assert journal_prefix(logging.CRITICAL) == "<2>"
