"""The member plan without sockets or clock: news in (any order, lost, duplicated), steps out."""

from __future__ import annotations

import hashlib
import itertools

from hypothesis import given
from hypothesis import strategies as st

from frumitcache.agent._plan import (
    QUIET_S,
    REASK_S,
    AllOffered,
    AskCatalogue,
    Failed,
    MemberPlan,
    OfferChunk,
    SizeKnown,
)
from frumitcache.site import (
    ChunkAnnounce,
    ChunkHolders,
    FetchFailed,
    ObjectAnnounce,
    ObjectInfo,
    ObjectManifest,
)

URL = "http://o/x.bin"
CS = 4
DIGESTS = [hashlib.sha256(bytes([i])).digest() for i in range(6)]
SIZE = 6 * CS - 1
WHOLE = hashlib.sha256(b"whole").digest()


def complete(meta: bool = True) -> ObjectManifest:
    extra = ("text/plain", '"e1"', "Sun, 06 Nov 1994 08:49:37 GMT") if meta else (None,) * 3
    return ObjectManifest(URL, WHOLE, SIZE, CS, tuple(DIGESTS), True, *extra)


def test_a_complete_reply_offers_everything_then_closes() -> None:
    plan = MemberPlan(URL, CS)
    reply = ObjectInfo(0, URL, complete(), tuple(ChunkHolders(("s",)) for _ in DIGESTS))
    out = plan.receive(reply, 0.0)
    assert out[0] == SizeKnown(SIZE)
    offers = [o for o in out if isinstance(o, OfferChunk)]
    assert [o.index for o in offers] == list(range(6))
    assert offers[-1].size == CS - 1  # the last chunk is short
    assert all(o.holders == ("s",) for o in offers)
    assert isinstance(out[-1], AllOffered)
    assert plan.meta == ("text/plain", '"e1"', "Sun, 06 Nov 1994 08:49:37 GMT")
    assert plan.next_deadline() is None  # nothing missing: no catalogue polling


def test_without_a_size_the_last_known_chunk_waits() -> None:
    plan = MemberPlan(URL, CS)
    out = plan.receive(ChunkAnnounce(URL, 0, DIGESTS[0], CS, "s"), 1.0)
    assert out == []  # chunk 0's length is not certain until a later chunk or the size
    out = plan.receive(ChunkAnnounce(URL, 1, DIGESTS[1], CS, "s"), 1.5)
    assert [o.index for o in out if isinstance(o, OfferChunk)] == [0]


def test_quiet_means_ask_the_catalogue_once_per_quiet_period() -> None:
    plan = MemberPlan(URL, CS)
    plan.receive(ChunkAnnounce(URL, 0, DIGESTS[0], CS, "s"), 10.0)
    assert plan.next_deadline() == 10.0 + QUIET_S
    assert plan.on_timer(10.5) == []
    assert plan.on_timer(11.0) == [AskCatalogue(URL)]
    assert plan.next_deadline() == 11.0 + QUIET_S


def test_a_failure_of_the_seeder_fails_the_plan() -> None:
    plan = MemberPlan(URL, CS)
    assert plan.receive(FetchFailed(URL, "origin-status", "404", 404), 0.0) == [
        Failed("origin-status", "404", 404)
    ]
    assert plan.receive(FetchFailed("http://o/other", "x", "y", 0), 0.0) == []
    assert plan.next_deadline() is None


def test_news_of_other_objects_is_ignored() -> None:
    plan = MemberPlan(URL, CS)
    assert plan.receive(ChunkAnnounce("http://o/y", 0, DIGESTS[0], CS, "s"), 0.0) == []
    assert plan.digests == []


def test_new_holders_of_an_offered_chunk_are_offered_again() -> None:
    plan = MemberPlan(URL, CS)
    partial = ObjectManifest(URL, None, SIZE, CS, tuple(DIGESTS[:2]), False)
    plan.receive(ObjectAnnounce(partial, "s"), 0.0)
    out = plan.receive(ChunkAnnounce(URL, 0, DIGESTS[0], CS, "m1"), 0.1)
    assert [(o.index, o.holders) for o in out if isinstance(o, OfferChunk)] == [(0, ("s", "m1"))]


news = st.sampled_from(
    [ChunkAnnounce(URL, i, DIGESTS[i], CS, f"n{i % 2}") for i in range(6)]
    + [
        ObjectAnnounce(ObjectManifest(URL, None, SIZE, CS, tuple(DIGESTS[:3]), False), "s"),
        ObjectAnnounce(complete(meta=False), "s"),
        ObjectInfo(0, URL, complete(), (ChunkHolders(("s",)),) * 6),
        ObjectInfo(0, URL, None),
    ]
)


