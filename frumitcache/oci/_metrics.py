"""The registry door's counters, rendered for ``/metrics`` (Prometheus text) beside apt's and
summed for ``frumitcache status``.

``served_stale`` counts held manifests served because the registry could not confirm them
(stale-if-error), by the node that decided: the seeder, for the site's members too.

The site's figure of upstream manifest GETs spared is the seeder's, by the simplest honest
design: the seeder counts the manifest requests of members it answered without an upstream GET
of their own (held, inside the tag window, or joined to the one fetch already running) and adds
its own door's spares. Members' answers from their own stores never reach the seeder and are
not in it, so it is a lower bound; a member shows its own count only, and after a failover the
new seeder counts from its own history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from frumitcache.content import PROVENANCES


@dataclass(slots=True)
class RegistryMetrics:
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # method, kind, status
    bytes_served: Counter[str] = field(default_factory=Counter)  # by provenance
    manifests: Counter[str] = field(default_factory=Counter)  # manifest answers by provenance
    # Manifest answers this node gave without an upstream GET of its own: from its store (held
    # inside the tag window, or confirmed by a HEAD) or from the site (a member never asks
    # upstream; the seeder's one GET per tag and window shows in its uplink counters).
    manifest_gets_spared: int = 0
    internal_errors: int = 0
    token_requests: int = 0  # Bearer token flows this node's auth hook ran (as the seeder)
    # Manifest requests of members the seeder answered without an upstream GET for them;
    # None while this node is not the seeder (the agent sets it).
    spared_for_members: Callable[[], int | None] = lambda: None
    # Held manifests this node served because upstream could not confirm them (unreachable,
    # 429, 5xx: stale-if-error); on a site the seeder's count covers its members (the agent
    # sets it).
    served_stale: Callable[[], int] = lambda: 0

    def site_gets_spared(self) -> int | None:
        """The site's figure when this node is the seeder (or alone), else None."""
        members = self.spared_for_members()
        return None if members is None else self.manifest_gets_spared + members

    def served_manifest(self, source: str) -> None:
        self.manifests[source] += 1
        if source != "uplink":
            self.manifest_gets_spared += 1

    def summary(self) -> dict[str, int]:
        """The counters ``frumitcache status`` shows (flat integers)."""
        out = {
            "requests": sum(self.requests.values()),
            "errors": sum(n for (_, _, status), n in self.requests.items() if status >= 400),
            "manifest_gets_spared": self.manifest_gets_spared,
            "token_requests": self.token_requests,
            "served_stale": self.served_stale(),
        }
        site = self.site_gets_spared()
        if site is not None:
            out["site_manifest_gets_spared"] = site
        for source in PROVENANCES:
            out[f"bytes_{source}"] = self.bytes_served[source]
        return out

    def render(self) -> str:
        lines = [
            "# HELP frumitcache_oci_requests_total Registry mirror requests "
            "by method, kind and status.",
            "# TYPE frumitcache_oci_requests_total counter",
        ]
        for (method, kind, status), count in sorted(self.requests.items()):
            lines.append(
                f'frumitcache_oci_requests_total{{method="{method}",kind="{kind}",'
                f'status="{status}"}} {count}'
            )
        for name, counter, text in (
            ("bytes_served", self.bytes_served, "Body bytes served, by where they came from."),
            ("manifests", self.manifests, "Manifests answered, by where they came from."),
        ):
            lines += [
                f"# HELP frumitcache_oci_{name}_total {text}",
                f"# TYPE frumitcache_oci_{name}_total counter",
            ]
            for source in PROVENANCES:
                lines.append(f'frumitcache_oci_{name}_total{{source="{source}"}} {counter[source]}')
        site = self.site_gets_spared()
        site_line = (
            (
                "site_manifest_gets_spared",
                site,
                "Manifests answered in the site without an upstream GET (seeder: its own and "
                "members' it answered).",
            ),
        )
        for name, value, text in (
            *(site_line if site is not None else ()),
            (
                "manifest_gets_spared",
                self.manifest_gets_spared,
                "Manifests answered without an upstream GET by this node (store or site).",
            ),
            ("token_requests", self.token_requests, "Bearer token requests to upstream realms."),
            (
                "served_stale",
                self.served_stale(),
                "Held manifests served unconfirmed: upstream unreachable, 429 or 5xx.",
            ),
            ("internal_errors", self.internal_errors, "Requests that hit a bug (answered 500)."),
        ):
            lines += [
                f"# HELP frumitcache_oci_{name}_total {text}",
                f"# TYPE frumitcache_oci_{name}_total counter",
                f"frumitcache_oci_{name}_total {value}",
            ]
        return "\n".join(lines) + "\n"
