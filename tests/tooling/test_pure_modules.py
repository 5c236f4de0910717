"""The sans-IO modules stay pure: no trio, no sockets, no clock (STYLE.md 1-2).

Each module below decides without I/O and is handed the time (``receive(msg, now)``,
``on_timer(now)``). This test reads their source (every import, at any depth, including inside
functions) and fails when one of them imports trio, a socket or timer module, or the clock, so
the rule holds without anyone having to remember it. Add a module here when you write a new
pure core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "frumitcache"

PURE = [
    "_digest.py",
    "_rate.py",
    "_signing.py",
    "agent/_plan.py",
    "client/_receiver.py",
    "content/_http.py",
    "content/_request.py",
    "content/_window.py",
    "federation/_wire.py",
    "oci/_auth.py",
    "oci/_names.py",
    "oci/_spec.py",
    "origin/_plan.py",
    "site/_catalogue.py",
    "site/_codec.py",
    "site/_core.py",
    "site/_election.py",
    "site/_evidence.py",
    "site/_membership.py",
    "site/_messages.py",
    "site/_policy.py",
    "site/_roles.py",
    "site/_stretch.py",
    "store/_manifest.py",
    "swarm/_holders.py",
    "swarm/_merkle.py",
    "swarm/_torrent.py",
]

# Module prefixes a pure module may not import: the event loop, the network, the clock.
BANNED = ("trio", "asyncio", "anyio", "socket", "selectors", "ssl", "time", "httpx", "h11")


def banned_imports(source: str) -> list[str]:
    """``module`` for every import of a banned module (or a name from one) in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in BANNED]
    return found


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_and_no_clock(module: str) -> None:
    path = ROOT / module
    assert path.is_file(), f"{module} is listed as pure but does not exist: update PURE"
    assert banned_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "line",
    [
        "import trio",
        "import trio.lowlevel",
        "from trio import sleep",
        "import socket",
        "import time",
        "from time import monotonic",
        "def f():\n    import time\n    return time.time()",
    ],
)
def test_the_check_catches_what_it_bans(line: str) -> None:
    assert banned_imports(line) != []


def test_the_check_lets_pure_imports_through() -> None:
    assert banned_imports("import hashlib\nfrom dataclasses import dataclass\n") == []
