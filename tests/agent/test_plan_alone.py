"""A member the seeder says pulls alone (the plan's side, without sockets or clock).

The seeder lists a member that asks for an object nobody else asked for lately among the
``partial`` holders of each chunk it lacks (frumitcache/site/_pullers.py). The plan waits for a
second such answer ``ALONE_SETTLE_S`` after the first (a herd's members ask within about a
second), asks again every ``QUIET_S`` while it lasts, and says when it ends."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from frumitcache.agent._plan import (
    ALONE_CHUNKS_PER_ASK_S,
    ALONE_SETTLE_S,
    QUIET_S,
    AllOffered,
    Alone,
    AskCatalogue,
    MemberPlan,
    OfferChunk,
)
from frumitcache.site import ChunkHolders, ObjectInfo, ObjectManifest

from .test_plan import CS, DIGESTS, URL, complete

ME = "pi-02"


def _info(alone: bool) -> ObjectInfo:
    partial = (ME,) if alone else ()
    return ObjectInfo(0, URL, complete(), tuple(ChunkHolders(("s",), partial) for _ in DIGESTS))


def _alone(out: Sequence[object]) -> list[Alone]:
    return [o for o in out if isinstance(o, Alone)]


def test_alone_is_said_after_a_second_answer_a_settle_later() -> None:
    plan = MemberPlan(URL, CS, me=ME)
    first = plan.receive(_info(True), 10.0)
    assert _alone(first) == []  # not yet: a herd's fellows may be about to ask
    assert isinstance(first[-1], AllOffered)
    offers = [o for o in first if isinstance(o, OfferChunk)]
    assert len(offers) == len(DIGESTS)
    assert all(o.downloading == (ME,) for o in offers)  # the shell drops itself from these
    # A complete object's plan is closed, yet it asks again while it is alone.
    assert plan.next_deadline() == 10.0 + QUIET_S
    assert plan.on_timer(10.0 + QUIET_S - 0.01) == []
    assert plan.on_timer(10.0 + QUIET_S) == [AskCatalogue(URL)]
    assert plan.next_deadline() == 10.0 + 2 * QUIET_S  # unanswered: asked once a second
    second = plan.receive(_info(True), 10.0 + ALONE_SETTLE_S)
    assert _alone(second) == [Alone(True)]
    assert [o for o in second if isinstance(o, OfferChunk)] == []  # nothing new to offer
    # Said again on each answer that confirms it (the shell marks the chunks anew).
    assert _alone(plan.receive(_info(True), 10.0 + 2 * ALONE_SETTLE_S)) == [Alone(True)]


def test_the_end_of_alone_is_said_once_and_the_questions_stop() -> None:
    plan = MemberPlan(URL, CS, me=ME)
    plan.receive(_info(True), 0.0)
    assert _alone(plan.receive(_info(True), ALONE_SETTLE_S)) == [Alone(True)]
    assert _alone(plan.receive(_info(False), ALONE_SETTLE_S + 1.0)) == [Alone(False)]
    assert plan.next_deadline() is None
    assert _alone(plan.receive(_info(False), ALONE_SETTLE_S + 2.0)) == []


def test_a_fellow_that_asks_within_the_settle_keeps_alone_unsaid() -> None:
    plan = MemberPlan(URL, CS, me=ME)
    plan.receive(_info(True), 0.0)
    assert _alone(plan.receive(_info(False), QUIET_S)) == []  # never said, so no False
    assert plan.next_deadline() is None
    # Alone again later (the fellow's pull ended): the settle starts over.
    assert _alone(plan.receive(_info(True), 20.0)) == []
    assert _alone(plan.receive(_info(True), 20.0 + ALONE_SETTLE_S)) == [Alone(True)]


def test_without_an_identity_or_a_listing_nobody_is_alone() -> None:
    plan = MemberPlan(URL, CS)  # no node id: the embedded one-node site, tests
    plan.receive(_info(True), 0.0)
    assert _alone(plan.receive(_info(True), 5.0)) == []
    assert plan.next_deadline() is None
    other = MemberPlan(URL, CS, me="pi-03")  # the listing names someone else
    other.receive(_info(True), 0.0)
    assert _alone(other.receive(_info(True), 5.0)) == []
    assert other.next_deadline() is None


def test_an_incomplete_object_keeps_its_quiet_deadline() -> None:
    """While the seeder still fetches, the plan's own quiet deadline runs as before; the
    alone questions add no second one."""
    plan = MemberPlan(URL, CS, me=ME)
    manifest = complete()
    partial = ObjectInfo(
        0,
        URL,
        type(manifest)(URL, None, None, CS, tuple(DIGESTS[:2]), False),
        tuple(ChunkHolders(("s",), (ME,)) for _ in DIGESTS[:2]),
        fetching=True,
    )
    plan.receive(partial, 0.0)
    assert plan.next_deadline() == QUIET_S
    assert plan.on_timer(QUIET_S) == [AskCatalogue(URL)]
    assert plan.next_deadline() == 2 * QUIET_S


def test_a_large_object_is_asked_about_less_often() -> None:
    """Each answer carries the object's description (about 40 bytes a chunk): while alone, a
    member asks once a second per ``ALONE_CHUNKS_PER_ASK_S`` chunks."""
    digests = tuple(hashlib.sha256(b"%d" % i).digest() for i in range(4 * ALONE_CHUNKS_PER_ASK_S))
    manifest = ObjectManifest(URL, b"w" * 32, len(digests) * CS, CS, digests, True)
    info = ObjectInfo(0, URL, manifest, tuple(ChunkHolders(("s",), (ME,)) for _ in digests))
    plan = MemberPlan(URL, CS, me=ME)
    plan.receive(info, 0.0)
    assert plan.next_deadline() == 4.0
