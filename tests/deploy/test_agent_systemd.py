"""The real agent process under a fake systemd: READY=1 only once it serves, WATCHDOG=1 pings
at half the period, STOPPING=1 on SIGTERM, all from the main pid (NotifyAccess=main)."""

from __future__ import annotations

import signal
import socket
import struct
import uuid
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import free_port


def _receive_nowait(sock: socket.socket) -> list[tuple[int, dict[str, str]]]:
    """Every queued datagram as ``(sender pid, assignments)``."""
    out: list[tuple[int, dict[str, str]]] = []
    while True:
        try:
            data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except BlockingIOError:
            return out
        pid = -1
        for _level, kind, payload in ancdata:
            if kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", payload[:12])[0]
        out.append((pid, dict(line.split("=", 1) for line in data.decode().splitlines())))


async def test_agent_speaks_sd_notify(
    tmp_path: Path, address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"frumitcache-test-{uuid.uuid4().hex}"
    apt_port = free_port(address)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s
        agent = AgentProcess(
            tmp_path / "node",
            address=address,
            settings={"apt": {"enabled": True, "listen": address, "port": apt_port}},
        )
        messages: list[tuple[int, dict[str, str]]] = []
        try:
            with trio.fail_after(60):
                await agent.start()
                with trio.fail_after(10):  # the banner is out: it serves, READY=1 is due
                    while not any(m.get("READY") == "1" for _pid, m in messages):
                        await trio.lowlevel.wait_readable(sock)
                        messages += _receive_nowait(sock)
                # Ready means serving: the control socket and the apt proxy (once the agent
                # announces one) accept connections now.
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
                    control.connect(str(agent.socket))
                if f"{address}:{apt_port}" in agent.banner():
                    with socket.create_connection((address, apt_port), timeout=5):
                        pass
                while sum(m.get("WATCHDOG") == "1" for _pid, m in messages) < 3:
                    await trio.lowlevel.wait_readable(sock)
                    messages += _receive_nowait(sock)
                assert await agent.stop(signal.SIGTERM) == 0, agent.log()
                messages += _receive_nowait(sock)
        finally:
            agent.kill()
    assert any(m.get("STOPPING") == "1" for _pid, m in messages), messages
    assert {pid for pid, _m in messages} == {agent.pid}, messages
