"""Payload totals of a swarm's chunk torrents, kept across their removal.

A torrent's counters die with it, and :class:`~frumitcache.swarm.Swarm` removes torrents often
(evicted chunks, a seed that failed): each removal folds its counters in here first, and the
sweep folds chunks the store no longer holds into one pair, so memory follows the store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container, Iterable, Mapping

from frumitcache.swarm._lt import ChunkStatistics, SwarmStatistics, Torrent


class SwarmTotals:
    """Uploaded and downloaded payload bytes per chunk, of torrents already removed."""

    def __init__(self) -> None:
        self._base: dict[bytes, tuple[int, int]] = {}  # totals of torrents already removed
        self._gone = (0, 0)  # totals of chunks the store no longer holds (folded by fold)
        self.hash_failures = 0

    def account(self, t: Torrent) -> None:
        """Keep ``t``'s counters: it is about to be removed from the session."""
        with contextlib.suppress(Exception):
            s = t.handle.status()
            up, down = self._base.get(t.digest, (0, 0))
            self._base[t.digest] = (
                up + int(s.total_payload_upload),
                down + int(s.total_payload_download),
            )

    def fold(self, live: Container[bytes]) -> None:
        """Fold the totals of chunks not in ``live`` into one pair (they are gone)."""
        for d in [d for d in self._base if d not in live]:
            up, down = self._base.pop(d)
            self._gone = (self._gone[0] + up, self._gone[1] + down)

    def statistics(
        self, torrents: Mapping[bytes, Torrent], banned: Iterable[str], corrupt: Iterable[bytes]
    ) -> SwarmStatistics:
        """Totals since start: the removed torrents' plus those of ``torrents`` now."""
        chunks: dict[bytes, ChunkStatistics] = {}
        for digest, (up, down) in self._base.items():
            chunks[digest] = ChunkStatistics(up, down, False)
        for digest, t in torrents.items():
            up, down = self._base.get(digest, (0, 0))
            with contextlib.suppress(Exception):
                s = t.handle.status()
                up += int(s.total_payload_upload)
                down += int(s.total_payload_download)
            chunks[digest] = ChunkStatistics(up, down, t.seeding)
        return SwarmStatistics(
            uploaded=self._gone[0] + sum(c.uploaded for c in chunks.values()),
            downloaded=self._gone[1] + sum(c.downloaded for c in chunks.values()),
            chunks=chunks,
            hash_failures=self.hash_failures,
            banned_peers=tuple(sorted(banned)),
            corrupt_chunks=tuple(sorted(corrupt)),
        )
