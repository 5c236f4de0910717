"""Authenticated msgpack frames for the site control plane.

A frame is::

    b"FCS7" | HMAC-SHA256(mac_key, b"FCS7" + body) (32 bytes) | body
    body = msgpack [sender, recipient, boot, seq, timestamp, type name, {field: value}]

``mac_key`` is derived from the site key and the site name, so two sites that happen to share
a key file still do not hear each other. ``recipient`` is the node id the frame is for, or
:data:`BROADCAST` for the few types sent to everyone (beacons, bye); a receiver drops a frame
addressed to another node (``misaddressed``), so a keyless host cannot replay a frame one
member sent to another (an ``ObjectInfo`` meant for node A fed to node B). ``boot`` is a random
64-bit nonce drawn when the sender starts and ``seq`` counts its frames per recipient, so
(sender, recipient, boot, seq) names a frame once: the receiver keeps a sliding window of the
last 64 sequence numbers of the last few boots of every (sender, recipient) and rejects a frame
it has already accepted (``replay``). ``timestamp`` is the
sender's wall clock; a frame further than ``max_skew_s`` from the receiver's clock is
``stale`` (so a frame recorded before the receiver restarted cannot be replayed later). Members
therefore need roughly synchronised clocks (NTP); ``max_skew_s = 0`` turns the check off for
sites without them, leaving the per-boot windows.

:meth:`FrameCodec.decode` raises :class:`FrameRejected` (a
:class:`~frumitcache.errors.ProtocolError`) with a short ``reason`` for anything it does not
accept; the driver drops and counts the frame per reason. Nothing else escapes decode. This is
the only module that sees msgpack values: fields are checked against the annotations of the
message dataclasses (``str``, ``int``, ``float``, ``bool``, ``bytes``, ``X | None``,
``tuple[X, ...]`` and nested dataclasses) and unknown types or fields are rejected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import types
import typing
from collections import OrderedDict
from typing import Any

import msgpack

from frumitcache.errors import ProtocolError
from frumitcache.site._messages import MESSAGE_TYPES, Beacon, Bulk, Bye, Message

# FCS2: the recipient joined the header; FCS3: Roster, and a roster version in Lease and
# LeaseAck; FCS4: the backing of a Lease; FCS5: Bulk (a message too large for a frame waits
# at the sender's peer port); FCS6: a Have's objects make its sender their holder (``held``);
# FCS7: the duration of a Lease (stretched while acks come back late).
# Agents of different magics do not hear each other: a site upgrades together.
MAGIC = b"FCS7"
MAC_LEN = 32
#: A UDP datagram carries at most 65,507 bytes; stay clear of it.
DEFAULT_MAX_FRAME = 60_000
WINDOW = 64
#: Longest node id accepted in a frame header (ids are host names).
MAX_NODE_ID = 255
_BOOTS_PER_SENDER = 4
_MAX_SENDERS = 4096
#: The recipient of a frame meant for every member (multicast, static peers).
BROADCAST = "*"
#: The only message types that may be sent to :data:`BROADCAST`.
BROADCAST_TYPES: tuple[type[Message], ...] = (Beacon, Bye)

#: Every reason :class:`FrameRejected` may carry (the driver's drop counters use these keys).
REASONS = (
    "too-large",
    "garbage",
    "bad-mac",
    "malformed",
    "unknown-type",
    "bad-field",
    "stale",
    "replay",
    "own",
    "misaddressed",
    "bulk-mismatch",
)


class FrameRejected(ProtocolError):
    """A frame was not accepted; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def derive_mac_key(site_key: bytes, site_name: str) -> bytes:
    """The HMAC key of a site's control frames, bound to the site name."""
    return hmac.new(
        site_key, b"frumitcache control v1\x00" + site_name.encode(), hashlib.sha256
    ).digest()


# --- typed fields <-> msgpack values ----------------------------------------------------------

_Schema = tuple[tuple[str, Any, bool], ...]
_schemas: dict[type[Any], _Schema] = {}


