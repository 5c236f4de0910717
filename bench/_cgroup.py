"""Per-Pi CPU and memory budgets for the benchmarks: one cgroup per emulated Pi (root only).

Layout (``fcb<pid>`` is the harness's pid, so parallel runs and leftovers never clash)::

    <caller's own cgroup>/fcb<pid>/pi<i>            the Pi's budget: CPU quota, memory limit
    <caller's own cgroup>/fcb<pid>/pi<i>/daemons    its agent / apt-cacher-ng (accounting only)
    <caller's own cgroup>/fcb<pid>/pi<i>/clients    its pull / fetch / apt-get processes

Everything of one Pi shares the Pi's budget, as on a real board; the two leaves only split the
accounting. Groups are created under the caller's own cgroup in each hierarchy (read from
``/proc/self/cgroup``), never at a hierarchy's root: whatever placed the harness keeps counting
what it starts.

Two kinds of hierarchy, chosen at :meth:`CgroupSet.setup`:

* cgroup v2 where a unified hierarchy with the ``cpu`` and ``memory`` controllers is mounted:
  ``cpu.max``, ``memory.max``; usage and throttling from ``cpu.stat`` (µs);
* else cgroup v1 with ``cpu``, ``cpuacct`` and ``memory`` mounted (as on this test machine, where
  the v2 mount carries no controllers): ``cpu.cfs_quota_us``, ``memory.limit_in_bytes``, usage
  from ``cpuacct.usage`` (ns), throttling from the ``cpu`` hierarchy's ``cpu.stat``
  ``throttled_time`` (ns).

A process joins a group race-free: its argv is prefixed with a ``sh -c`` that writes its own
pid into the group's ``cgroup.procs`` files and then execs the program (same pid, children
inherit the group). :meth:`CgroupSet.teardown` SIGKILLs whatever pid is still listed in our
groups (only processes we started can be there) and removes the directories;
:func:`cleanup_leftovers` does the same for groups of runs whose harness is gone.

``python -m bench._cgroup --calibrate PCT`` prints SHA-256 MB/s and a Python loop rate inside a
group limited to PCT % of one core (see bench/README.md, "Pi-class budget").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "fcb"
ROLES = ("daemons", "clients")
_PERIOD_US = 100_000
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


class CgroupError(Exception):
    """No usable cgroup hierarchy, or not root; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Budget:
    """A Pi's share: ``cpu_quota_pct`` of one core of this machine (None: unlimited), memory."""

    cpu_quota_pct: float | None = None
    memory_mb: int | None = None


# Calibrated on the test machine (bench/README.md, "Pi-class budget"): 10 % of one of its cores
# runs pure-Python loops at about a Pi 3 core's rate and SHA-256 faster than a Pi 3 does;
# 3 % for the original model B (ARM1176 at 700 MHz), roughly a third of a Pi 3 core.
PROFILES = {"pi3": Budget(10.0, 1024), "pi1": Budget(3.0, 512)}


def _own_path(controller: str) -> str:
    """This process's cgroup path in the v1 hierarchy of ``controller`` ("" for v2: ``0::``)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _num, names, path = line.split(":", 2)
        if (controller == "" and names == "") or controller in names.split(","):
            return path.lstrip("/")
    raise CgroupError(f"this process is in no {controller or 'v2'} cgroup")


def _mounts() -> dict[str, Path]:
    """cgroup mount points by controller name (``"v2"`` for the unified hierarchy)."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup2":
            found.setdefault("v2", Path(fields[1]))
        elif fields[2] == "cgroup":
            for option in fields[3].split(","):
                found.setdefault(option, Path(fields[1]))
    return found


def _v2_base() -> Path | None:
    """Our own v2 cgroup when the unified hierarchy has ``cpu`` and ``memory``, else None."""
    mount = _mounts().get("v2")
    if mount is None:
        return None
    try:
        controllers = (mount / "cgroup.controllers").read_text().split()
    except OSError:
        return None
    if not {"cpu", "memory"} <= set(controllers):
        return None
    return mount / _own_path("")


