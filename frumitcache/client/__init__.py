"""The library's way into the local agent: an async (trio) client for the control socket.

Every call opens a connection to the agent's Unix socket, has one conversation and closes it;
errors arrive as the agent raised them, from :mod:`frumitcache.errors`. When no agent
listens, :class:`~frumitcache.errors.AgentUnavailableError` says so and how to start one —
the client never goes around the site to the origin on its own.

Results are the frozen dataclasses of :mod:`frumitcache._results` (re-exported by the package).
:mod:`frumitcache.sync` wraps every call for code that is not async. The trio classes load on
first use: the command line's ``pull`` and ``status`` talk to the agent without trio
(:mod:`._blocking`), which is most of a Pi's cost per pull.
"""

from typing import TYPE_CHECKING, Any

from frumitcache.client._blocking import ask_blocking, pull_into_blocking
from frumitcache.client._pull import (
    PullOutcome,
    PullStream,
    check_url,
    default_download_dir,
    default_socket,
    parse_sha256,
)

if TYPE_CHECKING:
    from frumitcache.client._agent import AgentClient
    from frumitcache.client._prefetch import PrefetchHandle

__all__ = [
    "AgentClient",
    "PrefetchHandle",
    "PullOutcome",
    "PullStream",
    "ask_blocking",
    "check_url",
    "default_download_dir",
    "default_socket",
    "parse_sha256",
    "pull_into_blocking",
]

_LAZY = {"AgentClient": "_agent", "PrefetchHandle": "_prefetch"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
