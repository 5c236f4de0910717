"""The scale benchmark: one site of N real agents on loopback, idle and under a herd.

    python -m bench.scale --nodes 10 --json
    python -m bench.scale --nodes 100 --idle 30 --no-herd --json

Starts N agent processes (``python -m frumitcache agent``, each on its own 127.0.x.y, one
site with static peer lists, the Pi with the highest priority preferred as seeder; see
:class:`bench._systems.Frumitcache`) beside a loopback origin, and measures, in this order:

* ``ready_s``: first spawn until every agent serves; ``formation_s``: from then until every
  agent names all N members and all name the same seeder (statuses polled every 0.25 s);
* ``rss_mb_max`` / ``rss_mb_mean``: resident memory of each agent at rest (VmRSS);
* ``idle_cpu_pct_per_agent``: CPU of all agents over ``--idle`` seconds after formation, in
  % of one core per agent (the kernel counts it in 10 ms ticks: give a small site enough
  ``--idle`` to collect some); ``frames_per_s_per_agent`` / ``bytes_per_s_per_agent``: control
  frames (and their bytes) each agent sent plus received per second over the same window;
* the herd (``--no-herd`` skips it): every Pi pulls the same ``--size`` object at once through
  its own agent (``frumitcache pull``), as :meth:`bench.herd.Run.herd` does: ``uplink_ratio``
  (origin bytes ÷ size), ``uplink_delivered_ratio`` (the bytes the agents' TCP acknowledged ÷
  size: not those left in the origin's socket by a seeder that stopped reading), ``verified``
  (every copy hashed right), ``t_last_s``, ``origin_gets`` (each origin GET: peer, Range,
  status, bytes sent and acknowledged);
* ``--pause-seeder AT:SECONDS`` (e.g. ``0.5:6``): in the herd, once the origin has sent AT of
  the object, the seeder is SIGSTOPped for SECONDS (past its lease: the site names another
  seeder mid-fetch, as a loaded site does by chance) and resumed; ``herd.paused`` names it,
  and counts the agents' log lines ``seeder.fenced`` and (at ``--log-level info``)
  ``takeover.tail`` (the new seeder took the old one's unfinished chunk), and lists (up to 10
  of) the ``takeover.reported`` / ``no-report`` / ``previous-gone`` / ``whole`` / ``tail`` /
  ``caught-up`` and ``fetch.drained`` lines: how the new seeder's wait for the paused one's
  report ended, what it took, and what the old one's drain took (``takeover_lines``, at info);
* ``herd.control``: control frames over the herd, per agent (sent + received), the most one
  agent took in (the seeder: every member asks it) and the frames dropped;
* ``herd.fallbacks``: members that left the site for the origin; with any, ``fallback_lines``
  holds (up to 20 of) their ``fetch.fallback-origin`` log lines: which rule fired, the
  attempt's error, how long the site had got nowhere;
* ``failover_s`` (``--no-kill`` skips it): the seeder is SIGKILLed, then seconds until a live
  agent names another seeder, and ``failover_agreed_s`` until every live agent names it.

``--discovery`` gives the agents no peer lists: they find each other by multicast beacons.
``--ipv6`` puts each agent in its own network namespace on one bridge, at an IPv6 ULA address
(:class:`bench._testbed.ShapedTestbed`, root only): with ``--discovery`` the site forms over an
IPv6 link-local multicast group, as on a site LAN. One kernel stands in for the whole LAN, so
its receive backlog and neighbour tables are raised for the run and restored after
(:mod:`bench._kernel`; the values raised in the row's ``kernel_limits``).

Every process is started and killed by pid (:class:`bench._testbed.LoopbackTestbed`). The
test machine is shared: give the load average (``loadavg_1m``, in the output) with figures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench._herdcli import parse_args as herd_args
from bench._kernel import raise_limits, restore, wanted
from bench._report import machine
from bench._systems import Frumitcache, cpu_seconds, memory_mb
from bench._testbed import LoopbackTestbed, Rates, ShapedTestbed, Testbed
from bench.herd import Run

_FRAME_KEYS = ("frames_in", "frames_out", "bytes_in", "bytes_out", "dropped_frames")


async def _frames(system: Frumitcache) -> list[dict[str, int]]:
    """Each live agent's control-frame counters (``{}`` for one that did not answer)."""
    out: list[dict[str, int]] = []
    for i, d in enumerate(system.daemons):
        if d.proc.poll() is not None:
            out.append({})
            continue
        with trio.move_on_after(5):
            site = (await system.status(i)).site
            out.append({k: int(site.get(k, 0)) for k in _FRAME_KEYS})
            continue
        out.append({})
    return out


