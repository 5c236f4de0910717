"""``[site]``: site membership, the control plane's timers and ports, the peer port and the
origin fallback when the seeder is unreachable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from frumitcache.config._field import Section, check_port, opt
from frumitcache.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SiteConfig(Section):
    name: str = opt("default", "Name of the site this node belongs to.")
    key_file: str = opt(
        "",
        "File holding the site key (shared secret of the site); empty means a key generated "
        "in node.state_dir, which suits only a one-node site.",
    )
    peers: list[str] = opt([], "Static list of site members, as host or host:port.")
    control_port: int = opt(
        3143, "UDP port of the site control plane (beacons, election, catalogue)."
    )
    peer_port: int = opt(3144, "TCP port serving chunks over HTTP to site members.")
    peer_preauth_max: int = opt(
        64,
        "Connections to the peer port that may wait for their first signed request at once; "
        "a new one evicts the oldest waiting (idle sockets cannot lock members out).",
    )
    peer_header_timeout_s: float = opt(
        5.0, "A peer-port connection must send a complete request head within this.", "s"
    )
    peer_idle_timeout_s: float = opt(
        30.0,
        "A peer-port connection with no byte moving either way for this long is closed.",
        "s",
    )
    discovery: bool = opt(
        False,
        "Discover members by UDP multicast beacons on the site LAN (IPv4 and IPv6). Off in the "
        "embedded one-node default; turn it on (with node.address on the LAN) for a real site.",
    )
    multicast_v4: str = opt("239.255.42.99", "IPv4 multicast group for beacons.")
    multicast_v6: str = opt("ff02::4299", "IPv6 multicast group for beacons.")
    beacon_interval_s: float = opt(
        1.0,
        "Interval between membership beacons while no seeder holds a lease (5 times longer "
        "once one does).",
        "s",
    )
    member_timeout_s: float = opt(4.0, "A member silent this long is considered gone.", "s")
    lease_s: float = opt(
        3.0,
        "Seeder lease; a seeder whose lease lapses holds its origin fetch, goes on when its "
        "lease is back (the same term, or a new term it won), and stops it when the site "
        "names another seeder, when it does not hear its site (a majority, a seeder) after "
        "site.fallback_timeout_s, or after 4 times that.",
        "s",
    )
    member_forget_s: float = opt(
        20.0,
        "A member silent this long no longer counts in election majorities (until then a "
        "minority side of a partition cannot elect a seeder).",
        "s",
    )
    election_round_s: float = opt(
        0.5, "Length of one election round, and the stagger between candidates.", "s"
    )
    max_clock_skew_s: float = opt(
        60.0,
        "Control frames and peer-port requests timestamped further than this from the local "
        "clock are rejected as stale (replay protection); 0 disables the time check for sites "
        "without NTP (replays are then refused by nonce only, over a bounded memory).",
        "s",
    )
    fallback: Literal["never", "after-timeout", "always"] = opt(
        "after-timeout",
        "When an agent may fetch from the origin itself if the seeder is unreachable.",
    )
    fallback_timeout_s: float = opt(
        15.0,
        "How long the site must get nowhere (no seeder named, neither a majority of the site "
        "nor a seeder's beacon heard, no chunk arriving) before falling back to the origin; a "
        "site that names a seeder or is heard is given 4 times as long without progress (a "
        "chunk arriving or announced, a new seeder term), and 8 times as long at most "
        "without a chunk arriving.",
        "s",
    )

    def check(self) -> None:
        check_port("site.control_port", self.control_port)
        check_port("site.peer_port", self.peer_port)
        if self.lease_s <= 0 or self.beacon_interval_s <= 0:
            raise ConfigError("site.lease_s and site.beacon_interval_s: must be positive")
        if self.peer_preauth_max < 1:
            raise ConfigError("site.peer_preauth_max: must be at least 1")
        if self.peer_header_timeout_s <= 0 or self.peer_idle_timeout_s <= 0:
            raise ConfigError(
                "site.peer_header_timeout_s and site.peer_idle_timeout_s: must be positive"
            )