def _schema(cls: type[Any]) -> _Schema:
    schema = _schemas.get(cls)
    if schema is None:
        hints = typing.get_type_hints(cls)
        schema = tuple(
            (
                f.name,
                hints[f.name],
                f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        )
        _schemas[cls] = schema
    return schema


_defaults: dict[type[Any], dict[str, Any]] = {}


def _defaults_of(cls: type[Any]) -> dict[str, Any]:
    defaults = _defaults.get(cls)
    if defaults is None:
        defaults = {
            f.name: f.default
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING
        }
        _defaults[cls] = defaults
    return defaults


def _to_wire(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A field at its default is left out: the decoder fills it in, and an agent that
        # predates the field still accepts the frame while the field is unused.
        defaults = _defaults_of(type(value))
        return {
            name: _to_wire(getattr(value, name))
            for name, _tp, _d in _schema(type(value))
            if name not in defaults or getattr(value, name) != defaults[name]
        }
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    return value


def _bad(path: str, expected: str, value: Any) -> FrameRejected:
    return FrameRejected("bad-field", f"{path}: expected {expected}, got {type(value).__name__}")


def _from_wire(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:  # pragma: no cover - messages only use `X | None`
            raise TypeError(f"unsupported field type {tp}")
        return _from_wire(inner[0], value, path)
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list | tuple):
            raise _bad(path, "a list", value)
        return tuple(_from_wire(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(path, "a bool", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(path, "an int", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(path, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad(path, "a string", value)
        return value
    if tp is bytes:
        if not isinstance(value, bytes):
            raise _bad(path, "bytes", value)
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    raise TypeError(f"unsupported field type {tp}")  # pragma: no cover - a bug in _messages


def _build(cls: type[Any], value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _bad(path, "a map", value)
    schema = _schema(cls)
    known = {name for name, _tp, _d in schema}
    extra = [k for k in value if k not in known]
    if extra:
        raise FrameRejected("bad-field", f"{path}: unknown field {str(extra[0])[:40]!r}")
    kwargs: dict[str, Any] = {}
    for name, tp, has_default in schema:
        if name in value:
            kwargs[name] = _from_wire(tp, value[name], f"{path}.{name}")
        elif not has_default:
            raise FrameRejected("bad-field", f"{path}.{name}: missing")
    return cls(**kwargs)


# --- bodies too large for a frame (see ._bulk) --------------------------------------------------


def encode_body(msg: Message) -> bytes:
    """``msg`` alone, without a frame header or MAC: the body of a :class:`Bulk`, which the
    frame carrying the :class:`Bulk` authenticates by its SHA-256."""
    name = type(msg).__name__
    if MESSAGE_TYPES.get(name) is not type(msg) or isinstance(msg, (Bulk, *BROADCAST_TYPES)):
        raise TypeError(f"not a message that travels as a bulk body: {msg!r}")
    packed: bytes = msgpack.packb([name, _to_wire(msg)], use_bin_type=True)
    return packed


def decode_body(body: bytes) -> Message:
    """The message of a bulk body (its digest already checked); :class:`FrameRejected` if it
    is not one, is a :class:`Bulk` itself (no chains) or a broadcast type."""
    try:
        head = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types on bad input; all mean garbage
        raise FrameRejected("garbage", f"undecodable bulk body ({type(exc).__name__})") from None
    if not isinstance(head, list) or len(head) != 2 or not isinstance(head[0], str):
        raise FrameRejected("malformed", "bulk body is not a [type, fields] list")
    name, fields = head
    cls = MESSAGE_TYPES.get(name)
    if cls is None or cls is Bulk or issubclass(cls, BROADCAST_TYPES):
        raise FrameRejected("unknown-type", f"bulk body of type {name[:40]!r}")
    msg: Message = _build(cls, fields, name)
    return msg


# --- replay protection ------------------------------------------------------------------------


class _Window:
    """Accepted sequence numbers of one (sender, boot): the highest and a 64-bit bitmap below."""

    __slots__ = ("bits", "highest")

    def __init__(self) -> None:
        self.highest = -1
        self.bits = 0

    def seen(self, seq: int) -> bool:
        if seq > self.highest:
            return False
        offset = self.highest - seq
        return offset >= WINDOW or bool(self.bits >> offset & 1)

    def accept(self, seq: int) -> None:
        if seq > self.highest:
            shift = seq - self.highest
            self.bits = ((self.bits << shift) | 1) & ((1 << WINDOW) - 1)
            self.highest = seq
        else:
            self.bits |= 1 << (self.highest - seq)


class FrameCodec:
    """Encodes this node's frames and authenticates, checks and decodes everyone's.

    Pure: the wall-clock time is passed in. ``boot`` must be fresh for every start of the node
    (``secrets.randbits(64)``), or a restarted node's first frames look like replays.
    """

    def __init__(
        self,
        mac_key: bytes,
        node_id: str,
        *,
        boot: int,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_skew_s: float = 60.0,
    ) -> None:
        self._key = mac_key
        self.node_id = node_id
        self._boot = boot
        # Sequence numbers per recipient; a recipient seen anew starts at the count of every
        # frame encoded so far, so its numbers grow even after its entry was forgotten.
        self._seqs: OrderedDict[str, int] = OrderedDict()
        self._encoded = 0
        self.max_frame = max_frame
        self.max_skew_s = max_skew_s
        self._windows: OrderedDict[tuple[str, str], OrderedDict[int, _Window]] = OrderedDict()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, MAGIC + body, hashlib.sha256).digest()

    def encode(self, msg: Message, *, to: str | None, wall: float) -> bytes:
        """One frame carrying ``msg`` for node ``to`` (``None``: everyone, beacons and bye
        only); raises :class:`FrameRejected` if it would be too large."""
        name = type(msg).__name__
        if MESSAGE_TYPES.get(name) is not type(msg):
            raise TypeError(f"not a site message: {msg!r}")
        if to is None and not isinstance(msg, BROADCAST_TYPES):
            raise TypeError(f"{name} must name its recipient")
        recipient = BROADCAST if to is None else to
        seq = self._seqs.pop(recipient, self._encoded)
        self._seqs[recipient] = seq + 1
        if len(self._seqs) > _MAX_SENDERS:
            self._seqs.popitem(last=False)
        self._encoded += 1
        body: bytes = msgpack.packb(
            [self.node_id, recipient, self._boot, seq, float(wall), name, _to_wire(msg)],
            use_bin_type=True,
        )
        frame = MAGIC + self._mac(body) + body
        if len(frame) > self.max_frame:
            raise FrameRejected("too-large", f"{name} frame of {len(frame)} bytes")
        return frame

    def decode(self, frame: bytes, *, wall: float) -> tuple[str, Message]:
        """``(sender, message)`` of an accepted frame; :class:`FrameRejected` otherwise."""
        if len(frame) > self.max_frame:
            raise FrameRejected("too-large", f"{len(frame)} bytes")
        if len(frame) < len(MAGIC) + MAC_LEN + 1 or not frame.startswith(MAGIC):
            raise FrameRejected("garbage", "no frame header")
        mac = frame[len(MAGIC) : len(MAGIC) + MAC_LEN]
        body = frame[len(MAGIC) + MAC_LEN :]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise FrameRejected("bad-mac", "authentication failed")
        try:
            head = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:  # msgpack raises many types on bad input; all mean garbage
            raise FrameRejected("garbage", f"undecodable body ({type(exc).__name__})") from None
        if not isinstance(head, list) or len(head) != 7:
            raise FrameRejected("malformed", "frame body is not a 7-item list")
        sender, recipient, boot, seq, ts, name, fields = head
        if (
            not isinstance(sender, str)
            or not 0 < len(sender) <= MAX_NODE_ID
            or not isinstance(recipient, str)
            or isinstance(boot, bool)
            or not isinstance(boot, int)
            or isinstance(seq, bool)
            or not isinstance(seq, int)
            or seq < 0
            or isinstance(ts, bool)
            or not isinstance(ts, int | float)
            or not isinstance(name, str)
        ):
            raise FrameRejected("malformed", "bad frame header fields")
        cls = MESSAGE_TYPES.get(name)
        if cls is None:
            raise FrameRejected("unknown-type", f"message type {name[:40]!r}")
        if sender == self.node_id:
            raise FrameRejected("own", "our own frame (multicast loopback)")
        if recipient != self.node_id and not (
            recipient == BROADCAST and issubclass(cls, BROADCAST_TYPES)
        ):
            raise FrameRejected("misaddressed", f"{name} for {recipient[:40]!r}")
        if self.max_skew_s and not abs(wall - ts) <= self.max_skew_s:
            raise FrameRejected("stale", f"timestamp {wall - ts:+.1f}s off")
        stream = (sender, recipient)
        window = self._window(stream, boot, create=False)
        if window is not None and window.seen(seq):
            raise FrameRejected("replay", f"{sender} boot {boot:#x} seq {seq}")
        msg = _build(cls, fields, name)
        # Only an authentic, well-formed frame may create or move a window.
        window = self._window(stream, boot, create=True)
        assert window is not None
        window.accept(seq)
        return sender, msg

    def _window(self, stream: tuple[str, str], boot: int, *, create: bool) -> _Window | None:
        boots = self._windows.get(stream)
        if boots is None:
            if not create:
                return None
            boots = self._windows[stream] = OrderedDict()
            if len(self._windows) > _MAX_SENDERS:
                self._windows.popitem(last=False)
        window = boots.get(boot)
        if window is None and create:
            window = boots[boot] = _Window()
            if len(boots) > _BOOTS_PER_SENDER:
                boots.popitem(last=False)
        if create:
            self._windows.move_to_end(stream)
        return window
