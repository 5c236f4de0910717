"""How the agent answers "give me the bytes of this URL": the one path every front door uses.

A request is served from the local store when the object is complete there (looked up by
URL, or by digest when the caller knows it — content addressing makes the URL secondary).
Otherwise the origin fetch is started (single-flight inside the fetcher) and the caller reads
the object cut-through from the store while it is still being written: every chunk it gets has
been hashed and stored first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from frumitcache._log import get_logger
from frumitcache.errors import DigestMismatchError, FrumitcacheError, single_error
from frumitcache.origin import OriginFetcher
from frumitcache.store import Store

log = get_logger("content")


@dataclass(frozen=True, slots=True)
class Opened:
    """An object being delivered: where it comes from, its size if known, its chunks in order."""

    source: str
    size: int | None
    chunks: AsyncIterator[bytes]


class ContentService:
    """Finds or fetches objects for the control API and the other front doors."""

    def __init__(self, store: Store, fetcher: OriginFetcher) -> None:
        self._store = store
        self._fetcher = fetcher

    def lookup(self, url: str, sha256: bytes | None) -> bytes | None:
        """Digest of a complete local object for this request, or ``None``."""
        if sha256 is not None:
            manifest = self._store.lookup(sha256)
            if manifest is not None:
                return manifest.digest
        manifest = self._store.lookup(url)
        if manifest is None:
            return None
        if sha256 is not None and manifest.digest != sha256:
            # The URL's stored content is not what the caller wants: never hand it over.
            raise DigestMismatchError(
                f"{url} is stored with SHA-256 {manifest.digest.hex()}, not {sha256.hex()}"
            )
        return manifest.digest

    @asynccontextmanager
    async def open(
        self, url: str, *, sha256: bytes | None = None, offset: int = 0
    ) -> AsyncIterator[Opened]:
        """Deliver the object at ``url`` from ``offset``; errors are :class:`FrumitcacheError`."""
        digest = self.lookup(url, sha256)
        if digest is not None:
            self._store.touch(digest)
            async with self._store.open_reader(digest, offset=offset) as reader:
                yield Opened("store", reader.size, _chunks(reader))
            return
        try:
            async with trio.open_nursery(strict_exception_groups=True) as nursery:
                await nursery.start(_run_fetch, self._fetcher, url, sha256)
                async with self._store.open_reader(url, offset=offset) as reader:
                    yield Opened("origin", reader.size, _chunks(reader))
        except BaseExceptionGroup as group:
            raise single_error(group) from None


async def _chunks(reader: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in reader:
        yield chunk


async def _run_fetch(
    fetcher: OriginFetcher,
    url: str,
    sha256: bytes | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await fetcher.fetch(url, expected_digest=sha256, task_status=task_status)
    except FrumitcacheError as exc:
        # The reader sees the writer go away and raises; the cause is logged here once.
        log.warning("fetch.failed", url=url, error=exc.code, detail=str(exc))
        raise
