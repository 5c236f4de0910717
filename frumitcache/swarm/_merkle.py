"""BEP 52 merkle trees in pure Python: the v2 "pieces root" and "piece layer" of one file.

A v2 torrent names each file by the root of a SHA-256 tree over its 16 KiB blocks; leaves past
the end of the file are 32 zero bytes, up to the next power of two. The root does not depend on
the piece size, so a chunk's root is computed once (when its bytes are hashed anyway) and kept
in the store; the torrent is then derived from (digest, size, root) with no libtorrent hashing.
The piece layer (the tree level whose nodes cover one piece each) is what a seeder hands to
leechers; it is computed in the same pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import xxhash

BLOCK = 16 * 1024
_ZERO = bytes(32)


def _pair(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(a + b).digest()


def _pad_hash(height: int) -> bytes:
    """The root of a subtree of 2**height zero leaves."""
    h = _ZERO
    for _ in range(height):
        h = _pair(h, h)
    return h


def _next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def piece_size_for(size: int) -> int:
    """The piece size of a chunk of ``size`` bytes: a power of two ≥ 16 KiB, at most 32 pieces.

    It depends only on the chunk's own size, so every node derives the same torrent; 32 pieces
    give leechers enough distinct pieces to trade with each other.
    """
    return max(BLOCK, _next_pow2(-(-size // 32)))


@dataclass(frozen=True, slots=True)
class MerkleTree:
    """The parts of a file's v2 tree a torrent needs."""

    size: int
    piece_size: int
    root: bytes
    #: Concatenated piece hashes; empty when the file fits in one piece (BEP 52 omits it).
    piece_layer: bytes


class MerkleHasher:
    """Feed a file's bytes in any slicing; ``finish()`` gives its :class:`MerkleTree`."""

    def __init__(self, piece_size: int) -> None:
        if piece_size < BLOCK or piece_size & (piece_size - 1):
            raise ValueError(f"piece size must be a power of two >= 16 KiB, got {piece_size}")
        self._piece_size = piece_size
        self._leaves: list[bytes] = []
        self._partial = bytearray()
        self._size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self._size += len(view)
        if self._partial:
            need = BLOCK - len(self._partial)
            self._partial += view[:need]
            view = view[need:]
            if len(self._partial) < BLOCK:
                return
            self._leaves.append(hashlib.sha256(self._partial).digest())
            self._partial.clear()
        full = len(view) - len(view) % BLOCK
        sha = hashlib.sha256
        self._leaves.extend(sha(view[i : i + BLOCK]).digest() for i in range(0, full, BLOCK))
        self._partial += view[full:]

    def finish(self) -> MerkleTree:
        leaves = list(self._leaves)
        if self._partial:
            leaves.append(hashlib.sha256(self._partial).digest())
        if not leaves:
            return MerkleTree(self._size, self._piece_size, _ZERO, b"")
        blocks_per_piece = self._piece_size // BLOCK
        # Reduce each piece's blocks to the piece hash; a short last piece is padded with zero
        # leaves to a full piece, as BEP 52 pads the tree.
        level_height = blocks_per_piece.bit_length() - 1
        width = _next_pow2(len(leaves))
        if width <= blocks_per_piece:
            # The whole file sits inside one piece: no piece layer, root over its own leaves.
            return MerkleTree(self._size, self._piece_size, _reduce(leaves, width), b"")
        pieces = [
            _reduce(leaves[i : i + blocks_per_piece], blocks_per_piece)
            for i in range(0, len(leaves), blocks_per_piece)
        ]
        root = _reduce(pieces, width // blocks_per_piece, pad=_pad_hash(level_height))
        return MerkleTree(self._size, self._piece_size, root, b"".join(pieces))


def _reduce(nodes: list[bytes], width: int, *, pad: bytes = _ZERO) -> bytes:
    """The root of a tree over ``nodes`` padded with ``pad`` to ``width`` (a power of two)."""
    level = nodes + [pad] * (width - len(nodes))
    while len(level) > 1:
        level = [_pair(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def tree_from_layer(size: int, root: bytes, piece_layer: bytes) -> MerkleTree:
    """Check a piece layer received from a peer against ``root``; the tree, or ValueError.

    Chunks of one piece have no layer: only the root (checked later against the bytes).
    """
    piece_size = piece_size_for(size)
    num_pieces = -(-size // piece_size)
    if len(root) != 32:
        raise ValueError("a pieces root is 32 bytes")
    if num_pieces <= 1:
        if piece_layer:
            raise ValueError("a one-piece chunk has no piece layer")
        return MerkleTree(size, piece_size, root, b"")
    if len(piece_layer) != 32 * num_pieces:
        raise ValueError(f"piece layer of {len(piece_layer)} bytes for {num_pieces} pieces")
    blocks_per_piece = piece_size // BLOCK
    width = _next_pow2(-(-size // BLOCK)) // blocks_per_piece
    pieces = [piece_layer[i : i + 32] for i in range(0, len(piece_layer), 32)]
    pad = _pad_hash(blocks_per_piece.bit_length() - 1)
    if _reduce(pieces, width, pad=pad) != root:
        raise ValueError("piece layer does not hash to the pieces root")
    return MerkleTree(size, piece_size, root, piece_layer)


def merkle_tree(data: bytes | bytearray | memoryview, piece_size: int | None = None) -> MerkleTree:
    """The tree of ``data`` at ``piece_size`` (default: :func:`piece_size_for` its length)."""
    hasher = MerkleHasher(piece_size or piece_size_for(len(data)))
    hasher.update(data)
    return hasher.finish()


def file_tree(path: Path, piece_size: int, *, sha: bool) -> tuple[bytes, MerkleTree, bytes]:
    """The v2 merkle tree and xxh3 of a file in one pass (run in a worker thread), and its
    SHA-256 when ``sha`` (else b""): a file checked against a known pieces root needs no
    second hash.

    Reads into one reused buffer and hashes memoryview slices: no per-block copies.
    """
    whole = hashlib.sha256() if sha else None
    xx = xxhash.xxh3_64()
    tree = MerkleHasher(piece_size)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            block = view[:n]
            if whole is not None:
                whole.update(block)
            xx.update(block)
            tree.update(block)
    return (whole.digest() if whole is not None else b""), tree.finish(), xx.digest()


def file_xxh3(path: Path) -> bytes:
    xx = xxhash.xxh3_64()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            xx.update(view[:n])
    return xx.digest()
