"""The simulator against the measured shaped herds: calibration, then the validation table.

Measured figures: ``bench/results/sim/validation-herds.json``, the rows of the shaped herds
(``bench.herd --shaped``, U=20 Mbit/s, d=u=100 Mbit/s, every Pi on one 2-core machine, N=8 at
64 MiB and N=16 at 32 MiB, cold and warm, ``--cpu-quota 0`` (cgroups for accounting only: no
budget) and ``--cpu-quota 10``), with the commit and store chunk size they ran at and the
command. A setting run more than once is judged on its runs' mean (last Pi, CPU per GB, the
seeder's copy); the table shows each run. A change of the data path (the chunk size above all)
needs them run again (``bench/README.md``, Simulation).

Calibration uses per-node figures only, never a last-Pi time it is then judged on:

- TCP goodput per shaped byte (``efficiency``): the frame's payload share, MSS 1448 of a
  1514-byte frame (htb counts whole frames; the ``direct`` system's 8 copies measured 0.953);
- the request-to-first-byte time (``start_s``): the mean of ``t - F / (efficiency · U)`` over
  the two cold seeders' own copies without a budget (the seeder: each herd's first Pi; N=8 at
  64 MiB and N=16 at 32 MiB). Both used to be solved from those two copies, which is
  ill-conditioned: the N=16 seeder, one of 32 processes on 2 cores, is seconds late, and in
  2026-12-04's herds the solve gave a goodput of 1.10 per shaped byte, above the wire's;
- CPU per GB: each setting's measured agents' and clients' CPU-s per GB;
- the per-chunk libtorrent latency (``chunk_latency_s``) is the one free parameter: fitted to
  the warm N=8 run without a budget, whose last Pi it then cannot validate (marked "fit").
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench._report import lower_bound
from bench._sim_flow import Simulator
from bench._sim_site import CHUNK_SIZE, Calibration, SiteRun, SiteSpec
from bench._testbed import Rates
from frumitcache.config import parse_quantity

MiB = 1 << 20
UPLINK = parse_quantity("20Mbit", "bytes/s")
PORT = parse_quantity("100Mbit", "bytes/s")
HOST_CORES = 2.0
DATA = Path(__file__).parent / "results" / "sim" / "validation-herds.json"


@dataclass(frozen=True, slots=True)
class Measured:
    """One herd setting; its figures are the means over the runs of it."""

    name: str
    pis: int
    size: int
    warm: bool
    quota: float | None  # fraction of a core per Pi
    t_last_s: float
    uplink_bytes: int  # the origin's own counter, the same in every run
    agent_cpu_s_per_gb: float
    client_cpu_s_per_gb: float
    #: The seeder's own copy: the herd's first Pi (cold, it holds each byte first; warm, it reads
    #: its own store). Not Pi 0: the site elects any of its Pis (at 8e29b57 it was Pi 0, in
    #: 2026-12-04's runs often Pi 1, which made the seeders' fit solve to a goodput above 1).
    seeder_s: float
    chunk_size: int  # the store's, when measured
    source: str
    t_runs: tuple[float, ...] = ()  # each run's last Pi


def _bound(pis: int, size: int, warm: bool) -> float:
    b = lower_bound(size, pis, Rates(UPLINK, PORT, PORT), warm=warm)
    assert b is not None
    return b


def load(path: Path = DATA) -> tuple[Measured, ...]:
    """The measured herds, without a budget before with, N=8 before N=16, cold before warm."""
    data = json.loads(path.read_text())
    source = f"{path.name}, {data['commit']}, {data['date']}"
    groups: dict[tuple[int, int, str, float | None], list[dict[str, Any]]] = {}
    for row in data["runs"]:
        if row["system"] != "frumitcache" or row["mode"] != "shaped" or not row["verified"]:
            raise ValueError(f"{path}: not a verified shaped frumitcache herd: {row}")
        key = (row["nodes"], row["bytes"], row["scenario"], row.get("cpu_quota_pct") or None)
        groups.setdefault(key, []).append(row)
    out = []
    for (pis, size, scenario, pct), rows in groups.items():
        uplink = {row["uplink_bytes"] for row in rows}
        if len(uplink) != 1:
            raise ValueError(f"{path}: N={pis} {scenario}: uplink bytes differ: {uplink}")

        def mean(field: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.fmean(row[field] for row in rows)

        name = f"N={pis} {scenario}" + (f", {pct:g} %" if pct else "")
        out.append(
            Measured(
                name, pis, size, scenario == "warm", pct / 100 if pct else None,
                mean("t_last_s"), uplink.pop(), mean("agent_cpu_s_per_gb"),
                mean("client_cpu_s_per_gb"), statistics.fmean(min(r["times_s"]) for r in rows),
                data["chunk_size"], source, tuple(row["t_last_s"] for row in rows),
            )
        )  # fmt: skip
    out.sort(key=lambda c: (c.quota is not None, c.pis, c.warm))
    return tuple(out)


MEASURED = load()
_FIT_CASE = "N=8 warm"


def chunk_size_note() -> str | None:
    """Why the validation no longer stands for the agent's data path, if it does not."""
    measured = {c.chunk_size for c in MEASURED}
    if measured == {CHUNK_SIZE}:
        return None
    return (
        f"the validation herds ran with {sorted(measured)} B chunks, the store's default is now "
        f"{CHUNK_SIZE} B: run them again (bench/README.md, Simulation)"
    )


