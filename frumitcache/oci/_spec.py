"""The OCI distribution spec's vocabulary the door speaks: media types and error answers.

Pure data and rendering (no I/O): the server turns a :class:`ApiError` into the spec's JSON
error body (``{"errors": [{"code", "message", "detail"}]}``) with the right status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Manifest media types a pull may meet; a manifest list / OCI index is passed on untouched (a
# 32-bit Pi picks arm/v6 or arm/v7 itself).
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
SHORT_NAMES = {
    OCI_INDEX: "oci-index",
    OCI_MANIFEST: "oci-manifest",
    DOCKER_LIST: "docker-list",
    DOCKER_MANIFEST: "docker-manifest",
}

# Largest manifest the door accepts from upstream: the spec has registries refuse > 4 MiB.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# Error codes of the spec with the status each is answered with.
_STATUS = {
    "BLOB_UNKNOWN": 404,
    "MANIFEST_UNKNOWN": 404,
    "NAME_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "DIGEST_INVALID": 400,
    "MANIFEST_INVALID": 502,
    "UNSUPPORTED": 405,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "TOOMANYREQUESTS": 429,
    "UNAVAILABLE": 503,
}


@dataclass(frozen=True, slots=True)
class ApiError:
    """One error answer: ``code`` (the spec's), a message, and the status it goes out with.

    ``headers`` are passed on from upstream where they matter to the client (Retry-After).
    """

    code: str
    message: str
    status: int = 0  # 0: the code's own status
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def http_status(self) -> int:
        return self.status or _STATUS.get(self.code, 400)

    def body(self) -> bytes:
        return json.dumps(
            {"errors": [{"code": self.code, "message": self.message, "detail": None}]}
        ).encode()


def accepted_manifest_types(accept_headers: list[str]) -> tuple[str, ...]:
    """The manifest media types a client's ``Accept`` headers name, in the spec's order.

    No Accept (or ``*/*`` only) means all of them: the door always asks upstream for every
    type it can pass on, so a client's narrower Accept only narrows what may be answered."""
    named: set[str] = set()
    wildcard = not accept_headers
    for header in accept_headers:
        for part in header.split(","):
            media = part.split(";")[0].strip().lower()
            if media in ("*/*", "application/*"):
                wildcard = True
            elif media in MANIFEST_TYPES:
                named.add(media)
    if wildcard or not named:
        return MANIFEST_TYPES
    return tuple(t for t in MANIFEST_TYPES if t in named)
