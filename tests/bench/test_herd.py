"""The herd harness as its users run it: ``python -m bench.herd`` in a subprocess.

A loopback smoke run checks the shape of what it prints and that its counts agree with each
other; root-only tests build a tiny shaped site and prove every namespace is gone afterwards,
after a clean run, after Ctrl-C, and when a run died without cleaning up. The figures are never
asserted here (performance goes in bench/, as JSON).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import _cgroup
from bench._herdcli import agent_settings, parse_args
from bench._netns import ETC_NETNS, PREFIX, ShapedSite, cleanup_leftovers, list_namespaces
from bench._report import lower_bound, markdown
from bench._testbed import Rates

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
REQUIRED = (
    "scenario",
    "system",
    "nodes",
    "bytes",
    "uplink_bytes",
    "uplink_ratio",
    "t_last_s",
    "t_bound_s",
    "bound_ratio",
    "verified",
    "max_rss_mb",
)


def herd(*args: str, timeout: float) -> tuple[list[dict[str, Any]], str]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.herd", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return rows, done.stderr


def test_bound_is_the_slowest_constraint() -> None:
    size, n = 64 * MiB, 8
    rates = Rates(uplink=2_500_000, down=12_500_000, up=12_500_000)
    assert lower_bound(size, n, rates) == pytest.approx(size / 2_500_000)
    # A slow Pi link dominates; with all Pis uploading slowly, the upload term does.
    slow_down = Rates(uplink=2_500_000, down=1_000_000, up=12_500_000)
    assert lower_bound(size, n, slow_down) == pytest.approx(size / 1_000_000)
    slow_up = Rates(uplink=2_500_000, down=12_500_000, up=100_000)
    assert lower_bound(size, n, slow_up) == pytest.approx(n * size / (2_500_000 + n * 100_000))
    assert lower_bound(size, n, Rates(uplink=2_500_000, down=None, up=None)) == pytest.approx(
        size / 2_500_000
    )
    assert lower_bound(size, n, Rates(uplink=None, down=None, up=None)) is None


def test_agent_settings_from_the_command_line() -> None:
    assert agent_settings(
        ["swarm.parallel_chunks=16", "site.discovery = true", 'log.level="info"']
    ) == {"swarm": {"parallel_chunks": 16}, "site": {"discovery": True}, "log": {"level": "info"}}
    for bad in ("swarm.parallel_chunks", "parallel_chunks=3", "swarm.=3", "swarm.x=not toml"):
        with pytest.raises(ValueError, match=r"want SECTION\.KEY=VALUE|not TOML"):
            agent_settings([bad])


def test_log_level_flag_sets_the_agents_log_level() -> None:
    args = parse_args(["--log-level", "info", "--agent-set", "swarm.parallel_chunks=2"])
    assert args.agent_settings == {"swarm": {"parallel_chunks": 2}, "log": {"level": "info"}}
    assert parse_args([]).agent_settings == {}
    with pytest.raises(SystemExit):
        parse_args(["--log-level", "loud"])


def test_table_shows_rows_and_unrunnable_ones() -> None:
    rows = [
        {
            "scenario": "cold",
            "system": "direct",
            "nodes": 2,
            "live_nodes": 2,
            "bytes": MiB,
            "completed": 2,
            "uplink_ratio": 2.0,
            "t_last_s": 1.5,
            "t_bound_s": 0.5,
            "bound_ratio": 3.0,
            "verified": True,
        },
        {"scenario": "apt", "system": "frumitcache", "runnable": False, "reason": "not wired"},
    ]
    table = markdown(rows).splitlines()
    assert table[2].startswith("| cold | direct | 2 | 1.0 | 2/2 | 2.00 | 1.5 | 0.5 | 3.00 | yes")
    assert "not runnable: not wired" in table[3]


def test_loopback_smoke(tmp_path: Path) -> None:
    nodes, size, uplink, chunk = 3, 2 * MiB, 10_000_000, 512 * 1024
    rows, log = herd(
        "--nodes", str(nodes), "--size", "2MiB", "--uplink", "80Mbit",
        "--systems", "direct,frumitcache", "--scenario", "cold", "--out", str(tmp_path),
        "--chunk-size", str(chunk),  # four chunks: one chunk too many stays below 2 x F
        "--agent-set", "swarm.parallel_chunks=2",
        timeout=110,
    )  # fmt: skip
    assert [r["system"] for r in rows] == ["direct", "frumitcache"], log
    for row in rows:
        missing = [k for k in REQUIRED if k not in row]
        assert not missing, (missing, row)
        assert row["scenario"] == "cold"
        assert row["nodes"] == nodes
        assert row["bytes"] == size
        assert row["cpu_quota_pct"] is None  # no budget asked: no cgroups, no figures
        assert "throttled_s" not in row
        assert row["verified"] is True, row
        assert row["completed"] == nodes
        assert row["uplink_ratio"] == pytest.approx(row["uplink_bytes"] / size)
        # Every Pi's byte left the origin at least once.
        assert row["uplink_bytes"] >= size, row
        assert row["t_last_s"] == pytest.approx(max(row["times_s"]))
        assert row["t_bound_s"] == pytest.approx(size / uplink)
        assert row["bound_ratio"] == pytest.approx(row["t_last_s"] / row["t_bound_s"])
    direct, ours = rows
    assert ours["agent_set"] == ["swarm.parallel_chunks=2"]
    # No cache: each Pi's copy crossed the uplink, exactly, in one request each.
    assert direct["uplink_bytes"] == nodes * size
    assert direct["origin_requests"] == nodes
    # Each GET listed: peer, Range, status, bytes sent, bytes the Pi's TCP acknowledged.
    assert [g[1:] for g in direct["origin_gets"]] == [["", 200, size, size]] * nodes
    assert sum(g[3] for g in ours["origin_gets"]) == ours["uplink_bytes"]
    assert direct["max_rss_mb"] is None
    # The site fetched the object across the uplink once: F, plus at most one chunk fetched
    # twice (a chunk in flight when its fetcher changed); a second Pi at the origin is >= 2 F.
    assert size <= ours["uplink_bytes"] <= size + chunk, ours
    assert ours["origin_requests"] <= size // chunk + 1, ours
    assert ours["max_rss_mb"] > 0
    assert ours["cpu_s_per_gb"] is not None
    saved = json.loads((tmp_path / "herd-loopback.json").read_text())
    assert saved["rows"] == rows
    assert "| cold | frumitcache | 3 |" in (tmp_path / "herd-loopback.md").read_text()


# --- shaped sites (root) -----------------------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
    reason="shaped sites need root and iproute2 (ip, tc)",
)


def ours(tag: str) -> list[str]:
    return [ns for ns in list_namespaces() if ns.startswith(f"{tag}-")]


def in_ns(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=30, check=False
    )


_SERVE = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], 9000)); s.listen(); print('up', flush=True)\n"
    "s.settimeout(20); c,_=s.accept(); c.sendall(b'hello'); c.close()\n"
)
_DIAL = (
    "import socket,sys\n"
    "c=socket.create_connection((sys.argv[1], 9000), timeout=10); print(c.recv(5).decode())\n"
)


def reach(site: ShapedSite, src: str, dst: str, address: str) -> bool:
    """Whether a TCP connection from namespace ``src`` reaches a listener in ``dst``."""
    server = subprocess.Popen(
        [*site.prefix(dst), sys.executable, "-c", _SERVE, address],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "up"
        dial = in_ns(src, sys.executable, "-c", _DIAL, address)
        return dial.stdout.strip() == "hello"
    finally:
        server.kill()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def test_oci_scenario_says_it_needs_the_shaped_site(tmp_path: Path) -> None:
    """The registry herd's uplink is tc's (the registry has no rate limit of its own): on
    loopback its row says so instead of reporting unshaped times against a bound."""
    rows, log = herd(
        "--nodes", "2", "--size", "64KiB", "--systems", "direct", "--scenario", "oci",
        "--out", str(tmp_path), timeout=60,
    )  # fmt: skip
    assert [(r["scenario"], r["runnable"]) for r in rows] == [("oci", False)], log
    assert "--shaped" in rows[0]["reason"]


@needs_root
def test_shaped_site_builds_shapes_and_goes_away() -> None:
    site = ShapedSite(nodes=2, uplink=2_500_000, down=12_500_000, up=12_500_000)
    try:
        site.build()
        assert sorted(ours(site.tag)) == sorted(
            [site.site_ns, site.inet_ns, site.pi_ns(0), site.pi_ns(1)]
        )
        # Shaped: htb on the Pi's own port and on both ends of the uplink.
        assert "htb" in in_ns(site.pi_ns(0), "tc", "qdisc", "show", "dev", "eth0").stdout
        assert "htb" in in_ns(site.inet_ns, "tc", "qdisc", "show", "dev", "eth0").stdout
        # Routed: a Pi reaches the origin's address, and the other Pi over the bridge.
        assert reach(site, site.pi_ns(0), site.inet_ns, site.origin_address)
        assert reach(site, site.pi_ns(0), site.pi_ns(1), site.pi_address(1))
        # The host's resolver is unreachable from the site: each namespace resolves locally.
        resolv = in_ns(site.pi_ns(0), "cat", "/etc/resolv.conf").stdout
        assert "nameserver 127.0.0.1" in resolv
    finally:
        site.teardown()
    assert ours(site.tag) == []
    assert not list(ETC_NETNS.glob(f"{site.tag}-*"))


@needs_root
def test_shaped_herd_leaves_nothing_behind(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "bench.herd", "--shaped", "--nodes", "2", "--size", "1MiB",
            "--systems", "direct", "--json", "--quiet", "--out", str(tmp_path),
            "--cpu-quota", "50", "--memory", "512",
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err[-3000:]
    (row,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert row["mode"] == "shaped"
    assert row["verified"] is True
    assert row["uplink_bytes"] == 2 * MiB
    # Each Pi's clients ran inside its cgroup: counted there, with the budget in the row.
    assert row["cpu_quota_pct"] == 50
    assert row["memory_limit_mb"] == 512
    assert row["client_cpu_s"] > 0
    assert row["agent_cpu_s"] == 0  # direct has no daemons
    assert row["throttled_s"] >= 0
    assert row["agent_cpu_s_by_pi"] == {"pi0": 0, "pi1": 0}  # per Pi: which budget held it up
    assert set(row["throttled_s_by_pi"]) == {"pi0", "pi1"}
    assert ours(f"{PREFIX}{proc.pid}") == []
    assert cgroups_of(proc.pid) == []


def cgroups_of(pid: int) -> list[Path]:
    """The harness's cgroup directories (bench._cgroup names them fcb<pid>) still present."""
    found: list[Path] = []
    for mount in ("cpu", "cpuacct", "memory", "unified"):
        root = Path("/sys/fs/cgroup") / mount
        if root.is_dir():
            found += root.rglob(f"{_cgroup.PREFIX}{pid}")
    return found


