"""Deterministic bytes of any size, made on the fly: a test origin serves tens of GiB without
holding them in memory or on disk, and a benchmark knows their SHA-256 without a copy.

The body is cut into aligned 16 KiB pieces; piece ``k`` is a 16-byte stamp (``seed``, ``k``)
followed by a slice of a 1 MiB pseudo-random pool drawn from ``seed``. Every piece, so every
chunk of any size a store cuts, differs from every other (a content-addressed store cannot fold
them), and a piece out of place changes the whole object's digest. Making them is a copy, not
a random draw per byte: a loaded 2-core box makes several GB/s, well above what it fetches.

A *sparse* body (``every`` > 0) is zeros except for ``run`` bytes of those pieces at the start of
each ``every`` bytes, like a disk or VM image: its zero chunks repeat, which a content-addressed
store holds once (a 50 GiB body with a 4 MiB run per GiB has 51 distinct 4 MiB chunks).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

PIECE = 16 * 1024
_STAMP = 16
_POOL = 1 << 20
_ZEROS = bytes(_POOL)
_ZERO_PIECE = bytes(PIECE)


@dataclass(frozen=True, slots=True)
class Generated:
    """``size`` bytes drawn from ``seed``; :meth:`read` any range of them. With ``every``
    > 0, only the first ``run`` bytes of each ``every`` are drawn, the rest are zeros."""

    size: int
    seed: int = 0
    every: int = 0
    run: int = 4 << 20

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")
        if self.every < 0 or (self.every and not 0 < self.run <= self.every):
            raise ValueError(f"want 0 < run <= every, got run {self.run}, every {self.every}")

    def _zeros_until(self, pos: int) -> int:
        """Where the zeros that start at ``pos`` end (``pos`` itself when it is drawn)."""
        if not self.every:
            return pos
        period, into = divmod(pos, self.every)
        return pos if into < self.run else (period + 1) * self.every

    def read(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes ``[start, end)`` (clipped to the size) in pieces of at most 16 KiB."""
        yield from self._read(start, end, PIECE)

    def _read(self, start: int, end: int, zeros: int) -> Iterator[bytes]:
        # ``zeros``: the longest piece of zeros to yield at once (hashing takes 1 MiB).
        pool = _pool(self.seed)
        end = min(end, self.size)
        pos = max(0, start)
        while pos < end:
            hole = min(self._zeros_until(pos), end)
            if hole > pos:
                take = min(hole - pos, zeros)
                yield _ZEROS if take == _POOL else _ZERO_PIECE if take == PIECE else bytes(take)
                pos += take
                continue
            k, into = divmod(pos, PIECE)
            at = (k * PIECE + _STAMP) % (_POOL - PIECE)
            piece = (
                self.seed.to_bytes(8, "big", signed=False)
                + k.to_bytes(8, "big")
                + pool[at : at + PIECE - _STAMP]
            )
            take = min(PIECE - into, end - pos)
            if self.every:  # a drawn run may end inside a piece
                run_end = pos - pos % self.every + self.run
                take = min(take, run_end - pos)
            yield piece[into : into + take]
            pos += take

    def sha256(self) -> str:
        """Hex SHA-256 of the whole body (a pass over it: about as fast as hashing)."""
        h = hashlib.sha256()
        for piece in self._read(0, self.size, _POOL):
            h.update(piece)
        return h.hexdigest()


_pools: dict[int, bytes] = {}


def _pool(seed: int) -> bytes:
    pool = _pools.get(seed)
    if pool is None:
        pool = _pools[seed] = random.Random(seed).randbytes(_POOL)
    return pool


def _quantity(text: str) -> int:
    for unit, value in {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * value
    return int(text)


def parse_spec(text: str) -> tuple[str, Generated]:
    """``PATH=SIZE[:SEED[:EVERY[:RUN]]]`` (the origin's ``--generate``) as ``(path,
    Generated)``; sizes in bytes or with a KiB/MiB/GiB suffix. EVERY makes the body sparse:
    ``/disk.img=50GiB:7:1GiB`` is zeros but for a 4 MiB drawn run at the start of each GiB."""
    path, eq, rest = text.partition("=")
    if not eq or not path.startswith("/"):
        raise ValueError(f"want /PATH=SIZE[:SEED[:EVERY[:RUN]]], got {text!r}")
    parts = rest.split(":")
    if len(parts) > 4:
        raise ValueError(f"want /PATH=SIZE[:SEED[:EVERY[:RUN]]], got {text!r}")
    size = _quantity(parts[0])
    seed = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    sparse = {"every": _quantity(parts[2])} if len(parts) > 2 else {}
    if len(parts) > 3:
        sparse["run"] = _quantity(parts[3])
    return path, Generated(size, seed, **sparse)


__all__ = ["PIECE", "Generated", "parse_spec"]
