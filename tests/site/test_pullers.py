"""The seeder tells a member that pulls an object alone (frumitcache/site/_pullers.py)."""

from __future__ import annotations

import hashlib

from frumitcache.site import (
    ChunkHolders,
    ErrorReply,
    Lookup,
    ObjectInfo,
    ObjectManifest,
    Pullers,
    lists_alone,
)
from frumitcache.site._policy import CataloguePolicy

URL = "http://o/x.bin"
DIGESTS = tuple(hashlib.sha256(bytes([i])).digest() for i in range(3))
MANIFEST = ObjectManifest(URL, b"w" * 32, 12, 4, DIGESTS, True)


def _info(*holders: ChunkHolders) -> ObjectInfo:
    return ObjectInfo(7, URL, MANIFEST, holders or tuple(ChunkHolders(("s",)) for _ in DIGESTS))


def test_a_lone_asker_is_listed_where_it_lacks_the_chunk() -> None:
    pullers = Pullers()
    pullers.note(URL, "a", 0.0)
    info = _info(ChunkHolders(("s", "a")), ChunkHolders(("s",)), ChunkHolders(("s",), ("b",)))
    told = pullers.answer("a", info, 0.1)
    assert told.holders == (
        ChunkHolders(("s", "a")),  # held whole there: not listed
        ChunkHolders(("s",), ("a",)),
        ChunkHolders(("s",), ("b", "a")),  # a member downloading it (a Have) stays
    )
    assert told.request_id == 7
    assert told.manifest == MANIFEST
    assert lists_alone(told, "a")


def test_two_askers_within_the_window_are_not_alone() -> None:
    pullers = Pullers(window_s=5.0)
    pullers.note(URL, "a", 0.0)
    pullers.note(URL, "b", 4.0)
    assert not lists_alone(pullers.answer("a", _info(), 4.5), "a")
    assert not lists_alone(pullers.answer("b", _info(), 4.5), "b")
    # A listing of the asker the catalogue had (a Have of its) is dropped: listed means alone.
    stale = _info(ChunkHolders(("s",), ("a",)), ChunkHolders(("s",)), ChunkHolders(("s",)))
    assert not lists_alone(pullers.answer("a", stale, 4.5), "a")
    # Past the window the other asker no longer counts.
    assert lists_alone(pullers.answer("a", _info(), 9.1), "a")
    # Another URL's pullers do not count.
    pullers.note("http://o/other", "c", 9.2)
    assert lists_alone(pullers.answer("a", _info(), 9.3), "a")


def test_an_unknown_object_or_an_error_is_answered_as_it_is() -> None:
    pullers = Pullers()
    pullers.note(URL, "a", 0.0)
    unknown = ObjectInfo(1, URL, None)
    assert pullers.answer("a", unknown, 0.0) is unknown
    policy = CataloguePolicy("s", list)
    error = ErrorReply(0, "origin-error", "boom")
    assert policy.answer("a", error, 0.0, 9) == ErrorReply(9, "origin-error", "boom")


def test_the_seeder_itself_is_no_puller() -> None:
    """The seeder's own requests (its doors, its pull client) are answered locally: they are
    not a fellow that would trade chunks, and it is never told it is alone."""
    policy = CataloguePolicy("s", list)
    policy.asked("s", URL, 0.0)
    policy.asked("a", URL, 0.0)
    assert lists_alone(policy.answer("a", _info(), 0.1), "a")
    assert not lists_alone(policy.answer("s", _info(ChunkHolders(("x",))), 0.1), "s")
    assert policy.answer("a", policy.lookup(Lookup(3, URL)), 0.1).manifest is None


def test_memory_is_bounded() -> None:
    pullers = Pullers(max_urls=3)
    for i in range(10):
        pullers.note(f"http://o/{i}", "a", float(i))
    assert len(pullers._asked) == 3
    pullers.note(URL, "b", 10.0)
    pullers.note(URL, "a", 10.0)
    assert not pullers.alone(URL, "a", 10.0)
