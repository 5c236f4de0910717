"""Driving :mod:`frumitcache.swarm.node` processes from trio (multi-process tests, bench).

:class:`NodeProcess` starts one node, waits for its ready line, and turns the JSON-lines
protocol into ``await node.call({...})``. Its owner runs :meth:`NodeProcess.pump` in a nursery
and kills the process (by its pid, SIGKILL) in ``finally`` via :meth:`kill`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from frumitcache.errors import PeerError

# The directory holding the frumitcache package, for nodes run by another interpreter.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class NodeProcess:
    def __init__(self, proc: trio.Process, address: str) -> None:
        self.proc = proc
        self.address = address
        self.ready: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._ready = trio.Event()
        #: Set when the node has delivered its first chunk of any fetch.
        self.first_chunk = trio.Event()
        self.exited = trio.Event()

    @property
    def swarm_port(self) -> int:
        return int(self.ready["swarm_port"])

    @property
    def peer_port(self) -> int:
        return int(self.ready["peer_port"])

    @property
    def holder(self) -> list[Any]:
        return [self.address, self.peer_port, self.swarm_port]

    async def pump(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        assert self.proc.stdout is not None
        buf = b""
        started = False
        try:
            while True:
                data = await self.proc.stdout.receive_some(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if msg.get("event") == "ready":
                        self.ready = msg
                        self._ready.set()
                        if not started:
                            started = True
                            task_status.started()
                        continue
                    if "event" in msg:
                        self.events.append(msg)
                        if msg["event"] == "chunk":
                            self.first_chunk.set()
                        continue
                    send = self._waiting.pop(msg.get("id"), None)
                    if send is not None:
                        send.send_nowait(msg)
        finally:
            self.exited.set()
            for send in self._waiting.values():
                send.close()
        if not started:
            raise PeerError(f"node {self.address} exited before it was ready")

    async def call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        cid = cmd.setdefault("id", next(self._ids))
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[cid] = send
        await self.send(cmd)
        async with receive:
            try:
                reply = await receive.receive()
            except trio.EndOfChannel:
                raise PeerError(f"node {self.address} exited during {cmd['cmd']}") from None
        if not reply.get("ok"):
            raise PeerError(f"node {self.address}: {reply.get('error')}")
        return reply

    async def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        cmd.setdefault("id", next(self._ids))
        await self.proc.stdin.send_all(json.dumps(cmd).encode() + b"\n")

    def kill(self) -> None:
        """SIGKILL this node by its pid (no-op once it has exited)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)


@asynccontextmanager
async def start_nodes(
    nursery: trio.Nursery,
    addresses: Sequence[str],
    root: Path,
    key: bytes,
    extra: Sequence[str] = (),
    pythons: Sequence[str] = (),
) -> AsyncIterator[list[NodeProcess]]:
    """Start one node per address (stores under ``root``); kill them all on exit.

    ``pythons[i]``, when given, is the interpreter of node ``i`` (e.g. Debian's /usr/bin/python3
    with libtorrent 2.0 and trio 0.22); the package is found through PYTHONPATH.
    """
    nodes: list[NodeProcess] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    try:
        for i, address in enumerate(addresses):
            python = pythons[i] if i < len(pythons) and pythons[i] else sys.executable
            argv = [
                python,
                "-m",
                "frumitcache.swarm.node",
                "--address",
                address,
                "--store",
                str(root / f"node{i}"),
                "--key-hex",
                key.hex(),
                *extra,
            ]
            proc = await trio.lowlevel.open_process(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
            )
            node = NodeProcess(proc, address)
            nodes.append(node)
            await nursery.start(node.pump)
        yield nodes
    finally:
        for node in nodes:
            node.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            for node in nodes:
                await node.proc.wait()
                if node.proc.stdin is not None:
                    await node.proc.stdin.aclose()
                if node.proc.stdout is not None:
                    await node.proc.stdout.aclose()
