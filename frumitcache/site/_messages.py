"""Every message of the site control plane, as frozen slotted dataclasses.

These are the only shapes that cross the wire. The codec (:mod:`._codec`) turns them into
authenticated msgpack frames and back, checking every field against the annotations here, so
the state machines and the driver only ever see well-typed instances.

Digests are raw 32-byte SHA-256 values (``bytes``), as in the store's manifests. Node ids are
the ``node.name`` of each member. ``request_id`` pairs a request with its reply; it is chosen
by the asker and only needs to be unique per asker.

Groups:

- membership: :class:`Beacon` (multicast and to static peers while there is no seeder, backed
  off once there is one; also the hello sent back to a newly heard member), :class:`Roster`
  (the seeder's member list, versioned), :class:`Bye` (graceful leave);
- election: :class:`Claim` / :class:`Vote` (stand for a term), :class:`Lease` /
  :class:`LeaseAck` (the seeder renews its lease with a majority);
- catalogue: :class:`Lookup` -> :class:`ObjectInfo`, :class:`FetchRequest` -> :class:`ObjectInfo`
  (both to the seeder), :class:`ChunkAnnounce` / :class:`ObjectAnnounce` / :class:`FetchFailed`
  (the seeder announces progress; members announce chunks they completed), :class:`Have`
  (a member's holdings, sent to every new seeder so it can rebuild its catalogue),
  :class:`ErrorReply` (a request that could not be served).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """What a member advertises: where to reach it and what the election and scheduler need."""

    node_id: str
    address: str
    control_port: int
    peer_port: int
    swarm_port: int
    priority: int = 0
    model: str = ""
    ram_bytes: int = 0
    free_disk_bytes: int = 0
    link_mbit: int = 0
    wired: bool = True
    load: float = 0.0


# --- membership -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Beacon:
    """Periodic announcement of a member, with its view of the seeder and its electorate size.

    ``reply`` asks the receiver to answer at once with its own beacon (sent to a member heard
    for the first time, so that discovery takes one round trip instead of one interval).
    """

    member: MemberInfo
    term: int
    seeder: str | None
    electorate: int
    reply: bool = False


@dataclass(frozen=True, slots=True)
class Roster:
    """The members a seeder counts alive (itself first), sent to a member whose
    :class:`LeaseAck` names another ``version``; while a member's version matches the one in the
    seeder's :class:`Lease`, every lease refreshes all of them at once (no member-to-member
    beacons). A follower also sends a stray node a short one (itself and the seeder) so that
    it finds the seeder even when static peer lists are one-sided."""

    term: int
    seeder: str
    version: int
    members: tuple[MemberInfo, ...]


@dataclass(frozen=True, slots=True)
class RosterDelta:
    """The change from the seeder's roster version ``base`` to ``version``: members that came
    or moved (``added``, whole) and the node ids that left (``removed``). Sent instead of the
    whole :class:`Roster` to a member whose ack names a recent version, so that one member
    coming or going costs every other member a short frame, not the whole list (at N = 100 a
    roster is 8-16 KB: a burst of fragmented datagrams to each member). A member holding
    another version, or whose result does not hash to ``version``, ignores it; its next ack
    then gets the whole roster."""

    term: int
    seeder: str
    base: int
    version: int
    added: tuple[MemberInfo, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Bye:
    """A member leaves on purpose (shutdown): forget it now rather than after the timeout."""

    node_id: str


# --- election ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """``candidate`` stands for seeder in ``term``."""

    term: int
    candidate: str


@dataclass(frozen=True, slots=True)
class Vote:
    """Answer to a :class:`Claim`; ``electorate`` is the size of the voter's electorate."""

    term: int
    voter: str
    candidate: str
    granted: bool
    electorate: int


@dataclass(frozen=True, slots=True)
class Lease:
    """The seeder of ``term`` renews its lease (round ``seq``); also its heartbeat."""

    term: int
    seeder: str
    seq: int
    #: Version of the seeder's :class:`Roster` (0: none sent).
    roster: int = 0
    #: Members (the seeder included) that granted its last acked round: when two seeders meet
    #: (a partition longer than ``member_forget_s`` healed) the one backed by fewer steps down.
    backing: int = 0
    #: Seconds this round's lease lasts (0: ``site.lease_s``); longer while acks come back
    #: late (a loaded site), see :mod:`._election` rule 3.
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class LeaseAck:
    """Answer to a :class:`Lease`; a granted ack promises no vote for another for one lease.
    ``roster`` is the version of the seeder's :class:`Roster` the voter holds."""

    term: int
    seeder: str
    seq: int
    voter: str
    granted: bool
    electorate: int
    roster: int = 0


