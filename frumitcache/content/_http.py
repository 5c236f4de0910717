"""HTTP/1.1 decisions every front door shares, with no I/O: Range, If-Range, If-None-Match,
If-Modified-Since, dates, and the status an error of the seam maps to.

:func:`plan_response` turns the request's conditional and range headers plus what is known about
the object into the status, the byte range to send and the extra headers. Pure, so every case
(206, 304, 416, If-Range mismatch) is tested without a socket.
"""

from __future__ import annotations

import email.utils
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from frumitcache.errors import (
    DigestMismatchError,
    FrumitcacheError,
    NotAllowedError,
    OriginError,
    OriginStatusError,
    OriginUnreachableError,
    PeerError,
    ProtocolError,
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to answer: status, the half-open byte range ``[start, end)`` and extra headers."""

    status: int
    start: int
    end: int
    headers: tuple[tuple[str, str], ...]


_DIGITS = re.compile(r"[0-9]{1,19}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def http_date(timestamp: float) -> str:
    return _http_date(int(timestamp))


# Both are pure and asked per response with few distinct values (the current second, the
# Last-Modified of the objects in use): remembered rather than formatted or parsed each time.
@functools.lru_cache(maxsize=256)
def _http_date(seconds: int) -> str:
    # Calendar arithmetic, not time.gmtime: a 32-bit Pi's time_t ends in 2038, and an origin's
    # Last-Modified may lie past it (formatdate raised OverflowError there).
    return email.utils.format_datetime(_EPOCH + timedelta(seconds=seconds), usegmt=True)


def parse_http_date(text: str | None) -> float | None:
    if not text:
        return None
    return _parse_http_date(text)


@functools.lru_cache(maxsize=256)
def _parse_http_date(text: str) -> float | None:
    try:
        parsed: datetime = email.utils.parsedate_to_datetime(text)
        if parsed.tzinfo is None:
            return None
        return parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=`` range as half-open ``(start, end)``; None: ignore it; "416": unsatisfiable.

    Multiple ranges and unknown units are ignored (answered with the whole object), which
    RFC 9110 allows; apt only ever asks for ``bytes=N-``.
    """
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    # ASCII digits only (str.isdigit() admits "²", which int() refuses), and no more than a
    # size can have (int() refuses thousands of digits): anything else is ignored.
    if (first and not _DIGITS.fullmatch(first)) or (last and not _DIGITS.fullmatch(last)):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            return "416"
        return max(0, size - suffix), size
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        return "416"
    return start, end


def plan_response(
    *,
    size: int,
    last_modified: float | None,
    etag: str | None,
    range_header: str | None,
    if_range: str | None,
    if_modified_since: str | None,
    if_none_match: str | None = None,
) -> Plan:
    """Status and byte range for a GET/HEAD of an object of ``size`` bytes.

    If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2), compared weakly.
    """
    if if_none_match is not None:
        if etag is not None and _none_match_hits(if_none_match, etag):
            return Plan(304, 0, 0, ())
    elif if_modified_since is not None and last_modified is not None and range_header is None:
        since = parse_http_date(if_modified_since)
        if since is not None and int(last_modified) <= since:
            return Plan(304, 0, 0, ())
    wanted = parse_range(range_header, size)
    if (
        wanted is not None
        and if_range is not None
        and not _if_range_matches(if_range, last_modified, etag)
    ):
        wanted = None
    if wanted == "416":
        return Plan(416, 0, 0, (("Content-Range", f"bytes */{size}"),))
    if isinstance(wanted, tuple):
        start, end = wanted
        return Plan(206, start, end, (("Content-Range", f"bytes {start}-{end - 1}/{size}"),))
    return Plan(200, 0, size, ())


def _if_range_matches(if_range: str, last_modified: float | None, etag: str | None) -> bool:
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        # Strong comparison: a weak validator never matches If-Range.
        return etag is not None and not value.startswith("W/") and value == etag
    when = parse_http_date(value)
    return when is not None and last_modified is not None and int(last_modified) == int(when)


def _none_match_hits(header: str, etag: str) -> bool:
    """Does ``etag`` match any entity tag of an If-None-Match list (weak comparison)?"""
    if header.strip() == "*":
        return True
    mine = etag.strip().removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == mine for tag in header.split(","))


def http_status(exc: FrumitcacheError) -> int:
    """The status a front door answers for an error of the seam (before any body byte)."""
    if isinstance(exc, NotAllowedError):
        return 403  # the URL, a redirect or the seeder's allow-list refused it
    if isinstance(exc, OriginStatusError):
        return exc.status if 400 <= exc.status < 600 else 502
    if isinstance(exc, OriginUnreachableError):
        return 504  # nothing held to serve instead
    if isinstance(exc, ProtocolError):
        return 400
    if isinstance(exc, DigestMismatchError | OriginError):
        return 502
    if isinstance(exc, PeerError):
        return 503  # the site could not deliver it (no seeder, fallback off)
    return 500
