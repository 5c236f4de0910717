"""The one error tree of frumitcache.

Every exception that crosses a public boundary (library call, CLI, control API) is a
:class:`FrumitcacheError`. Library exceptions from trio, httpx, sqlite or libtorrent are
translated where they enter our code, so callers catch one family::

    FrumitcacheError
    ├── ConfigError              bad or unreadable configuration (names the key)
    ├── StoreError               the local content store
    │   ├── StoreFullError       the disk or the size cap left no room
    │   ├── CorruptChunkError    bytes on disk no longer match their digest
    │   └── NotInStoreError      the digest or URL is not (completely) in the store
    ├── OriginError              the uplink fetch failed
    │   ├── OriginStatusError    the origin answered with an error status (404, 5xx, ...)
    │   ├── OriginUnreachableError  connect failure or timeout
    │   └── OriginTruncatedError the body was shorter than announced and could not be resumed
    ├── DigestMismatchError      content does not hash to the digest it was asked for
    │   └── FetchRestartedError  bytes sent so far are void (a federation link's failed the
    │                            SHA-256, or the site lists other chunks): fetched again
    ├── ProtocolError            a peer or client sent something malformed
    │   └── BadUrlError          a URL that is not http:// or https:// (or not a URL)
    ├── NotAllowedError          the URL (or a redirect) is outside the upstream allow-list
    ├── PeerError                a site member misbehaved or failed (bad data, gone)
    │   ├── NotSeederError       a member asked a node that is not (or no longer) the seeder
    │   └── HolderSilentError    a holder did not answer a chunk request in time (frozen)
    └── AgentError               talking to the local agent failed
        ├── AgentUnavailableError  no agent is listening on the control socket
        └── NotPermittedError    the call needs root or the agent's own user

Each error carries a ``code`` (a short stable string) so that it survives the trip over the
control socket and can be mapped to CLI exit codes.
"""

from __future__ import annotations


class FrumitcacheError(Exception):
    """Base of every error frumitcache raises on purpose."""

    code = "error"


class ConfigError(FrumitcacheError):
    code = "config"


class StoreError(FrumitcacheError):
    code = "store"


class StoreFullError(StoreError):
    code = "store-full"


class CorruptChunkError(StoreError):
    code = "corrupt-chunk"


class NotInStoreError(StoreError):
    code = "not-in-store"


class OriginError(FrumitcacheError):
    code = "origin"


class OriginStatusError(OriginError):
    """The origin answered, but with an error status; ``status`` holds it, and
    ``retry_after`` the origin's ``Retry-After`` as it sent it (a 429 or 503; "" if none), so
    a door can pass it on to its client."""

    code = "origin-status"

    def __init__(self, message: str, *, status: int, retry_after: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class OriginUnreachableError(OriginError):
    code = "origin-unreachable"


class OriginTruncatedError(OriginError):
    code = "origin-truncated"


class DigestMismatchError(FrumitcacheError):
    code = "digest-mismatch"


class FetchRestartedError(DigestMismatchError):
    """A reader had handed out bytes of an object whose fetch then dropped them (bytes from a
    federation link failed the object's SHA-256, or a member's site now lists other chunks for
    the URL) and started over: ask again. A read that handed out nothing follows the new fetch
    instead when the object's SHA-256 was known."""

    code = "fetch-restarted"


class ProtocolError(FrumitcacheError):
    code = "protocol"


class BadUrlError(ProtocolError):
    """A URL the agent cannot fetch: not ``http://`` or ``https://``, or no host."""

    code = "bad-url"


class NotAllowedError(FrumitcacheError):
    """A URL no door may fetch: not on the allow-list, a non-public address reached by a
    pattern, or a scheme other than http/https (see ``frumitcache.origin._allow``)."""

    code = "not-allowed"


class PeerError(FrumitcacheError):
    code = "peer"


class NotSeederError(PeerError):
    """The node asked is not the site's seeder (any more): ask the one elected now."""

    code = "not-seeder"


class HolderSilentError(PeerError):
    """A holder took no step of a chunk answer (head, or the next body bytes) in the time
    allowed: alive in the site's view but frozen (paused, thrashing, unplugged mid-answer)."""

    code = "holder-silent"


class AgentError(FrumitcacheError):
    code = "agent"


class AgentUnavailableError(AgentError):
    code = "agent-unavailable"


class NotPermittedError(AgentError):
    code = "not-permitted"


def _all_error_classes() -> list[type[FrumitcacheError]]:
    seen: list[type[FrumitcacheError]] = []
    todo: list[type[FrumitcacheError]] = [FrumitcacheError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


def error_from_code(
    code: str, message: str, *, status: int | None = None, retry_after: str = ""
) -> FrumitcacheError:
    """Rebuild an error sent over the control socket or the site as ``(code, message)``."""
    for cls in _all_error_classes():
        if cls.code == code:
            if cls is OriginStatusError:
                return OriginStatusError(message, status=status or 0, retry_after=retry_after)
            return cls(message)
    return FrumitcacheError(message)


def origin_status(exc: BaseException) -> tuple[int, str]:
    """``(status, retry_after)`` of an origin's error answer; ``(0, "")`` for other errors."""
    if isinstance(exc, OriginStatusError):
        return exc.status, exc.retry_after
    return 0, ""


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a caller should see from a nursery that failed.

    Tasks that fail together usually fail for one cause (a reader only sees "the writer went
    away"), so the first of our own errors stands for the group. A group holding none of ours
    (cancellation, a bug) is returned whole, so nothing is swallowed.
    """
    ours, _rest = group.split(FrumitcacheError)
    if ours is None:
        return group
    leaf: BaseException = ours
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf
