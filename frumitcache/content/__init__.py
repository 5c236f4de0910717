"""The one content seam every front door uses (apt proxy, pull and the library, registry).

A door turns its protocol's request into a :class:`ContentRequest` (a URL or a digest,
``immutable`` or ``revalidate``, optional upstream headers such as ``Accept``), calls
:meth:`ContentSource.open`, and answers from the :class:`Content` it gets: size, SHA-256,
:class:`HttpMeta` (Content-Type, ETag, Last-Modified as the origin sent them), verified reads by
range (:meth:`Content.read`, or :meth:`Content.read_files` with :func:`open_piece` and
:func:`send_piece` for ``sendfile``) and where the bytes came from (:data:`Provenance`: local /
site / federation / uplink). Single-flight, the freshness window, the seeder and member roles
and failover live behind the seam, in the agent, once.

How to add a front door:

1. a package ``frumitcache/<door>/`` that imports only ``frumitcache.content`` (plus the floors:
   ``errors``, ``config``, ``_log``), with a server taking a :class:`ContentSource` and a
   ``task_status`` that reports its bound address;
2. a config section ``[<door>]`` in :mod:`frumitcache.config` (``enabled``, ``listen``, ``port``,
   its allow-list) and the door's name in :data:`frumitcache.origin.Door`;
3. one ``await nursery.start(door.serve)`` in :meth:`frumitcache.agent.Agent.run`; register an
   :class:`UpstreamAuth` with :meth:`ContentSource.set_upstream_auth` if the upstream needs it.

A door never opens a connection to the uplink itself: content comes through
:class:`ContentSource`, and an opaque tunnel (apt's ``CONNECT``) through a :data:`TunnelOpener`
the agent hands it, so every uplink byte is paced and counted in one place.

Errors are the one tree of :mod:`frumitcache.errors`; :func:`http_status` maps them to statuses
and :func:`plan_response` answers Range and conditional requests, so every door agrees.
"""

from frumitcache.content._http import Plan, http_date, http_status, parse_http_date, plan_response
from frumitcache.content._request import DIGEST_SCHEME, ContentRequest, Freshness, UpstreamAuth
from frumitcache.content._response import (
    PROVENANCES,
    ChunkFile,
    Content,
    ContentInfo,
    ContentSource,
    HttpMeta,
    Piece,
    Provenance,
)
from frumitcache.content._send import open_piece, send_head, send_piece
from frumitcache.content._tunnel import TunnelOpener
from frumitcache.content._window import FreshnessWindow, Revalidation

__all__ = [
    "DIGEST_SCHEME",
    "PROVENANCES",
    "ChunkFile",
    "Content",
    "ContentInfo",
    "ContentRequest",
    "ContentSource",
    "Freshness",
    "FreshnessWindow",
    "HttpMeta",
    "Piece",
    "Plan",
    "Provenance",
    "Revalidation",
    "TunnelOpener",
    "UpstreamAuth",
    "http_date",
    "http_status",
    "open_piece",
    "parse_http_date",
    "plan_response",
    "send_head",
    "send_piece",
]
