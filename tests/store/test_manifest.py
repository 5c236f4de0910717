"""Manifest: chunk lengths, validation and the wire form."""

from __future__ import annotations

import hashlib

import pytest

from frumitcache.store import Manifest

D = hashlib.sha256(b"x").digest()


def test_chunk_len_last_short() -> None:
    m = Manifest(D, 10, 4, (D, D, D))
    assert [m.chunk_len(i) for i in range(3)] == [4, 4, 2]
    assert m.chunk_offset(2) == 8
    with pytest.raises(IndexError):
        m.chunk_len(3)


def test_exact_multiple_and_empty() -> None:
    assert Manifest(D, 8, 4, (D, D)).chunk_len(1) == 4
    empty = Manifest(hashlib.sha256(b"").digest(), 0, 4, ())
    assert empty.chunks == ()


@pytest.mark.parametrize(
    ("size", "chunk_size", "n"), [(10, 4, 2), (10, 4, 4), (0, 4, 1), (4, 4, 0)]
)
def test_inconsistent_chunk_count_rejected(size: int, chunk_size: int, n: int) -> None:
    with pytest.raises(ValueError, match="chunks"):
        Manifest(D, size, chunk_size, (D,) * n)


def test_bad_digest_rejected() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        Manifest(b"short", 1, 4, (D,))
    with pytest.raises(ValueError, match="32-byte"):
        Manifest(D, 1, 4, (b"short",))


def test_dict_round_trip_and_rejects_garbage() -> None:
    m = Manifest(D, 10, 4, (D, D, D))
    assert Manifest.from_dict(m.to_dict()) == m
    with pytest.raises(ValueError, match="malformed"):
        Manifest.from_dict({"digest": D})
    with pytest.raises(ValueError, match="malformed"):
        Manifest.from_dict({"digest": "x", "size": 1, "chunk_size": 4, "chunks": [D]})
