"""Simulate a site and a federation of sites: validated against the shaped herds, then projected.

A discrete-event, flow-level simulation of frumitcache's data path and control plane (pure
Python, deterministic for a seed, no I/O in the model):

- ``bench._sim_flow``: the clock, the event queue and max-min fair sharing of link and CPU
  capacity among concurrent transfers, recomputed at every event;
- ``bench._sim_site``: one site: a seeder fetching each chunk once over the uplink, the
  assigned member's copy from the seeder, the others traded among the members (members are one
  class of identical Pis);
- ``bench._sim_fed``: edge sites under a core parent over backbone links (single-flight at the
  parent; siblings serve only objects they hold complete, as the agent's do, plus two what-ifs
  that are not in the agent: chunk trading, and a busy parent whose children re-ask siblings);
- ``bench._sim_control``: control frames per node from the agents' rules;
- ``bench._sim_validate``: calibration and the validation table; ``bench._sim_project``: the
  projections.

Run ``python -m bench.sim`` (validation and the default projections: one site of 100 Pis, and
100 sites x 100 Pis under a core parent, for 64 MiB and 1 GiB, released to every site at once
and to the sites that ask after a tenth of them hold it). JSON goes to
``--out/sim.json`` (and stdout with ``--json``), a table to ``sim.md``, plots to
``sim-<case>.png`` when matplotlib is importable.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench._report import machine, plot
from bench._sim_control import idle_validation
from bench._sim_project import (
    PROJECTION_AGENT_CPU,
    PROJECTION_CLIENT_CPU,
    Plan,
    project_federation,
    project_site,
    projection_calibration,
)
from bench._sim_report import markdown
from bench._sim_site import CHUNK_SIZE
from bench._sim_validate import calibrate, chunk_size_note, validate
from frumitcache.config import FederationConfig, parse_quantity


def _rate(text: str) -> int:
    return parse_quantity(text, "bytes/s")


def _sizes(text: str) -> list[int]:
    return [parse_quantity(s, "bytes") for s in text.split(",") if s]


def _what_ifs(text: str) -> frozenset[str]:
    names = frozenset(text.split(",")) - {"none", ""}
    if names - {"chunks", "epidemic"}:
        raise argparse.ArgumentTypeError(f"{text!r}: chunks, epidemic or none")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--validate-only", action="store_true", help="only the validation table")
    p.add_argument("--no-validate", action="store_true", help="skip the validation table")
    p.add_argument("--sizes", type=_sizes, default=_sizes("64MiB,1GiB"), help="release sizes F")
    p.add_argument("--pis", type=int, default=100, help="Pis per site (default 100)")
    p.add_argument("--sites", type=int, default=100, help="edge sites (0: no federation)")
    p.add_argument("--uplink", type=_rate, default=_rate("20Mbit"), help="a lone site's U")
    p.add_argument("--down", type=_rate, default=_rate("100Mbit"), help="d of every Pi")
    p.add_argument("--up", type=_rate, default=_rate("100Mbit"), help="u of every Pi")
    p.add_argument("--backbone", default="10Mbit-50Mbit", help="edge links, uniform LOW-HIGH")
    p.add_argument("--core-uplink", type=_rate, default=_rate("100Mbit"), help="core ← origin")
    p.add_argument(
        "--core-egress", default="1Gbit,100Mbit",
        help="core → backbone; comma-separated for one federation run each",
    )  # fmt: skip
    p.add_argument(
        "--siblings", default="0,all",
        help="ring siblings per side (all: every site), one run each",
    )  # fmt: skip
    p.add_argument(
        "--sibling-streams", default=str(FederationConfig().max_sibling_streams),
        help="federation.max_sibling_streams: held objects a sibling streams at once, the next "
        "asker is sent on busy (0: no limit, the rule before it); comma-separated for one run "
        "each (rows with siblings; default: the agent's default)",
    )  # fmt: skip
    p.add_argument(
        "--release", default="together,late",
        help="together: every site asks at once; late: the sites not in --held-by ask for an "
        "object those hold (and the core); one run each",
    )  # fmt: skip
    p.add_argument(
        "--held-by", type=float, default=0.1,
        help="share of the sites holding the object in a late release (every k-th site)",
    )  # fmt: skip
    p.add_argument(
        "--what-if", type=_what_ifs, default=_what_ifs("chunks,epidemic"),
        help="comma-separated rows for rules NOT in the agent (none: no such rows). chunks: "
        "siblings serve each other single chunks, sites ask in different chunk orders (release "
        "together, siblings > 0); epidemic: the parent streams to --parent-streams children at "
        "once and answers the others busy, they re-ask their siblings after --retry-after "
        "(every release, siblings > 0)",
    )  # fmt: skip
    p.add_argument(
        "--parent-streams", default="10",
        help="epidemic what-if: children the parent streams to at once; comma-separated for "
        "one run each",
    )  # fmt: skip
    p.add_argument(
        "--retry-after", type=float, default=1.0, help="epidemic what-if: seconds (Retry-After)"
    )
    p.add_argument(
        "--sibling-recheck", default=f"{FederationConfig().sibling_recheck_s:g}",
        help="federation.sibling_recheck_s: a child streaming from its parent walks its "
        "siblings again this often and moves to the first holding the object and free "
        "(0: never, the rule before it); comma-separated for one run each (rows with "
        "siblings; default: the agent's default)",
    )  # fmt: skip
    p.add_argument(
        "--relay-depth", default="0,4",
        help="federation.relay_depth: siblings also serve what they are still fetching, "
        "within this depth (0: held objects only, the agent's default); comma-separated for "
        "one run each (rows with siblings)",
    )  # fmt: skip
    p.add_argument(
        "--relay-rate", type=_rate, default=_rate("12Mbit"),
        help="with relays, each site's max_sibling_streams is its link / this (at least 1) "
        "and a site with a slower link does not relay (federation.serve_relays false), as "
        "the help tells the operator (0: --sibling-streams for every site)",
    )  # fmt: skip
    p.add_argument("--cpu-quota", type=float, default=10.0, help="%% of a core per Pi (0: none)")
    p.add_argument("--agent-cpu", type=float, default=PROJECTION_AGENT_CPU, help="CPU-s/GB")
    p.add_argument("--client-cpu", type=float, default=PROJECTION_CLIENT_CPU, help="CPU-s/GB")
    p.add_argument("--seed", type=int, default=1, help="draws the backbone rates")
    p.add_argument("--out", type=Path, default=Path("bench/results/sim"), help="JSON, table, plots")
    p.add_argument("--json", action="store_true", help="print the JSON to stdout too")
    return p.parse_args(argv)


def plans(args: argparse.Namespace) -> list[Plan]:
    quota = args.cpu_quota / 100 if args.cpu_quota > 0 else None
    out: list[Plan] = []
    for size in args.sizes:
        label = f"{size / (1 << 20):g} MiB"
        out.append(Plan(size, args.pis, args.down, args.up, args.uplink, cpu_quota=quota,
                        label=f"site N={args.pis}, {label}"))  # fmt: skip
        if not args.sites:
            continue
        for egress in args.core_egress.split(","):
            for release in args.release.split(","):
                for sib in args.siblings.split(","):
                    streams = args.sibling_streams.split(",") if sib != "0" else ["0"]
                    rechecks = args.sibling_recheck.split(",") if sib != "0" else ["0"]
                    relays = args.relay_depth.split(",") if sib != "0" else ["0"]
                    for k in streams:
                        for again in rechecks:
                            out += [
                                _plan(args, size, egress, release, sib, quota, int(k),
                                      recheck=float(again), relay=int(depth))
                                for depth in relays
                            ]  # fmt: skip
            siblings = [sib for sib in args.siblings.split(",") if sib != "0"]
            if "chunks" in args.what_if:
                out += [
                    _plan(args, size, egress, "together", sib, quota, exchange=True)
                    for sib in siblings
                ]
            if "epidemic" in args.what_if:
                out += [
                    _plan(args, size, egress, release, sib, quota, int(k), parent=int(parent))
                    for release in args.release.split(",")
                    for sib in siblings
                    for k in args.sibling_streams.split(",")
                    for parent in args.parent_streams.split(",")
                ]
    return out


def _plan(
    args: argparse.Namespace,
    size: int,
    egress: str,
    release: str,
    sib: str,
    quota: float | None,
    streams: int = 0,
    *,
    exchange: bool = False,
    parent: int = 0,
    recheck: float = 0.0,
    relay: int = 0,
) -> Plan:
    if release not in ("together", "late"):
        raise SystemExit(f"bench.sim: --release {release!r}: together or late")
    low, _, high = args.backbone.partition("-")
    siblings = args.sites // 2 if sib == "all" else int(sib)
    held = args.held_by if release == "late" else 0.0
    what = "release together" if release == "together" else f"late ({held:.0%} of sites hold it)"
    if exchange:
        what += ", WHAT-IF siblings trade chunks (not in the agent)"
    elif siblings:
        what += f", sibling streams {streams or 'unlimited'}"
        if recheck:
            what += f", re-ask siblings every {recheck:g} s"
        if relay:
            per = f"link / {args.relay_rate * 8e-6:g} Mbit/s" if args.relay_rate else streams
            what += f", relay depth {relay} (sibling streams {per})"
    if parent:
        what += (
            f", WHAT-IF parent busy above {parent} streams, children re-ask siblings every "
            f"{args.retry_after:g} s (not in the agent)"
        )
    return Plan(
        size, args.pis, args.down, args.up, args.uplink, args.sites, _rate(low),
        _rate(high or low), args.core_uplink, _rate(egress), siblings, held, exchange, quota,
        args.seed,
        f"federation {args.sites}x{args.pis}, {size / (1 << 20):g} MiB, egress {egress}, "
        f"siblings {sib}, {what}", streams, parent, args.retry_after, recheck,
        relay, args.relay_rate if relay else 0.0,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cal = calibrate()
    report: dict[str, Any] = {"machine": machine(), "argv": sys.argv[1:] if argv is None else argv}
    report["calibration"] = asdict(cal)
    report["chunk_size"] = CHUNK_SIZE
    note = chunk_size_note()
    if note:
        report["calibration_note"] = note
        print(f"bench.sim: {note}", file=sys.stderr)
    if not args.no_validate:
        report["validation"] = validate(cal)
        report["control_validation"] = idle_validation()
    if not args.validate_only:
        pcal = projection_calibration(cal, args.agent_cpu, args.client_cpu)
        report["projection_calibration"] = asdict(pcal)
        rows = []
        for plan in plans(args):
            print(f"sim: {plan.label} ...", file=sys.stderr, flush=True)
            row = project_federation(plan, pcal) if plan.sites else project_site(plan, pcal)
            rows.append(row)
        report["projection"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sim.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "sim.md").write_text(markdown(report))
    for message in _plots(report, args.out):
        print(message, file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        print(markdown(report))
    return 0


def _plots(report: dict[str, Any], out: Path) -> list[str]:
    """One plot per kind (site, federation) and release size: every case's Pis over time."""
    messages = []
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in report.get("projection", []):
        groups.setdefault((row["kind"], row["size_bytes"]), []).append(row)
    for (kind, size), rows in groups.items():
        mib = size >> 20
        lines = [
            {"scenario": "sim", "system": row["case"].split(", ")[0] + _variant(row),
             "times_s": row["times_s"], "t_bound_s": row["t_bound_s"] if len(rows) == 1 else None}
            for row in rows
        ]  # fmt: skip
        path = out / f"sim-{kind}-{mib}MiB.png"
        messages.append(plot(lines, "sim", path, f"simulated {kind}: {mib} MiB release"))
    return messages


def _variant(row: dict[str, Any]) -> str:
    if row["kind"] != "federation":
        return ""
    late = ", late" if row["sites_holding"] else ""
    what_if = ", what-if chunk trade" if row["chunk_exchange"] else ""
    if row.get("parent_streams"):
        what_if += f", what-if busy parent {row['parent_streams']}"
    if row.get("relay_depth"):
        what_if += f", relay {row['relay_depth']}"
    streams = row.get("sibling_streams", 0)
    busy = f", streams {streams}" if streams and row["siblings_per_site"] else ""
    return (
        f", egress {row['core_egress_mbit']:g} Mbit, siblings {row['siblings_per_site']}"
        f"{late}{busy}{what_if}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
