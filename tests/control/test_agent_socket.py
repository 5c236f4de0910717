"""Hostile input on a real agent's control socket: no frame, however malformed or out of range,
stops the agent; each is answered ``Failed`` (or the connection closes) and the agent still
answers a status request afterwards."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import socket
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from frumitcache.control import Failed, MessageStream, Status, StatusRequest
from frumitcache.control._protocol import _REGISTRY, MAX_FRAME
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address


async def _connect(path: Path) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(os.fspath(path))
    return trio.SocketStream(sock)


async def send_raw(path: Path, data: bytes, *, close_write: bool = True) -> list[Any]:
    """Send ``data`` on a fresh connection; every message the agent answers, until it closes."""
    stream = await _connect(path)
    conn = MessageStream(stream)
    replies: list[Any] = []
    try:
        try:
            await stream.send_all(data)
            if close_write:
                await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the agent already hung up on a frame it refused
        while True:
            try:
                msg = await conn.receive()
            except trio.BrokenResourceError:  # reset by the agent: also an answer
                break
            if msg is None:
                break
            replies.append(msg)
    finally:
        await stream.aclose()
    return replies


async def status(path: Path) -> Status:
    stream = await _connect(path)
    conn = MessageStream(stream)
    try:
        await conn.send(StatusRequest())
        reply = await conn.receive_required()
    finally:
        await conn.aclose()
    assert isinstance(reply, Status), reply
    return reply


def frame(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


@pytest.fixture
async def agent(tmp_path: Path) -> Any:
    proc = AgentProcess(tmp_path / "node", address=loopback_address())
    await proc.start()
    try:
        yield proc
    finally:
        proc.kill()


async def stored_object(agent: AgentProcess, directory: Path, data: bytes) -> str:
    """Import ``data`` into the agent's store as a .deb; its ``sha256:`` key."""
    await trio.Path(directory).mkdir(exist_ok=True)
    await trio.Path(directory / "a.deb").write_bytes(data)
    imported = await send_raw(agent.socket, frame({"t": "import", "directory": str(directory)}))
    assert imported[0].files == 1, imported
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_negative_pull_offset_is_refused_and_the_agent_lives(
    agent: AgentProcess, tmp_path: Path
) -> None:
    # Finding 2 of issue 16: this one frame used to raise ValueError in the store and stop
    # the agent (the handler caught only FrumitcacheError).
    with trio.fail_after(30):
        key = await stored_object(agent, tmp_path / "debs", b"x" * 1000)
        replies = await send_raw(agent.socket, frame({"t": "pull", "url": key, "offset": -100}))
        assert len(replies) == 1
        assert isinstance(replies[0], Failed)
        assert replies[0].code == "protocol"
        assert "offset" in replies[0].message
        assert (await status(agent.socket)).pid == agent.pid
        assert agent.proc is not None
        assert agent.proc.poll() is None


HOSTILE_FIELDS: list[tuple[dict[Any, Any], str]] = [
    ({"t": "pull", "url": "http://127.0.0.2:9/a", "offset": 2**64 - 1}, "offset"),
    ({"t": "pull", "url": "http://127.0.0.2:9/a", "offset": "0"}, "offset"),
    ({"t": "pull", "url": "http://127.0.0.2:9/a", "sha256": b"\x00" * 31}, "sha256"),
    ({"t": "pull", "url": "http://127.0.0.2:9/" + "a" * 10_000}, "url"),
    ({"t": "pull", "url": "http://127.0.0.2:9/a", b"x": 1, "y": 2}, "unexpected"),
    ({"t": "gc", "free": -1}, "free"),
    ({"t": "gc", "free": 1.5}, "free"),
    ({"t": "estimate", "urls": ["http://127.0.0.2:9/a"] * 10_001}, "urls"),
    ({"t": "pin", "target": None, "pinned": True}, "target"),
    ({"t": "import", "directory": ["/"]}, "directory"),
    # a reply sent as a request
    ({"t": "gc.", "freed": 1, "bytes_used": 1, "max_bytes": 1}, "not a request"),
]


async def test_out_of_range_and_wrong_fields_are_refused(agent: AgentProcess) -> None:
    with trio.fail_after(60):
        for fields, name in HOSTILE_FIELDS:
            replies = await send_raw(agent.socket, frame(fields))
            assert len(replies) == 1, (fields, replies)
            assert isinstance(replies[0], Failed), (fields, replies)
            assert name in replies[0].message, (fields, replies)
        await status(agent.socket)


