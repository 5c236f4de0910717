"""The apt proxy's fetcher, served by the agent's content path.

The apt proxy's :class:`~frumitcache.apt.LocalSource` decides freshness (index window, offline
copies, by-hash twins, learned .deb hashes) and asks a *fetcher* for what it must bring in.
:class:`ContentFetcher` is that fetcher for a running agent: it has the origin fetcher's
interface but goes through the :class:`~frumitcache.agent._content.ContentService`, so on a
site the one seeder fetches each file once and members pull its chunks from the swarm; index
revalidations go to the seeder too, which asks the origin at most once per window for the site.
"""

from __future__ import annotations

import trio

from frumitcache.agent._content import ContentService, wait_any
from frumitcache.errors import NotInStoreError
from frumitcache.origin import FetchInfo
from frumitcache.store import Manifest, Store


class ContentFetcher:
    """``fetch(url, ...)`` with the origin fetcher's contract, over the content service."""

    def __init__(self, content: ContentService, store: Store) -> None:
        self._content = content
        self._store = store

    async def fetch(
        self,
        url: str,
        *,
        expected_digest: bytes | None = None,
        expected_size: int | None = None,
        revalidate: bool = False,
        task_status: trio.TaskStatus[FetchInfo] = trio.TASK_STATUS_IGNORED,
    ) -> Manifest:
        flight = self._content.ensure(url, expected_digest, revalidate=revalidate, door="apt")
        # The proxy answers apt with a Content-Length: wait for the writer and the size.
        while not flight.done.is_set() and (not flight.writing.is_set() or flight.size is None):
            await wait_any(flight.changed, flight.done)
        if flight.error is not None:
            raise flight.error
        info = flight.info or FetchInfo(
            url=url,
            size=flight.size,
            offset=0,
            content_type=None,
            etag=None,
            last_modified=None,
            cached=False,
        )
        task_status.started(info)
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        manifest = flight.manifest or self._store.lookup(url)
        if manifest is None:
            raise NotInStoreError(f"{url}: the fetch ended without a complete object")
        return manifest

