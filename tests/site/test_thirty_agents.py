"""A 30-agent site of real agent processes on loopback (``python -m bench.scale``): it forms
with one seeder known to all, an idle window, a herd of one object to all 30 that crosses the
uplink once, then the seeder SIGKILLed and a new one named by every live agent.

Bounded: 30 Python agents start one after another (about a second each on a loaded 2-core
box); the whole run is held to ``LIMIT_S``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

N = 30
LIMIT_S = 300


def test_thirty_agents_form_share_a_herd_and_fail_over() -> None:
    argv = [sys.executable, "-m", "bench.scale", "--nodes", str(N), "--idle", "3",
            "--size", "2MiB", "--uplink", "80Mbit", "--settle", "60", "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=LIMIT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    # Formation: every agent names all 30 members and the same seeder.
    assert row["members_seen_min"] == N, row
    assert row["formation_s"] is not None, row
    assert row["notes"] == [], row
    # Idle: a member's control traffic stays a few frames a second (the seeder's ~2 N).
    assert 0 < row["frames_per_s_per_agent"] < 20, row
    herd = row["herd"]
    assert herd["completed"] == N, herd
    assert herd["verified"] is True, herd
    assert 1.0 <= herd["uplink_ratio"] < 1.1, herd
    assert herd["fallbacks"] == 0, herd
    # Seeder SIGKILL: another is named, then agreed by every live agent.
    assert row["killed"].startswith("pi")
    assert row["failover_s"] is not None, row
    assert row["failover_s"] < 10, row
    assert row["failover_agreed_s"] is not None, row
