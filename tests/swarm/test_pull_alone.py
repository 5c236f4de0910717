"""A member pulling alone takes the chunks assigned to its idle fellows from the seeder.

The member's plan hears the seeder say it pulls alone (tests/agent/test_plan_alone.py) and
marks the object's chunks (``ChunkFetcher.pull_alone``): a chunk assigned to a fellow is then
taken from the seeder over peer HTTP at once, a chunk already waiting for its fellow stops
waiting, and at most two such copies run at once. Fakes from tests/swarm/test_widen.py, mock
clock; through real agents: tests/agent/test_assigned_fetcher.py."""

from __future__ import annotations

from typing import Any

import trio

from frumitcache.swarm import ChunkFetcher

from .test_widen import (
    FELLOWS,
    ME,
    SEEDER,
    _chunk_assigned_to,
    _Http,
    _Store,
    _Swarm,
    fake_fetcher,
)

SEEDER_HTTP = (SEEDER.address, SEEDER.peer_port)


def _fetcher(http: _Http, store: _Store, swarm: _Swarm) -> ChunkFetcher:
    # The graces long, as in the real-agent test: only the alone news can end a wait.
    return fake_fetcher(store, http, swarm, seeder_grace=600.0, assigned_grace=600.0)


def _parts() -> tuple[_Http, _Store, _Swarm]:
    store = _Store()
    http = _Http(lambda address: b"fetching")  # a fellow that would hold us the long grace
    http.store = store
    added = trio.current_time()  # libtorrent's download counts as progressed when added
    return http, store, _Swarm(store, lambda: added)


async def test_a_waiting_chunk_is_taken_from_the_seeder_once_alone(autojump_clock: Any) -> None:
    http, store, swarm = _parts()
    fetcher = _fetcher(http, store, swarm)
    chunk = _chunk_assigned_to(FELLOWS[0])
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetcher.fetch, chunk, [SEEDER, *FELLOWS])
            await trio.sleep(2.0)
            assert http.fetched == []  # waiting for its fellow, as before
            start = trio.current_time()
            fetcher.pull_alone([chunk.digest], True)
        assert trio.current_time() - start < 0.1
    assert http.fetched == [(chunk.digest, [SEEDER_HTTP])]
    assert swarm.seeded == [chunk.digest]  # seeded on: a fellow that comes late trades it
    assert swarm.widened_at is None  # no libtorrent dial of the seeder for it
    assert http.asked == []  # nobody asked: the seeder said it


async def test_alone_chunks_go_to_the_seeder_at_once_two_at_a_time(autojump_clock: Any) -> None:
    http, store, swarm = _parts()
    fetcher = _fetcher(http, store, swarm)
    chunks = [_chunk_assigned_to(FELLOWS[n % 2], skip=n) for n in range(6)]
    fetcher.pull_alone([c.digest for c in chunks], True)
    gate = http.gate = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for chunk in chunks:
                nursery.start_soon(fetcher.fetch, chunk, [SEEDER, *FELLOWS])
            await trio.sleep(1.0)
            assert len(http.fetched) == 2  # the others wait for one of the two
            gate.set()
    assert sorted(d for d, _ in http.fetched) == sorted(c.digest for c in chunks)
    assert all(h == [SEEDER_HTTP] for _, h in http.fetched)


async def test_no_longer_alone_means_waiting_for_the_fellow_again(autojump_clock: Any) -> None:
    http, store, swarm = _parts()
    fetcher = _fetcher(http, store, swarm)
    chunk = _chunk_assigned_to(FELLOWS[1])
    fetcher.pull_alone([chunk.digest], True)
    fetcher.pull_alone([chunk.digest], False)
    with trio.move_on_after(30.0):
        await fetcher.fetch(chunk, [SEEDER, *FELLOWS])
    assert http.fetched == []
    assert not store.has_chunk(chunk.digest)
    # Marks pair up: two pulls of objects sharing the chunk, one of them ends.
    fetcher.pull_alone([chunk.digest, chunk.digest], True)  # a repeated digest counts once
    fetcher.pull_alone([chunk.digest], True)
    fetcher.pull_alone([chunk.digest], False)
    with trio.fail_after(5.0):
        await fetcher.fetch(chunk, [SEEDER, *FELLOWS])
    assert http.fetched == [(chunk.digest, [SEEDER_HTTP])]


async def test_chunks_assigned_here_are_not_held_to_two(autojump_clock: Any) -> None:
    """This node's own assigned chunks are its first-replica copies, as before: not counted
    against the two copies made for idle fellows."""
    http, store, swarm = _parts()
    fetcher = _fetcher(http, store, swarm)
    mine = [_chunk_assigned_to(ME, skip=n) for n in range(3)]
    theirs = [_chunk_assigned_to(FELLOWS[0], skip=n) for n in range(3)]
    fetcher.pull_alone([c.digest for c in mine + theirs], True)
    gate = http.gate = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for chunk in mine + theirs:
                nursery.start_soon(fetcher.fetch, chunk, [SEEDER, *FELLOWS])
            await trio.sleep(1.0)
            assert len(http.fetched) == 5  # three of its own, two for its fellow
            gate.set()
    assert len(http.fetched) == 6
