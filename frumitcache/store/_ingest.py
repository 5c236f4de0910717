"""Putting bytes into the store: chunks (from memory or a finished file), their references
from partial objects, and the step that makes an object complete.

The order that keeps a power cut harmless: a chunk file is written to ``tmp/``, fsynced,
renamed into ``chunks/``, its directory fsynced, and only then is its row committed; a complete
object's rows are committed in one transaction after all its chunk rows exist. Whatever fails
(disk full, digest mismatch) leaves no partial state marked complete.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from frumitcache.errors import DigestMismatchError, NotInStoreError, StoreError, StoreFullError
from frumitcache.store._files import (
    BytesLike,
    fsync_dir,
    fsync_file,
    hash_file,
    is_full_error,
    remove_quietly,
    write_temp,
    xxh3,
    zeros_digest,
)
from frumitcache.store._manifest import Manifest, PartialSpec
from frumitcache.store._refs import ChunkRefs


class Ingest(ChunkRefs):
    def ingest(
        self,
        data: BytesLike,
        digest: bytes | None = None,
        *,
        ref: tuple[PartialSpec, int] | None = None,
        object_hash: Any = None,
    ) -> bytes:
        """Store ``data`` as a chunk (verifying ``digest`` if given); returns its digest.

        ``ref`` appends it to a partial object at an index; ``object_hash`` (a hashlib
        object) is updated with the data in parallel with the chunk's own hashing.
        """
        pending = self.hash_pool.submit(object_hash.update, data) if object_hash else None
        try:
            sha = hashlib.sha256(data).digest()
            if digest is not None and sha != digest:
                raise DigestMismatchError(f"chunk hashes to {sha.hex()}, expected {digest.hex()}")
            if len(data) == 0:
                raise StoreError("an empty chunk cannot be stored")
            if ref is None:
                self._fresh[sha] = time.monotonic()
            self._commit_chunk(sha, xxh3(data), len(data), ref, data=data)
        finally:
            if pending is not None:
                pending.result()
        return sha

    def adopt(
        self,
        path: Path,
        digest: bytes,
        verified_xxh3: bytes | None = None,
        root: bytes | None = None,
    ) -> None:
        """Verify a finished file and move it into the store (it must be on our file system);
        ``root`` (the swarm's v2 pieces root) is recorded in the same commit.

        ``verified_xxh3``: the caller already verified the file's bytes against an
        authenticated hash (the swarm: every block against the manifest's v2 pieces root) and
        computed its xxh3 in the same pass, so it is not hashed again (hash once per node).
        """
        if verified_xxh3 is not None:
            sha, xx = digest, verified_xxh3
            try:
                size = os.stat(path).st_size
            except OSError as exc:
                raise StoreError(f"cannot stat {path}: {exc.strerror}") from None
        else:
            try:
                sha, xx, size = hash_file(path)
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc.strerror}") from None
        if sha != digest:
            raise DigestMismatchError(f"{path} hashes to {sha.hex()}, expected {digest.hex()}")
        if size == 0:
            raise StoreError("an empty chunk cannot be stored")
        self._fresh[sha] = time.monotonic()
        try:
            fsync_file(path)
        except OSError as exc:
            raise StoreError(f"cannot fsync {path}: {exc.strerror}") from None
        self._commit_chunk(sha, xx, size, None, source=path, root=root)

    def _commit_chunk(
        self,
        sha: bytes,
        xx: bytes,
        size: int,
        ref: tuple[PartialSpec, int] | None,
        *,
        data: BytesLike | None = None,
        source: Path | None = None,
        root: bytes | None = None,
    ) -> None:
        """Put a verified chunk in place (from ``data`` or by renaming ``source``), then
        commit its row, its ``root`` and the partial-object reference ``ref``.

        A full-size chunk of zeros (a disk image's empty stretches) is written as a hole:
        a client's copy sees it as one (``SEEK_DATA``) and keeps its file sparse."""
        final = self.path_of(sha)
        if self.chunk_size_of(sha) is not None:
            # Already stored (same bytes in another object): just reference it.
            with self.index.write("reference a chunk") as tx:
                if tx.has_chunk(sha):
                    tx.touch_chunk(sha, time.time())
                    if root is not None:
                        tx.set_chunk_root(sha, root)
                    if ref is not None:
                        self._ref_partial(tx, ref[0], ref[1], sha)
                    if source is not None:
                        tx.after_commit.append(lambda: remove_quietly(source))
                    return
        zeros = size == self.chunk_size and sha == zeros_digest(size)
        if zeros or source is None:
            temp = write_temp(self.tmp_dir, data if data is not None else bytes(size), zeros=zeros)
        else:
            temp = source
        renamed = False
        try:
            with self.index.write("record a chunk") as tx:
                if source is not None and temp != source:
                    tx.after_commit.append(lambda: remove_quietly(source))
                if tx.has_chunk(sha):
                    tx.after_commit.append(lambda: remove_quietly(temp))
                else:
                    try:
                        os.rename(temp, final)
                        renamed = True
                        fsync_dir(final.parent)
                    except OSError as exc:
                        if is_full_error(exc):
                            raise StoreFullError(
                                f"no room to store chunk {sha.hex()} in {self.root}: {exc.strerror}"
                            ) from None
                        raise StoreError(f"cannot move {temp} to {final}: {exc.strerror}") from None
                    tx.add_chunk(sha, size, xx, time.time())
                    tx.after_commit.append(lambda: self._add_used(size))
                if root is not None:
                    tx.set_chunk_root(sha, root)
                if ref is not None:
                    self._ref_partial(tx, ref[0], ref[1], sha)
        except BaseException:
            if renamed:
                remove_quietly(final)  # the row never committed: nothing refers to the file
            elif temp != source:
                remove_quietly(temp)
            raise

    def _add_used(self, n: int) -> None:
        self.used += n

    def add_ref(self, spec: PartialSpec, idx: int, digest: bytes) -> int:
        """Append an existing chunk to a partial object; returns the chunk's size."""
        with self.index.write("append a chunk") as tx:
            size = tx.chunk_size(digest)
            if size is None:
                raise NotInStoreError(f"chunk {digest.hex()} is not in the store")
            self._ref_partial(tx, spec, idx, digest)
            tx.touch_chunk(digest, time.time())
        return size

    def finish(self, spec: PartialSpec, manifest: Manifest) -> None:
        """Record a complete object and map its key; drops the partial rows."""
        with self.index.write("record a complete object") as tx:
            for chunk in set(manifest.chunks):
                if not tx.has_chunk(chunk):
                    raise NotInStoreError(
                        f"chunk {chunk.hex()} of {spec.key} vanished before the object was complete"
                    )
            tx.add_object(manifest, time.time())
            tx.map_key(spec.key, manifest.digest)
            tx.delete_partial(spec.key)

    def map_key(self, key: str, digest: bytes) -> None:
        with self.index.write("map a key") as tx:
            if not tx.has_object(digest):
                raise NotInStoreError(f"object {digest.hex()} is not (completely) in the store")
            tx.map_key(key, digest)
