"""The value types of the store: an object's manifest, a partial object's description, store
statistics and the reports of recovery and scrub.

A :class:`Manifest` is what the site catalogue hands around: the object's SHA-256, its size,
the chunk size it was cut with and the SHA-256 of every chunk in order. It holds no paths and
no store state, so it can travel over the wire (:meth:`Manifest.to_dict`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from frumitcache._digest import DIGEST_LEN, is_hex_digest

EMPTY_DIGEST = hashlib.sha256(b"").digest()


def digest_of_key(key: str) -> bytes | None:
    """The object digest a ``sha256:<hex>`` key names, else None."""
    if key.startswith("sha256:") and is_hex_digest(key[7:].lower()):
        return bytes.fromhex(key[7:])
    return None


def chunk_count(size: int, chunk_size: int) -> int:
    """Number of chunks an object of ``size`` bytes is cut into (zero for an empty object)."""
    return -(-size // chunk_size)


@dataclass(frozen=True, slots=True)
class Manifest:
    """Object digest, size and the ordered chunk digests of one complete object."""

    digest: bytes
    size: int
    chunk_size: int
    chunks: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.digest) != DIGEST_LEN or any(len(c) != DIGEST_LEN for c in self.chunks):
            raise ValueError("manifest digests must be 32-byte SHA-256 values")
        if self.chunk_size <= 0 or self.size < 0:
            raise ValueError(f"bad manifest sizes: size={self.size} chunk_size={self.chunk_size}")
        if len(self.chunks) != chunk_count(self.size, self.chunk_size):
            raise ValueError(
                f"manifest of {self.size} bytes in chunks of {self.chunk_size} needs "
                f"{chunk_count(self.size, self.chunk_size)} chunks, has {len(self.chunks)}"
            )

    def chunk_len(self, i: int) -> int:
        """Length in bytes of chunk ``i`` (only the last one may be short)."""
        n = len(self.chunks)
        if not 0 <= i < n:
            raise IndexError(f"chunk {i} out of range (object has {n} chunks)")
        if i < n - 1:
            return self.chunk_size
        return self.size - self.chunk_size * (n - 1)

    def chunk_offset(self, i: int) -> int:
        """Byte offset of chunk ``i`` in the object."""
        return i * self.chunk_size

    @property
    def hex(self) -> str:
        return self.digest.hex()

    def to_dict(self) -> dict[str, Any]:
        """A msgpack-friendly form (bytes stay bytes)."""
        return {
            "digest": self.digest,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Rebuild from :meth:`to_dict`; raises ``ValueError`` on anything malformed."""
        try:
            digest, size, chunk_size, chunks = (
                data["digest"],
                data["size"],
                data["chunk_size"],
                data["chunks"],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed manifest: {exc!r}") from None
        if (
            not isinstance(digest, bytes)
            or not isinstance(size, int)
            or not isinstance(chunk_size, int)
            or not isinstance(chunks, list | tuple)
            or not all(isinstance(c, bytes) for c in chunks)
        ):
            raise ValueError("malformed manifest: wrong field types")
        return cls(digest, size, chunk_size, tuple(chunks))


@dataclass(frozen=True, slots=True)
class PartialSpec:
    """What a partial (resumable) object under ``key`` was started as."""

    key: str
    chunk_size: int
    expected_digest: bytes | None
    expected_size: int | None


@dataclass(slots=True)
class PartialState:
    """A partial object as the index holds it: the usable prefix of its chunks."""

    spec: PartialSpec
    chunks: list[bytes] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    rows: int = 0  # partial_chunks rows in the index (more than len(chunks) after damage)


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of the store's size and use (see :meth:`Store.stats`)."""

    objects: int
    partial_objects: int
    chunks: int
    bytes_used: int
    pinned_bytes: int
    max_bytes: int
    free_disk_bytes: int
    hits: int
    misses: int
    evicted_objects: int
    evicted_bytes: int


@dataclass(frozen=True, slots=True)
class ScrubReport:
    """What one scrub found (see :meth:`Store.scrub`)."""

    chunks_checked: int
    bytes_checked: int
    corrupt_chunks: int  # content no longer hashes to its digest (removed)
    missing_chunks: int  # file gone or of the wrong length (removed from the index)
    repaired_checksums: int  # xxh3 in the index was wrong but SHA-256 proved the bytes good
    objects_affected: int  # complete objects demoted to partial because of removed chunks

    @property
    def damage(self) -> int:
        return self.corrupt_chunks + self.missing_chunks


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :meth:`Store.open` repaired after a crash (all zero after a clean shutdown)."""

    temp_files_removed: int
    orphans_adopted: int  # chunk files renamed in whose row never committed, kept (hash ok)
    orphans_deleted: int  # such files that did not hash to their name
    rows_dropped: int  # index rows whose chunk file was missing or the wrong length
