"""Real agents with no peer list find each other by multicast beacons (``site.discovery``):
on loopback over IPv4, and (root only) each in its own network namespace on one bridge over
IPv6, as on a site LAN. Through ``python -m bench.scale --discovery``: the site forms (every
agent names every member and the same seeder), a herd crosses the uplink once, and a SIGKILLed
seeder is replaced.

Each run uses a multicast group of its own (``bench.scale`` draws one), so parallel tests and
other sites on the host are not heard.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.slow

LIMIT_S = 240


def _scale(*args: str) -> tuple[dict[str, Any], int]:
    argv = [sys.executable, "-m", "bench.scale", "--idle", "1", "--size", "2MiB",
            "--uplink", "80Mbit", "--settle", "60", "--discovery", "--json", *args]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), proc.pid


def _formed_shared_and_failed_over(row: dict[str, Any], nodes: int) -> None:
    assert row["discovery"] == "multicast", row
    assert row["members_seen_min"] == nodes, row
    assert row["formation_s"] is not None, row
    assert row["notes"] == [], row
    herd = row["herd"]
    assert herd["completed"] == nodes, herd
    assert herd["verified"] is True, herd
    assert 1.0 <= herd["uplink_ratio"] < 1.1, herd
    assert herd["fallbacks"] == 0, herd
    assert row["killed"].startswith("pi"), row
    assert row["failover_agreed_s"] is not None, row


def test_agents_without_peer_lists_find_each_other_by_ipv4_multicast() -> None:
    row, _ = _scale("--nodes", "5")
    assert row["network"] == "loopback-ipv4", row
    _formed_shared_and_failed_over(row, 5)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network namespaces need root and iproute2",
)
def test_agents_in_namespaces_find_each_other_by_ipv6_multicast() -> None:
    row, pid = _scale("--nodes", "4", "--ipv6")
    assert row["network"] == "netns-ipv6", row
    _formed_shared_and_failed_over(row, 4)
    # The harness removed every namespace it built (they are named after its pid).
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert f"fc{pid}-" not in left.stdout
