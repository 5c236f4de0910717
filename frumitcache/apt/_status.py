"""The proxy's counters, its Prometheus ``/metrics`` text and its human status page at ``/``.

The status page answers ``406 Usage Information`` like apt-cacher-ng does: auto-apt-proxy
detects an apt-cacher-ng by fetching ``http://HOST:3142`` with apt-helper and grepping the
error line for ``406.*usage.information``, so that status line is what makes the agent a
drop-in. The body is an HTML page a person reads (site, seeder, members, hit ratio, bytes the
uplink was spared), titled like apt-cacher-ng's so that scripts grepping for ``Apt-Cacher``
find it as well.

Site facts come from a ``status()`` callable handed in by the agent (:class:`SiteStatus`), so a
one-node agent and a site member render the same page.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

from frumitcache.content import Provenance

SOURCES = ("local", "peers", "federation", "uplink")
#: The metric label of each provenance of the content seam (``peers``: the site's members;
#: the label predates the seam's word and dashboards use it; ``uplink``: the origin itself).
METRIC_SOURCE: dict[Provenance, str] = {
    "local": "local",
    "site": "peers",
    "federation": "federation",
    "uplink": "uplink",
}


@dataclass(frozen=True, slots=True)
class SiteStatus:
    """What the agent knows about its site, for the status page."""

    site: str = "default"
    node: str = ""
    seeder: str = ""  # the node name or address of the current seeder; "" if none elected
    members: tuple[str, ...] = ()
    uplink_bytes: int | None = None  # bytes the site fetched over its uplink, if known
    #: Of those, bytes federated sites sent instead of the origin, per link
    #: (``parent@host:port``, ``sibling@host:port``); empty without federation.
    federation_bytes: tuple[tuple[str, int], ...] = ()


@dataclass(slots=True)
class ProxyMetrics:
    """Counters of one proxy (mutable; updated by the server only)."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (method, status)
    hits: int = 0  # GET/HEAD answered from content already held on this node or site
    misses: int = 0  # answered with bytes fetched for the request
    bytes_served: Counter[str] = field(default_factory=Counter)  # by source: local/peers/uplink
    connect_tunnels: int = 0
    connect_bytes: int = 0  # tunnelled bytes (both directions); they all cross the uplink
    rejected: Counter[int] = field(default_factory=Counter)  # 400/403/431/... before any fetch
    digest_mismatches: int = 0
    indexes_learned: int = 0  # Packages/Release files whose hashes were learned
    indexes_not_learned: int = 0  # ... given up: corrupt, over the bounds, unreadable
    internal_errors: int = 0  # connections ended by an unexpected error (answered 500)
    connections_dropped: int = 0  # closed before their first request: late, or pushed out
    accept_errors: int = 0  # accept() failures (EMFILE, ...) survived with a back-off

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def uplink_spared_bytes(self) -> int:
        """Bytes apt received that did not cross the uplink for that request."""
        return self.bytes_served["local"] + self.bytes_served["peers"]


