"""Receiving an object from the agent: into a file (descriptors, copied in the kernel) or as
a stream of verified bytes (Data frames).

Into a file, a new agent passes the chunk files themselves (``PullFiles``; SCM_RIGHTS) and the
client copies each into its file with ``copy_file_range`` (:mod:`._copy`): no byte crosses the
socket or enters Python, and the client hashes nothing. That is safe because of the trust rule
the agent keeps: a descriptor it passes is of a chunk file whose bytes it checked through that
very descriptor as it opened it, and chunk files are never written in place (see
:meth:`frumitcache.store.Store.open_chunk`). An older agent answers ``PullFiles`` with a
protocol error; the client then asks again with ``Pull`` and takes Data frames, hashing them
as they arrive, as before.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from frumitcache.config import find_config_file, load_config
from frumitcache.control import Data, Failed, PullDone, PullStarted
from frumitcache.errors import (
    AgentUnavailableError,
    BadUrlError,
    DigestMismatchError,
    ProtocolError,
)

if TYPE_CHECKING:  # trio's stream: only the trio client imports it
    from frumitcache.control import MessageStream


def default_download_dir() -> Path:
    """Where :meth:`AgentClient.fetch` puts files when no ``dest`` is given:
    ``$XDG_CACHE_HOME/frumitcache/downloads``, else ``~/.cache/frumitcache/downloads``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "frumitcache" / "downloads"


def check_url(url: str) -> None:
    """Raise :class:`~frumitcache.errors.BadUrlError` unless ``url`` is an http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise BadUrlError(f"not a URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUrlError(f"not an http:// or https:// URL: {url!r}")


def parse_sha256(text: str | bytes | None) -> bytes | None:
    """A digest given as 64 hex digits (optionally ``sha256:``) or 32 raw bytes."""
    if text is None or (isinstance(text, bytes) and len(text) == 32):
        return text
    raw = text.decode() if isinstance(text, bytes) else text
    hexpart = raw[7:] if raw.lower().startswith("sha256:") else raw
    try:
        digest = bytes.fromhex(hexpart)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ProtocolError(f"a SHA-256 is 64 hex digits, got {raw!r}")
    return digest


def default_socket() -> Path:
    """The control socket named by the config file in use (or the built-in default)."""
    return load_config(find_config_file(), allow_lists=False).socket_path


def unavailable(path: Path, exc: OSError) -> AgentUnavailableError:
    """The error for a control socket that could not be reached (``connect`` raised ``exc``)."""
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return AgentUnavailableError(
            f"no frumitcache agent is listening on {path}; start one with "
            "`frumitcache agent` (or `systemctl start frumitcache`)"
        )
    return AgentUnavailableError(f"cannot reach the agent on {path}: {exc.strerror or exc}")


def target_path(url: str, dest: str | os.PathLike[str] | None) -> Path:
    name = Path(urlsplit(url).path).name
    if dest is not None and not Path(dest).is_dir():
        return Path(dest).absolute()
    if not name:
        raise BadUrlError(f"cannot name a file after {url!r}; pass dest=")
    return (Path(dest) if dest is not None else default_download_dir()).absolute() / name


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass(frozen=True, slots=True)
class PullOutcome:
    """A finished pull into a file: bytes written, the object's SHA-256 (as the agent
    verified it, or as the client hashed the frames), where the agent got it, and whether
    the bytes came as passed files (``files``) or as Data frames."""

    size: int
    digest: bytes
    source: str
    files: bool


class PullStream:
    """The bytes of one object as the agent sends them, verified chunk by chunk.

    ``size`` is the object's size when known, ``source`` where the agent got it (``store``,
    ``site``, ``federation`` or ``origin``); ``digest`` is set once the last byte arrived."""

    def __init__(self, conn: MessageStream, started: PullStarted) -> None:
        self._conn = conn
        self.size = started.size
        self.source = started.source
        self.digest: bytes | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            msg = await self._conn.receive_required()
            if isinstance(msg, Data):
                yield msg.data
            elif isinstance(msg, PullDone):
                self.digest = msg.digest
                return
            elif isinstance(msg, Failed):
                raise msg.to_error()
            else:
                raise ProtocolError(f"unexpected {msg.tag} in a pull")


async def verified(url: str, pulled: PullStream, digest: bytes | None) -> AsyncIterator[bytes]:
    """``pulled``'s bytes, hashed as they pass; DigestMismatchError after the last one unless
    they match the agent's digest and ``digest``."""
    hasher = hashlib.sha256()
    async for data in pulled:
        hasher.update(data)
        yield data
    check_digest(url, hasher.digest(), pulled.digest, digest)


def check_digest(url: str, got: bytes, reported: bytes | None, wanted: bytes | None) -> None:
    if reported is not None and reported != got:
        raise DigestMismatchError(
            f"{url}: received bytes hash to {got.hex()}, the agent reports {reported.hex()}"
        )
    if wanted is not None and got != wanted:
        raise DigestMismatchError(f"{url}: SHA-256 is {got.hex()}, expected {wanted.hex()}")


#: Pulls asked again after the agent dropped what it sent (FetchRestartedError: bytes from a
#: federation link failed the object's SHA-256, or the site changed its listing); one per
#: link that lied is plenty.
RESTARTS = 3


def rewind(fd: int) -> bool:
    """Empty the file ``fd`` for a pull asked again; False when it is no file (a pipe)."""
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        return False
    return True


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