class CgroupSet:
    """The groups of one run: ``setup()``, ``wrap()`` argvs, read usage, ``teardown()``."""

    def __init__(self, groups: list[str], budget: Budget, *, tag: str | None = None) -> None:
        self.groups = groups
        self.budget = budget
        self.name = tag or f"{PREFIX}{os.getpid()}"
        self.version = 0
        # The run's directory in each hierarchy we use, keyed by job ("cpu", "acct", "memory").
        self.bases: dict[str, Path] = {}

    # --- lifetime -----------------------------------------------------------------------------

    def setup(self) -> None:
        if os.geteuid() != 0:
            raise CgroupError("CPU and memory budgets need root (they create cgroups)")
        v2 = _v2_base()
        if v2 is not None:
            self.version = 2
            self.bases = {"cpu": v2 / self.name}
            self.bases["acct"] = self.bases["memory"] = self.bases["cpu"]
        else:
            mounts = _mounts()
            missing = [c for c in ("cpu", "cpuacct", "memory") if c not in mounts]
            if missing:
                raise CgroupError(
                    "no cgroup v2 hierarchy with the cpu and memory controllers, and no v1 "
                    f"hierarchy for {', '.join(missing)}"
                )
            self.version = 1
            self.bases = {
                job: mounts[c] / _own_path(c) / self.name
                for job, c in (("cpu", "cpu"), ("acct", "cpuacct"), ("memory", "memory"))
            }
        try:
            self._create()
        except BaseException:
            self.teardown()
            raise

    def _create(self) -> None:
        for base in dict.fromkeys(self.bases.values()):
            base.mkdir()
            if self.version == 2:
                _enable(base.parent)
                _enable(base)
            for group in self.groups:
                (base / group).mkdir()
                if self.version == 2:
                    _enable(base / group)
                for role in ROLES:
                    (base / group / role).mkdir()
        quota = self.budget.cpu_quota_pct
        memory = self.budget.memory_mb
        for group in self.groups:
            if quota:
                us = max(1000, int(_PERIOD_US * quota / 100))
                if self.version == 2:
                    _write(self.bases["cpu"] / group / "cpu.max", f"{us} {_PERIOD_US}")
                else:
                    _write(self.bases["cpu"] / group / "cpu.cfs_period_us", str(_PERIOD_US))
                    _write(self.bases["cpu"] / group / "cpu.cfs_quota_us", str(us))
            if memory:
                limit = str(memory << 20)
                knob = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
                _write(self.bases["memory"] / group / knob, limit)

    def teardown(self) -> None:
        """Kill what is left in our groups (by pid) and remove every directory we made."""
        for base in dict.fromkeys(self.bases.values()):
            remove_tree(base)
        self.bases = {}

    # --- joining ------------------------------------------------------------------------------

    def procs_files(self, group: str, role: str) -> list[Path]:
        return [b / group / role / "cgroup.procs" for b in dict.fromkeys(self.bases.values())]

    def wrap(self, argv: list[str], group: str, role: str) -> list[str]:
        """``argv`` run inside ``group``/``role``: same pid, and its children stay in there."""
        writes = " && ".join(
            f"echo $$ > {shlex.quote(str(p))}" for p in self.procs_files(group, role)
        )
        return ["/bin/sh", "-c", f'{writes} && exec "$@"', "sh", *argv]

    # --- figures ------------------------------------------------------------------------------

    def cpu_s(self, group: str, role: str | None = None) -> float:
        """CPU seconds used so far by ``group`` (or one of its roles)."""
        path = self.bases["acct"] / group
        if role is not None:
            path = path / role
        if self.version == 2:
            return _stat(path / "cpu.stat").get("usage_usec", 0) / 1e6
        return int((path / "cpuacct.usage").read_text()) / 1e9

    def throttled_s(self, group: str) -> float:
        """Seconds ``group``'s processes were held back by the CPU quota so far."""
        stat = _stat(self.bases["cpu"] / group / "cpu.stat")
        if self.version == 2:
            return stat.get("throttled_usec", 0) / 1e6
        return stat.get("throttled_time", 0) / 1e9

    def figures(self, before: dict[str, float], delivered: int) -> dict[str, object]:
        """A row's budget figures since ``before`` (a :meth:`snapshot`): daemons' (agents',
        apt-cacher-ng's) and clients' CPU seconds per GB delivered, seconds throttled; and
        each Pi's daemon CPU and throttled seconds (which Pi's budget held the herd up)."""
        after = self.snapshot()
        used = usage(before, after)
        gb = delivered / 1e9

        def by_pi(role: str) -> dict[str, float]:
            return {
                group: round(after[f"{group}/{role}"] - before.get(f"{group}/{role}", 0.0), 2)
                for group in self.groups
            }

        return {
            "agent_cpu_s": used["daemons"],
            "client_cpu_s": used["clients"],
            "agent_cpu_s_per_gb": used["daemons"] / gb if gb else None,
            "client_cpu_s_per_gb": used["clients"] / gb if gb else None,
            "throttled_s": used["throttled"],
            "agent_cpu_s_by_pi": by_pi("daemons"),
            "throttled_s_by_pi": by_pi("throttled"),
        }

    def snapshot(self) -> dict[str, float]:
        """Every counter at once, for before/after differences (see :func:`usage`)."""
        out: dict[str, float] = {}
        for group in self.groups:
            for role in ROLES:
                out[f"{group}/{role}"] = self.cpu_s(group, role)
            out[f"{group}/throttled"] = self.throttled_s(group)
        return out


