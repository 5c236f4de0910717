"""The local control API's wire format, shared by the agent (server) and the client:
typed messages framed with msgpack over a Unix socket. Importing it stays cheap (no
libtorrent, no store), so the CLI starts fast on a Pi."""

from frumitcache.control._protocol import (
    Data,
    Decoder,
    Failed,
    FileData,
    Message,
    Pull,
    PullDone,
    PullFiles,
    PullStarted,
    Status,
    StatusRequest,
    encode,
)
from frumitcache.control._stream import MessageStream

__all__ = [
    "Data",
    "Decoder",
    "Failed",
    "FileData",
    "Message",
    "MessageStream",
    "Pull",
    "PullDone",
    "PullFiles",
    "PullStarted",
    "Status",
    "StatusRequest",
    "encode",
]
