"""What an apt request asks for: the upstream URL, whether it may be fetched, what kind of file.

Pure functions, no I/O. apt reaches the proxy in three shapes, all mapped to one upstream URL:

- absolute form through ``Acquire::http::Proxy``: ``GET http://deb.debian.org/debian/...``;
- URL-prefix form from ``deb http://AGENT:3142/deb.debian.org/debian ...``:
  ``GET /deb.debian.org/debian/...`` (the first path segment is the upstream host);
- apt-cacher-ng's HTTPS remapping, ``http://HTTPS///host/path`` and ``/HTTPS///host/path``,
  which both mean ``https://host/path`` (fetched over TLS by the seeder, cached like the rest).

A :class:`Rejection` says why a target is refused and with which status: 400 for anything
malformed or any path traversal attempt (``..`` plain or percent-encoded, encoded slashes, NUL),
403 for a host not on the allow-list (the body names ``apt.allowed_hosts``). A query string is
refused (400): apt never sends one, and each variant of a URL would otherwise be one more fetch
over the uplink and one more stored object.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes

from frumitcache.errors import FrumitcacheError

if TYPE_CHECKING:
    from frumitcache.origin import AllowList

ALLOW_KEY = "apt.allowed_hosts"
CONNECT_ALLOW_KEY = "apt.connect_allowed_hosts"


class FileKind(enum.Enum):
    """How a file behaves in time, which decides when it is revalidated with the origin."""

    INDEX = "index"  # InRelease, Packages, ...: changes in place; revalidated per window
    IMMUTABLE = "immutable"  # pool/ files, by-hash/: never change once published
    OTHER = "other"  # anything else: treated like an index (revalidated per window)


@dataclass(frozen=True, slots=True)
class Target:
    """A request target resolved to its upstream."""

    url: str  # the upstream URL, path in canonical form (see canonical_path)
    scheme: str  # "http" or "https"
    host: str  # lower-cased host name or address (IPv6 without brackets)
    port: int  # explicit or the scheme's default
    path: str  # the upstream path, starting with "/", canonical form
    kind: FileKind
    by_hash_sha256: str | None  # for .../by-hash/SHA256/<hex>: the digest the URL names
    by_hash: str | None = None  # for any .../by-hash/<ALGO>/<hex>: "ALGO/hex"

    @property
    def authority(self) -> str:
        """``host`` or ``host:port`` as the allow-list spells it (no port if default)."""
        return format_authority(self.host, self.port, self.scheme)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request refused before any fetch: the status to answer and a human reason."""

    status: int
    reason: str


