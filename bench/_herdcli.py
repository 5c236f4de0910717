"""The herd's command line: its arguments in, its table, JSON and plots out (see bench.herd)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from bench._cgroup import PROFILES, Budget
from bench._report import lower_bound, machine, markdown, plot
from bench._systems import SYSTEMS
from bench._testbed import Rates
from frumitcache.config import parse_quantity

SCENARIOS = ("cold", "warm", "seeder-kill", "apt", "footprint", "oci")


def _rate(text: str) -> int:
    return parse_quantity(text, "bytes/s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--nodes", type=int, default=8, help="Pis in the site (default 8)")
    parser.add_argument(
        "--size", type=lambda s: parse_quantity(s, "bytes"), default=64 << 20,
        help="object size F (default 64MiB)",
    )  # fmt: skip
    parser.add_argument("--shaped", action="store_true", help="network namespaces + tc (root)")
    parser.add_argument(
        "--systems", default=None,
        help="comma-separated; default frumitcache,central,direct shaped, frumitcache,direct "
        "on loopback (central needs --shaped: see below)",
    )  # fmt: skip
    parser.add_argument(
        "--scenario", default="cold", help=f"comma-separated of {', '.join(SCENARIOS)}, or all"
    )
    parser.add_argument(
        "--kill-seeder-at", type=float, default=None,
        help="SIGKILL the seeder/cache box when the origin has sent this share of F "
        "(turns cold into seeder-kill; default 0.5 for seeder-kill)",
    )  # fmt: skip
    parser.add_argument("--uplink", type=_rate, default=_rate("20Mbit"), help="U (0: none)")
    parser.add_argument("--down", type=_rate, default=_rate("100Mbit"), help="d (shaped mode)")
    parser.add_argument("--up", type=_rate, default=_rate("100Mbit"), help="u (shaped mode)")
    parser.add_argument(
        "--chunk-size", type=lambda s: parse_quantity(s, "bytes"), default=0,
        help="frumitcache's store chunk size (default: the agent's own)",
    )  # fmt: skip
    parser.add_argument(
        "--agent-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="a frumitcache agent setting for this run (repeatable; VALUE in TOML, e.g. "
        "swarm.parallel_chunks=16): for trying a knob side by side with the default",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default=None, choices=("debug", "info", "warning", "error"),
        help="the frumitcache agents' log level (default: the agent's own); their logs stay "
        "in the scratch directory with --keep",
    )  # fmt: skip
    parser.add_argument("--apt-packages", type=int, default=16, help="packages in the apt herd")
    parser.add_argument("--timeout", type=float, default=0, help="per herd; 0: from the rates")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="table, plots")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--cleanup", action="store_true", help="remove leftovers and exit")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="redraw the table and plots of a saved run"
    )
    parser.add_argument(
        "--cpu-quota", type=float, default=None, metavar="PCT",
        help="every process of each Pi in a cgroup limited to PCT %% of one core (root; "
        "0: cgroups for accounting only)",
    )  # fmt: skip
    parser.add_argument("--memory", type=int, default=None, metavar="MB", help="per-Pi memory")
    parser.add_argument(
        "--pi", choices=sorted(PROFILES), default=None,
        help="a calibrated Pi budget (bench/README.md, Pi-class budget); --cpu-quota and "
        "--memory override its parts",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.budget = budget_of(args)
    try:
        args.agent_settings = agent_settings(args.agent_set)
    except ValueError as exc:
        parser.error(f"--agent-set: {exc}")
    if args.log_level is not None:
        args.agent_settings.setdefault("log", {})["level"] = args.log_level
    if args.scenario == "all":
        args.scenarios = list(SCENARIOS)
    elif all(name in SCENARIOS for name in args.scenario.split(",")):
        args.scenarios = args.scenario.split(",")
    else:
        parser.error(f"--scenario: one of {', '.join(SCENARIOS)}, all")
    if args.kill_seeder_at is not None and args.scenarios == ["cold"]:
        args.scenarios = ["seeder-kill"]
    if args.kill_seeder_at is None:
        args.kill_seeder_at = 0.5
    if args.systems is None:
        args.systems = "frumitcache,central,direct" if args.shaped else "frumitcache,direct"
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.system_list) - set(SYSTEMS)
    if unknown:
        parser.error(f"--systems: unknown {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    if "central" in args.system_list and not args.shaped and not args.render:
        # apt-cacher-ng looks up DNS SRV records (_http._tcp.<host>) even for IP addresses;
        # outside the namespaces those queries would go to the machine's real resolver.
        parser.error(
            "--systems central needs --shaped: apt-cacher-ng sends DNS SRV queries for every "
            "origin host, and only inside the shaped site's namespaces do they stay local"
        )
    return args


def agent_settings(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["swarm.parallel_chunks=16", ...]`` as the agent's settings by section."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise ValueError(f"{item!r}: want SECTION.KEY=VALUE")
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{item!r}: the value is not TOML ({exc})") from None
        out.setdefault(section, {})[key] = parsed
    return out


def rebound(row: dict[str, Any]) -> None:
    """Recompute a saved row's bound from its rates (the formula may have changed since)."""
    if row.get("runnable") is False or not row.get("bytes"):
        return
    rates = Rates(row.get("uplink_Bps"), row.get("down_Bps"), row.get("up_Bps"))
    bound = lower_bound(row["bytes"], row["nodes"], rates, warm=row["scenario"] == "warm")
    row["t_bound_s"] = bound
    t_last = row.get("t_last_s")
    row["bound_ratio"] = t_last / bound if t_last is not None and bound else None


def budget_of(args: argparse.Namespace) -> Budget | None:
    """The per-Pi budget asked for, ``None`` for none (no cgroups at all)."""
    if args.pi is None and args.cpu_quota is None and args.memory is None:
        return None
    base = PROFILES[args.pi] if args.pi else Budget()
    quota = base.cpu_quota_pct if args.cpu_quota is None else args.cpu_quota
    memory = base.memory_mb if args.memory is None else args.memory
    return Budget(quota or None, memory or None)


def write_outputs(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    measured_on: dict[str, Any] | None = None,
    argv: list[str] | None = None,
) -> None:
    mode = rows[0].get("mode", "?")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    m = measured_on or machine()
    m.setdefault("when", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    info: dict[str, Any] = {"machine": m, "argv": argv or sys.argv[1:], "rows": rows}
    header = (
        f"`python -m bench.herd {' '.join(info['argv'])}`: {mode} mode, N={rows[0]['nodes']}, "
        f"on {m['nproc']} x {m['cpu']}, {m['ram_gib']} GiB RAM, "
        f"{m['when']}\n\n"
    )
    (out / f"herd-{mode}.json").write_text(json.dumps(info, indent=1) + "\n")
    table = markdown(rows)
    (out / f"herd-{mode}.md").write_text(header + table)
    if not args.json:
        print(header + table)
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        path = out / f"herd-{mode}-{scenario}.png"
        title = f"{scenario} herd, {mode}, N={rows[0]['nodes']}"
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        said = plot(rows, scenario, path, title)
        if not args.quiet:
            sys.stderr.write(said + "\n")
