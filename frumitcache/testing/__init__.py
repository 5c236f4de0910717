"""Real test doubles shipped with the package: an origin HTTP server that misbehaves on demand
and helpers to start loopback sites. Tests and benchmarks use them; agents never import them."""
