"""Exit codes of the ``frumitcache`` command, documented in ``frumitcache --help``."""

from __future__ import annotations

from frumitcache.errors import (
    AgentUnavailableError,
    BadUrlError,
    ConfigError,
    DigestMismatchError,
    FrumitcacheError,
    NotAllowedError,
    NotInStoreError,
    NotPermittedError,
    OriginError,
    PeerError,
    StoreError,
)

OK = 0
FAILURE = 1  # an unexpected error (a bug: please report it)
USAGE = 2  # bad arguments
CONFIG = 3
AGENT_UNAVAILABLE = 4
DIGEST_MISMATCH = 5
ORIGIN = 6
STORE = 7
NOT_FOUND = 8
SITE = 9
NOT_ALLOWED = 10
NOT_PERMITTED = 11
INTERRUPTED = 130

# Most specific first: the first class an error is an instance of decides.
_BY_ERROR: tuple[tuple[type[FrumitcacheError], int], ...] = (
    (ConfigError, CONFIG),
    (BadUrlError, USAGE),
    (NotAllowedError, NOT_ALLOWED),
    (AgentUnavailableError, AGENT_UNAVAILABLE),
    (NotPermittedError, NOT_PERMITTED),
    (DigestMismatchError, DIGEST_MISMATCH),
    (NotInStoreError, NOT_FOUND),
    (OriginError, ORIGIN),
    (StoreError, STORE),
    (PeerError, SITE),
)

HELP = """exit codes:
  0    success
  1    unexpected error (a bug; please report it with the log)
  2    bad command-line arguments (or a URL that is not http:// or https://)
  3    bad or unreadable configuration
  4    no agent is running (start one with `frumitcache agent`)
  5    content did not match its SHA-256 (nothing was written)
  6    the origin failed (HTTP error status, unreachable, truncated)
  7    the local store failed (disk full, corrupt data)
  8    not found in the store / site (unknown digest, URL never fetched)
  9    the site failed (no seeder elected, a member did not answer)
  10   the URL (or a redirect) is not on the agent's allow-list (origin.allow, control.allow)
  11   not permitted: the call needs root or the agent's own user (gc --free, import)
  130  interrupted"""


def code_for(exc: FrumitcacheError) -> int:
    for cls, code in _BY_ERROR:
        if isinstance(exc, cls):
            return code
    return FAILURE
