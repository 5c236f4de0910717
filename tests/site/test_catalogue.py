"""The catalogue data structure: objects, holders, failover rebuild, resume point, merge."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from frumitcache.site import Catalogue, ChunkHolders, Have, ObjectManifest

CS = 1 << 20


def d(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


def manifest(url: str, n: int, *, complete: bool = True, base: int = 0) -> ObjectManifest:
    return ObjectManifest(
        url,
        d(1000 + base) if complete else None,
        n * CS if complete else None,
        CS,
        tuple(d(base + i) for i in range(n)),
        complete,
    )


def test_chunks_arrive_in_order_and_the_object_completes() -> None:
    cat = Catalogue()
    assert cat.get("u") is None
    assert cat.add_chunk("u", 0, d(0), CS)
    assert cat.add_chunk("u", 1, d(1), CS)
    assert cat.add_chunk("u", 1, d(1), CS)  # repeated announcement: fine
    assert not cat.add_chunk("u", 1, d(9), CS)  # contradiction
    assert not cat.add_chunk("u", 3, d(3), CS)  # gap
    assert not cat.add_chunk("u", 2, d(2), CS * 2)  # other chunk size
    assert not cat.add_chunk("u", -1, d(1), CS)
    assert not cat.add_chunk("v", 1, d(1), CS)  # an object starts at chunk 0
    assert cat.get("v") is None
    partial = cat.get("u")
    assert partial == ObjectManifest("u", None, None, CS, (d(0), d(1)), False)
    cat.finish(manifest("u", 3))
    assert cat.get("u") == manifest("u", 3)
    assert not cat.add_chunk("u", 3, d(3), CS)  # complete objects do not grow
    assert cat.urls() == ["u"]
    assert len(cat) == 1
    cat.forget("u")
    assert cat.get("u") is None


def test_holders_full_and_partial_and_member_removal() -> None:
    cat = Catalogue()
    cat.add_holder(d(0), "a", full=False)
    cat.add_holder(d(0), "b")
    assert cat.holders(d(0)) == ChunkHolders(full=("b",), partial=("a",))
    cat.add_holder(d(0), "a")  # finished pulling it
    assert cat.holders(d(0)) == ChunkHolders(full=("a", "b"))
    cat.add_holder(d(0), "a", full=False)  # stale in-progress report: ignored
    assert cat.holders(d(0)) == ChunkHolders(full=("a", "b"))
    cat.add_holder(d(1), "a")
    cat.remove_member("a")
    assert cat.holders(d(0)) == ChunkHolders(full=("b",))
    assert cat.holders(d(1)) == ChunkHolders()
    cat.drop_holder(d(0), "b")
    assert cat.holders(d(0)) == ChunkHolders()


def test_info_lists_holders_per_chunk() -> None:
    cat = Catalogue()
    cat.put_manifest(manifest("u", 2))
    cat.add_holder(d(1), "b")
    info = cat.info("u", request_id=7, fetching=True)
    assert info.request_id == 7
    assert info.fetching
    assert info.manifest == manifest("u", 2)
    assert info.holders == (ChunkHolders(), ChunkHolders(full=("b",)))
    assert cat.info("nope").manifest is None


def test_failover_rebuild_and_resume_from_the_first_chunk_nobody_holds() -> None:
    # The old seeder fetched chunks 0..4 of 8 and died; members pulled some of them. A member's
    # manifest lists the chunks it holds: it is their holder without a per-chunk list.
    haves = [
        Have("a", objects=(manifest("u", 3, complete=False),), partial=(d(3),)),
        Have("b", objects=(manifest("u", 1, complete=False),), full=(d(3),)),  # d(3): bare
        Have("c", objects=(manifest("u", 5, complete=False),)),  # c is about to leave
    ]
    cat = Catalogue.rebuild(haves)
    assert cat.get("u") == manifest("u", 5, complete=False)  # the longest consistent list wins
    assert cat.holders(d(0)) == ChunkHolders(full=("a", "b", "c"))
    assert cat.holders(d(3)) == ChunkHolders(full=("b", "c"), partial=("a",))
    assert cat.resume_index("u", live={"a", "b", "c"}) == 5
    cat.remove_member("c")
    assert cat.resume_index("u", live={"a", "b"}) == 4
    assert cat.resume_index("u", live={"a"}) == 3  # partial holders do not count
    assert cat.resume_index("u", live=set()) == 0
    assert cat.resume_index("unknown", live={"a"}) == 0


def test_a_complete_manifest_in_a_have_makes_its_sender_holder_of_every_chunk() -> None:
    cat = Catalogue.rebuild([Have("a", objects=(manifest("u", 4),)), Have("b")])
    info = cat.info("u")
    assert info.manifest == manifest("u", 4)
    assert info.holders == (ChunkHolders(full=("a",)),) * 4
    assert cat.resume_index("u", live={"a"}) == 4
    # Another URL with a conflicting (different) complete object: ours is kept, and the
    # sender still holds the digests it listed (content addressing).
    cat.apply_have(Have("b", objects=(manifest("u", 2, base=50),)))
    assert cat.get("u") == manifest("u", 4)
    assert cat.holders(d(50)).full == ("b",)


def test_a_stepping_down_seeders_catalogue_names_no_holder() -> None:
    cat = Catalogue.rebuild([Have("old", objects=(manifest("u", 3),), held=False)])
    assert cat.get("u") == manifest("u", 3)
    assert all(h == ChunkHolders() for h in cat.info("u").holders)
    assert cat.resume_index("u", live={"old"}) == 0


@given(
    st.integers(1, 12),
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.integers(0, 12), st.booleans()),
        max_size=12,
    ),
)
def test_after_a_rebuild_every_reported_chunk_has_exactly_its_holders(
    n: int, reports: list[tuple[str, int, bool]]
) -> None:
    """Members hold prefixes (or all) of one object of ``n`` chunks; the rebuilt catalogue
    names each member as full holder of exactly the chunks it reported, and the resume point
    is the first chunk no live member holds."""
    haves, held = [], {node: 0 for node, _, _ in reports}
    for node, count, complete in reports:
        count = n if complete else min(count, n)
        haves.append(Have(node, objects=(manifest("u", count, complete=complete),)))
        held[node] = max(held[node], count)
    cat = Catalogue.rebuild(haves)
    for i in range(n):
        expected = tuple(sorted(node for node, count in held.items() if count > i))
        assert cat.holders(d(i)).full == expected
    live = set(held)
    entry = cat.get("u")
    known = len(entry.chunks) if entry is not None else 0
    assert cat.resume_index("u", live=live) == min(max(held.values(), default=0), known)


def test_conflicts_complete_wins_and_ours_is_kept() -> None:
    cat = Catalogue()
    cat.put_manifest(manifest("u", 2, complete=False))
    cat.put_manifest(manifest("u", 3, complete=False, base=50))  # disagrees: ours kept
    assert cat.get("u") == manifest("u", 2, complete=False)
    cat.put_manifest(manifest("u", 1, complete=False))  # shorter: ours kept
    assert cat.get("u") == manifest("u", 2, complete=False)
    cat.put_manifest(manifest("u", 4, base=50))  # complete beats incomplete
    assert cat.get("u") == manifest("u", 4, base=50)
    cat.put_manifest(manifest("u", 4))  # two complete: ours kept
    assert cat.get("u") == manifest("u", 4, base=50)


def test_merge_of_two_sides_of_a_partition() -> None:
    left, right = Catalogue(), Catalogue()
    left.put_manifest(manifest("x", 2))
    left.add_holder(d(0), "a")
    right.put_manifest(manifest("y", 1, base=10))
    right.put_manifest(manifest("x", 2, base=20))  # x changed at the origin meanwhile
    right.add_holder(d(10), "c")
    right.add_holder(d(0), "d", full=False)
    left.merge(right)
    assert left.urls() == ["x", "y"]
    assert left.get("x") == manifest("x", 2)  # ours kept
    assert left.holders(d(10)) == ChunkHolders(full=("c",))
    assert left.holders(d(0)) == ChunkHolders(full=("a",), partial=("d",))
    assert left.snapshot() == (manifest("x", 2), manifest("y", 1, base=10))


def test_churning_many_objects_keeps_every_table_bounded() -> None:
    """Finding 11 (site part): a seeder runs for weeks; its tables must not grow with them."""
    cat = Catalogue(max_objects=100, max_orphans=50)
    members = [f"m{i}" for i in range(8)]
    peak: dict[str, int] = {}
    for i in range(10_000):
        url = f"http://o/obj{i}"
        if i % 3 == 0:  # fetched by the seeder chunk by chunk, then finished
            for index in range(3):
                cat.add_chunk(url, index, d(10 * i + index), CS)
                cat.add_holder(d(10 * i + index), "seeder")
            cat.finish(manifest(url, 3, base=10 * i))
        else:  # announced complete by a member
            cat.put_manifest(manifest(url, 3, base=10 * i))
        for index in range(3):
            cat.add_holder(d(10 * i + index), members[i % 8], full=i % 2 == 0)
        cat.add_holder(d(-i - 1), members[(i + 1) % 8])  # a bare Have digest: an orphan
        if i % 7 == 0:
            cat.forget(f"http://o/obj{i - 5}")  # a failed or changed object
        if i % 500 == 0:
            cat.remove_member(members[i % 8])  # a member leaves
        for name, size in cat.table_sizes().items():
            peak[name] = max(peak.get(name, 0), size)
    assert peak["objects"] == 100
    assert peak["digests"] <= 100 * 3
    assert peak["full"] + peak["partial"] <= 100 * 3 * 2 + 50
    assert peak["orphans"] == 50
    # What is still listed still has its holders; the most recent entries are the ones kept.
    assert cat.get("http://o/obj9999") == manifest("http://o/obj9999", 3, base=99990)
    assert cat.get("http://o/obj0") is None
    assert cat.holders(d(99990)) == ChunkHolders(full=("seeder",), partial=("m7",))


def test_eviction_is_least_recently_used_and_shared_chunks_keep_their_holders() -> None:
    cat = Catalogue(max_objects=2)
    cat.put_manifest(manifest("a", 2))
    cat.put_manifest(manifest("b", 2))  # the same chunks under another URL
    cat.add_holder(d(0), "x")
    cat.get("a")  # a used again: b is now the oldest
    cat.put_manifest(manifest("c", 1, base=50))
    assert cat.urls() == ["a", "c"]
    assert cat.holders(d(0)).full == ("x",)  # still listed by a
    cat.forget("a")
    assert cat.holders(d(0)) == ChunkHolders()  # listed by nobody: forgotten
    assert cat.table_sizes()["digests"] == 1


def test_a_member_that_leaves_is_forgotten_as_a_holder() -> None:
    cat = Catalogue()
    cat.put_manifest(manifest("a", 2))
    cat.add_holder(d(0), "gone")
    cat.add_holder(d(1), "gone", full=False)
    cat.remove_member("gone")
    assert cat.table_sizes()["full"] == cat.table_sizes()["partial"] == 0
