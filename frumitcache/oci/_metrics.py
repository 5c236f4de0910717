"""The registry door's counters, rendered for ``/metrics`` (Prometheus text) beside apt's."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class RegistryMetrics:
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # method, kind, status
    bytes_served: Counter[str] = field(default_factory=Counter)  # by provenance
    internal_errors: int = 0
    token_requests: int = 0  # Bearer token flows this node's auth hook ran (as the seeder)

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
        lines += [
            "# HELP frumitcache_oci_bytes_served_total Body bytes served, by where they came from.",
            "# TYPE frumitcache_oci_bytes_served_total counter",
        ]
        for source in ("local", "site", "uplink"):
            lines.append(
                f'frumitcache_oci_bytes_served_total{{source="{source}"}} '
                f"{self.bytes_served[source]}"
            )
        for name, value, text in (
            ("token_requests", self.token_requests, "Bearer token requests to upstream realms."),
            ("internal_errors", self.internal_errors, "Requests that hit a bug (answered 500)."),
        ):
            lines += [
                f"# HELP frumitcache_oci_{name}_total {text}",
                f"# TYPE frumitcache_oci_{name}_total counter",
                f"frumitcache_oci_{name}_total {value}",
            ]
        return "\n".join(lines) + "\n"
