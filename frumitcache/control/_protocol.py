"""The local control API's wire format: typed messages, msgpack-framed, over a Unix socket.

Only this module sees msgpack maps. Every message is a frozen dataclass registered under a
short type tag; :func:`encode` turns one into bytes and :class:`Decoder` turns a byte stream
back into messages, rejecting unknown tags, missing or extra fields and wrong types with
:class:`~frumitcache.errors.ProtocolError`. A conversation is one request from the client
followed by one or more replies, ending with a terminal reply (``Done``-style or ``Failed``).

Kept in sync with the client by construction: both import these classes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import msgpack

from frumitcache.errors import FrumitcacheError, ProtocolError, error_from_code

# One frame never needs more than a chunk of data plus headroom; bounding it keeps a hostile
# or broken client from making the agent buffer without limit.
MAX_FRAME = 8 * 1024 * 1024
MAX_TEXT = 8 * 1024  # a URL, node name or path; longer ones are not requests anyone means
MAX_ITEMS = 10_000  # URLs or nodes in one request
MAX_SIZE = 2**62  # offsets and byte counts: far beyond any store, well inside int64


@dataclass(frozen=True, slots=True)
class Bound:
    """A value limit the codec checks on top of the type (``Annotated[int, Bound(...)]``):
    integers within ``[low, high]``; strings, bytes and lists at most ``max_len`` long, or
    exactly ``exact_len``. Requests come from any local user, so every field carries one."""

    low: int | None = None
    high: int | None = None
    max_len: int | None = None
    exact_len: int | None = None

    def admits(self, value: Any) -> bool:
        if isinstance(value, int):
            return (self.low is None or value >= self.low) and (
                self.high is None or value <= self.high
            )
        if isinstance(value, str | bytes | list | dict):
            if self.exact_len is not None and len(value) != self.exact_len:
                return False
            return self.max_len is None or len(value) <= self.max_len
        return True


Text = Annotated[str, Bound(max_len=MAX_TEXT)]
Digest = Annotated[bytes, Bound(exact_len=32)]
Size = Annotated[int, Bound(low=0, high=MAX_SIZE)]


class Message:
    """Base of every control message; subclasses set ``tag``."""

    tag: ClassVar[str] = ""


_REGISTRY: dict[str, type[Message]] = {}


def message(cls: type[Any]) -> type[Any]:
    """Register a frozen dataclass as a control message under its ``tag``."""
    if not cls.tag or cls.tag in _REGISTRY:
        raise TypeError(f"bad or duplicate tag on {cls.__name__}")
    _REGISTRY[cls.tag] = cls
    return cls


# --- requests -----------------------------------------------------------------------------


@message
@dataclass(frozen=True, slots=True)
class Pull(Message):
    """Stream the object at ``url`` (fetching it through the site if needed)."""

    tag: ClassVar[str] = "pull"
    url: Text
    sha256: Digest | None = None
    offset: Size = 0


@message
@dataclass(frozen=True, slots=True)
class PullFiles(Message):
    """As :class:`Pull`, but the verified bytes come as open chunk files (:class:`FileData`
    with a descriptor) for the client to copy itself. Newer than ``Pull``: an agent that does
    not know it answers ``Failed`` with code ``protocol``, and the client falls back to
    ``Pull``; an older client never sends it and never sees a descriptor."""

    tag: ClassVar[str] = "pull-fd"
    url: Text
    sha256: Digest | None = None
    offset: Size = 0


@message
@dataclass(frozen=True, slots=True)
class StatusRequest(Message):
    tag: ClassVar[str] = "status?"


# --- replies ------------------------------------------------------------------------------


@message
@dataclass(frozen=True, slots=True)
class PullStarted(Message):
    """The object is on its way; ``size`` is known once the origin said it (or it is stored)."""

    tag: ClassVar[str] = "pull+"
    size: int | None
    # "store" (already here), "origin" (fetched now), "site" (from members), "federation"
    # (fetched now from a parent or sibling site)
    source: str


@message
@dataclass(frozen=True, slots=True)
class Data(Message):
    """Verified bytes of the object, in order."""

    tag: ClassVar[str] = "data"
    data: bytes


@message
@dataclass(frozen=True, slots=True)
class FileData(Message):
    """The next ``count`` bytes of the object are those of the descriptor passed with this
    frame (SCM_RIGHTS), from ``skip``: a read-only chunk file the agent checked as it opened
    it (see :meth:`frumitcache.store.Store.open_chunk`)."""

    tag: ClassVar[str] = "fdata"
    skip: Size
    count: Size


@message
@dataclass(frozen=True, slots=True)
class PullDone(Message):
    tag: ClassVar[str] = "pull."
    digest: bytes
    size: int


@message
@dataclass(frozen=True, slots=True)
class Failed(Message):
    """A request failed; ``code`` is a :class:`FrumitcacheError` code."""

    tag: ClassVar[str] = "fail"
    code: str
    message: str
    status: int | None = None

    @classmethod
    def from_error(cls, exc: FrumitcacheError) -> Failed:
        return cls(code=exc.code, message=str(exc), status=getattr(exc, "status", None))

    def to_error(self) -> FrumitcacheError:
        return error_from_code(self.code, self.message, status=self.status)


@message
@dataclass(frozen=True, slots=True)
class Status(Message):
    """A snapshot of the agent: identity, where it listens and stores, and counters."""

    tag: ClassVar[str] = "status"
    version: str
    node: str
    address: str
    socket: str
    store_path: str
    apt: str
    pid: int
    uptime_s: float
    store: dict[str, int]
    origin: dict[str, int]
    site: dict[str, Any]
    oci: str = ""  # the registry mirror's address; "" when off
    oci_counters: dict[str, int] | None = None  # requests, bytes by provenance, GETs spared


# --- library requests (issue 6) and their replies -------------------------------------------
# Results that hold several records carry them as lists of plain maps; the client turns them
# into the typed results of :mod:`frumitcache._results`.


@message
@dataclass(frozen=True, slots=True)
class PrefetchRequest(Message):
    """Stage ``url`` on ``nodes`` (``None``: every member) without waiting for it."""

    tag: ClassVar[str] = "prefetch"
    url: Text
    sha256: Digest | None = None
    nodes: Annotated[list[Text], Bound(max_len=MAX_ITEMS)] | None = None


@message
@dataclass(frozen=True, slots=True)
class PrefetchReply(Message):
    """Per node: ``present`` (already held), ``fetching`` (started), or why it was not."""

    tag: ClassVar[str] = "prefetch."
    url: str
    nodes: dict[str, str]


@message
@dataclass(frozen=True, slots=True)
class PinRequest(Message):
    """Pin (``pinned``) or unpin the object named by a URL or a 64-hex-digit digest."""

    tag: ClassVar[str] = "pin"
    target: Text
    pinned: bool


@message
@dataclass(frozen=True, slots=True)
class PinReply(Message):
    tag: ClassVar[str] = "pin."
    digest: bytes
    pinned: bool
    present: bool


@message
@dataclass(frozen=True, slots=True)
class LocateRequest(Message):
    """Which members hold the object named by a URL or a 64-hex-digit digest."""

    tag: ClassVar[str] = "locate"
    target: Text


@message
@dataclass(frozen=True, slots=True)
class LocateReply(Message):
    """``holders`` maps a node to ``{"chunks": n, "bytes": n}`` it holds of the object."""

    tag: ClassVar[str] = "locate."
    url: str
    digest: bytes | None
    size: int | None
    chunk_size: int
    chunks: int
    complete: bool
    fetching: bool
    holders: dict[str, Any]


@message
@dataclass(frozen=True, slots=True)
class SiteRequest(Message):
    tag: ClassVar[str] = "site?"


@message
@dataclass(frozen=True, slots=True)
class SiteReply(Message):
    """The site as this agent sees it: members, seeder, uplink and cache figures."""

    tag: ClassVar[str] = "site"
    node: str
    site: str
    solo: bool
    seeder: str | None
    term: int
    members: list[Any]
    uplink: dict[str, Any]
    cache: dict[str, int]


@message
@dataclass(frozen=True, slots=True)
class EstimateRequest(Message):
    tag: ClassVar[str] = "estimate"
    urls: Annotated[list[Text], Bound(max_len=MAX_ITEMS)]


@message
@dataclass(frozen=True, slots=True)
class EstimateReply(Message):
    """One map per URL: ``url``, ``size``, ``in_site``, ``uplink`` (``None``: unknown),
    ``source`` (``site`` or ``origin-head``) and ``error``."""

    tag: ClassVar[str] = "estimate."
    items: list[Any]


@message
@dataclass(frozen=True, slots=True)
class CacheListRequest(Message):
    tag: ClassVar[str] = "cache-ls"


@message
@dataclass(frozen=True, slots=True)
class CacheListing(Message):
    tag: ClassVar[str] = "cache-ls."
    objects: list[Any]
    partial: list[str]


@message
@dataclass(frozen=True, slots=True)
class VerifyRequest(Message):
    tag: ClassVar[str] = "verify"


@message
@dataclass(frozen=True, slots=True)
class VerifyReply(Message):
    tag: ClassVar[str] = "verify."
    report: dict[str, int]


@message
@dataclass(frozen=True, slots=True)
class GcRequest(Message):
    """Evict unpinned objects, least recently used first, until ``free`` more bytes fit."""

    tag: ClassVar[str] = "gc"
    free: Size = 0


@message
@dataclass(frozen=True, slots=True)
class GcReply(Message):
    tag: ClassVar[str] = "gc."
    freed: int
    bytes_used: int
    max_bytes: int


@message
@dataclass(frozen=True, slots=True)
class ImportRequest(Message):
    """Ingest the ``*.deb`` files in ``directory`` (read by the agent) into the store."""

    tag: ClassVar[str] = "import"
    directory: Text


@message
@dataclass(frozen=True, slots=True)
class ImportReply(Message):
    tag: ClassVar[str] = "import."
    files: int
    imported: int
    present: int
    failed: int
    bytes_imported: int
    errors: list[str]


TERMINAL: tuple[type[Message], ...] = (
    PullDone,
    Failed,
    Status,
    PrefetchReply,
    PinReply,
    LocateReply,
    SiteReply,
    EstimateReply,
    CacheListing,
    VerifyReply,
    GcReply,
    ImportReply,
)


# --- codec --------------------------------------------------------------------------------


def _to_wire(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"t": msg.tag}
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        out[f.name] = getattr(msg, f.name)
    return out


def encode(msg: Message) -> bytes:
    packed: bytes = msgpack.packb(_to_wire(msg), use_bin_type=True)
    return packed


def _check(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is Annotated:
        base, *limits = typing.get_args(tp)
        return _check(value, base) and all(
            lim.admits(value) for lim in limits if isinstance(lim, Bound)
        )
    if origin is types.UnionType or origin is typing.Union:
        return any(_check(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        return isinstance(value, list) and all(_check(v, item_tp) for v in value)
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        return isinstance(value, dict) and all(
            _check(k, key_tp) and _check(v, value_tp) for k, v in value.items()
        )
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


_HINTS: dict[str, dict[str, Any]] = {}


def _hints(cls: type[Message]) -> dict[str, Any]:
    hints = _HINTS.get(cls.tag)
    if hints is None:
        hints = _HINTS[cls.tag] = typing.get_type_hints(cls, include_extras=True)
    return hints


def _brief(value: Any) -> str:
    """A short, log-safe description of a rejected value (it may be megabytes of anything)."""
    if isinstance(value, int | float | bool) or value is None:
        return repr(value)[:40]
    size = f", {len(value)} long" if isinstance(value, str | bytes | list | dict) else ""
    return f"{type(value).__name__}{size}"


def _from_wire(obj: Any) -> Message:
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise ProtocolError("control frame is not a tagged map")
    cls = _REGISTRY.get(obj["t"])
    if cls is None:
        raise ProtocolError(f"unknown control message type {obj['t'][:40]!r}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    extra = set(obj) - set(fields) - {"t"}
    if extra:
        # Keys may mix str and bytes (msgpack allows both), so sort their reprs.
        names = sorted(repr(k)[:40] for k in extra)[:8]
        raise ProtocolError(f"{cls.tag}: unexpected fields {names}")
    for name, f in fields.items():
        if name in obj:
            value = obj[name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            raise ProtocolError(f"{cls.tag}: missing field {name!r}")
        if not _check(value, hints[name]):
            raise ProtocolError(f"{cls.tag}.{name}: wrong type or out of range ({_brief(value)})")
        values[name] = value
    return cls(**values)


class Decoder:
    """Feed bytes in, take messages out; malformed input raises :class:`ProtocolError`."""

    def __init__(self) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_FRAME, strict_map_key=True)

    def feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise ProtocolError(f"control frame larger than {MAX_FRAME} bytes") from None

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                obj = next(self._unpacker)
            except StopIteration:
                return
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                raise ProtocolError(f"malformed control frame: {exc}") from None
            yield _from_wire(obj)
