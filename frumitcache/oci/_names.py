"""What a registry request asks for: the /v2/ path parsed and checked, the upstream chosen.

Pure functions, no I/O. A request target is either the API root (``/v2/``), a manifest by tag
or digest, or a blob by digest. The upstream registry comes from containerd's ``?ns=<registry>``
or, for clients that cannot send it (podman's mirror ``location = "host:3146/quay.io"``), from a
registry-prefixed name (``/v2/quay.io/org/app/...``); otherwise it is Docker Hub, the one
registry Docker's ``registry-mirrors`` mirrors. Every part is checked against the spec's grammar
before anything reaches the content path: no ``..``, no percent-escapes, no empty components, no
digest of an unknown algorithm or the wrong length can become an upstream URL or a store key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from frumitcache.config import REGISTRY_NAME, Registry
from frumitcache.oci._spec import ApiError

# The distribution spec's grammar (lower-case path components, tags up to 128 characters).
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
MAX_NAME = 255  # distribution's limit on a repository name (registry prefix excluded)
MAX_TARGET = 2048
DOCKER_HUB = "docker.io"


def is_manifest_url(url: str) -> bool:
    """Does ``url`` (an :attr:`Ask.url`, maybe with its ``#accept=`` key) name a manifest?
    The kind is the path's last-but-one part: a reference never holds a ``/``."""
    parts = urlsplit(url).path.rsplit("/", 2)
    return len(parts) == 3 and parts[1] == "manifests"


@dataclass(frozen=True, slots=True)
class ApiRoot:
    """``/v2/``: the version check every client makes first."""


@dataclass(frozen=True, slots=True)
class Ask:
    """A manifest or blob of one repository of one upstream registry."""

    registry: Registry
    repository: str  # as the upstream spells it (docker.io's official images under library/)
    kind: Literal["manifests", "blobs"]
    reference: str  # a tag, or a sha256 digest
    is_digest: bool

    @property
    def url(self) -> str:
        return self.registry.url(self.repository, self.kind, self.reference)

    @property
    def sha256(self) -> bytes | None:
        return bytes.fromhex(self.reference[7:]) if self.is_digest else None


def _digest_error(reference: str) -> ApiError | None:
    if _SHA256.fullmatch(reference):
        return None
    if reference.startswith("sha256:") or not _ALGORITHM.fullmatch(reference):
        return ApiError("DIGEST_INVALID", "not a valid digest (sha256 and 64 hex digits)")
    # A well-formed digest of another algorithm: valid, but not verifiable here; 404 lets the
    # client go to its next host.
    return ApiError("MANIFEST_UNKNOWN", "only sha256 digests are served by this mirror", 404)


def parse_request(target: bytes, registries: dict[str, Registry]) -> ApiRoot | Ask | ApiError:
    """The request target (path and query, as received) → what is asked, or why not."""
    if len(target) > MAX_TARGET:
        return ApiError("NAME_INVALID", "request target too long")
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return ApiError("NAME_INVALID", "request target is not ASCII")
    path, _, query = text.partition("?")
    if "%" in path or "\\" in path or "//" in path.replace("://", ""):
        return ApiError("NAME_INVALID", "escaped or empty path components are refused")
    if path in ("/v2", "/v2/"):
        return ApiRoot()
    if not path.startswith("/v2/"):
        return ApiError("NAME_UNKNOWN", "not a registry API path", 404)
    ns = _namespace(query)
    if isinstance(ns, ApiError):
        return ns
    parts = path[4:].split("/")
    if len(parts) < 3 or parts[-2] not in ("manifests", "blobs"):
        return ApiError("NAME_UNKNOWN", "not a manifest or blob path", 404)
    names, kind, reference = parts[:-2], parts[-2], parts[-1]
    registry_name = ns
    if registry_name is None and len(names) > 1 and names[0] in registries:
        registry_name, names = names[0], names[1:]
    registry = registries.get(registry_name or DOCKER_HUB)
    if registry is None:
        # Not ours to fetch: answered fast, so containerd goes on to its next host.
        return ApiError("NAME_UNKNOWN", f"registry {registry_name} is not mirrored here", 404)
    if not names or not all(_COMPONENT.fullmatch(n) for n in names):
        return ApiError("NAME_INVALID", "invalid repository name")
    if registry.name == DOCKER_HUB and len(names) == 1:
        names = ["library", *names]  # docker.io/alpine is docker.io/library/alpine
    repository = "/".join(names)
    if len(repository) > MAX_NAME:
        return ApiError("NAME_INVALID", "repository name too long")
    is_digest = ":" in reference
    if is_digest:
        problem = _digest_error(reference)
        if problem is not None:
            if kind == "blobs" and problem.code == "MANIFEST_UNKNOWN":
                problem = ApiError("BLOB_UNKNOWN", problem.message, 404)
            return problem
    elif kind == "blobs":
        return ApiError("DIGEST_INVALID", "blobs are fetched by digest only")
    elif not _TAG.fullmatch(reference):
        return ApiError("MANIFEST_INVALID", "invalid tag", 400)
    return Ask(registry, repository, kind, reference, is_digest)  # type: ignore[arg-type]


def _namespace(query: str) -> str | ApiError | None:
    if not query:
        return None
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return ApiError("NAME_INVALID", "malformed query")
    values = [v.lower() for k, v in pairs if k == "ns"]
    if len(values) > 1:
        return ApiError("NAME_INVALID", "ns given more than once")
    if values and not REGISTRY_NAME.fullmatch(values[0]):
        return ApiError("NAME_INVALID", "invalid ns registry name")
    return values[0] if values else None
