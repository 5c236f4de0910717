"""The container registry mirror on port 3146: a read-only OCI pull-through for containerd,
k3s, podman and Docker, built on the content seam (:mod:`frumitcache.content`).

:class:`RegistryMirror` is the door (h11); :class:`RegistryContent` turns its requests into
content requests (blobs and manifests by digest immutable, tags revalidated once per window for
the site); :class:`RegistryAuth` is the Bearer token flow the seeder runs for it; :func:`render`
prints client snippets (``frumitcache oci config``).
"""

from frumitcache.config import Registry, parse_registries
from frumitcache.oci._auth import (
    Challenge,
    Credentials,
    TokenBook,
    TokenError,
    load_credentials,
    parse_challenge,
)
from frumitcache.oci._authhook import RegistryAuth, TokenGet
from frumitcache.oci._door import serve_registry
from frumitcache.oci._metrics import RegistryMetrics
from frumitcache.oci._names import ApiRoot, Ask, is_manifest_url, parse_request
from frumitcache.oci._server import RegistryMirror
from frumitcache.oci._snippets import CLIENTS, DOCKER_PATH, client_files, mirror_address, render
from frumitcache.oci._source import (
    Opened,
    RegistryContent,
    RegistryError,
    manifest_request,
    tag_revalidation,
)
from frumitcache.oci._spec import MANIFEST_TYPES, ApiError, accepted_manifest_types

__all__ = [
    "CLIENTS",
    "DOCKER_PATH",
    "MANIFEST_TYPES",
    "ApiError",
    "ApiRoot",
    "Ask",
    "Challenge",
    "Credentials",
    "Opened",
    "Registry",
    "RegistryAuth",
    "RegistryContent",
    "RegistryError",
    "RegistryMetrics",
    "RegistryMirror",
    "TokenBook",
    "TokenError",
    "TokenGet",
    "accepted_manifest_types",
    "client_files",
    "is_manifest_url",
    "load_credentials",
    "manifest_request",
    "mirror_address",
    "parse_challenge",
    "parse_registries",
    "parse_request",
    "render",
    "serve_registry",
    "tag_revalidation",
]
