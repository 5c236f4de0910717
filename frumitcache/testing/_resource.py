"""What the test origin serves and the HTTP rules it answers by: a resource (bytes or a file,
with its validators), Range parsing, dates, and the conditional-request checks."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from frumitcache.testing.generated import Generated

PIECE = 16 * 1024  # body bytes per send: small enough for rate limits and exact cut points


@dataclass(slots=True)
class Resource:
    size: int
    etag: str | None
    last_modified: str | None
    mtime: float
    headers: dict[str, str]
    data: bytes | None = None
    file: Path | None = None
    generated: Generated | None = None

    async def pieces(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """The bytes ``[start, end)`` in pieces of at most :data:`PIECE`."""
        if self.data is not None:
            for pos in range(start, end, PIECE):
                yield self.data[pos : min(end, pos + PIECE)]
            return
        if self.generated is not None:
            for n, piece in enumerate(self.generated.read(start, end)):
                if n % 64 == 63:
                    await trio.lowlevel.checkpoint()  # a GiB body must not starve the rest
                yield piece
            return
        assert self.file is not None
        async with await trio.open_file(self.file, "rb") as f:
            await f.seek(start)
            pos = start
            while pos < end:
                # One thread hop per 16 pieces keeps a large file from being thread-bound.
                block = await f.read(min(16 * PIECE, end - pos))
                if not block:
                    return  # the file shrank under us: a short body, like a real server
                pos += len(block)
                for i in range(0, len(block), PIECE):
                    yield block[i : i + PIECE]


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def parse_date(text: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=`` range as ``(start, end)`` (end exclusive), ``None`` when the header is
    to be ignored (not bytes, several ranges, bad syntax), ``"unsatisfiable"`` for a 416."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return max(0, size - n), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if end <= start:
        return None
    return start, min(end, size)


def not_modified(headers: Mapping[str, str], resource: Resource) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:
        if resource.etag is None:
            return False
        tags = [t.strip() for t in inm.split(",")]
        mine = resource.etag.removeprefix("W/")
        return "*" in tags or any(t.removeprefix("W/") == mine for t in tags)
    ims = headers.get("if-modified-since")
    if ims is not None and resource.last_modified is not None:
        since = parse_date(ims)
        return since is not None and int(resource.mtime) <= since
    return False


def if_range_holds(value: str | None, resource: Resource) -> bool:
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        # Strong comparison only: a weak tag never validates a range.
        return resource.etag is not None and not value.startswith("W/") and value == resource.etag
    return resource.last_modified is not None and value == resource.last_modified
