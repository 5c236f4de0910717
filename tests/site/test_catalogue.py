"""The catalogue data structure: objects, holders, failover rebuild, resume point, merge."""

from __future__ import annotations

import hashlib

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
    # The old seeder fetched chunks 0..4 of 8 and died; members pulled some of them.
    seen_so_far = manifest("u", 5, complete=False)
    haves = [
        Have("a", objects=(seen_so_far,), full=(d(0), d(1), d(2)), partial=(d(3),)),
        Have("b", objects=(manifest("u", 3, complete=False),), full=(d(0), d(3))),
        Have("c", full=(d(4),)),  # c holds chunk 4 but is about to leave
    ]
    cat = Catalogue.rebuild(haves)
    assert cat.get("u") == seen_so_far  # the longer consistent chunk list wins
    assert cat.resume_index("u", live={"a", "b", "c"}) == 5
    cat.remove_member("c")
    assert cat.resume_index("u", live={"a", "b"}) == 4
    assert cat.resume_index("u", live={"a"}) == 3  # partial holders do not count
    assert cat.resume_index("u", live=set()) == 0
    assert cat.resume_index("unknown", live={"a"}) == 0


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
