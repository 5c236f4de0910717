"""Blob prefetch: every blob of an image manifest asked for the moment a client GETs it.

Clients pull an image's blobs at their own pace: skopeo asks for the layers in parallel and
for the config only after the last layer, containerd takes at most three blobs at a time. On a
slow uplink each blob the site asks for late is either uplink time left idle or a serial round
trip at the end of every Pi's pull. So when a client GETs an image manifest, the door asks the
content seam for its config and each layer at once: the seeder starts every upstream fetch
then (still one per blob for the whole site; a blob the site holds costs nothing), and a member
starts pulling each blob's chunks as they arrive, so its client's own GETs find them under
way or held.

Only an image manifest (OCI or Docker v2) is followed: a manifest list or OCI index names
platforms, of which the client picks one and then GETs its manifest. A HEAD (a client that
holds the image checking its tag) and a 304 follow nothing. Digests come from upstream JSON:
each is checked against the sha256 grammar before it can become a URL or a store key, and one
manifest adds at most :data:`MAX_BLOBS` blobs.
"""

from __future__ import annotations

import json
import math
import re

import trio

from frumitcache._log import get_logger
from frumitcache.errors import FrumitcacheError
from frumitcache.oci._names import Ask
from frumitcache.oci._source import RegistryContent
from frumitcache.oci._spec import DOCKER_MANIFEST, OCI_MANIFEST

log = get_logger("oci")

_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
#: Blobs one manifest may set going (an image has tens of layers; a hostile manifest is
#: refused beyond this, not truncated into a partial prefetch).
MAX_BLOBS = 256
#: Prefetches started and not yet under way at once, for all manifests: a best effort that
#: drops what does not fit (the client's own GETs still fetch it).
MAX_PENDING = 512


def blobs_of(body: bytes, media_type: str) -> tuple[str, ...]:
    """The digests of an image manifest's config and layers, in that order (duplicates once);
    ``()`` for anything else: an index or list, bad JSON, a digest that is not sha256,
    a layer a client fetches from elsewhere (``urls``: a foreign layer), too many blobs."""
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        return ()
    try:
        document = json.loads(body)
    except ValueError:
        return ()
    if not isinstance(document, dict):
        return ()
    config, layers = document.get("config"), document.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list) or len(layers) >= MAX_BLOBS:
        return ()
    found: dict[str, None] = {}
    for entry in (config, *layers):
        if not isinstance(entry, dict):
            return ()  # a manifest this malformed is not worth acting on
        if "urls" in entry:
            continue
        digest = entry.get("digest")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            return ()
        found[digest] = None
    return tuple(found)


class Prefetcher:
    """Runs the prefetches; :meth:`run` in the door's nursery, :meth:`manifest_served` from a
    request (never blocks)."""

    def __init__(self, source: RegistryContent) -> None:
        self.source = source
        self._send, self._receive = trio.open_memory_channel[Ask](math.inf)
        self._pending: set[str] = set()  # blob URLs queued or being opened
        self.started = 0  # blobs asked for (a counter for tests and status)

    def manifest_served(self, ask: Ask, body: bytes, media_type: str) -> int:
        """A client GOT the manifest ``ask`` (``body``): queue its blobs; how many were new."""
        queued = 0
        for digest in blobs_of(body, media_type):
            blob = Ask(ask.registry, ask.repository, "blobs", digest, True)
            if blob.url in self._pending or len(self._pending) >= MAX_PENDING:
                continue
            self._pending.add(blob.url)
            self._send.send_nowait(blob)
            queued += 1
        return queued

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            async for blob in self._receive:
                nursery.start_soon(self._one, blob)

    async def _one(self, blob: Ask) -> None:
        try:
            # Opening is asking: the flight (this node's, and on a member the seeder's) runs on
            # in the agent whether or not anyone reads it now.
            await self.source.blob(blob)
            self.started += 1
        except FrumitcacheError as exc:
            log.debug("oci.prefetch-failed", url=blob.url, error=exc.code, detail=str(exc))
        except Exception as exc:  # a bug costs one prefetch, never the door
            log.warning("oci.prefetch-crashed", url=blob.url, detail=repr(exc))
        finally:
            self._pending.discard(blob.url)
