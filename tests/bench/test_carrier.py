"""``python -m bench.carrier``: bare libtorrent sessions in their own processes move a warm
object, each copy checked, and the holder's share of the sending is what each rule says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import carrier


def test_unknown_systems_and_a_lone_pi_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        carrier.parse_args(["--systems", "chunks,bogus"])
    assert "unknown bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        carrier.parse_args(["--nodes", "1"])
    assert "at least 2" in capsys.readouterr().err


def test_the_object_is_split_as_an_agent_stores_it(tmp_path: Path) -> None:
    sha = carrier.prepare(tmp_path, (9 << 20) + 5, 4 << 20)
    chunks = sorted((tmp_path / "chunks" / "held").iterdir())
    assert sorted(p.stat().st_size for p in chunks) == [(1 << 20) + 5, 4 << 20, 4 << 20]
    assert len(list((tmp_path / "chunks" / "torrents").glob("*.torrent"))) == 3
    assert (tmp_path / "object" / "held" / "object").stat().st_size == (9 << 20) + 5
    assert len(sha) == 64


def test_bare_sessions_deliver_verified_copies(tmp_path: Path) -> None:
    # Real processes on loopback, no budget (no root needed): three Pis, 12 MiB.
    argv = [sys.executable, "-m", "bench.carrier", "--nodes", "3", "--size", "12MiB"]
    argv += ["--systems", "chunks-assigned,object", "--json", "--timeout", "60"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["system"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {"chunks-assigned", "object"}
    for row in rows.values():
        assert row["verified"] is True
        assert row["seconds"] > 0
        assert len(row["times_s"]) == 2
        assert row["cpu_s_per_gb"] > 0
    # Each fetcher dials the holder only for its own chunks: each byte leaves it once (plus
    # a re-request or two), where everyone dialling it gets more than one copy out of it.
    assert 0.99 <= rows["chunks-assigned"]["holder_sent_ratio"] <= 1.1
