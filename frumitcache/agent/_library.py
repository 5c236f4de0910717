"""The agent's answers to the library's questions: locate, estimate, prefetch, pin, site, cache.

Where the answer is about the whole site it comes from the seeder's catalogue (a ``Lookup``
over the site control plane, answered locally when this node is the seeder); on a one-node
site it comes from the local store. Nothing here fetches content itself: prefetch starts the
same background flight a pull would (``ContentService.ensure``), here or — through a signed
request on their peer HTTP port — on other members; estimate asks the origin only for a
``HEAD`` when the site has never seen a URL.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

from frumitcache._digest import is_hex_digest
from frumitcache._log import get_logger
from frumitcache.agent._content import ContentService
from frumitcache.agent._locate import held_bytes, locate_reply
from frumitcache.agent._member import wire_manifest
from frumitcache.agent._peerapi import request_keys, request_prefetch
from frumitcache.control import (
    CacheListing,
    EstimateReply,
    GcReply,
    ImportReply,
    LocateReply,
    PinReply,
    PrefetchReply,
    SiteReply,
    Status,
    VerifyReply,
)
from frumitcache.errors import (
    BadUrlError,
    FrumitcacheError,
    NotInStoreError,
    PeerError,
    StoreError,
)
from frumitcache.origin import Door
from frumitcache.site import Lookup, ObjectInfo, ObjectManifest
from frumitcache.store import Manifest

log = get_logger("library")

_READ = 1024 * 1024
# HEAD requests an estimate sends to origins at once (a scheduler may ask about hundreds).
_HEADS_AT_ONCE = 8


def check_url(url: str) -> None:
    """Raise :class:`BadUrlError` unless ``url`` is an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise BadUrlError(f"not a URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUrlError(f"not an http:// or https:// URL: {url!r}")


def parse_target(target: str) -> tuple[str | None, bytes | None]:
    """A URL or a digest (64 hex digits in either case, optionally ``sha256:``):
    ``(url, digest)``."""
    text = target.strip()
    hexpart = text[7:] if text.lower().startswith("sha256:") else text
    if is_hex_digest(hexpart.lower()):  # a person typed it: either case will do
        return None, bytes.fromhex(hexpart)
    check_url(text)
    return text, None


class LibraryRequests:
    """Builds the replies to the library's requests from the agent's parts."""

    def __init__(self, content: ContentService, status: Callable[[], Status]) -> None:
        self._content = content
        self._status = status
        self.bytes_served = 0  # bytes sent to clients of the control API
        self.bytes_spared = 0  # of those, bytes that did not cross this node's uplink now
        # Of those, by where this node got them (a pull's source: store, site, federation,
        # origin).
        self.served_by = dict.fromkeys(("store", "site", "federation", "origin"), 0)
        site = content.site
        if site is not None:
            site.on_prefetch = self._prefetch_here

    # --- prefetch ---------------------------------------------------------------------------

    def _prefetch_here(self, url: str, sha256: bytes | None, door: Door = "site") -> str:
        """Start the flight for ``url`` here; ``site`` when another member asked (its
        ``POST /prefetch``): the union of this node's lists, which the seeder checks again."""
        check_url(url)
        self._content.check(url, door)
        if self._content.lookup(url, sha256) is not None:
            return "present"
        self._content.ensure(url, sha256, door=door)
        return "fetching"

    async def prefetch(
        self, url: str, sha256: bytes | None, nodes: list[str] | None
    ) -> PrefetchReply:
        check_url(url)
        self._content.check(url, "control")  # refused here before any member is asked
        me = self._status().node
        site = self._content.site
        members = {m.node_id: m for m in site.node.members()} if site and site.node else {}
        if not members:
            targets = [me] if nodes is None else list(dict.fromkeys(nodes))
        else:
            targets = list(members) if nodes is None else list(dict.fromkeys(nodes))
        out: dict[str, str] = dict.fromkeys(targets, "")

        async def ask(node: str) -> None:
            try:
                if node == me:
                    out[node] = self._prefetch_here(url, sha256, "control")
                elif node not in members:
                    out[node] = "error: not a live member of this site"
                else:
                    assert site is not None
                    member = members[node]
                    out[node] = await request_prefetch(
                        (member.address, member.peer_port), site.key, url, sha256
                    )
            except FrumitcacheError as exc:
                out[node] = f"error: {exc}"

        # Members are asked at once: one that is slow to answer must not hold up the rest.
        async with trio.open_nursery() as nursery:
            for node in targets:
                nursery.start_soon(ask, node)
        log.info("prefetch", url=url, nodes=out)
        return PrefetchReply(url=url, nodes=out)

    # --- pins -------------------------------------------------------------------------------

    def pin(self, target: str, pinned: bool) -> PinReply:
        store = self._content.store
        url, digest = parse_target(target)
        if url is not None:
            manifest = store.lookup(url)
            if manifest is None:
                raise NotInStoreError(
                    f"{url} is not in this node's store; pull or prefetch it first, or pin "
                    "its SHA-256"
                )
            digest = manifest.digest
        assert digest is not None
        present = store.lookup(digest) is not None
        if not pinned and not store.is_pinned(digest) and not present:
            raise NotInStoreError(f"object {digest.hex()} is neither stored nor pinned here")
        if pinned:
            store.pin(digest)  # an absent object may be pinned ahead of its arrival
        else:
            store.unpin(digest)
        return PinReply(digest=digest, pinned=pinned, present=present)

    # --- locate -----------------------------------------------------------------------------

    async def locate(self, target: str) -> LocateReply:
        store = self._content.store
        url, digest = parse_target(target)
        keys: list[str] = []
        if digest is not None:
            if store.lookup(digest) is not None:
                keys.extend(_keys_of(self._content, digest))
            else:
                keys.extend(await self._keys_from_members(digest))
            keys.append(f"sha256:{digest.hex()}")
            # URLs first: the catalogue knows an object by the URL it was fetched under.
            keys = sorted(dict.fromkeys(keys), key=lambda k: k.startswith("sha256:"))
        else:
            assert url is not None
            keys.append(url)
        info: ObjectInfo | None = None
        for key in keys:
            info = await self._lookup(key)
            if info.manifest is not None:
                break
        assert info is not None
        if info.manifest is None and digest is not None:
            raise NotInStoreError(f"no member of the site holds object {digest.hex()}")
        return locate_reply(info, fetching=info.fetching or self._content.is_fetching(info.url))

    async def _keys_from_members(self, digest: bytes) -> list[str]:
        """The keys other members hold ``digest`` under (asked in parallel on their peer
        port); the catalogue is indexed by URL, so a digest needs one to be looked up."""
        site = self._content.site
        if site is None or site.node is None or site.solo:
            return []
        found: list[str] = []

        async def ask(address: tuple[str, int]) -> None:
            try:
                found.extend(await request_keys(address, site.key, digest))
            except PeerError as exc:
                log.info("locate.keys-unavailable", member=address[0], detail=str(exc))

        async with trio.open_nursery() as nursery:
            for m in site.node.members():
                if m.node_id != site.node_id:
                    nursery.start_soon(ask, (m.address, m.peer_port))
        return found

    async def _lookup(self, key: str) -> ObjectInfo:
        """What the site knows of ``key``: the seeder's catalogue, or this node's store."""
        site = self._content.site
        if site is not None and site.node is not None and not site.solo:
            reply = await site.node.request(Lookup(0, key))
            if isinstance(reply, ObjectInfo):
                return reply
            raise PeerError(f"the seeder could not answer a lookup: {reply.message}")
        return _local_info(self._content, self._status().node, key)

    # --- site -------------------------------------------------------------------------------

    def site(self) -> SiteReply:
        status = self._status()
        origin = status.origin
        site = status.site
        return SiteReply(
            node=status.node,
            site=str(site.get("name", "")),
            solo=bool(site.get("solo", True)),
            seeder=site.get("seeder"),
            term=int(site.get("term", 0)),
            members=list(site.get("members", [])),
            uplink={
                "bytes_fetched": origin.get("bytes_received", 0),
                "bytes_served": self.bytes_served,
                "bytes_spared": self.bytes_spared,
                "rate": float(self._content.fetcher.statistics().rate),
                "budget": origin.get("max_rate", 0),
                "fetches": origin.get("fetches", 0),
                "active_fetches": origin.get("active_fetches", 0),
                "bytes_from_origin": origin.get("origin_bytes", 0),
                "bytes_from_federation": origin.get("federation_bytes", 0),
                "federation_by_link": {
                    k.removeprefix("federation "): v
                    for k, v in origin.items()
                    if k.startswith(("federation parent@", "federation sibling@"))
                },
                "federation_rejected": {
                    k.removeprefix("federation rejected "): v
                    for k, v in origin.items()
                    if k.startswith("federation rejected ")
                },
                "served_by_source": dict(self.served_by),
            },
            cache=dict(status.store),
        )

    # --- estimate ---------------------------------------------------------------------------

    async def estimate(self, urls: list[str]) -> EstimateReply:
        for url in urls:
            check_url(url)
            self._content.check(url, "control")
        items: list[dict[str, Any]] = []
        unknown: list[int] = []
        for url in urls:
            info = await self._lookup(url)
            item: dict[str, Any] = {
                "url": url,
                "size": None,
                "in_site": 0,
                "uplink": None,
                "source": "site",
                "error": None,
            }
            if info.manifest is not None:
                held = held_bytes(info)
                item["in_site"] = held
                item["size"] = info.manifest.size
                if info.manifest.size is not None:
                    item["uplink"] = max(info.manifest.size - held, 0)
                else:
                    unknown.append(len(items))
            else:
                unknown.append(len(items))
            items.append(item)
        if unknown:
            await self._head_sizes([items[i] for i in unknown])
        return EstimateReply(items=items)

    async def _head_sizes(self, items: list[dict[str, Any]]) -> None:
        """Ask the origin for the size of URLs the site has never seen (HEAD, no body),
        through the uplink client: the allow-list and its redirect checks hold here too."""
        fetcher = self._content.fetcher
        limit = trio.CapacityLimiter(_HEADS_AT_ONCE)

        async def head(item: dict[str, Any]) -> None:
            async with limit:
                try:
                    status, size = await fetcher.head_size(item["url"], door="control")
                except FrumitcacheError as exc:
                    item["error"] = str(exc)
                    return
            if status >= 400:
                item["error"] = f"origin answered HEAD with HTTP {status}"
                return
            if size is not None:
                item["size"] = size
                item["uplink"] = max(size - int(item["in_site"]), 0)
                item["source"] = "origin-head"

        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(head, item)

    # --- cache ------------------------------------------------------------------------------

    def cache_list(self) -> CacheListing:
        store = self._content.store
        objects = [
            {
                "digest": o.manifest.digest.hex(),
                "size": o.manifest.size,
                "chunks": len(o.manifest.chunks),
                "keys": list(o.keys),
                "pinned": o.pinned,
                "last_used": float(o.last_used),
            }
            for o in store.objects()
        ]
        return CacheListing(objects=objects, partial=store.partial_keys())

    async def verify(self) -> VerifyReply:
        report = await self._content.store.scrub()
        return VerifyReply(
            report={
                "chunks_checked": report.chunks_checked,
                "bytes_checked": report.bytes_checked,
                "corrupt_chunks": report.corrupt_chunks,
                "missing_chunks": report.missing_chunks,
                "repaired_checksums": report.repaired_checksums,
                "objects_affected": report.objects_affected,
            }
        )

    async def gc(self, free: int) -> GcReply:
        store = self._content.store
        freed = await store.evict(free)
        stats = store.stats()
        return GcReply(freed=freed, bytes_used=stats.bytes_used, max_bytes=stats.max_bytes)

    async def import_debs(self, directory: str) -> ImportReply:
        root = Path(directory)
        if not await trio.Path(root).is_dir():
            raise NotInStoreError(f"{directory} is not a directory this agent can read")
        paths = sorted(await trio.to_thread.run_sync(_debs_under, root))
        imported = present = failed = nbytes = 0
        errors: list[str] = []
        for path in paths:
            try:
                manifest, new = await self._import_one(path)
            except (OSError, FrumitcacheError) as exc:
                failed += 1
                errors.append(f"{path}: {exc}")
                continue
            if new:
                imported += 1
                nbytes += manifest.size
            else:
                present += 1
        log.info("import", directory=directory, imported=imported, present=present, failed=failed)
        return ImportReply(
            files=len(paths),
            imported=imported,
            present=present,
            failed=failed,
            bytes_imported=nbytes,
            errors=errors[:50],
        )

    async def _import_one(self, path: Path) -> tuple[Manifest, bool]:
        store = self._content.store
        # One descriptor for both passes, opened without following a link: a symlink named
        # x.deb (say, to /etc/shadow) is refused, and the file hashed is the file stored.
        fd = await trio.to_thread.run_sync(_open_regular, path)
        try:
            digest = await trio.to_thread.run_sync(_sha256_fd, fd)
            key = f"sha256:{digest.hex()}"
            known = store.lookup(digest)
            if known is not None:
                return known, False
            writer = store.open_writer(key, expected_digest=digest)
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                while block := await trio.to_thread.run_sync(os.read, fd, _READ):
                    await writer.write(block)
                manifest = await writer.finish()
            except BaseException:
                with trio.CancelScope(shield=True):
                    if not writer.closed:
                        await writer.discard()
                raise
        finally:
            os.close(fd)
        site = self._content.site
        if site is not None and site.node is not None and not site.solo:
            # Tell the seeder, so locate and the site's fetches find it here.
            await site.node.announce_object(
                ObjectManifest(
                    key,
                    manifest.digest,
                    manifest.size,
                    manifest.chunk_size,
                    tuple(manifest.chunks),
                    True,
                )
            )
        return manifest, True


def _debs_under(root: Path) -> list[Path]:
    """Every ``*.deb`` under ``root``, never descending through a symlinked directory."""
    found: list[Path] = []
    for folder, _dirs, files in os.walk(root, followlinks=False):
        found.extend(Path(folder) / name for name in files if name.endswith(".deb"))
    return found


def _open_regular(path: Path) -> int:
    """A read descriptor on ``path`` if it is a regular file and not a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError("a symbolic link; only regular files are imported") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError("not a regular file; only regular files are imported")
    return fd


def _sha256_fd(fd: int) -> bytes:
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while block := os.read(fd, _READ):
        h.update(block)
    return h.digest()


def _keys_of(content: ContentService, digest: bytes) -> list[str]:
    for obj in content.store.objects():
        if obj.manifest.digest == digest:
            return list(obj.keys)
    return []


def _local_info(content: ContentService, me: str, key: str) -> ObjectInfo:
    """A one-node site's catalogue answer, from the store."""
    from frumitcache.site import ChunkHolders

    store = content.store
    manifest = store.lookup(key)
    if manifest is not None:
        wire = wire_manifest(key, manifest, store.key_meta(key))
        return ObjectInfo(0, key, wire, tuple(ChunkHolders(full=(me,)) for _ in manifest.chunks))
    chunks = store.partial_chunks(key)
    if chunks:
        wire = ObjectManifest(key, None, None, store.chunk_size, tuple(chunks), False)
        return ObjectInfo(0, key, wire, tuple(ChunkHolders(full=(me,)) for _ in chunks))
    return ObjectInfo(0, key, None)
