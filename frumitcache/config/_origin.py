"""``[origin]``: the uplink client (rate, timeouts, retries, proxy) and the upstream
allow-list every door without its own list obeys."""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.config._field import Section, opt


@dataclass(frozen=True, slots=True)
class OriginConfig(Section):
    max_rate: int = opt(
        0,
        "Uplink budget for all the agent moves over the uplink (origin fetches, estimate "
        "HEADs, apt's CONNECT tunnels both ways); 0 means unlimited.",
        "bytes/s",
    )
    connect_timeout_s: float = opt(10.0, "Timeout to connect to an origin.", "s")
    read_timeout_s: float = opt(30.0, "Timeout between two reads from an origin.", "s")
    max_redirects: int = opt(5, "Redirects followed per fetch.")
    retries: int = opt(
        5, "Range-resumed retries after a dropped connection or a short body, per fetch."
    )
    proxy: str = opt("", "Upstream HTTP proxy URL for origin fetches; empty means none.")
    user_agent: str = opt("", "User-Agent sent to origins; empty means frumitcache/VERSION.")
    allow: list[str] = opt(
        ["*"],
        "Upstream allow-list of every door that has no list of its own (apt.allowed_hosts, "
        "control.allow), checked for every URL and every redirect hop, on the member and again "
        "on the seeder. Entries: host, *.domain, * (any host), an address or a network "
        "(10.0.0.0/8, [fd00::/8]), each with :port or :* (any port); without a port only 80/443. "
        "A pattern (* or *.domain) reaches public addresses only: loopback, private, link-local "
        "and the agent's own addresses need an explicit entry. Only http and https are fetched.",
    )
