"""How long a seeder taking over a fetch waits for the report of the seeder it replaced
(:func:`frumitcache.agent._takeover.awaited`, pure): only while that one is alive (or quiet:
in the electorate, not heard within ``member_timeout_s``, not found dead) and has not
reported, only up to a bound from the start of its term, and not at all once the site holds
the object whole."""

from __future__ import annotations

import functools

from frumitcache.agent import _takeover
from frumitcache.agent._takeover import catch_up_to, held_whole, known_chunks
from frumitcache.site import ChunkHolders, ObjectInfo, ObjectManifest, Reports

LIMIT, QUIET_LIMIT = 9.0, 3.0
awaited = functools.partial(_takeover.awaited, quiet_limit_s=QUIET_LIMIT)


def reports(
    previous: str | None = "old",
    *,
    reported: tuple[str, ...] = (),
    alive: tuple[str, ...] = ("old", "m"),
    quiet: tuple[str, ...] = (),
) -> Reports:
    return Reports(10.0, previous, frozenset(reported), frozenset(alive), frozenset(quiet))


def test_the_alive_previous_seeder_is_waited_for_up_to_the_bound() -> None:
    assert awaited(reports(), whole=False, now=10.0, limit_s=LIMIT) == 19.0
    assert awaited(reports(), whole=False, now=18.9, limit_s=LIMIT) == 19.0
    assert awaited(reports(), whole=False, now=19.0, limit_s=LIMIT) is None  # the term is old


def test_nothing_is_waited_for_once_it_reported_or_when_it_is_gone() -> None:
    assert awaited(reports(reported=("old",)), whole=False, now=11.0, limit_s=LIMIT) is None
    assert awaited(reports(alive=("m",)), whole=False, now=11.0, limit_s=LIMIT) is None
    assert awaited(reports(None), whole=False, now=11.0, limit_s=LIMIT) is None  # first term


def test_a_quiet_previous_seeder_is_waited_for_a_shorter_while() -> None:
    """Issue 14's 1.61 run: pi4, the lapsed seeder, beaconed elsewhere and was not alive in
    pi2's view when pi2 took over 1 s into its term; pi2 resumed the origin at once, after the
    one chunk it knew of. Our leases reach a quiet one and its ack makes it alive; a crashed
    one does not ack, so its successor waits a lease at most."""
    quiet = reports(alive=("m",), quiet=("old",))
    assert awaited(quiet, whole=False, now=11.0, limit_s=LIMIT) == 13.0
    assert awaited(quiet, whole=False, now=13.0, limit_s=LIMIT) is None
    acked = reports(alive=("m", "old"))  # its ack came: alive, the longer bound
    assert awaited(acked, whole=False, now=13.0, limit_s=LIMIT) == 19.0
    gone = reports(alive=("m",), quiet=("m2",))  # forgotten, said bye or found dead
    assert awaited(gone, whole=False, now=11.0, limit_s=LIMIT) is None
    done = reports(alive=("m",), quiet=("old",), reported=("old",))
    assert awaited(done, whole=False, now=11.0, limit_s=LIMIT) is None


def test_a_quiet_previous_seeder_whose_port_answers_is_waited_for_as_if_alive() -> None:
    """Issue 14's keep8 run (1.40 x F): pi1, the seeder, was paused 8 s mid-fetch; its heir
    found it quiet, waited a lease and fetched again from the last whole chunk what pi1 then
    drained and reported. A paused process's kernel still accepts a connect on its peer port:
    waited for as long as an alive one. Refused (a reset: nothing listens) is gone, even
    while the membership still counts it alive."""
    quiet = reports(alive=("m",), quiet=("old",))
    assert awaited(quiet, whole=False, now=11.0, limit_s=LIMIT, listening=True) == 19.0
    assert awaited(quiet, whole=False, now=18.0, limit_s=LIMIT, listening=True) == 19.0
    assert awaited(quiet, whole=False, now=19.0, limit_s=LIMIT, listening=True) is None
    assert awaited(quiet, whole=False, now=11.0, limit_s=LIMIT, listening=False) is None
    assert awaited(quiet, whole=False, now=11.0, limit_s=LIMIT, listening=None) == 13.0
    # Refused: gone, though heard within member_timeout_s (killed a moment ago).
    assert awaited(reports(), whole=False, now=11.0, limit_s=LIMIT, listening=False) is None
    assert awaited(reports(), whole=False, now=11.0, limit_s=LIMIT, listening=True) == 19.0
    done = reports(alive=("m",), quiet=("old",), reported=("old",))
    assert awaited(done, whole=False, now=11.0, limit_s=LIMIT, listening=True) is None


def test_other_members_reports_do_not_end_the_wait() -> None:
    mine = reports(reported=("m",))
    assert awaited(mine, whole=False, now=11.0, limit_s=LIMIT) == 19.0


def test_an_object_the_site_holds_whole_is_not_waited_for() -> None:
    assert awaited(reports(), whole=True, now=11.0, limit_s=LIMIT) is None


def _info(complete: bool, holders: list[tuple[str, ...]]) -> ObjectInfo:
    chunks = tuple(bytes([i + 1]) * 32 for i in range(3))
    manifest = ObjectManifest("u", b"\x09" * 32 if complete else None, 10, 4, chunks, complete)
    return ObjectInfo(0, "u", manifest, tuple(ChunkHolders(full=h) for h in holders))


def test_held_whole_needs_a_complete_object_with_a_live_holder_for_every_chunk() -> None:
    def live(nodes: tuple[str, ...]) -> bool:
        return "dead" not in nodes and bool(nodes)

    assert held_whole(_info(True, [("a",), ("a", "b"), ("b",)]), live)
    assert not held_whole(_info(True, [("a",), (), ("b",)]), live)  # a chunk nobody holds
    assert not held_whole(_info(True, [("a",), ("dead",), ("b",)]), live)  # held by the dead
    assert not held_whole(_info(True, [("a",), ("b",)]), live)  # holders of 2 chunks of 3
    assert not held_whole(_info(False, [("a",), ("a",), ("a",)]), live)  # not complete


def test_the_settle_measure_moves_when_an_object_becomes_complete() -> None:
    partial = ObjectManifest("u", None, None, 4, (b"\1" * 32,), False)
    whole = ObjectManifest("u", b"\x09" * 32, 4, 4, (b"\1" * 32,), True)
    assert known_chunks(None) == -1
    assert known_chunks(partial) < known_chunks(whole)


def test_a_tail_one_chunk_past_the_writer_asks_for_that_chunk_first() -> None:
    """A fenced seeder's drain completes one chunk at most, then keeps a tail after it."""
    assert catch_up_to(8, stored=4, chunk_size=4) == 2  # chunk 1 first, then the tail
    assert catch_up_to(4, stored=0, chunk_size=4) == 1
    assert catch_up_to(4, stored=4, chunk_size=4) is None  # it fits as it is
    assert catch_up_to(12, stored=4, chunk_size=4) is None  # two chunks: not a drain's
    assert catch_up_to(0, stored=4, chunk_size=4) is None  # behind ours
