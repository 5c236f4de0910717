"""A fenced seeder's unfinished chunk, handed to the seeder that replaces it.

A seeder whose lease lapsed mid-fetch stops reading the origin; when the site names another
seeder it aborts, and its store keeps the bytes of the chunk it had not finished in memory
(the *tail*: from a chunk boundary ``at``, under one chunk). The new seeder takes the whole
chunks from their holders (:mod:`._takeover`), then asks the old seeder for that tail on the
peer port (:func:`~._peerapi.request_tail`) and resumes the origin with Range after it, so
those bytes do not cross the uplink twice:

    GET /tail/<base64url(key)>   ->  200 msgpack [at, expected sha256 or nil, bytes, mac]
                                     404 no tail kept for that key

No digest covers part of a chunk (the chunk's exists once it is whole), so the bytes are
authenticated instead: ``mac`` is an HMAC-SHA256 under the site key over the key, ``at``, the
expected digest and the bytes' SHA-256. Only a site member (which may also be elected seeder
and write every manifest) can make one; the request is signed like every peer request. A
whole-object SHA-256, when the fetch names one, still checks every byte at the end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import msgpack

from frumitcache.errors import PeerError

TAIL = b"/tail/"


@dataclass(frozen=True, slots=True)
class Tail:
    """Bytes of the object under ``key`` from offset ``at`` (a chunk boundary), written
    expecting the object digest ``expected`` (``None``: none named)."""

    at: int
    expected: bytes | None
    data: bytes


def tail_path(key: str) -> bytes:
    return TAIL + base64.urlsafe_b64encode(key.encode()).rstrip(b"=")


def key_of(path: bytes) -> str:
    """The key a tail path names; ValueError when it is not one."""
    token = path[len(TAIL) :]
    try:
        return base64.urlsafe_b64decode(token + b"=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("malformed tail request") from None


def _mac(site_key: bytes, key: str, at: int, expected: bytes | None, data: bytes) -> bytes:
    msg = b"\n".join((b"tail", key.encode(), str(at).encode(), (expected or b"").hex().encode()))
    return hmac.new(site_key, msg + b"\n" + hashlib.sha256(data).digest(), "sha256").digest()


def pack_tail(site_key: bytes, key: str, tail: Tail) -> bytes:
    mac = _mac(site_key, key, tail.at, tail.expected, tail.data)
    packed: bytes = msgpack.packb([tail.at, tail.expected, tail.data, mac], use_bin_type=True)
    return packed


def unpack_tail(site_key: bytes, key: str, body: bytes, *, chunk_size: int) -> Tail:
    """The tail in ``body``; PeerError when it is malformed, too long or not authenticated."""
    try:
        obj = msgpack.unpackb(body)
    except Exception:  # any decoding failure is a malformed answer
        raise PeerError("malformed tail answer") from None
    if not (
        isinstance(obj, list)
        and len(obj) == 4
        and isinstance(obj[0], int)
        and obj[0] >= 0
        and obj[0] % chunk_size == 0
        and (obj[1] is None or (isinstance(obj[1], bytes) and len(obj[1]) == 32))
        and isinstance(obj[2], bytes)
        and 0 < len(obj[2]) < chunk_size
        and isinstance(obj[3], bytes)
    ):
        raise PeerError("malformed tail answer")
    at, expected, data, mac = obj
    if not hmac.compare_digest(mac, _mac(site_key, key, at, expected, data)):
        raise PeerError("tail answer not signed with the site key")
    return Tail(at, expected, data)


def tail_fits(tail: Tail, *, stored: int, expected: bytes | None, size: int | None) -> bool:
    """May ``tail`` follow a writer that holds ``stored`` bytes in whole chunks and expects
    the object digest ``expected``, of ``size`` bytes if known? It must start right there,
    have been written for no other object, and not run past the object's end."""
    return (
        tail.at == stored
        and not (expected and tail.expected not in (None, expected))
        and (size is None or tail.at + len(tail.data) <= size)
    )
