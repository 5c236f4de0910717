"""The local control API's wire format, shared by the agent (server) and the client:
typed messages framed with msgpack over a Unix socket. Importing it stays cheap (no
libtorrent, no store, and no trio until :class:`MessageStream` is used), so the CLI starts
fast on a Pi."""

from typing import TYPE_CHECKING, Any

from frumitcache.control._fds import RECVMSG_ARGS, take_descriptors
from frumitcache.control._protocol import (
    CacheListing,
    CacheListRequest,
    Data,
    Decoder,
    EstimateReply,
    EstimateRequest,
    Failed,
    FileData,
    GcReply,
    GcRequest,
    ImportReply,
    ImportRequest,
    LocateReply,
    LocateRequest,
    Message,
    PinReply,
    PinRequest,
    PrefetchReply,
    PrefetchRequest,
    Pull,
    PullDone,
    PullFiles,
    PullStarted,
    SiteReply,
    SiteRequest,
    Status,
    StatusRequest,
    VerifyReply,
    VerifyRequest,
    encode,
)

if TYPE_CHECKING:
    from frumitcache.control._stream import MessageStream

__all__ = [
    "RECVMSG_ARGS",
    "CacheListRequest",
    "CacheListing",
    "Data",
    "Decoder",
    "EstimateReply",
    "EstimateRequest",
    "Failed",
    "FileData",
    "GcReply",
    "GcRequest",
    "ImportReply",
    "ImportRequest",
    "LocateReply",
    "LocateRequest",
    "Message",
    "MessageStream",
    "PinReply",
    "PinRequest",
    "PrefetchReply",
    "PrefetchRequest",
    "Pull",
    "PullDone",
    "PullFiles",
    "PullStarted",
    "SiteReply",
    "SiteRequest",
    "Status",
    "StatusRequest",
    "VerifyReply",
    "VerifyRequest",
    "encode",
    "take_descriptors",
]


def __getattr__(name: str) -> Any:
    # MessageStream is trio's: the blocking client (a ``pull`` on a Pi) never loads it.
    if name == "MessageStream":
        from frumitcache.control._stream import MessageStream

        return MessageStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
