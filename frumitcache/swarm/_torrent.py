"""Deterministic, content-addressed v2 torrents: one per chunk, derived from (digest, size, root).

Every node builds the same bytes for the same chunk with no libtorrent call and no hashing:
the name is the chunk's digest in hex (:func:`torrent_name`: the one place a torrent's name and
a digest are converted), the piece size follows from the size
(:func:`~frumitcache.swarm._merkle.piece_size_for`), and a v2-only info dict holds nothing else
(no creation date, comment, creator, trackers or file attributes). The same info dict is what
libtorrent 2.0 and 2.1 generate for the file with ``flags=create_torrent.no_attributes``
(pinned by a test that runs both versions).

A leecher starts from ``{b"info": info}`` alone and gets the piece layer from peers; a seeder
adds the piece layer so it can serve it.

Admission to the libtorrent port is bound to the site key (issue 16, finding 7). On a site,
the info dict carries one more key, ``site mac`` = ``HMAC-SHA256(site key, digest)``
(:func:`site_mac`; the info-hash is the SHA-256 of the info dict's bytes, unknown keys
included), so the info-hash of a chunk can only be computed by a key holder: a
keyless peer, even one on a member's own address (which passes the IP filter), does not know
which info-hash to ask for, and libtorrent drops a handshake for an info-hash the session does
not have. Why this and not the alternatives: libtorrent's RC4 "encryption" keys on the
info-hash, not on a secret, and costs ~30 % throughput; restricting chunk transfer to peers
authenticated elsewhere would need a hook into libtorrent's handshake that the Python
bindings do not offer. The IP filter (members only, default-deny from construction) stays as
a second fence. Residual risk: the info-hash travels in clear in the BitTorrent handshake, so
a host that can sniff the LAN (or a member's loopback) can learn it and replay it from a member
address; it still learns nothing about other chunks. The torrent bytes stay deterministic (same
key, same chunk: same bytes on libtorrent 2.0 and 2.1, whose ``create_torrent`` output plus
the ``site mac`` key is ours). Name and file name stay the digest, so the store file is seeded
in place. (Putting the HMAC in the name instead needs ``renamed_files`` to keep the store's
file name; a leecher added that way reported itself complete with no bytes on libtorrent 2.1.)
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from frumitcache._digest import DIGEST_LEN, is_hex_digest
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

    digest: bytes
    size: int
    piece_size: int
    root: bytes
    info: bytes  # the bencoded info dict
    site_mac: bytes = b""  # the info dict's "site mac" (see :func:`site_mac`); b"": no key

    @property
    def name(self) -> str:
        """The torrent's name and its file's: the digest in hex (:func:`torrent_name`)."""
        return self.digest.hex()

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
                raise ProtocolError(f"chunk {self.digest.hex()}: piece layer of the wrong length")
            layers = b"d32:" + self.root + b"%d:" % len(piece_layer) + piece_layer + b"e"
            return b"d4:info" + self.info + b"12:piece layers" + layers + b"e"
        return self.leecher_bytes()


def torrent_name(digest: bytes) -> str:
    """The name (and file name) of a chunk's torrent: its digest in lower-case hex."""
    if not isinstance(digest, bytes) or len(digest) != DIGEST_LEN:
        raise ProtocolError(f"not a 32-byte SHA-256 digest: {digest!r}")
    return digest.hex()


def digest_of_name(name: str) -> bytes | None:
    """The chunk digest a torrent's name spells (:func:`torrent_name`); ``None`` for a name
    that is not one (libtorrent reports names back in its alerts)."""
    return bytes.fromhex(name) if is_hex_digest(name) else None


def site_mac(key: bytes, digest: bytes) -> bytes:
    """The ``site mac`` of a chunk's info dict on the site whose key is ``key``."""
    name = torrent_name(digest).encode()
    return hmac.new(key, b"frumitcache chunk torrent\n" + name, "sha256").digest()


def chunk_torrent(digest: bytes, size: int, root: bytes, *, mac: bytes = b"") -> ChunkTorrent:
    """The torrent of the chunk ``digest`` of ``size`` bytes whose v2 pieces root is ``root``;
    ``mac`` (from :func:`site_mac`) binds its info-hash to a site key."""
    hx = torrent_name(digest)
    name = hx.encode()
    if size <= 0:
        raise ProtocolError(f"chunk {hx}: a torrent needs a non-empty chunk")
    if len(root) != 32:
        raise ProtocolError(f"chunk {hx}: pieces root must be 32 bytes")
    if mac and len(mac) != 32:
        raise ProtocolError(f"chunk {hx}: site mac must be 32 bytes")
    piece = piece_size_for(size)
    info: dict[bytes, object] = {
        b"file tree": {name: {b"": {b"length": size, b"pieces root": root}}},
        b"meta version": 2,
        b"name": name,
        b"piece length": piece,
    }
    if mac:
        info[b"site mac"] = mac
    return ChunkTorrent(digest, size, piece, root, bencode(info), mac)


def torrent_of_tree(digest: bytes, tree: MerkleTree, *, mac: bytes = b"") -> ChunkTorrent:
    if tree.piece_size != piece_size_for(tree.size):
        raise ProtocolError(f"chunk {digest.hex()}: tree built with another piece size")
    return chunk_torrent(digest, tree.size, tree.root, mac=mac)
