"""``[federation]``: sites feeding sites. A site's seeder asks ``siblings`` for what they already
hold, then ``parents`` (which fetch misses for all their children, once), then the origin.

Off by default: with no key, nothing listens and every fetch goes to the origin as before. The
federation key is a secret of its own, distinct from every site key, so one site's compromise
opens no other site; it is never logged (``config show`` prints ``<set>``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from frumitcache.config._field import Section, check_port, opt
from frumitcache.errors import ConfigError

#: TCP port of the federation endpoint when a member address names none.
FEDERATION_PORT = 3147


@dataclass(frozen=True, slots=True)
class FederationConfig(Section):
    key: str = field(
        default="",
        repr=False,  # a secret: never in a repr, a log line or a traceback
        metadata={
            "doc": "The federation key as hex text (at least 32 hex digits), shared by every "
            "agent of every federated site and distinct from their site keys. Prefer key_file; "
            "empty with an empty key_file means federation off.",
            "unit": "",
        },
    )
    key_file: str = opt(
        "",
        "File holding the federation key (hex or base64, readable by the agent's user only, "
        "as site.key_file).",
    )
    parents: list[str] = opt(
        [],
        "Agents of parent sites (host:port, [v6]:port; port 3147 when omitted): asked for "
        "every object this site's seeder would fetch from the origin; they fetch it once "
        "for all their children. List several members of a parent site so its own seeder "
        "changes don't matter.",
    )
    siblings: list[str] = opt(
        [],
        "Agents of sibling sites (same form): asked first, and only for what they already "
        "hold (only-if-cached); they never fetch for this site.",
    )
    max_sibling_streams: int = opt(
        1,
        "Most held objects this agent's endpoint streams to sibling sites at once; a sibling "
        "asking for another is answered 503 busy and asks its next sibling, then its parents "
        "(busy is not failed: it asks this agent again for the next object). Without it, every "
        "later site of a late release that finds this agent holding the object takes all of it "
        "from here, over one site's link, while the parents idle. Children asking as a parent's "
        "children are never refused. 0 means no limit. In bench.sim (10,000 Pis, a tenth of "
        "the sites holding the object, every site a sibling, re-asking every 10 s) 1 keeps the "
        "last Pi at 1.15x the bound behind a 1 Gbit/s core (8.71x without a limit, 2.02x with "
        "2).",
    )
    sibling_recheck_s: float = opt(
        10.0,
        "While the object streams from a parent, its siblings are asked again this often (a "
        "walk of only-if-cached requests, from the offset reached). The first that holds the "
        "object and is free takes the rest (Range), and the parent's stream ends: a sibling "
        "busy when the fetch began, or a site that has finished since, takes over from a "
        "parent shared by many children. Objects that may change never come from siblings. "
        "0 means never. In bench.sim (10,000 Pis, a late release behind a 100 Mbit/s core "
        "egress, a tenth of the sites holding it) the last Pi comes at 126 s instead of 454 s.",
        "s",
    )
    relay_depth: int = opt(
        0,
        "Siblings also serve what their seeder is fetching right now (relay), each chunk once "
        "verified, when at most relay_depth - 1 sites relay it between the asking site and a "
        "parent or the origin; a relay is never asked by a site its bytes come through. 0 "
        "means siblings serve only objects they hold complete. Set it on every site (4) behind "
        "a core egress narrower than the sites' links together, with max_sibling_streams "
        "about the site's backbone upload / 12 Mbit/s (serve_relays false under that). In "
        "bench.sim (10,000 Pis, every site asking at once behind a 100 Mbit/s core egress, "
        "links 10-50 Mbit/s) the last Pi comes at 1.26x the bound instead of 10.65x (64 MiB), "
        "1.06x instead of 10.55x (1 GiB); behind 1 Gbit/s at 1.21-1.24x instead of 1.15x "
        "(64 MiB): leave it 0 there.",
    )
    serve_relays: bool = opt(
        True,
        "With relay_depth, whether this agent relays to its siblings what it is still "
        "fetching; it asks its siblings to relay either way. Set it false on a site whose "
        "backbone upload is under about 12 Mbit/s: a faster site relaying through it would "
        "get the object no faster than this site's link. In bench.sim that was the last "
        "site's case (a 32 Mbit/s site behind an 11 Mbit/s relay); with the rule the worst "
        "row over three draws of the links went from 1.33x the bound to 1.29x.",
    )
    listen: str = opt(
        "",
        "Address of this agent's federation endpoint (serving its site's content to "
        "federated sites that hold the key); empty means node.address, * every address of "
        "the host (IPv4 and IPv6: the VPN's address and the LAN's).",
    )
    port: int = opt(FEDERATION_PORT, "TCP port of the federation endpoint.")
    max_rate: int = opt(
        0,
        "Rate limit of each federation link, both ways: what this agent pulls from each "
        "parent or sibling member, and what its endpoint sends on each connection of a child "
        "site; 0 means unlimited. origin.max_rate still bounds the sum it pulls.",
        "bytes/s",
    )
    min_rate: int = opt(
        0,
        "A parent or sibling whose link delivers slower than this while busy (over "
        "slow_window_s; waits of a second or more, when the member has nothing to send, do "
        "not count) is skipped and the fetch resumes (with Range) after the bytes it has, from "
        "the next member, site or the origin. A parent slow for its own reasons (its origin) "
        "is kept, so the origin still sends once. 0 (the default) means never: a floor cannot "
        "tell one narrow link from a core egress shared by many children, and a child leaving "
        "that makes the origin send the rest again. A dead or silent link is left anyway "
        "(connect_timeout_s, read_timeout_s). Set it where a site's path to its parents can be "
        "far narrower than its path to the origin (bench.federation, 32 MiB over a 1 Mbit "
        "federation link: 285 s with 0, 40 s with 2Mbit and 1.93x the origin bytes).",
        "bytes/s",
    )
    slow_window_s: float = opt(10.0, "The window min_rate is measured over.", "s")
    connect_timeout_s: float = opt(
        3.0,
        "Timeout to connect to a parent or sibling; one that fails is skipped for "
        "retry_after_s (the next member, site or the origin is asked instead).",
        "s",
    )
    read_timeout_s: float = opt(
        120.0,
        "Longest wait for the next bytes from a parent or sibling before it is skipped and the "
        "fetch resumes (with Range) from the next member, site or the origin. A parent "
        "serves verified chunks only, so this must cover one chunk-time of the parent site's "
        "own uplink (120 s: a 4 MiB chunk at 280 kbit/s).",
        "s",
    )
    retry_after_s: float = opt(
        10.0,
        "How long a parent or sibling member that failed is skipped. One whose body broke "
        "(cut, silent past read_timeout_s, slower than min_rate) is also not asked again for "
        "the rest of that fetch.",
        "s",
    )

    @property
    def enabled(self) -> bool:
        """True when a key is configured: the endpoint serves and the links are used."""
        return bool(self.key or self.key_file)

    def check(self) -> None:
        check_port("federation.port", self.port)
        if self.sibling_recheck_s < 0:
            raise ConfigError("federation.sibling_recheck_s: must be 0 (never) or more")
        if self.relay_depth < 0:
            raise ConfigError("federation.relay_depth: must be 0 (held objects only) or more")
        if self.max_sibling_streams < 0:
            raise ConfigError("federation.max_sibling_streams: must be 0 (no limit) or more")
        if self.max_rate and self.min_rate > self.max_rate:
            raise ConfigError("federation.min_rate: above federation.max_rate, every link fails")
        if self.slow_window_s <= 0:
            raise ConfigError("federation.slow_window_s: must be positive")
        if self.key and self.key_file:
            raise ConfigError("federation.key and federation.key_file: set one, not both")
        if self.key:
            try:
                material = bytes.fromhex(self.key)
            except ValueError:
                raise ConfigError("federation.key: expected hex text") from None
            if len(material) < 16:
                raise ConfigError(
                    "federation.key: at least 16 bytes (32 hex digits), e.g. `openssl rand -hex 32`"
                )
        if (self.parents or self.siblings) and not self.enabled:
            raise ConfigError(
                "federation.parents/siblings: need federation.key or federation.key_file"
            )
        for name, members in (("parents", self.parents), ("siblings", self.siblings)):
            for member in members:
                try:
                    split_member(member)
                except ValueError as exc:
                    raise ConfigError(f"federation.{name}: {exc}") from None


def split_member(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``v6``, ``[v6]`` or ``[v6]:port`` as ``(host, port)``."""
    text = text.strip()
    if not text:
        raise ValueError("empty member address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad member address {text!r}")
        port_text = rest[1:]
    elif text.count(":") > 1:
        ipaddress.IPv6Address(text)  # a bare IPv6 address: no port
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"bad member address {text!r}")
    if not port_text:
        return host, FEDERATION_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in member address {text!r}")
    return host, int(port_text)
