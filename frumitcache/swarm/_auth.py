"""Site-key request signatures for the peer HTTP port (sans-IO: time is an argument).

A request carries ``X-Frumit-Auth: <unix time>:<nonce hex>:<HMAC-SHA256 hex>`` where the MAC
covers method, path, time and nonce. The verifier accepts a time within ``window`` seconds of
its own clock and each nonce once per window, so a captured request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = b"x-frumit-auth"


def _mac(key: bytes, method: bytes, path: bytes, ts: int, nonce: str) -> str:
    msg = b"\n".join((method.upper(), path, str(ts).encode(), nonce.encode()))
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def sign(key: bytes, method: bytes, path: bytes, now: float, nonce: str | None = None) -> bytes:
    """The auth header value for a request made at ``now`` (unix seconds)."""
    ts = int(now)
    nonce = nonce or secrets.token_hex(12)
    return f"{ts}:{nonce}:{_mac(key, method, path, ts, nonce)}".encode()


class Verifier:
    """Checks auth headers; remembers nonces seen within the window."""

    def __init__(self, key: bytes, *, window: float = 30.0) -> None:
        self._key = key
        self._window = window
        self._seen: dict[str, float] = {}

    def check(self, method: bytes, path: bytes, header: bytes | None, now: float) -> bool:
        if not header:
            return False
        try:
            ts_text, nonce, mac = header.decode("ascii").split(":")
            ts = int(ts_text)
        except (UnicodeDecodeError, ValueError):
            return False
        if abs(now - ts) > self._window or not 8 <= len(nonce) <= 64:
            return False
        if not hmac.compare_digest(mac, _mac(self._key, method, path, ts, nonce)):
            return False
        self._expire(now)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True

    def _expire(self, now: float) -> None:
        if len(self._seen) > 1024:
            limit = now - 2 * self._window
            self._seen = {n: t for n, t in self._seen.items() if t >= limit}
