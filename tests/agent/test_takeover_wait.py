"""How long a seeder taking over a fetch waits for the report of the seeder it replaced
(:func:`frumitcache.agent._takeover.awaited`, pure): only while that one is alive and has
not reported, only up to a bound from the start of its term, and not at all once the site
holds the object whole."""

from __future__ import annotations

from frumitcache.agent._takeover import awaited, held_whole, known_chunks
from frumitcache.site import ChunkHolders, ObjectInfo, ObjectManifest, Reports

LIMIT = 9.0


def reports(
    previous: str | None = "old",
    *,
    reported: tuple[str, ...] = (),
    alive: tuple[str, ...] = ("old", "m"),
) -> Reports:
    return Reports(10.0, previous, frozenset(reported), frozenset(alive))


def test_the_alive_previous_seeder_is_waited_for_up_to_the_bound() -> None:
    assert awaited(reports(), whole=False, now=10.0, limit_s=LIMIT) == 19.0
    assert awaited(reports(), whole=False, now=18.9, limit_s=LIMIT) == 19.0
    assert awaited(reports(), whole=False, now=19.0, limit_s=LIMIT) is None  # the term is old


def test_nothing_is_waited_for_once_it_reported_or_when_it_is_gone() -> None:
    assert awaited(reports(reported=("old",)), whole=False, now=11.0, limit_s=LIMIT) is None
    assert awaited(reports(alive=("m",)), whole=False, now=11.0, limit_s=LIMIT) is None
    assert awaited(reports(None), whole=False, now=11.0, limit_s=LIMIT) is None  # first term


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
