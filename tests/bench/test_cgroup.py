"""Per-Pi cgroups of the benchmarks (bench._cgroup): set up, joined, counted, and gone after.

Root-only where groups are made: a budget's groups exist with their limits while a run holds
them, a process joins through the argv wrapper (same pid) and its CPU is counted and throttled,
and teardown leaves nothing behind — also with a process still inside, and for a run that
died without cleaning up. Without root the harness refuses with a clear message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import _cgroup
from bench._cgroup import Budget, CgroupError, CgroupSet

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def _dirs(cgroups: CgroupSet) -> list[Path]:
    return list(dict.fromkeys(cgroups.bases.values()))


def test_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CgroupError, match="need root"):
        CgroupSet(["pi0"], Budget(10.0)).setup()


def test_herd_refuses_a_budget_without_root() -> None:
    if os.geteuid() == 0:
        # As root the refusal is the in-process check above; as a user, the whole command.
        pytest.skip("runs as a user only")
    done = subprocess.run(
        [sys.executable, "-m", "bench.herd", "--cpu-quota", "10", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "need root" in done.stderr


@needs_root
def test_setup_limits_counts_and_teardown_leaves_nothing() -> None:
    cgroups = CgroupSet(["pi0", "pi1"], Budget(20.0, 256), tag=f"{_cgroup.PREFIX}{os.getpid()}t")
    cgroups.setup()
    made = _dirs(cgroups)
    try:
        assert made
        assert all(d.is_dir() for d in made)
        for d in made:
            assert {p.name for p in d.iterdir() if p.is_dir()} == {"pi0", "pi1"}
            assert {p.name for p in (d / "pi0").iterdir() if p.is_dir()} == set(_cgroup.ROLES)
        if cgroups.version == 1:
            quota = (cgroups.bases["cpu"] / "pi0/cpu.cfs_quota_us").read_text().strip()
            assert quota == "20000"
            limit = (cgroups.bases["memory"] / "pi0/memory.limit_in_bytes").read_text()
            assert int(limit) == 256 << 20
        else:
            assert (cgroups.bases["cpu"] / "pi0/cpu.max").read_text().split() == [
                "20000",
                "100000",
            ]
        before = cgroups.snapshot()
        proc = subprocess.Popen(cgroups.wrap([sys.executable, "-c", BURN], "pi0", "clients"))
        assert proc.wait(timeout=60) == 0
        used = _cgroup.usage(before, cgroups.snapshot())
        assert used["clients"] >= 0.25  # the burn loop's CPU, counted in pi0/clients
        assert used["daemons"] == 0.0
        assert used["throttled"] > 0  # 0.3 CPU-s at 20 % of a core cannot run unthrottled
        # A process left running inside is killed (by its pid) at teardown.
        sleeper = subprocess.Popen(cgroups.wrap(["sleep", "300"], "pi1", "daemons"))
        time.sleep(0.2)
        assert sleeper.pid in [
            int(p) for p in cgroups.procs_files("pi1", "daemons")[0].read_text().split()
        ]
    finally:
        cgroups.teardown()
    assert sleeper.wait(timeout=10) != 0
    assert not any(d.exists() for d in made)


@needs_root
def test_leftovers_of_a_dead_run_are_removed() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    cgroups = CgroupSet(["pi0"], Budget(50.0), tag=f"{_cgroup.PREFIX}{dead.pid}")
    cgroups.setup()
    made = _dirs(cgroups)
    sleeper = subprocess.Popen(cgroups.wrap(["sleep", "300"], "pi0", "daemons"))
    try:
        removed = _cgroup.cleanup_leftovers()
        assert sorted(removed) == sorted(str(d) for d in made)
        assert not any(d.exists() for d in made)
        assert sleeper.wait(timeout=10) != 0
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        cgroups.teardown()


@needs_root
def test_setup_failure_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    cgroups = CgroupSet(["pi0"], Budget(10.0), tag=f"{_cgroup.PREFIX}{os.getpid()}f")

    def broken(path: Path, value: str) -> None:
        raise OSError("refused")

    monkeypatch.setattr(_cgroup, "_write", broken)
    with pytest.raises(OSError, match="refused"):
        cgroups.setup()
    assert cgroups.bases == {}
    for mount in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/unified")):
        assert not list(mount.rglob(cgroups.name))
