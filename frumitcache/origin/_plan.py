"""What one origin response means for a fetch, decided without I/O.

The fetcher asks for ``bytes=offset-`` when it holds ``offset`` bytes already; the origin may
honour the range (206), ignore it (200), refuse it (416), answer not-modified (304) or fail.
:func:`plan_response` turns status and headers into one :class:`Step`, so the rules live in
one table-like function that tests drive directly.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from frumitcache.errors import OriginStatusError


class Action(enum.Enum):
    BODY = "body"  # read the body and store it from ``start`` (0 with an offset: restart)
    RESTART = "restart"  # drop what is stored and ask again from byte 0
    NOT_MODIFIED = "not-modified"  # 304 to a conditional request: keep the stored object
    COMPLETE = "complete"  # the origin says we already hold every byte
    LIE = "lie"  # the origin contradicts the length it announced before
    STATUS = "status"  # an error status (or one we cannot use): report it


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    start: int = 0  # where this body's first byte goes in the object
    total: int | None = None  # the object's full size, when known
    reason: str = ""


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


def parse_content_range(value: str) -> tuple[int, int, int | None] | None:
    """``bytes a-b/T`` as ``(a, b + 1, T or None)``; ``None`` when malformed."""
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None
    start, last = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if last < start or (total is not None and last >= total):
        return None
    return start, last + 1, total


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def plan_response(
    status: int,
    headers: Mapping[str, str],
    *,
    offset: int,
    known_total: int | None,
    conditional: bool,
) -> Step:
    """Decide what a response means.

    ``headers`` must be case-insensitive (httpx's are). ``offset`` is what the store holds (a
    ``Range`` was sent when it is above zero); ``known_total`` the size an earlier response of
    this fetch announced; ``conditional`` whether validators were sent.
    """
    length = _int(headers.get("content-length"))
    if status == 200:
        # Also the answer to a Range the origin ignored: the body is the whole object, so the
        # fetch restarts from byte 0 with it (``start`` below the offset says so).
        reason = "origin ignored the Range request" if offset > 0 else ""
        return Step(Action.BODY, 0, length, reason)
    if status == 206:
        parsed = parse_content_range(headers.get("content-range", ""))
        if parsed is None:
            return Step(Action.STATUS, reason="206 without a usable Content-Range")
        start, _end, total = parsed
        if start != offset:
            return Step(Action.STATUS, reason=f"asked for bytes from {offset}, got from {start}")
        if known_total is not None and total is not None and total != known_total:
            # If-Range should have caught a changed object; a server without it did not.
            return Step(Action.RESTART, 0, None, f"object size changed: {known_total} -> {total}")
        return Step(Action.BODY, start, total if total is not None else known_total)
    if status == 304 and conditional:
        return Step(Action.NOT_MODIFIED)
    if status == 416 and offset > 0:
        m = _UNSATISFIED.match(headers.get("content-range", ""))
        total = int(m.group(1)) if m else None
        if total is not None and total == offset and known_total in (None, offset):
            return Step(Action.COMPLETE, offset, total)
        return Step(
            Action.LIE,
            reason=f"origin cannot serve from byte {offset} of an object it announced as "
            f"{known_total if known_total is not None else 'longer'} bytes "
            f"(now {total if total is not None else 'unknown'})",
        )
    return Step(Action.STATUS, reason=f"HTTP {status}")


_DELAY = re.compile(r"[0-9]{1,9}")
_DATE = re.compile(r"[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT")


def status_error(message: str, status: int, headers: Mapping[str, str]) -> OriginStatusError:
    """The error an origin's error answer becomes, its Retry-After kept (see below)."""
    return OriginStatusError(message, status=status, retry_after=retry_after(headers))


def retry_after(headers: Mapping[str, str]) -> str:
    """The origin's ``Retry-After`` when it is well formed (delay seconds or an IMF-fixdate),
    else "": it is passed on to clients as sent, so nothing else may ride on it."""
    value = headers.get("retry-after", "").strip()
    return value if _DELAY.fullmatch(value) or _DATE.fullmatch(value) else ""


def validator_of(etag: str | None, last_modified: str | None) -> str | None:
    """The If-Range value: a strong ETag, else Last-Modified (RFC 9110 13.1.5)."""
    if etag and not etag.startswith("W/"):
        return etag
    return last_modified or None
