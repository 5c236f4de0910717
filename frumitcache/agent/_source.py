"""The agent's :class:`~frumitcache.content.ContentSource`: the content seam every front door
uses, implemented once over the content service.

Per request it decides whether the stored copy may be served as is (immutable, or within the
freshness window), must be revalidated (through the seeder on a site, once per window for the
whole site), or fetched; then it hands out a :class:`~frumitcache.content.Content` reading the
store. Offline mode: if the origin is unreachable and a copy is held, the copy is served (and
so on an upstream error status the door's :class:`~frumitcache.content.Revalidation` keeps
held copies under: stale-if-error).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from frumitcache.agent._reading import FlightContent, StoredContent
from frumitcache.content import Content, ContentInfo, ContentRequest, HttpMeta, UpstreamAuth
from frumitcache.origin import META_CONTENT_TYPE, META_ETAG, META_LAST_MODIFIED, Door
from frumitcache.store import Manifest

if TYPE_CHECKING:
    from frumitcache.agent._content import ContentService


class AgentSource:
    def __init__(self, service: ContentService) -> None:
        self._svc = service

    def set_upstream_auth(self, door: Door, auth: UpstreamAuth) -> None:
        self._svc.auth[door] = auth

    async def open(self, request: ContentRequest) -> Content:
        svc = self._svc
        store = svc.store
        url, digest = request.url, request.sha256
        svc.check(url, request.door)
        held = None if request.digest_only else store.lookup(url)
        if digest is not None:
            same = store.lookup(digest)
            if same is not None:
                # Content-addressed: the bytes are here, maybe under another mirror's URL.
                if not request.digest_only and (held is None or held.digest != digest):
                    store.map_key(url, digest)
                return self._stored(url, same)
            if held is not None and held.digest != digest:
                held = None  # an older version of the URL; the caller wants another
        elif held is not None and not self._due(request):
            return self._stored(url, held)
        flight = svc.ensure(
            url,
            digest,
            door=request.door,
            # Asked even when nothing is held here: on a site the seeder may hold a copy older
            # than the window, which it must revalidate before this node takes it.
            revalidate=request.freshness == "revalidate" and digest is None,
            headers=request.headers,
            revalidate_with=request.revalidate_with,
        )
        await flight.wait_started()
        if flight.error is not None:
            if held is not None and svc.may_serve_held(request.door, flight.error):
                # Offline, or an upstream error the door keeps held copies under; on a member
                # the seeder said so (it held no copy to serve): this node's own is served.
                svc.served_stale(request.door, url, flight.error)
                return self._stored(url, held)
            raise flight.error
        if flight.cached:
            return self._stored(url, await flight.wait())
        size = flight.size
        if size is None:  # the origin sent no length: the object is complete by now
            size = (await flight.wait()).size
        info = ContentInfo(size, digest, flight.meta, flight.provenance)
        return FlightContent(info, store, flight, hold_back=digest is not None)

    def _due(self, request: ContentRequest) -> bool:
        """Must a held copy be revalidated before it is served?"""
        if request.freshness == "immutable":
            return False
        if not self._svc.decides_freshness():
            return True  # a member asks the seeder, whose window counts for the whole site
        now = self._svc.clock()
        window = self._svc.window_for(request.door)
        return window.due(request.url, now, tied_to=request.revalidate_with)

    def _stored(self, url: str, manifest: Manifest) -> StoredContent:
        self._svc.stats.served_local += 1
        meta = self._svc.store.key_meta(url)
        info = ContentInfo(
            manifest.size,
            manifest.digest,
            HttpMeta(
                meta.get(META_CONTENT_TYPE), meta.get(META_ETAG), meta.get(META_LAST_MODIFIED)
            ),
            "local",
        )
        return StoredContent(info, self._svc.store, manifest)
