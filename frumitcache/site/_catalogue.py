"""The site catalogue: what the site holds and who holds it. A plain data structure.

The seeder keeps one :class:`Catalogue`: URL -> object entry (digest and size once known, the
chunk size, the ordered chunk digests so far, whether the object is complete) and chunk digest
-> holders (members with the whole chunk, and members pulling it). Chunks are content
addressed, so two URLs sharing a chunk share its holders.

After a failover the new seeder starts empty and rebuilds it from every member's
:class:`~._messages.Have` report (:meth:`Catalogue.apply_have`: each report's objects make
its sender a holder of their chunks); to resume an interrupted origin
fetch it asks :meth:`Catalogue.resume_index` for the first chunk no live member holds and
fetches from ``index * chunk_size`` with an HTTP Range. When a partition heals, the surviving
seeder :meth:`merges <Catalogue.merge>` what the other side knew.

Conflicts (the origin changed an object between two fetches, e.g. on both sides of a
partition): a complete entry beats an incomplete one; between two incomplete entries the one
with more chunks wins, unless the chunk lists disagree, when this catalogue's entry is kept
(the seeder's own view); between two complete entries with different digests, this
catalogue's entry is kept. Holders are per digest, so they are never wrong, merely unused.

Bounded (a seeder runs for weeks): at most ``max_objects`` entries, the least recently used
forgotten first; the holders of a chunk digest are kept while some entry lists it (a count per
digest), and forgotten with the last such entry; holders of digests no entry lists (a bare
:class:`~._messages.Have` digest) are kept for the ``max_orphans`` most recent only; a member
that leaves is dropped from every holder set (:meth:`Catalogue.remove_member`).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from frumitcache.site._messages import ChunkHolders, Have, ObjectInfo, ObjectManifest


@dataclass(slots=True)
class _Entry:
    url: str
    chunk_size: int
    digest: bytes | None = None
    size: int | None = None
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None

    def manifest(self) -> ObjectManifest:
        return ObjectManifest(
            self.url,
            self.digest,
            self.size,
            self.chunk_size,
            tuple(self.chunks),
            self.complete,
            self.content_type,
            self.etag,
            self.last_modified,
        )

    def learn_meta(self, manifest: ObjectManifest) -> None:
        """The origin's metadata, once someone who saw the response reports it."""
        if manifest.digest is not None and self.digest not in (None, manifest.digest):
            return  # another version's metadata
        self.content_type = self.content_type or manifest.content_type
        self.etag = self.etag or manifest.etag
        self.last_modified = self.last_modified or manifest.last_modified


def _prefix_of(
    short: list[bytes] | tuple[bytes, ...], long: list[bytes] | tuple[bytes, ...]
) -> bool:
    return len(short) <= len(long) and list(long[: len(short)]) == list(short)


#: Default bound of a catalogue's entries (an entry with its chunk list is well under 1 KiB
#: for objects up to ~100 MB with 4 MiB chunks).
MAX_OBJECTS = 20_000
MAX_ORPHANS = 4_096


