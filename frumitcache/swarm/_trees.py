"""The v2 trees (pieces root and piece layer) of stored chunks, which seeding needs and the
store does not keep: computed in one pass over a chunk file, checked, kept in memory.

:func:`downloaded_tree` does the one read-back pass over a chunk libtorrent downloaded.
A chunk whose file fails the check is remembered as corrupt (the swarm's statistics show it).
"""

from __future__ import annotations

from pathlib import Path

import trio

from frumitcache.errors import DigestMismatchError, NotInStoreError
from frumitcache.swarm._merkle import (
    MerkleTree,
    file_tree,
    file_xxh3,
    piece_size_for,
    tree_from_layer,
)
from frumitcache.swarm._storeapi import ChunkStore


class ChunkTrees:
    """Trees by chunk digest, computed on demand from the store's files."""

    def __init__(self, store: ChunkStore) -> None:
        self._store = store
        self._trees: dict[bytes, MerkleTree] = {}
        self.corrupt: set[bytes] = set()  # chunks whose store file failed the check

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._trees

    def digests(self) -> list[bytes]:
        return list(self._trees)

    def forget(self, digest: bytes) -> None:
        self._trees.pop(digest, None)

    def remember(self, digest: bytes, tree: MerkleTree) -> None:
        """Keep a chunk's tree (computed while its bytes were hashed anyway)."""
        self._trees[digest] = tree

    async def of_stored(self, digest: bytes) -> MerkleTree:
        """The tree of a stored chunk; :class:`NotInStoreError` if it is not held."""
        cached = self._trees.get(digest)
        if cached is not None:
            return cached
        if not self._store.has_chunk(digest):
            raise NotInStoreError(f"chunk {digest.hex()} is not in the store")
        return await self.of_file(digest, self._store.chunk_path(digest))

    async def of_file(self, digest: bytes, path: Path, *, verified: bool = False) -> MerkleTree:
        """The tree of chunk ``digest`` from its file at ``path``, checked against the stored
        pieces root, or (none yet, and not ``verified`` by the store) against ``digest``."""
        cached = self._trees.get(digest)
        if cached is not None:
            return cached
        # One pass over the file for the piece layer. A known pieces root checks the bytes as
        # well as their SHA-256 would: no second hash.
        size = (await trio.Path(path).stat()).st_size
        known = self._store.chunk_root(digest)
        actual, tree, _ = await trio.to_thread.run_sync(
            lambda: file_tree(path, piece_size_for(size), sha=known is None and not verified)
        )
        if known is None and not verified and actual != digest:
            self.corrupt.add(digest)
            raise DigestMismatchError(
                f"store file of chunk {digest.hex()} hashes to {actual.hex()}"
            )
        if known is None:
            self._store.set_chunk_root(digest, tree.root)
        elif known != tree.root:
            self.corrupt.add(digest)
            raise DigestMismatchError(f"store file of chunk {digest.hex()} does not match its root")
        self._trees[digest] = tree
        return tree


def downloaded_tree(
    digest: bytes, path: Path, size: int, root: bytes, piece_layer: bytes | None
) -> tuple[MerkleTree, bytes]:
    """The tree and the xxh3 of a chunk libtorrent downloaded to ``path`` (blocking: run it in
    a worker thread, e.g. as the store's ``verify`` step of adopting the file).

    libtorrent checked every block against ``root`` (from the site-authenticated manifest,
    which binds it to ``digest``); this one read-back pass yields the piece layer for seeding
    and the xxh3 for the scrub, and re-checks the root on what reached the disk. No whole-file
    SHA-256: each byte is hashed once here. :class:`DigestMismatchError` if the root differs.
    """
    if piece_layer is not None:
        # The layer handed to libtorrent was checked against ``root`` and every piece against
        # the layer: only the scrub's xxh3 is left to compute.
        try:
            tree = tree_from_layer(size, root, piece_layer)
        except ValueError as exc:
            raise DigestMismatchError(f"chunk {digest.hex()}: {exc}") from None
        xx = file_xxh3(path)
    else:
        _, tree, xx = file_tree(path, piece_size_for(size), sha=False)
    if tree.root != root:
        raise DigestMismatchError(f"chunk {digest.hex()}: downloaded bytes miss the root")
    return tree, xx