@given(st.lists(news, max_size=30), st.integers(min_value=0, max_value=6))
def test_any_order_of_news_offers_each_chunk_first_in_order_and_closes_once(
    seen: list[object], start: int
) -> None:
    plan = MemberPlan(URL, CS, start=start)
    first: list[int] = []
    closed = 0
    for t, msg in enumerate([*seen, ObjectAnnounce(complete(), "s")]):
        for step in plan.receive(msg, float(t)):  # type: ignore[arg-type]
            assert closed == 0, "nothing after AllOffered"
            if isinstance(step, OfferChunk):
                assert step.digest == DIGESTS[step.index]
                if step.index not in first:
                    first.append(step.index)
                else:
                    assert step.index >= start  # a repeat only brings more holders
            closed += isinstance(step, AllOffered)
    assert first == list(range(6))  # every chunk, in order (held ones too: the puller needs all)
    assert closed == 1
    assert plan.digest == WHOLE


def test_a_manifest_that_lists_other_chunks_ends_the_plan() -> None:
    """Hostile parent upstream: the seeder's fetch took a wrong chunk 2 from a federation link,
    the whole object failed its SHA-256 and the fetch started over. Should the news of that
    (FetchFailed 'fetch-restarted') be lost, the complete manifest, which lists another chunk
    2, ends the plan the same way: the member asks again instead of finishing with chunks the
    site no longer lists."""
    plan = MemberPlan(URL, CS)
    for i in range(3):
        plan.receive(ChunkAnnounce(URL, i, DIGESTS[i], CS, "s"), 1.0)
    redone = (*DIGESTS[:2], hashlib.sha256(b"the real chunk 2").digest(), *DIGESTS[3:])
    fixed = ObjectManifest(URL, WHOLE, SIZE, CS, redone, True, None, None, None)
    out = plan.receive(ObjectAnnounce(fixed, "s"), 2.0)
    assert out == [
        Failed(
            "fetch-restarted", f"{URL}: the site lists other chunks than this member was pulling", 0
        )
    ]
    assert plan.receive(ChunkAnnounce(URL, 3, DIGESTS[3], CS, "s"), 3.0) == []
    # A manifest that only extends what the plan knows is news, not a restart.
    plan = MemberPlan(URL, CS)
    plan.receive(ChunkAnnounce(URL, 0, DIGESTS[0], CS, "s"), 1.0)
    out = plan.receive(ObjectAnnounce(complete(), "s"), 2.0)
    assert not any(isinstance(o, Failed) for o in out)


def partial(n: int) -> ObjectInfo:
    """The catalogue's answer for an object whose first ``n`` chunks the site holds."""
    manifest = ObjectManifest(URL, None, None, CS, tuple(DIGESTS[:n]), False, None, None, None)
    return ObjectInfo(0, URL, manifest, tuple(ChunkHolders(("s",)) for _ in range(n)))


def test_a_stalled_plan_asks_the_seeder_to_fetch_again() -> None:
    # The hang of a 100-agent herd: the seeder's fetch was fenced (its lease lapsed) and its
    # lease came back in the same term, so no new term made members ask again; its catalogue
    # said "partial" to every lookup and nobody fetched. Lookups alone never end that.
    plan = MemberPlan(URL, CS)
    plan.receive(partial(2), 0.0)
    asks: list[tuple[float, AskCatalogue]] = []
    now = 0.0
    while now < 3 * REASK_S + QUIET_S:
        now = plan.next_deadline() or now + QUIET_S
        asks += [(now, a) for a in plan.on_timer(now) if isinstance(a, AskCatalogue)]
        plan.receive(partial(2), now)  # every lookup: the same answer, nothing new
    fetches = [t for t, a in asks if a.fetch]
    assert asks
    assert all(a.url == URL for _, a in asks)
    assert fetches, "never asked the seeder to fetch"
    assert fetches[0] >= REASK_S  # lookups first: a lost announcement is the usual cause
    # At most one fetch request per REASK_S, not one per lookup.
    assert all(b - a >= REASK_S for a, b in itertools.pairwise(fetches))
    assert len(asks) > len(fetches)


def test_news_of_progress_keeps_the_plan_on_lookups() -> None:
    plan = MemberPlan(URL, CS)
    plan.receive(partial(1), 0.0)
    for n in range(2, 6):  # a chunk every REASK_S - QUIET_S: a slow but moving fetch
        now = (n - 1) * (REASK_S - QUIET_S)
        assert all(not a.fetch for a in plan.on_timer(now) if isinstance(a, AskCatalogue))
        plan.receive(ChunkAnnounce(URL, n - 1, DIGESTS[n - 1], CS, "s"), now)
