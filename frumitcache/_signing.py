"""Keyed request signatures (sans-IO: time is an argument): the site key on the peer HTTP
port, the federation key on the federation endpoint, and ``frumitcache doctor``'s probe of
federation members (a floor at the root, so that doctor signs without importing the swarm).

A request carries ``X-Frumit-Auth: <unix time>:<nonce hex>:<HMAC-SHA256 hex>`` where the MAC
covers method, path, time and nonce. The verifier accepts a time within ``window`` seconds of
its own clock (``site.max_clock_skew_s``; 0 = no time check) and each nonce once, so a captured
request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

HEADER = b"x-frumit-auth"


def _mac(key: bytes, method: bytes, path: bytes, ts: int, nonce: str) -> str:
    msg = b"\n".join((method.upper(), path, str(ts).encode(), nonce.encode()))
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def sign(key: bytes, method: bytes, path: bytes, now: float, nonce: str | None = None) -> bytes:
    """The auth header value for a request made at ``now`` (unix seconds)."""
    ts = int(now)
    nonce = nonce or secrets.token_hex(12)
    return f"{ts}:{nonce}:{_mac(key, method, path, ts, nonce)}".encode()


#: Nonces remembered when there is no clock window (``max_clock_skew_s = 0``): memory bound.
NONCE_MEMORY = 65536


class Verifier:
    """Checks auth headers; remembers nonces seen within the window.

    ``window`` follows ``site.max_clock_skew_s`` like the control plane. With ``window = 0``
    (a site without NTP) the time is not checked at all and replays are refused by nonce only:
    the last :data:`NONCE_MEMORY` nonces are remembered, so a captured request can be replayed
    only after that many newer signed requests (residual risk, bounded memory).
    """

    def __init__(self, key: bytes, *, window: float = 60.0, memory: int = NONCE_MEMORY) -> None:
        if window < 0:
            raise ValueError("window must be 0 (no time check) or positive")
        self._key = key
        self._window = window
        self._memory = memory
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, method: bytes, path: bytes, header: bytes | None, now: float) -> bool:
        if not header:
            return False
        try:
            ts_text, nonce, mac = header.decode("ascii").split(":")
            # Digits only and a sane size: int("9" * 400) would overflow the float clock.
            if not ts_text.isdigit() or len(ts_text) > 12:
                return False
            ts = int(ts_text)
        except (UnicodeDecodeError, ValueError):
            return False
        if self._window and abs(now - ts) > self._window:
            return False
        if not 8 <= len(nonce) <= 64:
            return False
        if not hmac.compare_digest(mac, _mac(self._key, method, path, ts, nonce)):
            return False
        self._expire(now)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True

    def _expire(self, now: float) -> None:
        if self._window:
            # A nonce older than the window can't pass the time check again: forget it.
            limit = now - 2 * self._window
            while self._seen and next(iter(self._seen.values())) < limit:
                self._seen.popitem(last=False)
        while len(self._seen) >= self._memory:
            self._seen.popitem(last=False)
