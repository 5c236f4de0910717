"""Every uplink byte goes through ``frumitcache.origin`` (issue 12): no other module opens an
outbound connection or an HTTP client of its own, so the allow-list, ``origin.max_rate`` and the
uplink counters cannot be bypassed by a new door or helper.

The only other modules that dial are the site's own peer links (LAN members, signed with the
site key) and the federation's configured members, listed below; test doubles in
``frumitcache/testing`` are not the product.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "frumitcache"

# Calls that open a connection or a client able to reach the uplink.
DIALS = {
    "open_tcp_stream",
    "open_ssl_over_tcp_stream",
    "create_connection",
    "AsyncClient",
    "Client",
    "AsyncHTTPTransport",
    "HTTPTransport",
    "urlopen",
}
UPLINK = ("origin/",)
PEERS = ("swarm/_peer_client.py", "agent/_peerapi.py")  # LAN members, never the uplink
# The federation's links: only the configured parent/sibling members, and only as the transport
# inside the origin fetcher, which paces and counts their bytes like an origin's.
FEDERATION = ("federation/_client.py",)
# ``frumitcache doctor`` probes the same configured members: one signed request each, answered
# before any content is opened (a CLI run, not the agent; no object bytes cross).
DOCTOR = ("doctor/_federation.py",)


def dials(source: str) -> list[str]:
    """The dialling calls in ``source`` (``name`` or ``module.name``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in DIALS:
            found.append(name)
    return found


def test_the_checker_finds_dials() -> None:
    assert dials("import trio\nasync def f():\n    await trio.open_tcp_stream('h', 1)\n")
    assert dials("import httpx\nc = httpx.AsyncClient()\n")
    assert not dials("import trio\nasync def f():\n    await trio.open_tcp_listeners(0)\n")


def test_only_origin_dials_the_uplink() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("testing/", *UPLINK)) or rel in PEERS + FEDERATION + DOCTOR:
            continue
        offenders += [f"frumitcache/{rel}: {name}" for name in dials(path.read_text())]
    assert not offenders, "\n".join(offenders)
