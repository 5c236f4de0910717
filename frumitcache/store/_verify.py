"""Reading chunks back, checked: every read, and the background scrub that re-reads them all.

A chunk is checked against the xxh3 its row holds (fast); when that disagrees SHA-256 settles
it: the bytes are good (the row's checksum is repaired) or the chunk is removed and the objects
that used it are demoted to resumable partials (``_refs.py``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xxhash

from frumitcache.errors import CorruptChunkError, NotInStoreError, StoreError
from frumitcache.store._files import all_hole, hash_file, sha256_fd, xxh3, xxh3_fd, zeros_digest
from frumitcache.store._manifest import ScrubReport
from frumitcache.store._refs import ChunkRefs


@dataclass(slots=True)
class ScrubCounts:
    checked: int = 0
    bytes: int = 0
    corrupt: int = 0
    missing: int = 0
    repaired: int = 0
    objects: int = 0

    def report(self) -> ScrubReport:
        return ScrubReport(
            self.checked, self.bytes, self.corrupt, self.missing, self.repaired, self.objects
        )


class Verify(ChunkRefs):
    def read_chunk(self, digest: bytes) -> bytes:
        """The chunk's bytes, checked against the stored xxh3 (SHA-256 when that disagrees)."""
        size, want = self._chunk_check(digest)
        try:
            data = self.path_of(digest).read_bytes()
        except FileNotFoundError:
            raise self._missing(digest) from None
        except OSError as exc:
            raise StoreError(f"cannot read chunk {digest.hex()}: {exc.strerror}") from None
        self._judge(digest, size, want, len(data), xxh3(data), lambda: hashlib.sha256(data))
        return data

    def open_chunk(self, digest: bytes) -> int:
        """A read-only descriptor of the chunk's file, whose bytes, read through this very
        descriptor, matched the chunk's xxh3 just now (SHA-256 when that disagrees).

        This is what a local client may be handed (SCM_RIGHTS) instead of the bytes: chunk
        files are never written in place (temp file, fsync, rename; a bad chunk is unlinked),
        so the checked bytes are the bytes behind the descriptor; bit rot since the chunk was
        stored is caught here like on every read. A corrupt chunk is removed and
        CorruptChunkError raised. The caller owns (closes) the descriptor."""
        size, want = self._chunk_check(digest)
        try:
            fd = os.open(self.path_of(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self._missing(digest) from None
        except OSError as exc:
            raise StoreError(f"cannot open chunk {digest.hex()}: {exc.strerror}") from None
        try:
            if self._is_hole(digest, size, fd):
                return fd
            xx, length = xxh3_fd(fd)
            self._judge(digest, size, want, length, xx, lambda: sha256_fd(fd))
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot read chunk {digest.hex()}: {exc.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _is_hole(self, digest: bytes, size: int, fd: int) -> bool:
        """The chunk of zeros kept as a hole, and its file still is one hole of its length:
        it reads as exactly its bytes with nothing to rot, so it needs no read. A disk image's
        12,750 zero chunks were 50 GiB of xxh3 per pull (0.39 CPU-s/GB at the member)."""
        return size == self.chunk_size and digest == zeros_digest(size) and all_hole(fd, size)

    def _chunk_check(self, digest: bytes) -> tuple[int, bytes]:
        with self.index.read() as tx:
            check = tx.chunk_check(digest)
        if check is None:
            raise NotInStoreError(f"chunk {digest.hex()} is not in the store")
        return check

    def _missing(self, digest: bytes) -> StoreError:
        if self.chunk_size_of(digest) is None:
            return NotInStoreError(f"chunk {digest.hex()} was just evicted")
        self.remove_chunks([digest])
        return CorruptChunkError(f"chunk {digest.hex()} is missing from disk")

    def _judge(
        self,
        digest: bytes,
        size: int,
        want: bytes,
        length: int,
        xx: bytes,
        sha: Callable[[], Any],
    ) -> None:
        """Accept a chunk read back as ``length`` bytes hashing to ``xx``; ``sha()`` (a
        hashlib object) settles an xxh3 disagreement. A bad chunk is removed and raised."""
        if length == size and xx == want:
            return
        if length == size and sha().digest() == digest:
            self._repair_checksum(digest, xx)
            return
        self.remove_chunks([digest])
        raise CorruptChunkError(
            f"chunk {digest.hex()} is corrupt on disk ({length} of {size} bytes, "
            "checksum mismatch); removed"
        )

    # --- scrub -----------------------------------------------------------------------------

    def scrub_list(self) -> list[tuple[bytes, int, bytes]]:
        with self.index.read() as tx:
            return tx.chunk_checks()

    def scrub_one(self, digest: bytes, size: int, want: bytes, counts: ScrubCounts) -> None:
        path = self.path_of(digest)
        xx = xxhash.xxh3_64()
        got = 0
        try:
            with path.open("rb", buffering=0) as f:
                while block := f.read(1 << 20):
                    xx.update(block)
                    got += len(block)
        except FileNotFoundError:
            if self.chunk_size_of(digest) is None:
                return  # evicted meanwhile
            counts.missing += 1
            counts.objects += self.remove_chunks([digest])
            return
        counts.checked += 1
        counts.bytes += got
        if got == size and xx.digest() == want:
            return
        if got != size:
            counts.missing += 1
            counts.objects += self.remove_chunks([digest])
            return
        sha, new_xx, _ = hash_file(path)
        if sha == digest:
            counts.repaired += 1
            self._repair_checksum(digest, new_xx)
            return
        counts.corrupt += 1
        counts.objects += self.remove_chunks([digest])

    @staticmethod
    def new_scrub_counts() -> ScrubCounts:
        return ScrubCounts()

    @staticmethod
    def scrub_report(c: ScrubCounts) -> ScrubReport:
        return c.report()
