"""``python -m bench.big``: its presets and refusals parse without a fetch, and a tiny run
through a real site prints the JSON the README's figures come from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import big

GiB = 1 << 30


def test_cases_parse_to_their_chunk_counts() -> None:
    a = big.parse_args(["--case", "a"])
    assert (a.size // a.chunk_size, a.chunk_size) == (12_800, 256 << 10)
    b = big.parse_args(["--case", "b", "--agents", "3"])
    assert (b.size, b.chunk_size, b.agents) == (16 * GiB, 4 << 20, 3)
    assert b.timeout >= b.size / 20e6
    own = big.parse_args(["--size", "3MiB", "--chunk-size", "16KiB", "--sink", "stdout",
                          "--store-max", "2MiB"])  # fmt: skip
    assert (own.size, own.chunk_size, own.sink) == (3 << 20, 16 << 10, "stdout")
    assert own.store_max == 2 << 20
    assert big.parse_args([]).store_max is None


def test_a_site_of_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        big.parse_args(["--agents", "1"])
    assert "at least 2" in capsys.readouterr().err


def test_the_sink_and_the_disk() -> None:
    # Two stores hold the object; a file sink is a third copy.
    assert big.disk_need(10 * GiB, "stdout") == 20 * GiB + big.MARGIN
    assert big.disk_need(10 * GiB, "file") == 30 * GiB + big.MARGIN
    assert big.choose_sink("auto", 10 * GiB, 40 * GiB) == "file"
    assert big.choose_sink("auto", 16 * GiB, 50 * GiB) == "stdout"
    assert big.choose_sink("file", 16 * GiB, 1) == "file"
    # A sparse body: the stores and the file hold its drawn runs and one chunk of zeros.
    held = big.held_bytes(50 * GiB, GiB, 4 << 20)
    assert 50 * (4 << 20) < held <= 100 * (4 << 20)
    assert big.held_bytes(50 * GiB, 0, 4 << 20) == 50 * GiB
    assert big.choose_sink("auto", 50 * GiB, 10 * GiB, held) == "file"
    assert big.disk_need(50 * GiB, "file", held) == 3 * held + big.MARGIN


def test_too_big_for_the_disk_is_refused_with_figures(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"GB free, a .* GB object needs"):
        big.main(["--size", "100TiB", "--work", str(tmp_path)])


@pytest.mark.slow
def test_a_tiny_sparse_run_stores_and_writes_its_zeros_once(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench.big", "--size", "12MiB", "--chunk-size", "1MiB",
            "--sparse", "6MiB", "--sink", "file", "--work", str(tmp_path), "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["verified"] is True, row
    assert (row["sparse_every"], row["uplink_ratio"]) == (6 << 20, 1.0)
    for store in row["stores"].values():
        # 2 runs of 4 MiB drawn (8 chunks) and one chunk of zeros, kept as a hole.
        assert (store["chunks"], store["bytes_used"]) == (9, 9 << 20), row["stores"]
        assert store["disk_bytes"] < 9 << 20, row["stores"]
    for pull in (row["seeder"], row["member"]):
        assert pull["file_disk_bytes"] <= 8 << 20, pull


@pytest.mark.slow
@pytest.mark.parametrize("sink", ["file", "stdout"])
def test_a_tiny_run_prints_its_json(tmp_path: Path, sink: str) -> None:
    out = tmp_path / "big.json"
    argv = [sys.executable, "-m", "bench.big", "--size", "3MiB", "--chunk-size", "16KiB",
            "--sink", sink, "--work", str(tmp_path), "--json", "--out", str(out)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row == json.loads(out.read_text())
    assert (row["bytes"], row["chunks"], row["sink"]) == (3 << 20, 192, sink)
    assert row["verified"] is True, row
    assert row["uplink_ratio"] == 1.0
    assert row["seeder"]["source"] == "origin"
    assert row["member"]["source"] == "site"
    assert row["member"]["origin_bytes"] == 0
    assert set(row["peak_rss_mb"]) == {"pi0", "pi1"}
    for pull in (row["seeder"], row["member"]):
        assert pull["MBps"] > 0
        assert set(pull["cpu_s_per_gb"]) == {"pi0", "pi1"}
    assert isinstance(row["description_over_bulk"], bool)
    assert set(row["stores"]) == {"pi0", "pi1"}
    assert all(s["bytes_used"] == 3 << 20 for s in row["stores"].values()), row["stores"]
    assert [p.name for p in tmp_path.iterdir()] == ["big.json"]  # its work directory is gone
