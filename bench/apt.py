"""apt proxy benchmark: hot-cache ``apt-get download`` through frumitcache vs apt-cacher-ng.

    python -m bench.apt [--packages 24] [--rounds 5] [--clients 3] [--json] [--out FILE]

Builds a signed repository (``dpkg-deb``, ``apt-ftparchive``, throw-away gpg key) of
``--packages`` packages (sizes from 20 kB to 2 MB, incompressible), serves it with the test
origin (its own process, on a loopback address), and starts, each in its own process on its
own loopback address:

* ``frumitcache``: a one-node agent's apt proxy (store + origin fetcher + the content service);
* ``apt-cacher-ng``: the Debian package's daemon with a throw-away config, cache and log
  directory (never the system service).

Each proxy is warmed (one client: ``apt-get update`` + ``apt-get download`` of every package).
Then, per round, ``--clients`` fresh apt clients (own state and cache directories) run
``apt-get update`` (not timed), then each in turn the timed ``apt-get download`` of every
package; the two proxies alternate round by round. Figures per proxy: wall seconds of a
round's downloads and CPU seconds (user + system) the proxy process spent on them (medians
over the rounds; CPU also in total), the origin requests seen while hot (should be 0), and
frumitcache/apt-cacher-ng ratios (wall: medians; CPU: totals). Printed as one JSON object.
Needs the tools (``apt-get install apt-utils dpkg-dev gnupg apt-cacher-ng``). As root it runs
inside its own network namespace (only ``lo``), and ``--cpu-quota PCT`` / ``--pi`` put each
proxy in a cgroup with that CPU budget (:mod:`bench._cgroup`; CPU then read from the cgroup).

CPU is read from ``/proc/PID/stat`` (10 ms ticks). apt-cacher-ng serves files with
``sendfile``; where the kernel's work is not charged to the process (gVisor), its CPU figure
is a lower bound. apt-cacher-ng 3.7.4 mangles ports above 32767 (it formats the port as a
signed 16-bit number) and refuses upstream ports other than 80 unless ``AllowUserPorts``
lists them; both are handled here.

``--serve`` is the internal mode that runs the frumitcache proxy process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench._cgroup import PROFILES, Budget, CgroupError, CgroupSet, describe
from bench._systems import cpu_seconds
from frumitcache.config import AptConfig, OriginConfig
from frumitcache.testing.net import loopback_address

# --- the frumitcache proxy process -------------------------------------------------------------


async def _serve(address: str, origin: str, store_dir: Path) -> None:
    from frumitcache.agent import ContentService
    from frumitcache.apt import AptProxy, HashBook
    from frumitcache.origin import OriginFetcher
    from frumitcache.store import Store

    store = Store.open(store_dir, max_bytes=4 << 30, chunk_size=4 << 20)
    hashes = HashBook(store_dir.parent / "apt-hashes.sqlite")
    config = AptConfig(port=0, listen=address, allowed_hosts=[origin], index_window_s=30.0)
    try:
        fetcher_config = OriginConfig(allow=[origin])
        async with OriginFetcher(fetcher_config, store) as fetcher, trio.open_nursery() as n:
            content = ContentService(store, fetcher, n, index_window_s=config.index_window_s)
            proxy = AptProxy(config, content.source, hashes=hashes)
            _host, port = await n.start(proxy.serve)
            sys.stdout.write(json.dumps({"port": port}) + "\n")
            sys.stdout.flush()
    finally:
        hashes.close()
        store.close()


# --- orchestration -----------------------------------------------------------------------------


def _read_port(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"process {proc.args!r} exited before reporting its port")
    return int(json.loads(line)["port"])


def _wait_listening(
    address: str, port: int, proc: subprocess.Popen[bytes], limit_s: float = 20
) -> None:
    import socket

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex((address, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {address}:{port}")


def _low_port(address: str) -> int:
    """A free port below 32768: apt-cacher-ng 3.7.4 formats its port as a signed 16-bit
    number, so 39995 becomes the service name "-2554" and it binds nothing."""
    import random
    import socket

    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((address, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port below 32768 on {address}")


def _in_group(cgroups: CgroupSet | None, group: str, *argv: str) -> list[str]:
    return cgroups.wrap(list(argv), group, "daemons") if cgroups else list(argv)


def _start_acng(
    work: Path, address: str, origin_port: int, cgroups: CgroupSet | None
) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("apt-cacher-ng") or "/usr/sbin/apt-cacher-ng"
    conf = work / "acng-conf"
    for sub in ("acng-conf", "acng-cache", "acng-log"):
        (work / sub).mkdir()
    port = _low_port(address)
    (conf / "acng.conf").write_text(
        f"CacheDir: {work / 'acng-cache'}\nLogDir: {work / 'acng-log'}\nPort: {port}\n"
        f"BindAddress: {address}\nSocketPath: {work / 'acng.socket'}\n"
        f"PidFile: {work / 'acng.pid'}\nForeGround: 1\nExThreshold: 4\n"
        "ReportPage: acng-report.html\n"
        # The test origin is not on port 80; acng refuses other ports unless told.
        f"AllowUserPorts: 80 {origin_port}\n"
    )
    with (work / "acng-stdout.log").open("wb") as log:
        argv = _in_group(cgroups, "apt-cacher-ng", binary, "-c", str(conf))
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(address, port, proc, limit_s=5)
    except RuntimeError as exc:
        _stop(proc)
        said = (work / "acng-stdout.log").read_text(errors="replace").strip()
        raise RuntimeError(f"apt-cacher-ng did not listen on {address}:{port}: {said}") from exc
    return proc, port


def _apt(client: Any, *args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        ["apt-get", "-q", *args],
        cwd=client.home / "downloads",
        env=client.env(),
        capture_output=True,
        timeout=600,
        check=False,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"apt-get {' '.join(args)} failed: {result.stderr.decode()[-2000:]}")
    return wall


def _cpu(cgroups: CgroupSet | None, group: str, pid: int) -> float:
    """CPU seconds of a proxy: its cgroup's (all its processes and threads) or its /proc."""
    return cgroups.cpu_s(group) if cgroups else cpu_seconds(pid)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _origin_requests(authority: str) -> int:
    """Requests the test origin has answered so far (its ``/_stats``)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{authority}/_stats", timeout=10) as resp:
        return int(json.load(resp)["total_requests"])


def run(
    packages: int,
    rounds: int,
    keep: bool,
    clients_per_round: int = 3,
    budget: Budget | None = None,
) -> dict[str, Any]:
    from frumitcache.testing.aptrepo import make_client, new_repo_builder

    for tool in ("apt-get", "apt-ftparchive", "dpkg-deb", "gpg", "apt-cacher-ng"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"bench.apt needs {tool} (apt-get install apt-cacher-ng apt-utils)")
    work = Path(tempfile.mkdtemp(prefix="bench-apt-"))
    procs: list[subprocess.Popen[bytes]] = []
    builder = new_repo_builder(work)
    # Each proxy alone in a cgroup with the budget (clients unlimited: they are the same apt).
    cgroups = CgroupSet(["frumitcache", "apt-cacher-ng"], budget) if budget else None
    try:
        if cgroups is not None:
            cgroups.setup()
        # 20 kB .. 2 MB, spread deterministically (typical .debs are well under 1 MB).
        sizes = {f"pkg{i:02d}": 20_000 + (i * 7919 % 100) * 20_000 for i in range(packages)}
        names = tuple(sizes)
        root = work / "origin"
        builder.publish(root, dict.fromkeys(names, "1.0"), sizes)
        total = sum(p.stat().st_size for p in (root / "debian/pool/main").glob("*.deb"))

        origin_addr = loopback_address()
        origin = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "frumitcache.testing.origin",
                "--address",
                origin_addr,
                "--port",
                str(_low_port(origin_addr)),  # apt-cacher-ng mangles ports above 32767
                "--dir",
                str(root),
            ],
            stdout=subprocess.PIPE,
        )
        procs.append(origin)
        origin_port = _read_port(origin)
        authority = f"{origin_addr}:{origin_port}"

        ours_addr = loopback_address()
        ours = subprocess.Popen(
            _in_group(
                cgroups,
                "frumitcache",
                sys.executable,
                "-m",
                "bench.apt",
                "--serve",
                "--address",
                ours_addr,
                "--origin",
                authority,
                "--store",
                str(work / "ours-store"),
            ),
            stdout=subprocess.PIPE,
        )
        procs.append(ours)
        ours_port = _read_port(ours)

        proxies = {"frumitcache": (ours, f"http://{ours_addr}:{ours_port}")}
        acng_error = None
        acng_addr = loopback_address()
        try:
            acng, acng_port = _start_acng(work, acng_addr, origin_port, cgroups)
            procs.append(acng)
            proxies["apt-cacher-ng"] = (acng, f"http://{acng_addr}:{acng_port}")
        except RuntimeError as exc:
            acng_error = str(exc)
        archive = f"http://{authority}/debian"
        made = 0

        def client(proxy_url: str) -> Any:
            nonlocal made
            made += 1
            return make_client(work / f"client{made}", builder.keyring, archive, proxy_url)

        warm: dict[str, float] = {}
        for name, (_proc, url) in proxies.items():
            c = client(url)
            _apt(c, "update")
            warm[name] = _apt(c, "download", *names)
        walls: dict[str, list[float]] = {name: [] for name in proxies}
        cpus: dict[str, list[float]] = {name: [] for name in proxies}
        throttled: dict[str, float] = dict.fromkeys(proxies, 0.0)
        origin_hot: dict[str, int] = dict.fromkeys(proxies, 0)
        for _ in range(rounds):
            for name, (proc, url) in proxies.items():
                batch = [client(url) for _ in range(clients_per_round)]
                for c in batch:
                    _apt(c, "update")
                served_before = _origin_requests(authority)
                before = _cpu(cgroups, name, proc.pid)
                held = cgroups.throttled_s(name) if cgroups else 0.0
                start = time.perf_counter()
                for c in batch:
                    _apt(c, "download", *names)
                walls[name].append(time.perf_counter() - start)
                cpus[name].append(_cpu(cgroups, name, proc.pid) - before)
                throttled[name] += (cgroups.throttled_s(name) if cgroups else 0.0) - held
                origin_hot[name] += _origin_requests(authority) - served_before
                for c in batch:
                    got = sum(p.stat().st_size for p in (c.home / "downloads").glob("*.deb"))
                    if got != total:
                        raise RuntimeError(f"{name}: downloaded {got} bytes, expected {total}")

        result: dict[str, Any] = {
            "benchmark": "apt hot-cache download",
            "packages": packages,
            "bytes": total,
            "rounds": rounds,
            "clients_per_round": clients_per_round,
            "bytes_per_round": total * clients_per_round,
            "cold_download_wall_s": warm,
            **describe(budget),
            "cpu_from": "cgroup" if cgroups else "/proc/PID/stat",
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
        for name in proxies:
            result[name] = {
                "wall_s": statistics.median(walls[name]),
                "cpu_s": statistics.median(cpus[name]),
                "cpu_s_total": sum(cpus[name]),
                "wall_s_all": walls[name],
                "cpu_s_all": cpus[name],
                "origin_requests_while_hot": origin_hot[name],
                "throttled_s": throttled[name],
            }
        if acng_error is not None:
            result["apt-cacher-ng"] = {"error": acng_error}
            result["wall_ratio"] = result["cpu_ratio"] = None
        else:
            ours_r, acng_r = result["frumitcache"], result["apt-cacher-ng"]
            result["wall_ratio"] = ours_r["wall_s"] / acng_r["wall_s"]
            result["cpu_ratio"] = (
                ours_r["cpu_s_total"] / acng_r["cpu_s_total"] if acng_r["cpu_s_total"] else None
            )
        result["origin_pid_cpu_s"] = cpu_seconds(origin.pid)
        return result
    finally:
        for proc in reversed(procs):
            _stop(proc)
        builder.close()
        if cgroups is not None:
            cgroups.teardown()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=3, help="fresh apt clients per round")
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--cpu-quota", type=float, default=None, metavar="PCT",
        help="each proxy in a cgroup limited to PCT %% of one core (root)",
    )  # fmt: skip
    parser.add_argument("--pi", choices=sorted(PROFILES), default=None, help="a Pi's CPU budget")
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(_serve, args.address, args.origin, args.store)
        return None
    quota = args.cpu_quota if args.cpu_quota is not None else None
    if quota is None and args.pi:
        quota = PROFILES[args.pi].cpu_quota_pct
    if os.geteuid() == 0 and not args.in_netns:
        # apt-cacher-ng asks DNS for SRV records of every origin host, even an IP address: run
        # everything in a fresh network namespace with only lo and a resolver on its own
        # loopback, so nothing leaves the machine. unshare, not `ip netns exec`: the latter
        # remounts /sys, hiding the cgroup hierarchies the budget needs. Both namespaces die
        # with the process; nothing to clean up.
        with tempfile.TemporaryDirectory(prefix="bench-apt-ns-") as tmp:
            resolv = Path(tmp) / "resolv.conf"
            resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            inner = [sys.executable, "-m", "bench.apt", *(argv or sys.argv[1:]), "--in-netns"]
            script = (
                f"ip link set lo up && mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf"
                ' && exec "$@"'
            )
            done = subprocess.run(
                ["unshare", "--net", "--mount", "sh", "-c", script, "sh", *inner], check=False
            )
        if done.returncode:
            raise SystemExit(done.returncode)
        return None
    if quota is not None and os.geteuid() != 0:
        raise SystemExit("--cpu-quota / --pi need root (each proxy goes into a cgroup)")
    try:
        out = run(
            args.packages, args.rounds, args.keep, args.clients, Budget(quota) if quota else None
        )
    except CgroupError as exc:
        raise SystemExit(str(exc)) from exc
    print(json.dumps(out, indent=None if args.json else 2))
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
