"""The herd benchmark: N Pis ask for the same bytes at once, for several systems side by side.

    python -m bench.herd --nodes 8 --size 64MiB --json                     # loopback, no root
    python -m bench.herd --shaped --scenario all --json                    # namespaces + tc (root)
    python -m bench.herd --nodes 5 --size 32MiB --kill-seeder-at 0.5 --json
    python -m bench.herd --cleanup                 # delete namespaces left by dead runs

Systems (``--systems``, default all three): ``frumitcache`` (an agent per Pi, one site),
``central`` (apt-cacher-ng on Pi 0, every Pi through it), ``direct`` (every Pi to the origin).
See :mod:`bench._systems`. Testbeds: loopback (the origin's rate limit is the uplink ``U``)
or ``--shaped`` (network namespaces, every Pi link shaped to ``--down``/``--up``, the uplink to
``--uplink``); see :mod:`bench._testbed` and :mod:`bench._netns`.

Scenarios (``--scenario``, default ``cold``; ``all`` runs each):

* ``cold``: every Pi asks for the same F bytes at t=0 (``frumitcache pull`` / one GET);
* ``warm``: the same, with the object already on the seeder / in the central cache;
* ``seeder-kill``: cold, with the seeder (frumitcache) or the cache box (central) SIGKILLed when
  the origin has sent ``--kill-seeder-at`` times F bytes (default 0.5); adds ``failover_s``;
* ``apt``: every Pi runs real ``apt-get update`` + ``apt-get download`` of a package set (a
  signed repository built here) through its proxy (``direct``: no proxy);
* ``footprint``: the cold herd's daemon figures: peak RSS, RSS at rest, CPU seconds per GB.
* ``oci``: every Pi pulls one container image with skopeo (:mod:`bench._herd_oci`; shaped).

Each (scenario, system) gives one JSON object (``--json`` prints them one per line) with
``scenario``, ``system``, ``nodes``, ``bytes`` (F, or the unique bytes of the apt run),
``uplink_bytes`` (the origin's own counter), ``uplink_ratio`` (÷ F), ``uplink_delivered_ratio``
(of those, the bytes the Pis' TCP acknowledged, ÷ F: not what sat in the origin's socket when a
Pi stopped reading; frumitcache/testing/_delivered.py), ``t_last_s`` (last verified
copy, ``null`` if a live Pi never got one), ``t_bound_s`` (see :mod:`bench._report`),
``bound_ratio``, ``verified`` (every live Pi's copy hashed right), ``origin_gets`` (the
object herd's first 20 origin GETs: peer, Range, status, bytes sent, bytes acknowledged),
``max_rss_mb`` (largest
daemon peak RSS; ``peak_rss_mb_by_pi``: each Pi's), ``times_s`` per Pi and more. The markdown
table, the JSON and a PNG per scenario (each Pi's completion over time, one line per system)
go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from bench import _cgroup
from bench._blob import sha256_of, write_random
from bench._herd_oci import oci_row
from bench._herdcli import parse_args, rebound, write_outputs
from bench._netns import cleanup_leftovers
from bench._report import lower_bound
from bench._systems import SYSTEMS, Frumitcache, NotRunnable, System
from bench._testbed import LoopbackTestbed, Rates, ShapedTestbed, Testbed

OBJECT_PATH = "/debian/herd/herd-blob_1.0_all.deb"  # a .deb name: apt-cacher-ng caches those


class Run:
    """One invocation: a testbed, an origin, and the rows measured on them."""

    def __init__(self, args: argparse.Namespace, bed: Testbed, work: Path) -> None:
        self.args = args
        self.bed = bed
        self.work = work
        self.size: int = args.size
        self.rows: list[dict[str, Any]] = []
        self.root = work / "origin"
        self.sha = write_random(self.root / OBJECT_PATH.lstrip("/"), self.size)
        self.repo: dict[str, Any] | None = None
        self.oci: Any = None  # the registry herd's upstream (bench._herd_oci), built once
        self.base = ""

    def log(self, text: str) -> None:
        if not self.args.quiet:
            sys.stderr.write(f"[herd {time.strftime('%H:%M:%S')}] {text}\n")
            sys.stderr.flush()

    def base_row(self, scenario: str, system: str) -> dict[str, Any]:
        return {
            "scenario": scenario,
            "system": system,
            "mode": self.bed.mode,
            "nodes": self.bed.nodes,
            "agent_set": list(self.args.agent_set),
            **self.bed.describe(),
            **_cgroup.describe(self.args.budget),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }

    def budget_before(self) -> dict[str, float]:
        cgroups = self.bed.cgroups
        return cgroups.snapshot() if cgroups is not None else {}

    def budget_figures(self, before: dict[str, float], delivered: int) -> dict[str, Any]:
        cgroups = self.bed.cgroups
        return cgroups.figures(before, delivered) if cgroups is not None else {}

    def limit_s(self, size: int) -> float:
        if self.args.timeout:
            return float(self.args.timeout)
        slowest = self.bed.rates.uplink or 20_000_000
        return 120 + 3 * self.bed.nodes * size / slowest

    # --- one cold/warm/kill herd --------------------------------------------------------------

    async def herd(self, system: System, scenario: str, kill_at: float | None) -> dict[str, Any]:
        bed, size = self.bed, self.size
        url = self.base + OBJECT_PATH
        out = self.work / "out" / f"{scenario}-{system.name}"
        out.mkdir(parents=True, exist_ok=True)
        row = self.base_row(scenario, system.name)
        if scenario == "warm":
            await system.warm(url, self.sha)
        idle_rss = system.rss_mb()
        await trio.to_thread.run_sync(bed.reset_origin)
        cpu_before = system.cpu()
        budget_before = self.budget_before()

        times: list[float | None] = [None] * bed.nodes
        codes: list[int | None] = [None] * bed.nodes
        killed: str | None = None
        failover: float | None = None
        kill_time: float | None = None
        limit = self.limit_s(size)
        procs: list[subprocess.Popen[bytes]] = []
        t0 = trio.current_time()

        async def client(i: int) -> None:
            codes[i] = await wait_exit(procs[i])
            if codes[i] == 0:
                times[i] = trio.current_time() - t0

        async def killer() -> None:
            nonlocal killed, failover, kill_time
            assert kill_at is not None
            while True:
                stats = await trio.to_thread.run_sync(bed.origin_stats)
                if stats["bytes_sent"].get(OBJECT_PATH, 0) >= kill_at * size:
                    break
                if all(c is not None for c in codes):
                    return  # everyone finished before the kill point
                await trio.sleep(0.1)
            kill_time = trio.current_time() - t0
            killed = await system.kill_seeder()
            self.log(f"{system.name}: killed {killed} at {kill_time:.1f} s")
            failover = await system.wait_failover(killed, limit_s=60)

        with trio.move_on_after(limit) as scope:
            async with trio.open_nursery() as nursery:
                for i in range(bed.nodes):
                    err = (out / f"pi{i}.err").open("wb")
                    argv = system.client_argv(i, url, self.sha, out / f"pi{i}.bin")
                    procs.append(bed.spawn_argv(argv, stderr=err, pi=i))
                    err.close()
                for i in range(bed.nodes):
                    nursery.start_soon(client, i)
                nursery.start_soon(sampler, system, codes)
                if kill_at is not None:
                    nursery.start_soon(killer)
        if scope.cancelled_caught:
            row.setdefault("notes", []).append(f"timed out after {limit:.0f} s")
        for proc in procs:
            bed.kill(proc)
        cpu = system.cpu() - cpu_before
        stats = await trio.to_thread.run_sync(bed.origin_stats)

        live = [i for i in range(bed.nodes) if bed.pis[i].name != killed]
        hashes = await trio.to_thread.run_sync(
            lambda: [sha256_of(out / f"pi{i}.bin") for i in range(bed.nodes)]
        )
        verified = all(hashes[i] == self.sha for i in live)
        complete: list[float] = [
            t for i in live if (t := times[i]) is not None and hashes[i] == self.sha
        ]
        all_done = len(complete) == len(live)
        delivered = len(complete) * size
        uplink = int(stats["total_bytes_sent"])
        acked = stats.get("total_bytes_delivered")
        bound = lower_bound(size, bed.nodes, bed.rates, warm=scenario == "warm")
        t_last = max(complete) if all_done and complete else None
        failed = [bed.pis[i].name for i in live if times[i] is None]
        errors = {}
        for name in failed:
            text = (out / f"{name}.err").read_text(errors="replace").strip()
            errors[name] = text[-300:]
        row.update(
            bytes=size,
            delivered_bytes=delivered,
            uplink_bytes=uplink,
            uplink_ratio=uplink / size,
            uplink_delivered_ratio=None if acked is None else int(acked) / size,
            origin_requests=int(stats["total_requests"]),
            origin_gets=_gets(stats),
            t_last_s=t_last,
            t_bound_s=bound,
            bound_ratio=(t_last / bound) if t_last is not None and bound else None,
            verified=verified,
            completed=len(complete),
            live_nodes=len(live),
            times_s=times,
            max_rss_mb=system.max_rss_mb(),
            peak_rss_mb_by_pi=system.peak_rss_by_pi(),
            idle_rss_mb=idle_rss,
            cpu_s=cpu if system.daemons else None,
            cpu_s_per_gb=(cpu / (delivered / 1e9)) if system.daemons and delivered else None,
            **self.budget_figures(budget_before, delivered),
        )
        if kill_at is not None:
            row.update(kill_at=kill_at, killed=killed, kill_time_s=kill_time, failover_s=failover)
            if system.name == "central" and killed:
                row.setdefault("notes", []).append(
                    f"cache box killed at {kill_time:.1f} s: {len(complete)}/{len(live)} Pis "
                    "got a copy; clients have no other source (no failover)"
                )
        if failed:
            row["errors"] = errors
        notes = system.notes()
        if notes:
            row.setdefault("notes", []).extend(notes)
        shutil.rmtree(out, ignore_errors=True)
        return row

    # --- the apt herd -------------------------------------------------------------------------

    def build_repo(self) -> dict[str, Any]:
        """A signed repository of ``--apt-packages`` packages under the origin's root."""
        from frumitcache.testing.aptrepo import new_repo_builder

        for tool in ("apt-get", "apt-ftparchive", "dpkg-deb", "gpg", "xz", "gzip"):
            if shutil.which(tool) is None:
                raise NotRunnable(f"the apt herd needs {tool} (apt-utils dpkg-dev gnupg xz-utils)")
        count = self.args.apt_packages
        each = max(10_000, self.size // count)
        # Sizes from half to one and a half times the mean, so indexes list varied packages.
        sizes = {f"herdpkg{k:02d}": int(each * (0.5 + k / max(1, count - 1))) for k in range(count)}
        (self.work / "aptrepo").mkdir(parents=True, exist_ok=True)
        builder = new_repo_builder(self.work / "aptrepo")
        try:
            builder.publish(self.root, dict.fromkeys(sizes, "1.0"), sizes)
        finally:
            builder.close()
        pool = self.root / "debian/pool/main"
        debs = {p.name: sha256_of(p) for p in pool.glob("*.deb")}
        return {"names": list(sizes), "debs": debs, "keyring": builder.keyring}

    async def apt_herd(self, system: System) -> dict[str, Any]:
        from frumitcache.testing.aptrepo import make_client

        bed = self.bed
        assert self.repo is not None
        row = self.base_row("apt", system.name)
        proxies = [system.apt_proxy(i) for i in range(bed.nodes)]  # may raise NotRunnable
        archive = self.base + "/debian"
        homes = self.work / "apt-clients" / system.name
        clients = [
            make_client(homes / f"pi{i}", self.repo["keyring"], archive, proxies[i])
            for i in range(bed.nodes)
        ]
        idle_rss = system.rss_mb()
        await trio.to_thread.run_sync(bed.reset_origin)
        cpu_before = system.cpu()
        budget_before = self.budget_before()
        times: list[float | None] = [None] * bed.nodes
        errors: dict[str, str] = {}
        t0 = trio.current_time()

        async def pi(i: int) -> None:
            client = clients[i]
            for args in (("update",), ("download", *self.repo_names())):
                argv = [*bed.pis[i].prefix, "apt-get", "-q", *args]
                with (client.home / "apt.err").open("ab") as err:
                    proc = bed.spawn_argv(
                        argv, stderr=err, env=client.env(), cwd=client.home / "downloads", pi=i
                    )
                if await wait_exit(proc) != 0:
                    text = (client.home / "apt.err").read_text(errors="replace")
                    errors[bed.pis[i].name] = f"apt-get {args[0]}: {text[-300:]}"
                    return
            times[i] = trio.current_time() - t0

        limit = self.limit_s(self.size)
        with trio.move_on_after(limit) as scope:
            async with trio.open_nursery() as nursery:
                for i in range(bed.nodes):
                    nursery.start_soon(pi, i)
        if scope.cancelled_caught:
            row.setdefault("notes", []).append(f"timed out after {limit:.0f} s")
        cpu = system.cpu() - cpu_before
        stats = await trio.to_thread.run_sync(bed.origin_stats)
        expected = self.repo["debs"]
        verified = True
        for i, client in enumerate(clients):
            got = {p.name: sha256_of(p) for p in (client.home / "downloads").glob("*.deb")}
            if got != expected:
                verified = False
                times[i] = None
        unique = 0
        for path in stats["bytes_sent"]:
            candidate = self.root / path.lstrip("/")
            if candidate.is_file():
                unique += candidate.stat().st_size
        uplink = int(stats["total_bytes_sent"])
        done = [t for t in times if t is not None]
        t_last = max(done) if len(done) == bed.nodes else None
        bound = lower_bound(unique, bed.nodes, bed.rates) if unique else None
        delivered = len(done) * sum(
            (self.root / "debian/pool/main" / n).stat().st_size for n in expected
        )
        row.update(
            bytes=unique,
            packages=len(expected),
            delivered_bytes=delivered,
            uplink_bytes=uplink,
            uplink_ratio=uplink / unique if unique else None,
            origin_requests=int(stats["total_requests"]),
            t_last_s=t_last,
            t_bound_s=bound,
            bound_ratio=(t_last / bound) if t_last is not None and bound else None,
            verified=verified and len(done) == bed.nodes,
            completed=len(done),
            live_nodes=bed.nodes,
            times_s=times,
            max_rss_mb=system.max_rss_mb(),
            idle_rss_mb=idle_rss,
            cpu_s=cpu if system.daemons else None,
            cpu_s_per_gb=(cpu / (delivered / 1e9)) if system.daemons and delivered else None,
            **self.budget_figures(budget_before, delivered),
        )
        if errors:
            row["errors"] = errors
        shutil.rmtree(homes, ignore_errors=True)
        return row

    def repo_names(self) -> list[str]:
        assert self.repo is not None
        return list(self.repo["names"])

    # --- everything ---------------------------------------------------------------------------

    async def one(self, scenario: str, name: str) -> dict[str, Any]:
        work = self.work / "systems" / f"{scenario}-{name}"
        system = SYSTEMS[name](self.bed, work)
        if isinstance(system, Frumitcache):
            extra = {section: dict(values) for section, values in self.args.agent_settings.items()}
            if self.args.chunk_size:
                extra.setdefault("store", {})["chunk_size"] = self.args.chunk_size
            system.extra = extra
        kill_at = self.args.kill_seeder_at if scenario == "seeder-kill" else None
        try:
            if scenario == "oci":
                return await oci_row(self, name)
            if scenario == "seeder-kill" and name == "direct":
                raise NotRunnable("direct has no seeder or cache box to kill")
            if scenario == "warm" and name == "direct":
                raise NotRunnable("direct keeps nothing: warm is the same as cold")
            if scenario == "apt" and self.repo is None:
                self.repo = await trio.to_thread.run_sync(self.build_repo)
            await system.start(apt=scenario == "apt")
            if scenario == "apt":
                return await self.apt_herd(system)
            return await self.herd(system, scenario, kill_at)
        except NotRunnable as exc:
            return {**self.base_row(scenario, name), "runnable": False, "reason": str(exc)}
        finally:
            with trio.CancelScope(shield=True):
                await system.stop()
            if not self.args.keep:
                shutil.rmtree(system.work, ignore_errors=True)

    async def main(self, scenarios: Sequence[str], systems: Sequence[str]) -> None:
        self.base = await trio.to_thread.run_sync(self.bed.start_origin, self.root)
        cold: dict[str, dict[str, Any]] = {}
        for scenario in scenarios:
            for name in systems:
                if scenario == "footprint" and name in cold:
                    row = {**cold[name], "scenario": "footprint"}
                else:
                    self.log(f"{scenario} / {name} ...")
                    row = await self.one("cold" if scenario == "footprint" else scenario, name)
                    row["scenario"] = scenario
                if scenario == "cold":
                    cold[name] = row
                self.rows.append(row)
                self.log(_summary(row))
                if self.args.json:
                    print(json.dumps(row), flush=True)


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """The exit status of a child we own, within 20 ms of its exit (good enough for timing)."""
    while proc.poll() is None:  # noqa: ASYNC110 - a Popen has no event to wait on
        await trio.sleep(0.02)
    return proc.returncode


async def sampler(system: System, codes: list[int | None]) -> None:
    """Read the daemons' CPU and memory while the herd runs (a killed one keeps its figures)."""
    while any(c is None for c in codes):
        system.sample()
        await trio.sleep(0.5)


def _gets(stats: dict[str, Any], most: int = 20) -> list[list[Any]]:
    """The origin's first ``most`` GETs as ``[peer, range, status, sent, delivered]``: where a
    fetch resumed (a seeder change) and what each left unacknowledged, read off the row."""
    gets = [e for e in stats.get("log", []) if e.get("method") == "GET"][:most]
    keys = ("peer", "range", "status", "bytes_sent", "bytes_delivered")
    return [[e.get(k) for k in keys] for e in gets]


def _summary(row: dict[str, Any]) -> str:
    if row.get("runnable") is False:
        return f"{row['scenario']}/{row['system']}: not runnable: {row['reason']}"
    return (
        f"{row['scenario']}/{row['system']}: {row.get('completed')}/{row.get('live_nodes')} "
        f"verified={row.get('verified')} uplink_ratio={row.get('uplink_ratio')} "
        f"t_last={row.get('t_last_s')} bound={row.get('t_bound_s')}"
    )


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.cleanup:
        removed = cleanup_leftovers() + _cgroup.cleanup_leftovers()
        print(json.dumps({"removed": removed}))
        return []
    if args.render:
        saved = json.loads(args.render.read_text())
        for row in saved["rows"]:
            rebound(row)
        write_outputs(args, saved["rows"], saved.get("machine"), saved.get("argv"))
        return list(saved["rows"])
    if args.budget is not None and os.geteuid() != 0:
        raise SystemExit(
            "--cpu-quota / --memory / --pi need root: every Pi's processes go into a cgroup"
        )
    if args.shaped:
        if os.geteuid() != 0:
            raise SystemExit("--shaped needs root (network namespaces and tc)")
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                raise SystemExit(f"--shaped needs {tool} (apt-get install iproute2)")
        rates = Rates(uplink=args.uplink or None, down=args.down or None, up=args.up or None)
    else:
        rates = Rates(uplink=args.uplink or None, down=None, up=None)
    work = Path(tempfile.mkdtemp(prefix="herd-"))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    bed: Testbed | None = None
    run: Run | None = None
    cgroups: _cgroup.CgroupSet | None = None
    try:
        bed = (ShapedTestbed if args.shaped else LoopbackTestbed)(args.nodes, rates, work)
        if args.budget is not None:
            _cgroup.cleanup_leftovers()
            cgroups = _cgroup.CgroupSet([pi.name for pi in bed.pis], args.budget)
            try:
                cgroups.setup()
            except _cgroup.CgroupError as exc:
                raise SystemExit(f"--cpu-quota / --memory: {exc}") from exc
            bed.cgroups = cgroups
        run = Run(args, bed, work)
        trio.run(run.main, args.scenarios, args.system_list)
    finally:
        if bed is not None:
            bed.close()
        if cgroups is not None:
            cgroups.teardown()  # after the processes are gone, like the namespaces
        signal.signal(signal.SIGTERM, previous)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        if run is not None and run.rows:
            write_outputs(args, run.rows)
    return run.rows


if __name__ == "__main__":
    main()
