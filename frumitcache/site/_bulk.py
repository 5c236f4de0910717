"""Messages too large for a frame, carried over a stream: the pure part, time passed in.

A site frame is one UDP datagram (:data:`~._codec.DEFAULT_MAX_FRAME`), which holds the
description of an object of about 1,300 chunks: an :class:`~._messages.ObjectInfo`,
:class:`~._messages.Have` or :class:`~._messages.ObjectAnnounce` of a bigger object does not
fit. Such a message goes in two parts:

1. its body (:func:`~._codec.encode_body`) is put in the sender's :class:`Outbox` and a small
   :class:`~._messages.Bulk` frame names it: a token, the body's size and SHA-256;
2. the recipient fetches the body from the sender's peer HTTP port (signed with the site key
   like chunk requests; the agent wires it, :meth:`~._setup.SiteHooks.fetch_bulk`), and
   :func:`open_bulk` checks it against the frame before it is handled like any frame's message.

The frame is authenticated and replay-checked as every frame is, and it names the body's
digest, so the body needs no MAC of its own and a body served twice is harmless. The same body
sent to many members (an announcement) is kept once, under one token.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from frumitcache.site._codec import FrameRejected, decode_body
from frumitcache.site._messages import Bulk, Message

#: Largest body a node sends or fetches: about 350,000 chunk digests with their holders
#: (1.4 TiB of 4 MiB chunks; a 50 GiB object's description is ~0.6 MB). A description beyond it
#: is dropped (counted ``too-large-out``). Pi-sized: the outbox keeps at most two of them.
MAX_BODY = 16 * 1024 * 1024
#: How long a body waits to be fetched (the recipient fetches at once; retries reuse it).
KEEP_S = 30.0


@dataclass(slots=True)
class _Kept:
    token: int
    body: bytes
    until: float


class Outbox:
    """Bodies waiting to be fetched, by token; at most ``max_bytes`` in all (oldest go first).

    ``first_token`` should be random (the driver draws it), so that a token of an earlier
    boot names nothing after a restart.
    """

    def __init__(
        self, *, first_token: int = 1, keep_s: float = KEEP_S, max_bytes: int = 2 * MAX_BODY
    ) -> None:
        self.keep_s = keep_s
        self.max_bytes = max_bytes
        self._next = first_token
        self._by_digest: OrderedDict[bytes, _Kept] = OrderedDict()
        self._by_token: dict[int, bytes] = {}
        self._bytes = 0

    def put(self, body: bytes, now: float) -> Bulk | None:
        """Keep ``body`` for ``keep_s``; the frame to send instead (``None``: too large)."""
        if len(body) > MAX_BODY or len(body) > self.max_bytes:
            return None
        digest = hashlib.sha256(body).digest()
        kept = self._by_digest.pop(digest, None)
        if kept is None:
            kept = _Kept(self._next, body, now + self.keep_s)
            self._next += 1
            self._by_token[kept.token] = digest
            self._bytes += len(body)
        kept.until = now + self.keep_s
        self._by_digest[digest] = kept  # the most recently put last
        self._expire(now)
        return Bulk(kept.token, len(body), digest)

    def get(self, token: int, now: float) -> bytes | None:
        """The body kept under ``token``, if it is still kept."""
        self._expire(now)
        digest = self._by_token.get(token)
        return None if digest is None else self._by_digest[digest].body

    def __len__(self) -> int:
        return len(self._by_digest)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _expire(self, now: float) -> None:
        # Ordered by last put, and every put keeps for the same keep_s: oldest first.
        while self._by_digest:
            digest, kept = next(iter(self._by_digest.items()))
            if kept.until > now and self._bytes <= self.max_bytes:
                return
            del self._by_digest[digest]
            del self._by_token[kept.token]
            self._bytes -= len(kept.body)


def open_bulk(bulk: Bulk, body: bytes) -> Message:
    """The message ``body`` carries, once it matches what the (authenticated) ``bulk`` frame
    said; :class:`~._codec.FrameRejected` (``bulk-mismatch``, ``garbage``, ...) otherwise."""
    if len(body) != bulk.size or hashlib.sha256(body).digest() != bulk.sha256:
        raise FrameRejected("bulk-mismatch", f"body of {len(body)} bytes is not the one named")
    return decode_body(body)
