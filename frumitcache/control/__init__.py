"""The local control API's wire format, shared by the agent (server) and the client:
typed messages framed with msgpack over a Unix socket. Importing it stays cheap (no
libtorrent, no store), so the CLI starts fast on a Pi."""

from frumitcache.control._protocol import (
    Data,
    Decoder,
    Failed,
    Message,
    Pull,
    PullDone,
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
    "Message",
    "MessageStream",
    "Pull",
    "PullDone",
    "PullStarted",
    "Status",
    "StatusRequest",
    "encode",
]