def projection_cpu() -> tuple[float, float]:
    """Agents' and clients' CPU-s per GB of the budgeted cold N=16 herd (the largest measured
    on a Pi budget), for the projections."""
    case = next(c for c in MEASURED if c.pis == 16 and not c.warm and c.quota)
    return case.agent_cpu_s_per_gb, case.client_cpu_s_per_gb


def base_calibration() -> Calibration:
    """The wire's efficiency, and the start time from the two cold seeders (see the module
    docstring)."""
    efficiency = Calibration().efficiency
    cold = [c for c in MEASURED if not c.warm and c.quota is None]
    start = statistics.fmean(c.seeder_s - c.size / (efficiency * UPLINK) for c in cold)
    return Calibration(efficiency=efficiency, start_s=start)


def simulate_case(case: Measured, cal: Calibration) -> SiteRun:
    """One measured herd, simulated on the testbed's own terms (one 2-core host)."""
    cal = replace(
        cal,
        agent_cpu_s_per_gb=case.agent_cpu_s_per_gb,
        client_cpu_s_per_gb=case.client_cpu_s_per_gb,
    )
    spec = SiteSpec(case.pis, PORT, PORT, UPLINK, case.quota, HOST_CORES, case.name)
    sim = Simulator()
    feed = "warm" if case.warm else "uplink"
    run = SiteRun(sim, spec, cal, case.size, feed, chunk_size=case.chunk_size)
    run.start()
    sim.run()
    return run


def calibrate() -> Calibration:
    """The base calibration with the chunk latency fitted on the warm N=8 run (0-10 s)."""
    base = base_calibration()
    case = next(c for c in MEASURED if c.name == _FIT_CASE)
    best = min(
        (abs(max(simulate_case(case, replace(base, chunk_latency_s=x / 20)).pi_times())
             - case.t_last_s), x / 20)
        for x in range(201)
    )  # fmt: skip
    return replace(base, chunk_latency_s=best[1])


def validate(cal: Calibration) -> list[dict[str, Any]]:
    """One row per measured herd: simulated vs measured last Pi and uplink bytes."""
    rows = []
    for case in MEASURED:
        run = simulate_case(case, cal)
        t_sim = max(run.pi_times())
        bound = _bound(case.pis, case.size, case.warm)
        rows.append(
            {
                "case": case.name,
                "pis": case.pis,
                "size_bytes": case.size,
                "cpu_quota_pct": None if case.quota is None else round(case.quota * 100),
                "t_bound_s": round(bound, 2),
                "measured_t_last_s": round(case.t_last_s, 2),
                "measured_runs_s": [round(t, 2) for t in case.t_runs],
                "sim_t_last_s": round(t_sim, 2),
                "error_pct": round(100 * (t_sim - case.t_last_s) / case.t_last_s, 1),
                "measured_bound_ratio": round(case.t_last_s / bound, 2),
                "sim_bound_ratio": round(t_sim / bound, 2),
                "measured_uplink_bytes": case.uplink_bytes,
                "sim_uplink_bytes": run.uplink_bytes(),
                "uplink_exact": run.uplink_bytes() == case.uplink_bytes,
                "calibration": "fit" if case.name == _FIT_CASE else "validation",
                "source": case.source,
            }
        )
    return rows
