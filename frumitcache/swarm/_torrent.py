"""Deterministic, content-addressed v2 torrents: one per chunk, derived from (digest, size, root).

Every node builds the same bytes for the same chunk with no libtorrent call and no hashing:
the name is the chunk's hex digest, the piece size follows from the size
(:func:`~frumitcache.swarm._merkle.piece_size_for`), and a v2-only info dict holds nothing else
(no creation date, comment, creator, trackers or file attributes). The same info dict is what
libtorrent 2.0 and 2.1 generate for the file with ``flags=create_torrent.no_attributes``
(pinned by a test that runs both versions).

A leecher starts from ``{b"info": info}`` alone and gets the piece layer from peers; a seeder
adds the piece layer so it can serve it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from frumitcache.errors import ProtocolError
from frumitcache.swarm._merkle import MerkleTree, piece_size_for


def bencode(value: object) -> bytes:
    """Canonical bencoding (sorted dict keys) of ints, bytes, str, lists and dicts."""
    out: list[bytes] = []
    _bencode(value, out)
    return b"".join(out)


def _bencode(value: object, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes | bytearray):
        out.append(b"%d:" % len(value))
        out.append(bytes(value))
    elif isinstance(value, str):
        _bencode(value.encode(), out)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _bencode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        keys = {(k.encode() if isinstance(k, str) else k): v for k, v in value.items()}
        for key in sorted(keys):
            _bencode(key, out)
            _bencode(keys[key], out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class ChunkTorrent:
    """The torrent of one chunk. ``info_hash`` is the v2 (SHA-256) info-hash."""

    digest: str
    size: int
    piece_size: int
    root: bytes
    info: bytes  # the bencoded info dict

    @property
    def info_hash(self) -> bytes:
        return hashlib.sha256(self.info).digest()

    @property
    def num_pieces(self) -> int:
        return -(-self.size // self.piece_size)

    def leecher_bytes(self) -> bytes:
        """What a leecher adds: the info dict alone, without the piece layer."""
        return b"d4:info" + self.info + b"e"

    def seeder_bytes(self, piece_layer: bytes) -> bytes:
        """The full torrent file a seeder adds (with the piece layer when the chunk needs one)."""
        if self.size > self.piece_size:
            if len(piece_layer) != 32 * self.num_pieces:
                raise ProtocolError(f"chunk {self.digest}: piece layer of the wrong length")
            layers = b"d32:" + self.root + b"%d:" % len(piece_layer) + piece_layer + b"e"
            return b"d4:info" + self.info + b"12:piece layers" + layers + b"e"
        return self.leecher_bytes()


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ProtocolError(f"not a SHA-256 hex digest: {digest!r}")
    return digest


def chunk_torrent(digest: str, size: int, root: bytes) -> ChunkTorrent:
    """The torrent of the chunk ``digest`` of ``size`` bytes whose v2 pieces root is ``root``."""
    _check_digest(digest)
    if size <= 0:
        raise ProtocolError(f"chunk {digest}: a torrent needs a non-empty chunk")
    if len(root) != 32:
        raise ProtocolError(f"chunk {digest}: pieces root must be 32 bytes")
    piece = piece_size_for(size)
    info = bencode(
        {
            b"file tree": {digest.encode(): {b"": {b"length": size, b"pieces root": root}}},
            b"meta version": 2,
            b"name": digest.encode(),
            b"piece length": piece,
        }
    )
    return ChunkTorrent(digest, size, piece, root, info)


def torrent_of_tree(digest: str, tree: MerkleTree) -> ChunkTorrent:
    if tree.piece_size != piece_size_for(tree.size):
        raise ProtocolError(f"chunk {digest}: tree built with another piece size")
    return chunk_torrent(digest, tree.size, tree.root)
