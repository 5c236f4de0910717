"""Deterministic bytes of any size, made on the fly: a test origin serves tens of GiB without
holding them in memory or on disk, and a benchmark knows their SHA-256 without a copy.

The body is cut into aligned 16 KiB pieces; piece ``k`` is a 16-byte stamp (``seed``, ``k``)
followed by a slice of a 1 MiB pseudo-random pool drawn from ``seed``. Every piece, so every
chunk of any size a store cuts, differs from every other (a content-addressed store cannot fold
them), and a piece out of place changes the whole object's digest. Making them is a copy, not
a random draw per byte: a loaded 2-core box makes several GB/s, well above what it fetches.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

PIECE = 16 * 1024
_STAMP = 16
_POOL = 1 << 20


@dataclass(frozen=True, slots=True)
class Generated:
    """``size`` bytes drawn from ``seed``; :meth:`read` any range of them."""

    size: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")

    def read(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes ``[start, end)`` (clipped to the size) in pieces of at most 16 KiB."""
        pool = _pool(self.seed)
        end = min(end, self.size)
        pos = max(0, start)
        while pos < end:
            k, into = divmod(pos, PIECE)
            at = (k * PIECE + _STAMP) % (_POOL - PIECE)
            piece = (
                self.seed.to_bytes(8, "big", signed=False)
                + k.to_bytes(8, "big")
                + pool[at : at + PIECE - _STAMP]
            )
            take = min(PIECE - into, end - pos)
            yield piece[into : into + take]
            pos += take

    def sha256(self) -> str:
        """Hex SHA-256 of the whole body (a pass over it: about as fast as hashing)."""
        h = hashlib.sha256()
        for piece in self.read(0, self.size):
            h.update(piece)
        return h.hexdigest()


_pools: dict[int, bytes] = {}


def _pool(seed: int) -> bytes:
    pool = _pools.get(seed)
    if pool is None:
        pool = _pools[seed] = random.Random(seed).randbytes(_POOL)
    return pool


def parse_spec(text: str) -> tuple[str, Generated]:
    """``PATH=SIZE[:SEED]`` (the origin's ``--generate``) as ``(path, Generated)``; SIZE in
    bytes or with a KiB/MiB/GiB suffix."""
    path, eq, rest = text.partition("=")
    if not eq or not path.startswith("/"):
        raise ValueError(f"want /PATH=SIZE[:SEED], got {text!r}")
    size_text, _, seed_text = rest.partition(":")
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    factor = 1
    for unit, value in units.items():
        if size_text.endswith(unit):
            size_text, factor = size_text[: -len(unit)], value
            break
    return path, Generated(int(size_text) * factor, int(seed_text or 0))


__all__ = ["PIECE", "Generated", "parse_spec"]
