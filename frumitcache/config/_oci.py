"""``[oci]``: the container registry mirror door (port 3146), its upstreams and allow-list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from frumitcache.config._field import Section, check_port, opt
from frumitcache.errors import ConfigError

# A registry as clients name it (the distribution spec's host[:port] grammar).
REGISTRY_NAME = re.compile(r"(?:[a-z0-9-]+\.)*[a-z0-9-]+(?::[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class Registry:
    """One upstream the door may pull from: the name clients use, and where it is served."""

    name: str  # as clients spell it: docker.io, ghcr.io, localhost:5000
    base: str  # scheme://host[:port] of its API

    def url(self, repository: str, kind: str, reference: str) -> str:
        return f"{self.base}/v2/{repository}/{kind}/{reference}"


def parse_registries(entries: list[str], key: str = "oci.registries") -> dict[str, Registry]:
    """``name`` or ``name=[scheme://]host[:port]`` entries (https unless a scheme is given)."""
    table: dict[str, Registry] = {}
    for entry in entries:
        name, _, where = entry.strip().partition("=")
        name = name.strip().lower()
        where = where.strip() or name
        if "://" not in where:
            where = "https://" + where
        try:
            parts = urlsplit(where)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = urlsplit("")
        if (
            not REGISTRY_NAME.fullmatch(name)
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.username
        ):
            raise ConfigError(f"{key}: bad entry {entry!r} (name or name=[scheme://]host[:port])")
        table[name] = Registry(name, f"{parts.scheme}://{parts.netloc}")
    return table


@dataclass(frozen=True, slots=True)
class OciConfig(Section):
    enabled: bool = opt(
        True,
        "Serve the read-only container registry mirror (OCI pull-through) on oci.port. If the "
        "port cannot be bound the agent logs oci.unavailable and serves its other doors.",
    )
    port: int = opt(3146, "TCP port of the registry mirror.")
    listen: str = opt(
        "127.0.0.1", "Address the registry mirror listens on; 0.0.0.0 or :: to serve other hosts."
    )
    registries: list[str] = opt(
        ["docker.io=registry-1.docker.io", "ghcr.io", "quay.io", "registry.k8s.io"],
        "Upstream registries mirrored: name (as clients spell it) or name=[scheme://]host[:port] "
        "(https unless given). Chosen by containerd's ?ns=, else a name-prefixed path "
        "(/v2/ghcr.io/org/app/...), else docker.io. Each host must pass oci.allowed_hosts.",
    )
    allowed_hosts: list[str] = opt(
        [
            "registry-1.docker.io",
            "auth.docker.io",
            "production.cloudflare.docker.com",
            "ghcr.io",
            "pkg-containers.githubusercontent.com",
            "quay.io",
            "*.quay.io",
            "registry.k8s.io",
            "*.pkg.dev",
            "*.amazonaws.com",
        ],
        "Upstream allow-list of the registry mirror (origin.allow's syntax): the registries, "
        "their token realms and the hosts their blobs redirect to.",
    )
    tag_window_s: float = opt(
        60.0,
        "A tag is resolved by the seeder at most once per window for the whole site (a HEAD "
        "upstream, a GET only when its digest changed; members never ask upstream); inside it "
        "every Pi gets the same digest. A 429 or 5xx (or no answer) while a held tag is "
        "revalidated serves the held manifest (logged, counted) instead of failing the pull.",
        "s",
    )
    unreachable_backoff_s: float = opt(
        2.0,
        "After a registry could not be reached, no new attempt for this long (held tags and "
        "blobs are served, misses answered 404 at once so containerd tries its next host); "
        "doubled after each failure in a row, up to oci.unreachable_backoff_max_s. A 429 or "
        "503 backs the registry off too, for its Retry-After (capped at the max).",
        "s",
    )
    unreachable_backoff_max_s: float = opt(
        60.0, "Longest wait between attempts to reach a registry that stays down.", "s"
    )
    credentials_file: str = opt(
        "",
        'Registry credentials (auth.json format: {"auths": {"ghcr.io": {"auth": base64}}}); '
        "used by the seeder for token requests, never logged, never sent across the site.",
    )
    prefetch_blobs: bool = opt(
        True,
        "When a client GETs an image manifest, ask the site for its config and every layer at "
        "once (the seeder starts each upstream fetch then, once for the site) instead of when "
        "the client gets to them; an index, a HEAD or a 304 prefetches nothing.",
    )
    header_timeout_s: float = opt(
        10.0, "A client must send a whole request head within this time once started.", "s"
    )
    idle_timeout_s: float = opt(
        60.0, "A keep-alive connection with no request for this long is closed.", "s"
    )
    max_header_bytes: int = opt(
        16384, "Largest request head accepted; a bigger one is answered 431.", "bytes"
    )

    def check(self) -> None:
        check_port("oci.port", self.port)
        if self.header_timeout_s <= 0 or self.idle_timeout_s <= 0:
            raise ConfigError("oci.header_timeout_s and oci.idle_timeout_s: must be positive")
        if self.unreachable_backoff_s < 0 or self.unreachable_backoff_max_s < 0:
            raise ConfigError("oci.unreachable_backoff_s and _max_s: must not be negative")
        parse_registries(self.registries)  # a bad entry raises ConfigError naming the key
