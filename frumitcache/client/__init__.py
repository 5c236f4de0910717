"""The library's way into the local agent: an async (trio) client for the control socket.

Every call opens a connection to the agent's Unix socket, has one conversation and closes it;
errors arrive as the agent raised them, from :mod:`frumitcache.errors`. When no agent
listens, :class:`~frumitcache.errors.AgentUnavailableError` says so and how to start one —
the client never goes around the site to the origin on its own.

Results are the frozen dataclasses of :mod:`frumitcache._results` (re-exported by the package).
:mod:`frumitcache.sync` wraps every call for code that is not async.
"""

from frumitcache.client._agent import AgentClient
from frumitcache.client._prefetch import PrefetchHandle
from frumitcache.client._pull import (
    PullOutcome,
    PullStream,
    check_url,
    default_download_dir,
    default_socket,
    parse_sha256,
)

__all__ = [
    "AgentClient",
    "PrefetchHandle",
    "PullOutcome",
    "PullStream",
    "check_url",
    "default_download_dir",
    "default_socket",
    "parse_sha256",
]
