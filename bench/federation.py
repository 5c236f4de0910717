"""The shaped federation benchmark (root): a core site and edge sites, each behind its own
shaped uplink to a backbone, the origin beyond it; every Pi of every site pulls the same object
at once.

    python -m bench.federation --core 2 --edges 3 --pis 3 --size 32MiB --uplink 20Mbit \\
        --core-uplink 100Mbit --mode both --json

``--mode federated``: the edges name the core's agents as parents (one edge by IPv6, the rest by
IPv4); ``islands``: no federation, every site fetches from the origin itself; ``both`` runs
each. One JSON object per mode: ``origin_bytes`` (the origin's own counter) and
``origin_ratio`` (÷ F), ``federation_bytes`` (what edges got from the core), ``t_last_s`` (the
last Pi's verified copy), ``t_bound_s`` = max(F/U, E·F/U_core) (every edge's uplink must carry
F; the core's must carry F in and E·F out), ``bound_ratio``, ``times_s`` per Pi, and
``uplink_by_site`` (``origin_bytes``, ``federation_bytes`` per site, from the agents' status).
See :mod:`bench._netfed` for the namespaces.

Faults (issue 15), measured like the loopback tests in tests/federation:

``--kill-parent-seeder-at FRACTION``: SIGKILL the core site's seeder once the origin has sent
that share of F. Adds ``killed`` (the node, the origin's count and time at the kill),
``extra_origin_bytes`` (origin bytes - F; the bound is one chunk plus what was in flight) and
``verified``/``t_last_s`` over the surviving Pis.

``--slow-link EDGE=RATE``: narrow edge EDGE's (1..E) federation link, i.e. its path to the
core's Pis, to RATE both ways (an htb class of its own on that edge's uplink); its path to the
origin keeps the uplink. Adds ``slow_link``: whether that edge's Pis all completed, their last
time, and where its bytes came from. ``--edge-federation min_rate=2Mbit`` (any [federation]
key) sets the edges' fallback knobs; otherwise they keep the agent's defaults.

``--late K`` (a second wave): the core and the first K edges hold the object before the others
ask (their Pis pull it first, untimed), and every edge names the other edges' agents as
siblings, nearest index first (ring). The timed herd is the other edges' Pis. Adds ``late``,
``origin_bytes_timed`` (what the origin sent during the timed herd: 0 when it holds) and
``from_siblings`` / ``from_parents`` per timed edge; ``t_bound_s`` is then
max(F/U, (E-K)·F/(U_core + K·U)), what the first holders can send (sites that finish and serve
their siblings, ``federation.sibling_recheck_s``, can beat it). Compare
``--edge-federation sibling_recheck_s=0`` (each site asks its siblings once).

``--siblings``: every edge names the others as siblings in the release every site asks at once
(no first wave); ``t_bound_s`` is then max(F/U, E·F/(U_core + E·U)), reached only if edges
serve each other what they are still fetching (``--edge-federation relay_depth=3``); adds
``by_edge``.

``--origin-rate RATE``: the origin itself sends at most RATE in all (the test origin's shared
limit), so the core is a parent slowed by its own origin: a child's floor above that pace must
keep it (the origin sends once) where the federation links are wide.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from bench._fedfaults import (
    kill_at,
    name_of,
    parse_fraction,
    parse_section_setting,
    parse_setting,
    parse_slow_link,
    seeder_of,
    uplink_by_site,
)
from bench._netfed import ORIGIN_PORT, ShapedFederation, origin_stats, site_agents, start_origin
from bench._netns import cleanup_leftovers
from frumitcache.client import AgentClient
from frumitcache.config import parse_quantity
from frumitcache.testing.agents import AgentProcess


async def _pull(agent: AgentProcess, url: str, digest: str, out: Path) -> bool:
    result = await trio.run_process(
        [sys.executable, "-m", "frumitcache", "pull", url, "--sha256", digest, "-o", str(out),
         "--socket", str(agent.socket)],
        capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    return result.returncode == 0


async def run(args: argparse.Namespace, mode: str, work: Path) -> dict[str, Any]:
    size = parse_quantity(args.size, "bytes")
    uplink = parse_quantity(args.uplink, "bytes/s")
    core_uplink = parse_quantity(args.core_uplink, "bytes/s") if args.core_uplink else uplink
    slow_links = dict([args.slow_link]) if args.slow_link else {}
    origin_rate = parse_quantity(args.origin_rate, "bytes/s") if args.origin_rate else 0
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    www = work / "www"
    www.mkdir(parents=True)
    (www / "release.bin").write_bytes(data)
    fed = ShapedFederation(
        [args.core] + [args.pis] * args.edges,
        uplink=uplink,
        core_uplink=core_uplink,
        slow_links=slow_links,
    )
    agents: list[list[AgentProcess]] = []
    origin: subprocess.Popen[bytes] | None = None
    try:
        fed.build()
        origin = start_origin(fed, www, rate=origin_rate)
        key = os.urandom(32).hex() if mode == "federated" else None
        by_v6 = [f"[{fed.pi_v6(0, i)}]:3147" for i in range(args.core)]
        by_v4 = [f"{fed.pi_v4(0, i)}:3147" for i in range(args.core)]
        for s in range(1 + args.edges):
            parents = [] if s == 0 else by_v6 if s == 1 else by_v4
            site = site_agents(fed, s, work / mode, key, parents)
            for agent in site:
                for section, name, value in args.set:
                    agent.settings.setdefault(section, {})[name] = value
                if s and key is not None:
                    if args.late or args.siblings:
                        agent.settings["federation"]["siblings"] = _siblings(fed, s, args)
                    agent.settings["federation"].update(args.edge_federation)
            agents.append(site)
        flat = [a for site in agents for a in site]
        async with trio.open_nursery() as nursery:
            for agent in flat:
                nursery.start_soon(agent.start)
        await trio.sleep(args.settle_s)  # seeders elected
        victim = await seeder_of(agents[0]) if args.kill_parent_seeder_at else None
        url = f"http://{fed.origin_v4}:{ORIGIN_PORT}/release.bin"
        held_sent = 0
        if args.late:
            # The first wave, untimed: the core, then the first K edges hold the object.
            holders = [agents[0], *agents[1 : 1 + args.late]]
            for site in holders:
                async with trio.open_nursery() as wave:
                    for agent in site:
                        wave.start_soon(_first_wave, agent, url, digest, work / mode)
            held_sent = int(origin_stats(fed)["bytes_sent"].get("/release.bin", 0))
            flat = [a for site in agents[1 + args.late :] for a in site]
        times: dict[str, float | None] = {}
        killed: dict[str, Any] = {}
        start = trio.current_time()

        async def one(agent: AgentProcess) -> None:
            ok = await _pull(agent, url, digest, work / f"{mode}-{name_of(agent)}.out")
            times[name_of(agent)] = trio.current_time() - start if ok else None

        async with trio.open_nursery() as nursery:
            if victim is not None:
                mark = int(size * args.kill_parent_seeder_at)
                nursery.start_soon(kill_at, fed, victim, url, mark, start, killed)
            with trio.move_on_after(args.patience_s):  # a Pi still pulling then: None
                async with trio.open_nursery() as pulls:
                    for agent in flat:
                        pulls.start_soon(one, agent)
            nursery.cancel_scope.cancel()  # a mark never reached: no kill
        times.update({name_of(a): None for a in flat if name_of(a) not in times})
        survivors = {n: t for n, t in times.items() if n != killed.get("node")}
        verified = all(
            t is not None and (work / f"{mode}-{n}.out").read_bytes() == data
            for n, t in survivors.items()
        )
        sent = int(origin_stats(fed)["bytes_sent"].get("/release.bin", 0))
        sites = await uplink_by_site(agents)
        done = [t for t in survivors.values() if t is not None]
        bound = max(size / uplink, args.edges * size / core_uplink)
        if args.late:
            asking = args.edges - args.late
            bound = max(size / uplink, asking * size / (core_uplink + args.late * uplink))
        elif args.siblings:
            # Every edge's uplink may serve the others (relays: federation.relay_depth).
            bound = max(size / uplink, args.edges * size / (core_uplink + args.edges * uplink))
        t_last = max(done) if len(done) == len(survivors) else None
        result: dict[str, Any] = {
            "mode": mode,
            "sites": 1 + args.edges,
            "pis": len(flat),
            "bytes": size,
            "uplink_bytes_s": uplink,
            "core_uplink_bytes_s": core_uplink,
            "origin_rate_bytes_s": origin_rate,
            "origin_bytes": sent,
            "origin_ratio": round(sent / size, 4),
            "federation_bytes": sum(site["federation_bytes"] for site in sites[1:]),
            "t_last_s": round(t_last, 2) if t_last is not None else None,
            "t_bound_s": round(bound, 2),
            "bound_ratio": round(t_last / bound, 3) if t_last is not None else None,
            "verified": verified,
            "times_s": {n: round(t, 2) if t is not None else None for n, t in times.items()},
            "uplink_by_site": sites,
        }
        if args.late:
            result["late"] = args.late
            result["origin_bytes_timed"] = sent - held_sent
            result["by_edge"] = await _by_edge(agents[1 + args.late :])
        elif args.siblings:
            result["siblings"] = True
            result["by_edge"] = await _by_edge(agents[1:])
        if args.kill_parent_seeder_at:
            result["kill_at"] = args.kill_parent_seeder_at
            result["killed"] = killed or None
            result["extra_origin_bytes"] = sent - size
        if slow_links:
            ((edge, rate),) = slow_links.items()
            edge_times = [times[name_of(a)] for a in agents[edge]]
            edge_done = [t for t in edge_times if t is not None]
            completed = len(edge_done) == len(edge_times)
            result["slow_link"] = {
                "edge": edge,
                "rate_bytes_s": rate,
                "completed": completed,
                "t_last_s": round(max(edge_done), 2) if completed else None,
                **sites[edge],
            }
        return result
    finally:
        for site in agents:
            for agent in site:
                agent.kill()
        if origin is not None:
            origin.kill()
            origin.wait(timeout=10)
            if origin.stdout is not None:
                origin.stdout.close()
        fed.teardown()


def _siblings(fed: ShapedFederation, s: int, args: argparse.Namespace) -> list[str]:
    """Edge s's siblings (``--late``, ``--siblings``): every other edge's agents, the next
    index first."""
    edges = [1 + (s - 1 + k) % args.edges for k in range(1, args.edges)]
    return [f"{fed.pi_v4(t, i)}:3147" for t in edges for i in range(args.pis)]


async def _first_wave(agent: AgentProcess, url: str, digest: str, work: Path) -> None:
    if not await _pull(agent, url, digest, work / f"wave1-{name_of(agent)}.out"):
        raise RuntimeError(f"bench.federation: the first wave failed on {name_of(agent)}")


async def _by_edge(sites: list[list[AgentProcess]]) -> list[dict[str, int]]:
    """Per timed edge: bytes its agents took from siblings and from parents, and moves."""
    out = []
    for site in sites:
        row = {"from_siblings": 0, "from_parents": 0}
        for agent in site:
            counters = (await AgentClient(agent.socket).status()).origin
            for name, n in counters.items():
                if name.startswith("federation sibling@"):
                    row["from_siblings"] += int(n)
                elif name.startswith("federation parent@"):
                    row["from_parents"] += int(n)
        row["moved"] = sum(a.log().count("federation.moved-to-sibling") for a in site)
        out.append(row)
    return out


def _flag(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError (its message is shown)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.federation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--core", type=int, default=2, help="Pis of the core site")
    parser.add_argument("--edges", type=int, default=3, help="edge sites")
    parser.add_argument("--pis", type=int, default=3, help="Pis per edge site")
    parser.add_argument("--size", default="32MiB")
    parser.add_argument("--uplink", default="20Mbit", help="each edge site's uplink, each way")
    parser.add_argument("--core-uplink", default="100Mbit", help="the core's uplink, each way")
    parser.add_argument(
        "--origin-rate", help="the origin's own limit over all its connections (e.g. 8Mbit)"
    )
    parser.add_argument("--mode", choices=("federated", "islands", "both"), default="both")
    parser.add_argument("--settle-s", type=float, default=8.0, help="wait for seeders first")
    parser.add_argument(
        "--kill-parent-seeder-at",
        type=_flag(parse_fraction),
        metavar="FRACTION",
        help="SIGKILL the core site's seeder once the origin has sent this share of the object",
    )
    parser.add_argument(
        "--late",
        type=int,
        default=0,
        metavar="K",
        help="a second wave: the core and the first K edges hold the object first, every edge "
        "names the others as siblings, the other edges' Pis are timed",
    )
    parser.add_argument(
        "--siblings",
        action="store_true",
        help="every edge names the others as siblings (as --late does) in a release every "
        "site asks at once; t_bound_s then lets every edge's uplink serve the others: with "
        "--edge-federation relay_depth=N siblings relay what they fetch",
    )
    parser.add_argument(
        "--slow-link",
        type=_flag(parse_slow_link),
        metavar="EDGE=RATE",
        help="shape edge EDGE's (1..E) federation link, its path to the core's Pis, to RATE "
        "both ways (e.g. 2=1Mbit); its path to the origin keeps the whole uplink",
    )
    parser.add_argument(
        "--edge-federation",
        type=_flag(parse_setting),
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [federation] setting of every edge agent (repeatable), e.g. min_rate=2Mbit",
    )
    parser.add_argument(
        "--set",
        type=_flag(parse_section_setting),
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting of every agent (repeatable), e.g. site.member_forget_s=6",
    )
    parser.add_argument(
        "--patience-s", type=float, default=900.0, help="give up on Pis still pulling then"
    )
    parser.add_argument(
        "--work", type=Path, help="keep the agents' directories and logs here (a new directory)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per mode")
    args = parser.parse_args(argv)
    if args.slow_link and not args.slow_link[0] <= args.edges:
        parser.error(f"--slow-link: edge {args.slow_link[0]} of {args.edges}")
    if not 0 <= args.late < args.edges:
        parser.error(f"--late: 0 to {args.edges - 1} of {args.edges} edges")
    if os.geteuid() != 0:
        sys.exit("bench.federation needs root (network namespaces and tc)")
    cleanup_leftovers()
    modes = ("federated", "islands") if args.mode == "both" else (args.mode,)
    with tempfile.TemporaryDirectory(prefix="fc-fed-") as tmp:
        for mode in modes:
            result = trio.run(run, args, mode, (args.work or Path(tmp)) / mode)
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(
                    f"{mode}: origin {result['origin_ratio']}x F, last Pi {result['t_last_s']} s "
                    f"({result['bound_ratio']}x the bound {result['t_bound_s']} s), "
                    f"verified={result['verified']}"
                )
                if "killed" in result:
                    print(
                        f"  killed {result['killed']}, extra origin bytes "
                        f"{result['extra_origin_bytes']}"
                    )
                if "slow_link" in result:
                    print(f"  slow link {result['slow_link']}")


if __name__ == "__main__":
    main()
