"""``python -m bench.scale`` on a tiny site: it runs, and its JSON says what it measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_scale_smoke() -> None:
    # 10 s idle: CPU is counted in 10 ms ticks, and a 3-agent site idles near 0.2 % a core,
    # so 3 s (about 6 ms an agent) could read 0.
    argv = [sys.executable, "-m", "bench.scale", "--nodes", "3", "--idle", "10",
            "--size", "1MiB", "--uplink", "80Mbit", "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["nodes"] == 3
    assert row["members_seen_min"] == 3
    assert row["formation_s"] is not None
    assert row["formation_s"] >= 0
    assert 0 < row["idle_cpu_pct_per_agent"] < 100
    assert row["frames_per_s_per_agent"] > 0
    assert row["bytes_per_s_per_agent"] > 0
    assert 20 < row["rss_mb_max"] < 400
    herd = row["herd"]
    assert herd["verified"] is True, herd
    assert herd["completed"] == 3, herd
    assert 1.0 <= herd["uplink_ratio"] < 1.1, herd
    assert row["killed"].startswith("pi")
    assert row["failover_s"] is not None
    assert row["failover_agreed_s"] is not None


def test_scale_pauses_the_seeder_mid_herd() -> None:
    # A pause past the lease (3 s) and member timeout (4 s): the others name another seeder,
    # the paused one is fenced when it comes back, and every copy is still right.
    argv = [sys.executable, "-m", "bench.scale", "--nodes", "3", "--idle", "2",
            "--size", "8MiB", "--uplink", "20Mbit", "--pause-seeder", "0.3:6",
            "--no-kill", "--log-level", "info", "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    herd = json.loads(done.stdout.strip().splitlines()[-1])["herd"]
    assert herd["verified"] is True, herd
    assert herd["completed"] == 3, herd
    paused = herd["paused"]
    assert paused["node"].startswith("pi"), paused
    assert paused["seconds"] == 6
    assert paused["fenced"] >= 1, paused


@pytest.mark.parametrize("text", ["0.5", "1.5:6", "0.5:0", "x:y", ":"])
def test_a_bad_pause_is_refused(text: str) -> None:
    from bench.scale import main

    with pytest.raises(SystemExit):
        main(["--pause-seeder", text])