# --- catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectManifest:
    """What the site knows of one URL: digest and size once known, the chunks so far, and the
    origin's Content-Type, ETag and Last-Modified (header text as the origin sent it), so every
    member answers with them and with 304 as the seeder does."""

    url: str
    digest: bytes | None
    size: int | None
    chunk_size: int
    chunks: tuple[bytes, ...]
    complete: bool
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class ChunkHolders:
    """Members holding one chunk completely (``full``) or downloading it (``partial``)."""

    full: tuple[str, ...] = ()
    partial: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lookup:
    """Ask the seeder what the site knows of ``url`` (no fetch is started)."""

    request_id: int
    url: str


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """Ask the seeder for ``url``: it starts the one origin fetch unless one runs already.

    ``revalidate`` (apt index files, tags): the seeder checks the origin for a newer version,
    at most once per freshness window for the whole site; ``revalidate_with`` names an object
    whose newer revalidation makes this one due too. ``door`` and ``headers`` (``"Name: value"``)
    are the asking door's upstream request: the seeder signs it with its own hook for that door.
    """

    request_id: int
    url: str
    sha256: bytes | None = None
    revalidate: bool = False
    revalidate_with: str | None = None
    door: str = ""
    headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Reply to :class:`Lookup` and :class:`FetchRequest`.

    ``manifest`` is ``None`` when the site knows nothing of the URL; ``holders[i]`` lists who
    holds chunk ``i`` of ``manifest.chunks``.
    """

    request_id: int
    url: str
    manifest: ObjectManifest | None
    holders: tuple[ChunkHolders, ...] = ()
    fetching: bool = False


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A request could not be served; ``code`` is a :class:`~frumitcache.errors` code,
    ``status`` and ``retry_after`` the origin's status and ``Retry-After`` (if it answered)."""

    request_id: int
    code: str
    message: str
    status: int = 0
    retry_after: str = ""


@dataclass(frozen=True, slots=True)
class ChunkAnnounce:
    """Chunk ``index`` of ``url`` (digest ``digest``, ``chunk_size`` bytes per chunk) is complete
    at ``holder``: from the seeder to every member while it fetches (cut-through), and from a
    member to the seeder when it has pulled one."""

    url: str
    index: int
    digest: bytes
    chunk_size: int
    holder: str


@dataclass(frozen=True, slots=True)
class ObjectAnnounce:
    """``manifest`` is now complete (or newly known) at ``holder``."""

    manifest: ObjectManifest
    holder: str


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """The seeder's origin fetch of ``url`` failed; waiting members pass the error on."""

    url: str
    code: str
    message: str
    status: int = 0
    retry_after: str = ""


@dataclass(frozen=True, slots=True)
class Have:
    """Part of a member's holdings, sent to each new seeder (catalogue rebuild after failover
    or partition healing). A member may send several; the seeder merges them all.

    ``objects`` are held by ``node_id`` (``held``): a complete manifest makes it a holder of
    every chunk, an incomplete one of the chunks it lists, so no per-chunk list of its own
    crosses the wire. ``full`` / ``partial`` name chunks held outside any listed object.
    ``held=False``: ``objects`` are what a seeder stepping down knew of the site, naming no
    holder."""

    node_id: str
    objects: tuple[ObjectManifest, ...] = ()
    full: tuple[bytes, ...] = ()
    partial: tuple[bytes, ...] = ()
    held: bool = True


@dataclass(frozen=True, slots=True)
class Bulk:
    """A message too large for a frame (the :class:`ObjectInfo`, :class:`Have` or
    :class:`ObjectAnnounce` of an object of many chunks) waits at the sender's peer port under
    ``token``; the recipient fetches its body there (see :mod:`._bulk`). ``size`` and ``sha256``
    of the body ride in this authenticated frame, so the body needs no MAC of its own."""

    token: int
    size: int
    sha256: bytes


Message = (
    Beacon
    | Roster
    | RosterDelta
    | Bye
    | Claim
    | Vote
    | Lease
    | LeaseAck
    | Lookup
    | FetchRequest
    | ObjectInfo
    | ErrorReply
    | ChunkAnnounce
    | ObjectAnnounce
    | FetchFailed
    | Have
    | Bulk
)

#: Every top-level message type, by its wire name. The wire name is the class name; adding a
#: type here is the only way to make the codec accept it.
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls
    for cls in (
        Beacon,
        Roster,
        RosterDelta,
        Bye,
        Claim,
        Vote,
        Lease,
        LeaseAck,
        Lookup,
        FetchRequest,
        ObjectInfo,
        ErrorReply,
        ChunkAnnounce,
        ObjectAnnounce,
        FetchFailed,
        Have,
        Bulk,
    )
}

#: Requests carry a ``request_id`` and get exactly one reply with the same id.
Request = Lookup | FetchRequest
Reply = ObjectInfo | ErrorReply


def split_have(
    node_id: str,
    objects: tuple[ObjectManifest, ...],
    full: tuple[bytes, ...],
    partial: tuple[bytes, ...],
    *,
    max_digests: int = 400,
) -> list[Have]:
    """Cut a member's holdings into :class:`Have` messages of at most ``max_digests`` digests
    each, so that every one fits in a frame (400 digests are about 14 KB)."""
    out: list[Have] = []
    batch: list[ObjectManifest] = []
    count = 0
    for manifest in objects:
        n = len(manifest.chunks) + 1
        if batch and count + n > max_digests:
            out.append(Have(node_id, objects=tuple(batch)))
            batch, count = [], 0
        batch.append(manifest)
        count += n
    if batch:
        out.append(Have(node_id, objects=tuple(batch)))
    for kind, digests in (("full", full), ("partial", partial)):
        for start in range(0, len(digests), max_digests):
            part = digests[start : start + max_digests]
            out.append(Have(node_id, full=part) if kind == "full" else Have(node_id, partial=part))
    return out or [Have(node_id)]
