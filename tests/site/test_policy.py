"""The catalogue policy (``_policy``), without sockets: messages and the election's view in,
actions out, time passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from frumitcache.site import ChunkAnnounce, FetchFailed, Have, ObjectAnnounce, ObjectManifest
from frumitcache.site import Outgoing as Send
from frumitcache.site._policy import (
    HAVE_RESENDS,
    CataloguePolicy,
    Drop,
    Publish,
    SeederChanged,
    View,
)

D1, D2 = b"\1" * 32, b"\2" * 32
MINE = [Have("me", full=(D1,))]


def policy() -> CataloguePolicy:
    return CataloguePolicy("me", lambda: list(MINE))


def seeding(term: int = 3, alive: tuple[str, ...] = ("a", "b")) -> View:
    return View(seeder=("me", term), seeding_term=term, seeding=True, alive=alive)


def following(seeder: str = "s") -> View:
    return View(seeder=(seeder, 2), alive=(seeder, "b"))


def test_a_new_term_of_ours_starts_a_catalogue_from_our_own_holdings() -> None:
    p = policy()
    p.catalogue.add_holder(D2, "stale")
    out = p.on_view(seeding(), 0.0)
    assert out == [SeederChanged(("me", 3), None)]
    assert p.catalogue.holders(D1).full == ("me",)
    assert p.catalogue.holders(D2).full == ()
    assert p.on_view(seeding(), 1.0) == []  # same term: kept


def test_the_seeder_records_members_only_for_themselves() -> None:
    p = policy()
    p.on_view(seeding(), 0.0)
    assert p.receive("a", ChunkAnnounce("u", 0, D2, 4, "a"), seeding()) == []
    assert p.catalogue.holders(D2).full == ("a",)
    assert p.receive("a", ChunkAnnounce("u", 1, D1, 4, "b"), seeding()) == [Drop("not-for-seeder")]
    assert p.receive("a", Have("b", full=(D2,)), seeding()) == [Drop("not-for-seeder")]
    assert p.catalogue.holders(D2).full == ("a",)


def test_a_member_publishes_only_its_seeders_announcements() -> None:
    p = policy()
    p.on_view(following(), 0.0)
    msg = ChunkAnnounce("u", 0, D2, 4, "s")
    assert p.receive("s", msg, following()) == [Publish(msg)]
    assert p.receive("b", msg, following()) == [Drop("not-from-seeder")]
    assert p.receive("s", Have("s"), following()) == [Drop("not-from-seeder")]


def test_a_new_seeder_gets_our_holdings_a_few_times_while_it_stays() -> None:
    p = policy()
    out = p.on_view(following("s"), 10.0)
    assert out == [SeederChanged(("s", 2), None), Send("s", MINE[0])]
    sent = 1
    for delay in HAVE_RESENDS[1:]:
        assert p.next_deadline() == 10.0 + delay
        assert p.on_timer(10.0 + delay - 0.01) == []
        assert p.on_timer(10.0 + delay) == [Send("s", MINE[0])]
        sent += 1
    assert sent == len(HAVE_RESENDS)
    assert p.next_deadline() == float("inf")
    # A seeder lost before the resends are done: they stop.
    p = policy()
    p.on_view(following("s"), 0.0)
    assert p.on_view(View(seeder=None), 0.1) == [SeederChanged(None, ("s", 2))]
    assert p.next_deadline() == float("inf")


def test_each_resend_carries_what_is_held_then() -> None:
    """A fenced seeder's chunks in flight complete after its first report: the resends say
    so (the new seeder resumes the origin after what it hears). Issue 14."""
    held = list(MINE)
    p = CataloguePolicy("me", lambda: list(held))
    assert p.on_view(following("s"), 10.0)[1:] == [Send("s", MINE[0])]
    later = Have("me", full=(D1, D2))
    held[:] = [later]
    assert p.on_timer(10.0 + HAVE_RESENDS[1]) == [Send("s", later)]


def test_a_seeder_that_steps_down_hands_its_catalogue_over() -> None:
    p = policy()
    p.on_view(seeding(), 0.0)
    manifest = ObjectManifest("u", D1, 4, 4, (D2,), True)
    p.receive("a", ObjectAnnounce(manifest, "a"), seeding())
    out = p.on_view(following("other"), 1.0)
    handover = [o.msg for o in out if isinstance(o, Send) and o.msg not in MINE]
    assert len(handover) == 1
    assert isinstance(handover[0], Have)
    assert handover[0].node_id == "me"
    assert manifest in handover[0].objects
    assert not handover[0].held  # "a" holds it, not "me": "a" reports that itself
    winner = policy()
    winner.on_view(seeding(term=5), 2.0)
    winner.receive("me", handover[0], seeding(term=5))
    assert winner.catalogue.get("u") == manifest
    assert winner.catalogue.holders(D2).full == ()


def test_a_members_have_makes_it_holder_of_its_objects_chunks() -> None:
    p = policy()
    p.on_view(seeding(), 0.0)
    complete = ObjectManifest("u", D1, 8, 4, (D1, D2), True)
    partial = ObjectManifest("v", None, None, 4, (D2,), False)
    assert p.receive("a", Have("a", objects=(complete,)), seeding()) == []
    assert p.receive("b", Have("b", objects=(partial,)), seeding()) == []
    assert p.catalogue.holders(D1).full == ("a", "me")  # "me": our own holdings (MINE)
    assert p.catalogue.holders(D2).full == ("a", "b")
    assert [h.full for h in p.catalogue.info("u").holders] == [("a", "me"), ("a", "b")]


def test_own_progress_goes_to_everyone_from_the_seeder_and_to_the_seeder_from_a_member() -> None:
    p = policy()
    p.on_view(seeding(), 0.0)
    chunk = ChunkAnnounce("u", 0, D2, 4, "me")
    assert p.announce(chunk, seeding()) == [Publish(chunk), Send("a", chunk), Send("b", chunk)]
    assert p.catalogue.holders(D2).full == ("me",)
    member = policy()
    assert member.announce(chunk, following("s")) == [Send("s", chunk)]
    assert member.announce(chunk, View(seeder=None)) == []
    failed = FetchFailed("u", "origin", "gone")
    assert p.announce(failed, seeding()) == [Publish(failed), Send("a", failed), Send("b", failed)]
    assert p.catalogue.get("u") is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([D1, D2]),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_no_member_can_name_another_as_a_holder(
    reports: list[tuple[str, str, bytes, bool]],
) -> None:
    p = CataloguePolicy("me", list)
    p.on_view(seeding(), 0.0)
    honest: dict[bytes, set[str]] = {D1: set(), D2: set()}
    for sender, holder, digest, as_have in reports:
        msg = Have(holder, full=(digest,)) if as_have else ChunkAnnounce("u", 0, digest, 4, holder)
        p.receive(sender, msg, seeding())
        if sender == holder:
            honest[digest].add(sender)
    for digest, senders in honest.items():
        assert set(p.catalogue.holders(digest).full) <= senders


def test_a_new_seeder_knows_whom_it_followed_and_who_reported_in_its_term() -> None:
    """What a seeder taking over a fetch weighs (Reports): the seeder it followed before its
    term (the one that fetched), when its term began, and who reported since; a report from
    an earlier term of ours, or from someone speaking for another, does not count."""
    p = policy()
    assert p.reports(following("s")).began == float("-inf")  # not seeding: no term of ours
    p.on_view(following("s"), 0.0)
    p.on_view(View(seeder=None), 1.0)  # its lease lapsed in our view
    p.on_view(seeding(4, alive=("s", "b")), 2.5)
    reports = p.reports(seeding(4, alive=("s", "b")))
    assert (reports.began, reports.previous, reports.reported) == (2.5, "s", frozenset())
    assert reports.alive == {"s", "b"}
    quiet = p.reports(View(("me", 4), 4, True, alive=("b",), quiet=("s",)))
    assert quiet.alive == {"b"}
    assert quiet.quiet == {"s"}  # the election's, passed on
    p.receive("b", Have("s", full=(D2,)), seeding(4))  # b speaking for s: dropped
    assert p.reports(seeding(4)).reported == frozenset()
    p.receive("s", Have("s", full=(D2,)), seeding(4))
    assert p.reports(seeding(4)).reported == {"s"}
    # A later term of ours starts counting afresh (members report to it again).
    p.on_view(seeding(6), 9.0)
    reports = p.reports(seeding(6))
    assert (reports.began, reports.previous, reports.reported) == (9.0, "s", frozenset())