def _esc_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(m: ProxyMetrics, site: SiteStatus | None = None) -> str:
    """Prometheus text exposition format 0.0.4 (``site``: the agent's uplink counters too)."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("frumitcache_apt_requests_total", "counter", "Requests answered, by method and status.")
    for (method, status), n in sorted(m.requests.items()):
        out.append(
            f'frumitcache_apt_requests_total{{method="{_esc_label(method)}",status="{status}"}} {n}'
        )
    family("frumitcache_apt_cache_hits_total", "counter", "GET/HEAD answered from held content.")
    out.append(f"frumitcache_apt_cache_hits_total {m.hits}")
    family("frumitcache_apt_cache_misses_total", "counter", "GET/HEAD that needed a fetch.")
    out.append(f"frumitcache_apt_cache_misses_total {m.misses}")
    family(
        "frumitcache_apt_bytes_served_total",
        "counter",
        "Body bytes sent to apt clients, by where they came from.",
    )
    for source in SOURCES:
        out.append(
            f'frumitcache_apt_bytes_served_total{{source="{source}"}} {m.bytes_served[source]}'
        )
    family("frumitcache_apt_connect_tunnels_total", "counter", "CONNECT tunnels opened.")
    out.append(f"frumitcache_apt_connect_tunnels_total {m.connect_tunnels}")
    family(
        "frumitcache_apt_connect_bytes_total",
        "counter",
        "Bytes carried by CONNECT tunnels (not cached; all cross the uplink).",
    )
    out.append(f"frumitcache_apt_connect_bytes_total {m.connect_bytes}")
    family("frumitcache_apt_rejected_total", "counter", "Requests refused before any fetch.")
    for status, n in sorted(m.rejected.items()):
        out.append(f'frumitcache_apt_rejected_total{{status="{status}"}} {n}')
    family(
        "frumitcache_apt_digest_mismatches_total",
        "counter",
        "Objects refused because they did not match the SHA-256 their index promised.",
    )
    out.append(f"frumitcache_apt_digest_mismatches_total {m.digest_mismatches}")
    family(
        "frumitcache_apt_indexes_learned_total",
        "counter",
        "Packages/Release files whose hashes were learned, by outcome.",
    )
    out.append(f'frumitcache_apt_indexes_learned_total{{outcome="ok"}} {m.indexes_learned}')
    out.append(f'frumitcache_apt_indexes_learned_total{{outcome="failed"}} {m.indexes_not_learned}')
    family(
        "frumitcache_apt_internal_errors_total",
        "counter",
        "Connections ended by an unexpected error in the proxy (answered 500 if possible).",
    )
    out.append(f"frumitcache_apt_internal_errors_total {m.internal_errors}")
    family(
        "frumitcache_apt_connections_dropped_total",
        "counter",
        "Connections closed before their first request (too slow, or past the pending cap).",
    )
    out.append(f"frumitcache_apt_connections_dropped_total {m.connections_dropped}")
    family(
        "frumitcache_apt_accept_errors_total",
        "counter",
        "Failed accepts (out of descriptors, ...) survived by closing idle ones and backing off.",
    )
    out.append(f"frumitcache_apt_accept_errors_total {m.accept_errors}")
    if site is not None and site.uplink_bytes is not None:
        family(
            "frumitcache_uplink_bytes_total",
            "counter",
            "Bytes this agent fetched over the uplink, by provenance: the origin itself, or a "
            "federated parent/sibling site (per link).",
        )
        federated = sum(n for _, n in site.federation_bytes)
        origin = site.uplink_bytes - federated
        out.append(f'frumitcache_uplink_bytes_total{{source="origin",link=""}} {origin}')
        for link, n in site.federation_bytes:
            label = f'source="federation",link="{_esc_label(link)}"'
            out.append(f"frumitcache_uplink_bytes_total{{{label}}} {n}")
    return "\n".join(out) + "\n"


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def render_status_page(site: SiteStatus, m: ProxyMetrics, *, version: str) -> str:
    """The HTML page served at ``/`` (with status 406 Usage Information)."""
    e = html.escape
    members = "".join(f"<li>{e(name)}</li>" for name in site.members) or "<li>(none)</li>"
    rows = [
        ("Site", e(site.site)),
        ("This node", e(site.node or "(unnamed)")),
        ("Seeder", e(site.seeder or "(none elected)")),
        ("Requests", str(sum(m.requests.values()))),
        ("Hit ratio", f"{m.hit_ratio * 100:.1f} % ({m.hits} hits, {m.misses} misses)"),
        ("Bytes served from this node", _human_bytes(m.bytes_served["local"])),
        ("Bytes served from site peers", _human_bytes(m.bytes_served["peers"])),
        ("Bytes fetched from federated sites", _human_bytes(m.bytes_served["federation"])),
        ("Bytes fetched from the origin", _human_bytes(m.bytes_served["uplink"])),
        ("Bytes the uplink was spared", _human_bytes(m.uplink_spared_bytes)),
        ("CONNECT tunnels", f"{m.connect_tunnels} ({_human_bytes(m.connect_bytes)})"),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        "<title>Apt-Cacher NG compatible proxy: frumitcache</title></head><body>\n"
        f"<h1>frumitcache {e(version)} apt proxy</h1>\n"
        "<p>This is an apt proxy (Apt-Cacher NG compatible). Usage Information: point apt at it "
        'with <code>Acquire::http::Proxy "http://THIS-HOST:3142";</code> or write sources as '
        "<code>deb http://THIS-HOST:3142/deb.debian.org/debian bookworm main</code>. "
        'Prometheus metrics are at <a href="/metrics">/metrics</a>.</p>\n'
        f"<table>{table}</table>\n<h2>Site members</h2><ul>{members}</ul>\n</body></html>\n"
    )
