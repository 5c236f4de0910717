"""``[apt]``: the apt proxy door (port 3142), its allow-list and its connection limits."""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.config._field import Section, check_port, opt
from frumitcache.errors import ConfigError


@dataclass(frozen=True, slots=True)
class AptConfig(Section):
    enabled: bool = opt(True, "Serve the apt proxy.")
    port: int = opt(3142, "TCP port of the apt proxy (apt-cacher-ng's port).")
    listen: str = opt(
        "127.0.0.1", "Address the apt proxy listens on; 0.0.0.0 or :: to serve other hosts."
    )
    allowed_hosts: list[str] = opt(
        [
            "deb.debian.org",
            "security.debian.org",
            "ftp.debian.org",
            "archive.raspberrypi.org",
            "archive.raspberrypi.com",
            "raspbian.raspberrypi.org",
            "raspbian.raspberrypi.com",
        ],
        "Upstream allow-list of the apt proxy (origin.allow's syntax); anything else gets 403.",
    )
    connect_allowed_hosts: list[str] = opt(
        [], "Hosts reachable through CONNECT tunnels (not cached); empty means none."
    )
    index_window_s: float = opt(
        30.0,
        "Index files (InRelease, Packages, ...) are revalidated at most once per window "
        "for the whole site, and never served staler.",
        "s",
    )
    header_timeout_s: float = opt(
        10.0,
        "A client must send a whole request head within this time once it has started one "
        "(slow-loris clients are cut off).",
        "s",
    )
    idle_timeout_s: float = opt(
        60.0, "A keep-alive connection with no request for this long is closed.", "s"
    )
    max_header_bytes: int = opt(
        16384, "Largest request head accepted; a bigger one is answered 431.", "bytes"
    )
    first_request_timeout_s: float = opt(
        10.0,
        "A new connection that has not sent its first request head within this time is "
        "closed (idle connections cannot hold descriptors for long).",
        "s",
    )
    max_pending_connections: int = opt(
        256,
        "Most connections that have not sent a request yet; past it the oldest of them is "
        "closed for each new one, so idle connections never crowd out apt clients.",
    )

    def check(self) -> None:
        check_port("apt.port", self.port)
        if self.max_pending_connections < 1 or self.first_request_timeout_s <= 0:
            raise ConfigError(
                "apt.max_pending_connections and apt.first_request_timeout_s: must be positive"
            )