async def test_pull_offset_past_the_end_of_a_stored_object(
    agent: AgentProcess, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        key = await stored_object(agent, tmp_path / "debs", b"x" * 1000)
        for offset in (1001, 2**62):
            pull = {"t": "pull", "url": key, "offset": offset}
            replies = await send_raw(agent.socket, frame(pull))
            assert len(replies) == 1, replies
            assert isinstance(replies[0], Failed), replies
            assert "past the end" in replies[0].message
        await status(agent.socket)


def _random_value(rng: random.Random, depth: int = 0, key: str = "") -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if key and rng.random() < 0.2:
        return key  # an object the agent holds, so pulls reach the store
    if kind == 0:
        return rng.choice([0, -1, -(2**63), 2**64 - 1, 2**62, 1 << rng.randrange(64)])
    if kind == 1:
        # Never a URL or a path the agent could act on: letters only.
        return "".join(rng.choice("abcxyz:%") for _ in range(rng.randrange(40)))
    if kind == 2:
        return rng.randbytes(rng.choice([0, 1, 31, 32, 33, 200]))
    if kind == 3:
        return rng.choice([None, True, False, 1.5, float("nan"), float("-inf")])
    if kind == 4:
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(10)))
    if kind == 5:
        return msgpack.Timestamp(rng.randrange(2**32))
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {
        rng.choice(["t", "url", "offset", "x"]) if rng.random() < 0.7 else rng.randbytes(3): (
            _random_value(rng, depth + 1)
        )
        for _ in range(rng.randrange(5))
    }


_EDGE_INTS = [0, 1, -1, -100, -(2**63), 2**62, 2**63 - 1, 2**64 - 1]


def _typed_value(rng: random.Random, annotation: str, key: str) -> Any:
    """A value of the field's declared type, at its edges (what a sloppy client might send)."""
    if "None" in annotation and rng.random() < 0.4:
        return None
    if "list" in annotation:
        return [_typed_value(rng, "Text", key) for _ in range(rng.randrange(4))]
    if "Size" in annotation or "int" in annotation:
        return rng.choice(_EDGE_INTS)
    if "bool" in annotation:
        return rng.random() < 0.5
    if "Digest" in annotation or "bytes" in annotation:
        return rng.randbytes(rng.choice([0, 31, 32, 32, 33]))
    return key if rng.random() < 0.5 else "".join(rng.choice("abc:/") for _ in range(9))


def _random_message(rng: random.Random, key: str) -> bytes:
    # Pulls reach the store, so they come up most.
    tag = rng.choice([*_REGISTRY, "", "nope", *["pull"] * 12, "gc", "gc", "import"])
    cls = _REGISTRY.get(tag)
    obj: dict[Any, Any] = {"t": tag}
    for f in dataclasses.fields(cls) if cls is not None else ():  # type: ignore[arg-type]
        name = f.name
        if rng.random() < 0.8:
            typed = rng.random() < 0.7
            obj[name] = (
                _typed_value(rng, str(f.type), key) if typed else _random_value(rng, key=key)
            )
    if rng.random() < 0.1:
        obj["extra"] = _random_value(rng)
    return frame(obj)


def hostile_corpus(seed: int, count: int, key: str) -> list[tuple[str, bytes]]:
    """A bounded, reproducible corpus of malformed control input, each case named."""
    rng = random.Random(seed)
    cases: list[tuple[str, bytes]] = [
        ("bin32 claiming 4 GiB", b"\xc6\xff\xff\xff\xff" + b"x" * 100),
        ("str32 claiming 4 GiB", b"\xdb\xff\xff\xff\xff" + b"x" * 100),
        ("array32 of 4G items", b"\xdd\xff\xff\xff\xff" + b"\xc0" * 100),
        ("map32 of 4G pairs", b"\xdf\xff\xff\xff\xff" + b"\xc0" * 100),
        ("nesting 10,000 deep", b"\x91" * 10_000),
        ("frame over MAX_FRAME", b"\xc6" + (MAX_FRAME + 10).to_bytes(4, "big") + b"x" * 1000),
        ("reserved byte 0xc1", b"\xc1"),
        ("invalid utf-8 key", b"\x81\xa2\xff\xfe\x01"),
        ("map with an int key", frame({1: 2})),
        ("tag of wrong type", frame({"t": 5})),
        ("bare integer", frame(7)),
        ("truncated pull", frame({"t": "pull", "url": "abc"})[:-2]),
    ]
    for i in range(count):
        data = (
            _random_message(rng, key) if rng.random() < 0.6 else rng.randbytes(rng.randrange(1, 64))
        )
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data) + 1)]  # truncated
        cases.append((f"random #{i}", data))
    return cases


async def test_fuzz_control_socket_then_status_still_answers(
    agent: AgentProcess, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        key = await stored_object(agent, tmp_path / "debs", os.urandom(3000))
        corpus = hostile_corpus(seed=16, count=1000, key=key)
        for name, data in corpus:
            try:
                await send_raw(agent.socket, data)
            except Exception as exc:  # name the case that broke the agent
                raise AssertionError(f"{name}: {exc!r}\n{agent.log()}") from exc
            assert agent.proc is not None
            assert agent.proc.poll() is None, f"{name}\n{agent.log()}"
        # The whole corpus on one connection, back to back, then a status on a fresh one.
        await send_raw(agent.socket, b"".join(d for _, d in corpus[12:100]))
        st = await status(agent.socket)
    assert st.pid == agent.pid
    # Everything was refused at the codec or answered by a handler: nothing crashed.
    assert "control.crashed" not in agent.log()