class Catalogue:
    """URL -> object entry, and chunk digest -> holders; bounded (see the module docstring)."""

    def __init__(self, *, max_objects: int = MAX_OBJECTS, max_orphans: int = MAX_ORPHANS) -> None:
        self.max_objects = max_objects
        self.max_orphans = max_orphans
        self._objects: OrderedDict[str, _Entry] = OrderedDict()
        self._full: dict[bytes, set[str]] = {}
        self._partial: dict[bytes, set[str]] = {}
        # How many entries list each digest; holders live as long as their digest is listed.
        self._refs: Counter[bytes] = Counter()
        self._orphans: OrderedDict[bytes, None] = OrderedDict()

    def table_sizes(self) -> dict[str, int]:
        """Sizes of the internal tables (tests and ``status`` check they stay bounded)."""
        return {
            "objects": len(self._objects),
            "full": len(self._full),
            "partial": len(self._partial),
            "digests": len(self._refs),
            "orphans": len(self._orphans),
        }

    # --- bookkeeping --------------------------------------------------------------------------

    def _ref(self, digests: Iterable[bytes]) -> None:
        for digest in digests:
            self._refs[digest] += 1
            self._orphans.pop(digest, None)

    def _unref(self, digests: Iterable[bytes]) -> None:
        for digest in digests:
            self._refs[digest] -= 1
            if self._refs[digest] <= 0:
                del self._refs[digest]
                self._full.pop(digest, None)
                self._partial.pop(digest, None)

    def _set_chunks(self, entry: _Entry, chunks: list[bytes]) -> None:
        self._ref(chunks)  # first: digests in both lists keep their holders
        self._unref(entry.chunks)
        entry.chunks = chunks

    def _drop(self, url: str) -> None:
        entry = self._objects.pop(url, None)
        if entry is not None:
            self._unref(entry.chunks)

    def _insert(self, entry: _Entry) -> None:
        self._objects[entry.url] = entry
        self._ref(entry.chunks)
        while len(self._objects) > self.max_objects:
            self._drop(next(iter(self._objects)))

    def _touch(self, url: str) -> _Entry | None:
        entry = self._objects.get(url)
        if entry is not None:
            self._objects.move_to_end(url)
        return entry

    def __len__(self) -> int:
        return len(self._objects)

    def urls(self) -> list[str]:
        return sorted(self._objects)

    # --- objects ------------------------------------------------------------------------------

    def get(self, url: str) -> ObjectManifest | None:
        entry = self._touch(url)
        return entry.manifest() if entry is not None else None

    def put_manifest(self, manifest: ObjectManifest) -> None:
        """Learn (part of) an object; see the module docstring for conflicts."""
        entry = self._touch(manifest.url)
        if entry is None:
            self._insert(
                _Entry(
                    manifest.url,
                    manifest.chunk_size,
                    manifest.digest,
                    manifest.size,
                    list(manifest.chunks),
                    manifest.complete,
                    manifest.content_type,
                    manifest.etag,
                    manifest.last_modified,
                )
            )
            return
        entry.learn_meta(manifest)
        if entry.complete:
            return
        if manifest.chunk_size != entry.chunk_size and entry.chunks:
            if not manifest.complete:
                return
        elif not manifest.complete and not _prefix_of(entry.chunks, manifest.chunks):
            return
        entry.chunk_size = manifest.chunk_size
        self._set_chunks(entry, list(manifest.chunks))
        entry.digest = manifest.digest if manifest.digest is not None else entry.digest
        entry.size = manifest.size if manifest.size is not None else entry.size
        entry.complete = manifest.complete

    def add_chunk(self, url: str, index: int, digest: bytes, chunk_size: int) -> bool:
        """Chunk ``index`` of ``url`` is ``digest``. False if it contradicts what is known
        (a gap before it, or a different digest at that index)."""
        if index < 0 or chunk_size <= 0:
            return False
        entry = self._touch(url)
        if entry is None:
            if index != 0:
                return False
            entry = _Entry(url, chunk_size)
            self._insert(entry)
        if entry.chunk_size != chunk_size:
            return False
        if index < len(entry.chunks):
            return entry.chunks[index] == digest
        if index != len(entry.chunks) or entry.complete:
            return False
        entry.chunks.append(digest)
        self._ref((digest,))
        return True

    def finish(self, manifest: ObjectManifest) -> None:
        """The object is complete: its final manifest replaces what was built chunk by chunk."""
        entry = self._objects.get(manifest.url)
        if entry is not None and not _prefix_of(entry.chunks, manifest.chunks):
            self._drop(manifest.url)
        self.put_manifest(manifest)

    def forget(self, url: str) -> None:
        """Drop ``url`` (its fetch failed, or it changed at the origin)."""
        self._drop(url)

    # --- holders ------------------------------------------------------------------------------

    def add_holder(self, digest: bytes, node: str, *, full: bool = True) -> None:
        if digest not in self._refs:
            self._orphans[digest] = None
            self._orphans.move_to_end(digest)
            while len(self._orphans) > self.max_orphans:
                oldest, _ = self._orphans.popitem(last=False)
                self._full.pop(oldest, None)
                self._partial.pop(oldest, None)
        if full:
            self._full.setdefault(digest, set()).add(node)
            self._discard(self._partial, digest, node)
        elif node not in self._full.get(digest, ()):
            self._partial.setdefault(digest, set()).add(node)

    def drop_holder(self, digest: bytes, node: str) -> None:
        """``node`` no longer holds ``digest`` (evicted, or it failed to serve it)."""
        self._discard(self._full, digest, node)
        self._discard(self._partial, digest, node)

    @staticmethod
    def _discard(index: dict[bytes, set[str]], digest: bytes, node: str) -> None:
        nodes = index.get(digest)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del index[digest]

    def remove_member(self, node: str) -> None:
        """``node`` left the site: it holds nothing any more."""
        for index in (self._full, self._partial):
            for digest in [d for d, nodes in index.items() if node in nodes]:
                self._discard(index, digest, node)

    def holders(self, digest: bytes) -> ChunkHolders:
        return ChunkHolders(
            full=tuple(sorted(self._full.get(digest, ()))),
            partial=tuple(sorted(self._partial.get(digest, ()))),
        )

    def info(self, url: str, *, request_id: int = 0, fetching: bool = False) -> ObjectInfo:
        """The reply to a lookup of ``url``: its manifest and the holders of each chunk."""
        entry = self._touch(url)
        if entry is None:
            return ObjectInfo(request_id, url, None, (), fetching)
        return ObjectInfo(
            request_id,
            url,
            entry.manifest(),
            tuple(self.holders(d) for d in entry.chunks),
            fetching,
        )

    def resume_index(self, url: str, live: Collection[str]) -> int:
        """Index of the first chunk of ``url`` that no member in ``live`` holds completely
        (the known chunk count if they hold them all; 0 for an unknown URL). An origin fetch
        resumes there, at byte ``index * chunk_size``."""
        entry = self._objects.get(url)
        if entry is None:
            return 0
        for i, digest in enumerate(entry.chunks):
            if not any(n in live for n in self._full.get(digest, ())):
                return i
        return len(entry.chunks)

    # --- rebuild and merge --------------------------------------------------------------------

    def apply_have(self, have: Have) -> None:
        """Take in one report: its objects, and (``have.held``) its sender as the holder of
        every chunk its objects list. A chunk list this catalogue keeps another of (a
        conflict) still names held digests: holders are per digest."""
        for manifest in have.objects:
            self.put_manifest(manifest)
            if have.held:
                for digest in manifest.chunks:
                    self.add_holder(digest, have.node_id, full=True)
        for digest in have.full:
            self.add_holder(digest, have.node_id, full=True)
        for digest in have.partial:
            self.add_holder(digest, have.node_id, full=False)

    @classmethod
    def rebuild(cls, haves: Iterable[Have]) -> Catalogue:
        """A catalogue from members' reports alone (a new seeder after a failover)."""
        cat = cls()
        for have in haves:
            cat.apply_have(have)
        return cat

    def merge(self, other: Catalogue) -> None:
        """Take in everything ``other`` knows (partition healing); conflicts as documented."""
        for entry in other._objects.values():
            self.put_manifest(entry.manifest())
        for digest, nodes in other._full.items():
            for node in nodes:
                self.add_holder(digest, node, full=True)
        for digest, nodes in other._partial.items():
            for node in nodes:
                self.add_holder(digest, node, full=False)

    def snapshot(self) -> tuple[ObjectManifest, ...]:
        """Every entry (what a seeder stepping down hands to the winner as a :class:`Have`)."""
        return tuple(self._objects[u].manifest() for u in sorted(self._objects))