_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def format_authority(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    if _DEFAULT_PORTS.get(scheme) == port:
        return shown
    return f"{shown}:{port}"


def canonical_path(path: str) -> str:
    """One spelling per path: every byte but unreserved ones and "/" percent-encoded.

    apt, mirrors and humans encode ``+``, ``~`` or ``:`` differently; the store key, the learned
    hashes and the request sent upstream all use this form, so they always meet. (Encoding
    ``+`` also keeps S3-backed mirrors from reading it as a space.)
    """
    return quote(unquote_to_bytes(path), safe="/-._~")


def split_authority(text: str, default_port: int) -> tuple[str, int] | None:
    """``host[:port]`` (IPv6 in brackets) into (lower-cased host, port), or None if malformed."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if not _IPV6.match(host) or ":" not in host:
            return None
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
        if not _HOST.match(host):
            return None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
            return None
        port = int(rest[1:])
        if not 0 < port < 65536:
            return None
    else:
        port = default_port
    return host.lower().rstrip("."), port


def host_allowed(host: str, port: int, scheme: str, allowed: Iterable[str]) -> bool:
    """Whether ``allowed`` admits this upstream: the one allow-list matcher of every door
    (:class:`frumitcache.origin.AllowList`). An entry without a port admits only the scheme's
    default port, so allowing ``deb.debian.org`` does not open ``deb.debian.org:25``.
    """
    rules = _allow_list(tuple(allowed))
    return rules is not None and rules.admits_name(host, port, scheme)


@functools.lru_cache(maxsize=16)
def _allow_list(entries: tuple[str, ...]) -> AllowList | None:
    """The parsed list (parsed once, not per request); None when an entry is bad."""
    from frumitcache.origin import AllowList  # here: origin imports the config, not apt

    try:
        return AllowList.parse(entries, ALLOW_KEY)
    except FrumitcacheError:
        return None  # a bad entry admits nothing (the config loader names it)


def _check_path(path: str) -> str | None:
    """Why ``path`` (percent-encoded, starting with "/") is unsafe, or None if it is fine."""
    if not _PATH_CHARS.match(path):
        return "the path holds characters that are not allowed in a URL path"
    for segment in path.split("/"):
        if "%" in segment:
            raw = unquote_to_bytes(segment)
            # An encoded "/" or "\" would let a segment turn into two at the origin; "%25" could
            # decode again further down the line, so it is refused as well.
            if b"/" in raw or b"\\" in raw or b"%" in raw:
                return "encoded slashes or percent signs are not allowed in the path"
        else:
            raw = segment.encode()
        if b"\x00" in raw:
            return "NUL is not allowed in the path"
        if raw in (b".", b".."):
            return "path traversal ('.' or '..' segments) is not allowed"
    return None


def _by_hash_key(segments: list[str]) -> str | None:
    if len(segments) >= 3 and segments[-3] == "by-hash":
        return f"{segments[-2]}/{segments[-1].lower()}"
    return None


def _by_hash_digest(segments: list[str]) -> str | None:
    for i, seg in enumerate(segments[:-2]):
        if seg == "by-hash" and segments[i + 1] == "SHA256":
            digest = segments[i + 2].lower()
            if _SHA256.match(digest) and i + 3 == len(segments):
                return digest
    return None


_INDEX_NAMES = re.compile(
    r"^(?:InRelease|Release(?:\.gpg)?|Index"
    r"|(?:Packages|Sources|Contents-[^/]+|Translation-[^/]+|Components-[^/]+|Commands-[^/]+"
    r"|icons-[^/]+|Release)(?:\.(?:gz|xz|bz2|lzma|zst|lz4))?"
    r"|.*\.diff)$"
)
_IMMUTABLE_SUFFIX = re.compile(
    r"\.(?:deb|udeb|ddeb|dsc|changes|buildinfo|diff\.gz|tar(?:\.[A-Za-z0-9]+)?)$"
)


def classify(path: str) -> FileKind:
    """Index versus immutable, from the (percent-encoded) upstream path."""
    segments = path.split("/")
    name = segments[-1]
    if "by-hash" in segments:
        return FileKind.IMMUTABLE
    if "dists" in segments or _INDEX_NAMES.match(name):
        return FileKind.INDEX
    if any(s.endswith(".diff") for s in segments):
        return FileKind.INDEX
    if "pool" in segments or _IMMUTABLE_SUFFIX.search(name):
        return FileKind.IMMUTABLE
    return FileKind.OTHER


def _split_scheme(target: str) -> tuple[str, str] | None:
    lowered = target[:8].lower()
    for scheme in ("http", "https"):
        prefix = scheme + "://"
        if lowered.startswith(prefix):
            return scheme, target[len(prefix) :]
    return None


def parse_target(target: bytes, allowed_hosts: Iterable[str]) -> Target | Rejection:
    """Resolve a GET/HEAD request target to its upstream, or say why it is refused."""
    resolved = _resolve_remembered(target) if len(target) <= _REMEMBER_BYTES else _resolve(target)
    if isinstance(resolved, Rejection) or host_allowed(
        resolved.host, resolved.port, resolved.scheme, allowed_hosts
    ):
        return resolved
    shown = resolved.authority
    return Rejection(
        403,
        f"upstream host {shown} is not allowed; add {shown!r} to {ALLOW_KEY} in the "
        "frumitcache configuration to proxy it",
    )


# The same few hundred targets come again from every apt client: resolving one is pure (the
# allow-list, which may depend on this host's addresses, is checked per request). Bounded in
# count and, as targets come from clients, in the size of each one remembered.
_REMEMBER_BYTES = 512


@functools.lru_cache(maxsize=2048)
def _resolve_remembered(target: bytes) -> Target | Rejection:
    return _resolve(target)


def _resolve(target: bytes) -> Target | Rejection:
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return Rejection(400, "the request target is not ASCII")
    if "#" in text:
        return Rejection(400, "a fragment (#) is not allowed in a request target")
    split = _split_scheme(text)
    if split is not None:
        scheme, rest = split
    elif text.startswith("/"):
        scheme, rest = "http", text.lstrip("/")
    else:
        return Rejection(400, "the request target is neither an absolute URL nor a path")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if scheme == "http" and authority.upper() == "HTTPS":
        # apt-cacher-ng's remapping: http://HTTPS///host/path means https://host/path.
        scheme = "https"
        authority, slash, path = path.lstrip("/").partition("/")
        path = slash + path
    if not authority:
        return Rejection(400, "the request target names no upstream host")
    if "@" in authority:
        return Rejection(400, "user information in the upstream URL is not allowed")
    parsed = split_authority(authority, _DEFAULT_PORTS[scheme])
    if parsed is None:
        return Rejection(400, f"malformed upstream host {authority!r}")
    host, port = parsed
    if not path or path == "/":
        return Rejection(400, "the request target names no file")
    if "?" in path:
        # apt never sends a query, and every spelling of one would be another object to fetch
        # over the uplink and to store: refused, before the allow-list is even consulted.
        return Rejection(400, "a query (?) is not allowed in an apt request target")
    why = _check_path(path)
    if why is not None:
        return Rejection(400, why)
    path = canonical_path(path)
    segments = path.split("/")
    url = f"{scheme}://{format_authority(host, port, scheme)}{path}"
    return Target(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        path=path,
        kind=classify(path),
        by_hash_sha256=_by_hash_digest(segments),
        by_hash=_by_hash_key(segments),
    )


def parse_connect_target(target: bytes, allowed: Iterable[str]) -> tuple[str, int] | Rejection:
    """A CONNECT target ``host:port`` admitted by ``apt.connect_allowed_hosts``, or a rejection."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return Rejection(400, "the CONNECT target is not ASCII")
    parsed = split_authority(text, 443)
    if parsed is None or "/" in text:
        return Rejection(400, "the CONNECT target must be host:port")
    host, port = parsed
    if not host_allowed(host, port, "https", allowed):
        shown = format_authority(host, port, "https")
        return Rejection(
            403,
            f"CONNECT to {shown} is not allowed; add {shown!r} to {CONNECT_ALLOW_KEY} in the "
            "frumitcache configuration to tunnel it",
        )
    return host, port
