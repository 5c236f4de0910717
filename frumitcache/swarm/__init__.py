"""libtorrent inside trio: one session per agent, deterministic per-chunk v2 torrents seeded
from the store, and chunk fetches from a list of site holders.

Every call names a chunk by its raw 32-byte SHA-256 (``bytes``), as the store and the site do.
Hex appears only where a format spells it: the peer port's paths (``/chunk/<hex>``, read and
written by :mod:`._peer_http` and :mod:`._peer_client`), a torrent's name and file name
(:mod:`._torrent`), the ``swarm.node`` JSON lines, and messages for people.

- :class:`Swarm` — the session and its alert pump; seed a stored chunk, fetch one from holders.
- :class:`PeerHttpServer` / :class:`HttpChunkClient` — small chunks over the signed peer HTTP port;
  :class:`PeerLimits` bounds what an unauthenticated connection may hold, :class:`Admission`
  enforces it on a listener; :class:`RequestGate` adds the signature check and
  :func:`serve_signed` is the request loop behind both, for a port's :class:`SignedHandler`
  (the federation endpoint reuses them all).
- :class:`ChunkFetcher` / :func:`fetch_object` — the right transport per chunk, and whole
  objects fetched in parallel and delivered in order (cut-through).
- :func:`chunk_torrent` / :func:`merkle_tree` — the deterministic torrent of a chunk.
- :func:`sign_request` / :data:`AUTH_HEADER` / :class:`RequestVerifier` — a request signed with
  a key, as the peer HTTP port checks it with the site key (the agent's own peer API signs its
  requests the same way; the federation endpoint checks the federation key with it).
"""

from frumitcache._signing import HEADER as AUTH_HEADER
from frumitcache._signing import Verifier as RequestVerifier
from frumitcache._signing import sign as sign_request
from frumitcache.swarm._admission import Admission, PeerLimits
from frumitcache.swarm._fetch import ChunkFetcher, ChunkRef, Holder, assigned_fetcher
from frumitcache.swarm._lt import ChunkStatistics, SwarmStatistics
from frumitcache.swarm._merkle import MerkleHasher, MerkleTree, merkle_tree, piece_size_for
from frumitcache.swarm._object import ChunkOffer, fetch_object
from frumitcache.swarm._peer_client import HttpChunkClient
from frumitcache.swarm._peer_http import IdleTimer, PeerHttpServer, PeerHttpStatistics
from frumitcache.swarm._session import Swarm, cleanup_partials
from frumitcache.swarm._signed_port import RequestGate, SignedHandler, serve_signed
from frumitcache.swarm._storeapi import ChunkStore
from frumitcache.swarm._torrent import ChunkTorrent, chunk_torrent

__all__ = [
    "AUTH_HEADER",
    "Admission",
    "ChunkFetcher",
    "ChunkOffer",
    "ChunkRef",
    "ChunkStatistics",
    "ChunkStore",
    "ChunkTorrent",
    "Holder",
    "HttpChunkClient",
    "IdleTimer",
    "MerkleHasher",
    "MerkleTree",
    "PeerHttpServer",
    "PeerHttpStatistics",
    "PeerLimits",
    "RequestGate",
    "RequestVerifier",
    "SignedHandler",
    "Swarm",
    "SwarmStatistics",
    "assigned_fetcher",
    "chunk_torrent",
    "cleanup_partials",
    "fetch_object",
    "merkle_tree",
    "piece_size_for",
    "serve_signed",
    "sign_request",
]