def _herd_frames(before: list[dict[str, int]], after: list[dict[str, int]]) -> dict[str, Any]:
    """Control frames over the herd: per agent (sent + received), the most one agent took in
    (the seeder, which every member asks), and frames dropped."""
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if a and b]
    taken = [a["frames_in"] - b["frames_in"] for b, a in pairs]
    sent = [a["frames_out"] - b["frames_out"] for b, a in pairs]
    return {
        "frames_per_agent": round((sum(taken) + sum(sent)) / max(len(pairs), 1), 1),
        "max_frames_in": max(taken, default=0),
        "dropped": sum(a["dropped_frames"] - b["dropped_frames"] for b, a in pairs),
    }


async def idle(system: Frumitcache, seconds: float) -> dict[str, Any]:
    """CPU and control traffic of the idle site over ``seconds``."""
    pids = [d.pid for d in system.daemons]
    rss = [memory_mb(pid, "VmRSS") or 0.0 for pid in pids]
    before_frames = await _frames(system)
    cpu_before = [cpu_seconds(pid) for pid in pids]
    t0 = time.monotonic()
    await trio.sleep(seconds)
    cpu_after = [cpu_seconds(pid) for pid in pids]
    elapsed = time.monotonic() - t0
    after_frames = await _frames(system)
    n = len(pids)
    cpu = sum(a - b for a, b in zip(cpu_after, cpu_before, strict=True))
    frames = nbytes = dropped = 0
    answered = 0
    for b, a in zip(before_frames, after_frames, strict=True):
        if a and b:
            answered += 1
            frames += a["frames_in"] + a["frames_out"] - b["frames_in"] - b["frames_out"]
            nbytes += a["bytes_in"] + a["bytes_out"] - b["bytes_in"] - b["bytes_out"]
            dropped += a["dropped_frames"] - b["dropped_frames"]
    # The status calls around the window are outside it; each agent's counters span ~elapsed.
    return {
        "idle_s": round(elapsed, 1),
        "idle_cpu_pct_per_agent": round(100 * cpu / elapsed / n, 3),
        "idle_cpu_pct_max_agent": round(
            100 * max(a - b for a, b in zip(cpu_after, cpu_before, strict=True)) / elapsed, 3
        ),
        "frames_per_s_per_agent": round(frames / elapsed / max(answered, 1), 2),
        "bytes_per_s_per_agent": round(nbytes / elapsed / max(answered, 1), 1),
        # Frames an agent received and refused (own multicast echoes included), per second.
        "dropped_per_s_per_agent": round(dropped / elapsed / max(answered, 1), 2),
        "rss_mb_max": round(max(rss), 1),
        "rss_mb_mean": round(sum(rss) / n, 1),
    }


async def _seeders_named(system: Frumitcache, limit: int = 16) -> list[str]:
    """The seeder each live agent names now (``""``: none, or no answer within 2 s), asked
    ``limit`` at a time so that a round does not take longer than what it times."""
    names: list[str] = []
    limiter = trio.CapacityLimiter(limit)

    async def one(i: int) -> None:
        async with limiter:
            with trio.move_on_after(2):
                names.append(str((await system.status(i)).site.get("seeder") or ""))
                return
            names.append("")

    async with trio.open_nursery() as nursery:
        for i, d in enumerate(system.daemons):
            if d.proc.poll() is None:
                nursery.start_soon(one, i)
    return names


async def agreed_seeder(system: Frumitcache, killed: str, limit_s: float) -> float | None:
    """Seconds until every live agent names the same seeder, not ``killed``."""
    start = trio.current_time()
    with trio.move_on_after(limit_s):
        while True:
            names = set(await _seeders_named(system))
            if len(names) == 1 and "" not in names and killed not in names:
                return trio.current_time() - start
            await trio.sleep(0.1)
    return None


