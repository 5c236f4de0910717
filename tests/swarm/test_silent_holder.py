"""A holder that is still a member but does not answer (a frozen Pi: its kernel accepts the
connection, nobody reads it) is given ``answer_timeout`` per step of its answer, then skipped
for a back-off; a slow holder that keeps sending is not. Real loopback sockets; the hostile
holders are raw TCP servers (tests/swarm/test_peer_body.py)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.errors import HolderSilentError
from frumitcache.store import Store
from frumitcache.swarm._peer_client import HttpChunkClient, get_chunk
from frumitcache.swarm._peer_http import PeerHttpServer
from frumitcache.swarm._peer_wire import next_event
from frumitcache.testing.net import loopback_address
from tests.swarm.test_peer_body import KEY, _head, _raw_holder

MiB = 1 << 20


def _chunk() -> tuple[bytes, bytes]:
    data = os.urandom(MiB)
    return data, hashlib.sha256(data).digest()


async def test_a_holder_that_never_answers_is_skipped_for_its_back_off(tmp_path: Path) -> None:
    # Two chunks, the silent holder listed first for both: the first fetch waits its answer
    # bound and takes the chunk from the good holder; the second does not dial it at all.
    asked = 0

    async def frozen(stream: trio.SocketStream) -> None:
        nonlocal asked
        asked += 1
        await trio.sleep_forever()

    chunks = [_chunk(), _chunk()]
    good = Store.open(tmp_path / "good", max_bytes=1 << 30, chunk_size=MiB)
    for data, digest in chunks:
        await good.put_chunk(data, digest)
    mine = Store.open(tmp_path / "mine", max_bytes=1 << 30, chunk_size=MiB)
    with good, mine, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            silent = await _raw_holder(nursery, frozen)
            address = loopback_address()
            port = await nursery.start(PeerHttpServer(good, KEY).serve, address, 0)
            client = HttpChunkClient(mine, KEY, answer_timeout=0.5)
            for data, digest in chunks:
                took = await client.fetch(digest, len(data), [silent, (address, port)])
                assert took == (address, port)
                assert (await mine.read_chunk(digest)) == data
            assert asked == 1
            assert client.silent_holders == 1
            assert silent[0] in client.bad_holders
            assert list((mine.tmp_dir / "http").iterdir()) == []
            nursery.cancel_scope.cancel()


async def test_a_holder_that_stops_mid_body_is_silent_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    data, digest = _chunk()

    async def stops(stream: trio.SocketStream) -> None:
        await stream.send_all(_head(len(data)) + data[:300_000])
        await trio.sleep_forever()

    good = Store.open(tmp_path / "good", max_bytes=1 << 30, chunk_size=MiB)
    await good.put_chunk(data, digest)
    mine = Store.open(tmp_path / "mine", max_bytes=1 << 30, chunk_size=MiB)
    with good, mine, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            holder = await _raw_holder(nursery, stops)
            with pytest.raises(HolderSilentError, match=r"no body bytes for 0\.5 s after"):
                await get_chunk(
                    holder, digest, KEY, max_bytes=len(data), sink=lambda v: None, answer_s=0.5
                )
            address = loopback_address()
            port = await nursery.start(PeerHttpServer(good, KEY).serve, address, 0)
            client = HttpChunkClient(mine, KEY, answer_timeout=0.5)
            assert await client.fetch(digest, len(data), [holder, (address, port)]) == (
                address,
                port,
            )
            assert client.silent_holders == 1
            assert list((mine.tmp_dir / "http").iterdir()) == []
            nursery.cancel_scope.cancel()


async def test_a_slow_holder_that_keeps_sending_is_not_silent(tmp_path: Path) -> None:
    # 2 KiB every 0.2 s: far below the 128 KiB the reader asks the kernel to gather, so each
    # wait for it runs out, but bytes are there each time: a paced holder, not a frozen one.
    body = os.urandom(40 * 1024)
    digest = hashlib.sha256(body).digest()

    async def paced(stream: trio.SocketStream) -> None:
        await stream.send_all(_head(len(body)))
        for at in range(0, len(body), 2048):
            await trio.sleep(0.2)
            await stream.send_all(body[at : at + 2048])

    mine = Store.open(tmp_path / "mine", max_bytes=1 << 30, chunk_size=MiB)
    with mine, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            holder = await _raw_holder(nursery, paced)
            got = await get_chunk(holder, digest, KEY, max_bytes=len(body), answer_s=0.5)
            assert got == body
            client = HttpChunkClient(mine, KEY, answer_timeout=0.5)
            assert await client.fetch(digest, len(body), [holder]) == holder
            assert client.silent_holders == 0
            assert (await mine.read_chunk(digest)) == body
            nursery.cancel_scope.cancel()


async def test_an_answer_that_waited_while_this_node_was_starved_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This node is the slow one: its thread stalls past the answer deadline (a Pi starved of
    # CPU) while the holder's answer is already in the socket. The answer is read (trio takes
    # bytes that are ready without a cancellation point), and the holder is not called silent.
    body = os.urandom(5000)
    stalls: list[int] = []

    async def starved(conn: Any, stream: trio.SocketStream) -> Any:
        if not stalls:
            stalls.append(1)
            await trio.sleep(0.3)  # the holder answers meanwhile
            time.sleep(0.6)  # noqa: ASYNC251 (blocks the loop: a starved process)
        return await next_event(conn, stream)

    async def prompt(stream: trio.SocketStream) -> None:
        await stream.send_all(_head(len(body)) + body)

    monkeypatch.setattr("frumitcache.swarm._peer_client.next_event", starved)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            holder = await _raw_holder(nursery, prompt)
            got = await get_chunk(holder, b"\0" * 32, KEY, max_bytes=len(body), answer_s=0.5)
            assert got == body
            assert stalls == [1]
            nursery.cancel_scope.cancel()