def describe(budget: Budget | None) -> dict[str, float | int | None]:
    """The budget's fields of a benchmark row (``None``: no limit)."""
    return {
        "cpu_quota_pct": budget.cpu_quota_pct if budget else None,
        "memory_limit_mb": budget.memory_mb if budget else None,
    }


def usage(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Summed differences: ``daemons``, ``clients`` CPU seconds and ``throttled`` seconds."""
    total = dict.fromkeys((*ROLES, "throttled"), 0.0)
    for key, value in after.items():
        total[key.rsplit("/", 1)[1]] += value - before.get(key, 0.0)
    return total


def _write(path: Path, value: str) -> None:
    path.write_text(value + "\n")


def _enable(path: Path) -> None:
    """Delegate cpu and memory to ``path``'s children (v2)."""
    try:
        _write(path / "cgroup.subtree_control", "+cpu +memory")
    except OSError as exc:
        raise CgroupError(f"cannot enable cpu and memory below {path}: {exc}") from exc


def _stat(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


def _pids(tree: Path) -> list[int]:
    pids: list[int] = []
    for procs in tree.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def remove_tree(tree: Path, limit_s: float = 10.0) -> None:
    """SIGKILL the pids left in ``tree`` (ours: only our wrapper puts them there), rmdir it."""
    if not tree.is_dir():
        return
    deadline = time.monotonic() + limit_s
    while True:
        for pid in _pids(tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        dirs = sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        try:
            for d in [*dirs, tree]:
                with contextlib.suppress(FileNotFoundError):
                    d.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # killed processes leave their group when they are reaped


def cleanup_leftovers() -> list[str]:
    """Remove the groups of runs whose harness process is gone; returns their paths."""
    removed: list[str] = []
    if os.geteuid() != 0:
        return removed
    parents: set[Path] = set()
    v2 = _v2_base()
    if v2 is not None:
        parents.add(v2)
    mounts = _mounts()
    for controller in ("cpu", "cpuacct", "memory"):
        if controller in mounts:
            with contextlib.suppress(CgroupError):
                parents.add(mounts[controller] / _own_path(controller))
    for parent in parents:
        with contextlib.suppress(OSError):
            for child in parent.iterdir():
                match = _NAME.match(child.name)
                if match and child.is_dir() and not Path(f"/proc/{match.group(1)}").exists():
                    remove_tree(child)
                    removed.append(str(child))
    return removed


# --- calibration ------------------------------------------------------------------------------

_PROBE = r"""
import hashlib, json, time
block = b"\x5a" * (1 << 20)
t = time.perf_counter(); h = hashlib.sha256(); n = 0
while time.perf_counter() - t < 4.0:
    h.update(block); n += 1
sha = n / (time.perf_counter() - t) * 1.048576
def loop(k):
    total = 0
    for i in range(k):
        total += i * i % 7
    return total
t = time.perf_counter(); n = 0
while time.perf_counter() - t < 4.0:
    loop(100_000); n += 1
rate = n * 100_000 / (time.perf_counter() - t) / 1e6
print(json.dumps({"sha256_MBps": round(sha, 1), "py_loop_Miter_per_s": round(rate, 2)}))
"""


def calibrate(budget: Budget) -> dict[str, float | None]:
    """SHA-256 MB/s and pure-Python loop rate of one process inside a group with ``budget``."""
    cgroups = CgroupSet(["cal"], budget)
    cgroups.setup()
    try:
        argv = cgroups.wrap([sys.executable, "-c", _PROBE], "cal", "clients")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
        figures: dict[str, float | None] = json.loads(done.stdout)
        figures["cpu_quota_pct"] = budget.cpu_quota_pct
        figures["throttled_s"] = round(cgroups.throttled_s("cal"), 2)
        return figures
    finally:
        cgroups.teardown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Calibrate a Pi-class CPU budget")
    parser.add_argument("--calibrate", type=float, metavar="PCT", default=None)
    parser.add_argument("--cleanup", action="store_true", help="remove leftover groups")
    args = parser.parse_args(argv)
    if args.cleanup:
        print(json.dumps({"removed": cleanup_leftovers()}))
        return
    try:
        print(json.dumps(calibrate(Budget(args.calibrate or None))))
    except CgroupError as exc:
        raise SystemExit(str(exc)) from exc


if __name__ == "__main__":
    main()