@needs_root
def test_shaped_herd_cleans_up_on_ctrl_c(tmp_path: Path) -> None:
    # Big and slow enough to be mid-herd when interrupted.
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "bench.herd", "--shaped", "--nodes", "2", "--size", "64MiB",
            "--uplink", "8Mbit", "--systems", "direct", "--quiet", "--out", str(tmp_path),
            "--cpu-quota", "50",
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tag = f"{PREFIX}{proc.pid}"
    try:
        deadline = time.monotonic() + 60
        while len(ours(tag)) < 4 or not _pids_in(f"{tag}-pi1") or not cgroups_of(proc.pid):
            assert proc.poll() is None, "the harness exited early"
            assert time.monotonic() < deadline, "the site never came up"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        # A bound, not a speed test: 2-3 s on a quiet box; namespace removal waits on the
        # kernel's network lock, which other runs' namespaces can hold for long.
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert ours(tag) == []
    assert cgroups_of(proc.pid) == []


def _pids_in(ns: str) -> list[str]:
    done = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.split()


@needs_root
def test_leftovers_of_dead_runs_are_removed() -> None:
    # A pid that surely belongs to no running harness: a child that has exited.
    child = subprocess.Popen(["true"])
    child.wait(timeout=10)
    dead = f"{PREFIX}{child.pid}-pi0"
    alive = f"{PREFIX}{os.getpid()}-pi0"  # this pytest process counts as a live run
    subprocess.run(["ip", "netns", "add", dead], check=True, timeout=10)
    subprocess.run(["ip", "netns", "add", alive], check=True, timeout=10)
    (ETC_NETNS / dead).mkdir(parents=True)
    try:
        removed = cleanup_leftovers()
        assert not (ETC_NETNS / dead).exists()
        assert dead in removed
        assert alive not in removed
        assert dead not in list_namespaces()
        assert alive in list_namespaces()
    finally:
        for ns in (dead, alive):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
            shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)