async def measure(args: argparse.Namespace, bed: Testbed, work: Path) -> dict[str, Any]:
    run = Run(
        herd_args(["--nodes", str(args.nodes), "--size", str(args.size), "--quiet"]), bed, work
    )
    run.base = await trio.to_thread.run_sync(bed.start_origin, run.root)
    extra: dict[str, dict[str, Any]] = {"log": {"level": args.log_level}}
    if args.discovery:
        # No peer lists: the agents find each other by multicast beacons, on a group of this
        # run's own so that no other site on the host is heard.
        group = {"multicast_v6": _run_group6()} if args.ipv6 else {"multicast_v4": _run_group()}
        extra["site"] = {"discovery": True, "peers": [], **group}
    system = Frumitcache(bed, work / "site", extra=extra)
    system.settle_limit_s = args.settle
    row: dict[str, Any] = {
        "bench": "scale",
        "nodes": args.nodes,
        "network": "netns-ipv6" if args.ipv6 else "loopback-ipv4",
        "discovery": "multicast" if args.discovery else "static-peers",
        "machine": machine(),
        "loadavg_1m_start": round(os.getloadavg()[0], 2),
    }
    try:
        await system.start()
        row.update(
            ready_s=system.ready_s,
            formation_s=system.formation_s,
            members_seen_min=system.members_seen,
            notes=system.notes(),
        )
        row.update(await idle(system, args.idle))
        row["loadavg_1m_idle"] = round(os.getloadavg()[0], 2)
        if args.herd:
            paused: dict[str, Any] = {}
            frames_before = await _frames(system)
            async with trio.open_nursery() as nursery:
                if args.pause_seeder is not None:
                    nursery.start_soon(_pause_seeder, system, bed, args, paused)
                herd = await run.herd(system, "cold", None)
                nursery.cancel_scope.cancel()
            row["herd"] = {
                k: herd.get(k)
                for k in (
                    "bytes",
                    "uplink_ratio",
                    "uplink_delivered_ratio",
                    "verified",
                    "completed",
                    "live_nodes",
                    "t_last_s",
                    "origin_requests",
                    "origin_gets",
                    "max_rss_mb",
                    "errors",
                    "notes",
                )
                if herd.get(k) is not None
            }
            row["herd"]["control"] = _herd_frames(frames_before, await _frames(system))
            # Members that gave up on the seeder and went to the origin themselves.
            fallbacks = 0
            for i in range(len(system.daemons)):
                fallbacks += int((await system.status(i)).site.get("fallbacks", 0))
            row["herd"]["fallbacks"] = fallbacks
            logs = (
                [p.read_text(errors="replace") for p in (work / "site").glob("*/agent.log")]
                if fallbacks or paused
                else []
            )
            if fallbacks:
                # Why they left (a warning: logged at the default level), kept with the row:
                # a rare fallback is diagnosed from the row alone, without --keep.
                row["herd"]["fallback_lines"] = [
                    line
                    for text in logs
                    for line in text.splitlines()
                    if "fetch.fallback-origin" in line
                ][:20]
            if paused:
                paused["fenced"] = sum(text.count("seeder.fenced") for text in logs)
                paused["tails_taken"] = sum(text.count("takeover.tail ") for text in logs)
                # How the heir's wait for the paused seeder's report ended (--log-level info).
                paused["takeover_lines"] = [
                    line
                    for text in logs
                    for line in text.splitlines()
                    if any(f"takeover.{e} " in line for e in _TAKEOVER_EVENTS)
                    or "fetch.drained" in line
                ][:10]
                row["herd"]["paused"] = paused
        if args.kill:
            killed = await system.kill_seeder()
            t0 = trio.current_time()
            row["killed"] = killed
            row["failover_s"] = await system.wait_failover(killed, limit_s=60)
            agreed = await agreed_seeder(system, killed, limit_s=60)
            row["failover_agreed_s"] = (
                None if agreed is None else round(trio.current_time() - t0, 2)
            )
    finally:
        with trio.CancelScope(shield=True):
            await system.stop()
    row["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    return row


async def _pause_seeder(
    system: Frumitcache, bed: Testbed, args: argparse.Namespace, out: dict[str, Any]
) -> None:
    """SIGSTOP the seeder once the origin has sent ``at`` of the object, SIGCONT it after
    ``seconds`` (see the module docstring); what was done goes into ``out``."""
    at, seconds = args.pause_seeder
    t0 = trio.current_time()
    await trio.sleep(0.5)  # the herd resets the origin's counters first
    while True:
        stats = await trio.to_thread.run_sync(bed.origin_stats)
        if stats["total_bytes_sent"] >= at * args.size:
            break
        await trio.sleep(0.05)
    i = await system.seeder()
    pid = system.daemons[i].pid
    os.kill(pid, signal.SIGSTOP)
    out.update(node=bed.pis[i].name, at_s=round(trio.current_time() - t0, 2), seconds=seconds)
    try:
        await trio.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


#: The log lines (at info) that say how a takeover went: how the heir's wait for the old
#: seeder's report ended, what it took, and what the old seeder's drain took from its socket.
_TAKEOVER_EVENTS = ("reported", "no-report", "previous-gone", "whole", "tail", "caught-up")


def _pause(text: str) -> tuple[float, float]:
    at, sep, seconds = text.partition(":")
    try:
        pair = (float(at), float(seconds))
    except ValueError:
        pair = (-1.0, -1.0)
    if not sep or not 0 <= pair[0] < 1 or pair[1] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: want AT:SECONDS, e.g. 0.5:6")
    return pair


def _run_group() -> str:
    """An IPv4 multicast group in the site-local scope (239.255/16) for this run only."""
    n = secrets.randbelow(254 * 254)
    return f"239.255.{1 + n // 254}.{1 + n % 254}"


def _run_group6() -> str:
    """An IPv6 link-local multicast group (ff02::/16) for this run only."""
    return f"ff02::42:{1 + secrets.randbelow(0xFFFE):x}"


def _size(text: str) -> int:
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=int, default=10, help="agents in the site (default 10)")
    parser.add_argument("--idle", type=float, default=30.0, help="idle window in s (default 30)")
    parser.add_argument("--size", default="16MiB", help="herd object size (default 16MiB)")
    parser.add_argument("--uplink", default="20Mbit", help="origin rate (herd's --uplink)")
    parser.add_argument("--settle", type=float, default=60.0, help="formation limit in s")
    parser.add_argument("--no-herd", dest="herd", action="store_false", help="skip the herd")
    parser.add_argument("--no-kill", dest="kill", action="store_false", help="skip failover")
    parser.add_argument(
        "--pause-seeder",
        type=_pause,
        metavar="AT:SECONDS",
        help="in the herd, SIGSTOP the seeder for SECONDS once the origin sent AT of the object",
    )
    parser.add_argument(
        "--discovery",
        action="store_true",
        help="agents get no peer list and find each other by multicast beacons "
        "(site.discovery = true, a group of the run's own); default: static peer lists",
    )
    parser.add_argument(
        "--ipv6",
        action="store_true",
        help="each agent in its own network namespace on one bridge, at an IPv6 ULA address "
        "(the origin stays IPv4 behind the site's router, shaped to --uplink); root only",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--log-level", default="warning", help="the agents' (default warning)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (the agents' logs)"
    )
    args = parser.parse_args(argv)
    args.size = _size(args.size)
    uplink = herd_args(["--uplink", args.uplink]).uplink
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    rates = Rates(uplink=uplink or None, down=None, up=None)
    if args.ipv6 and os.geteuid() != 0:
        parser.error("--ipv6 builds network namespaces: run as root")
    # One kernel stands in for the LAN: its backlog and neighbour tables are raised for the run.
    raised = raise_limits(args.nodes) if args.ipv6 else {}
    try:
        bed: Testbed = (
            ShapedTestbed(args.nodes, rates, work, ipv6=True)
            if args.ipv6
            else LoopbackTestbed(args.nodes, rates, work)
        )
    except BaseException:
        restore(raised)
        raise
    try:
        row = trio.run(measure, args, bed, work)
        if args.ipv6:
            row["kernel_limits"] = {
                f"{p.parent.parent.parent.name}.{p.name}" if "neigh" in str(p) else p.name: v
                for p, v in wanted(args.nodes).items()
                if p in raised
            }
    finally:
        bed.close()
        restore(raised)
        signal.signal(signal.SIGTERM, previous)
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(row, indent=None if args.json else 2), flush=True)
    return row


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main(sys.argv[1:])
