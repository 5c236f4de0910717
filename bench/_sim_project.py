"""Projections of the calibrated simulator: one large site, and a federation of sites.

Pis are Pi-3 class: each has its own CPU budget (``cpu_quota`` of one test-machine core, as
``--pi pi3`` in bench.herd) and spends the CPU per GB measured at N=16 under that budget. That
cost is held flat beyond N=16: it rose from N=8 to N=16 in every measurement so far and
nothing measured says how it goes on; ``--agent-cpu`` changes it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

from bench._report import lower_bound
from bench._sim_control import parent_frames, site_frames
from bench._sim_fed import (
    FederationSpec,
    backbone_rates,
    every_kth,
    first_holders_bound,
    run_federation,
)
from bench._sim_flow import Simulator
from bench._sim_site import CHUNK_SIZE, Calibration, SiteRun, SiteSpec
from bench._sim_validate import projection_cpu
from bench._testbed import Rates

# The budgeted cold N=16 herd's (bench/results/sim/validation-herds.json).
PROJECTION_AGENT_CPU, PROJECTION_CLIENT_CPU = projection_cpu()


@dataclass(frozen=True, slots=True)
class Plan:
    """What to project: rates in bytes/s."""

    size: int
    pis: int
    down: float
    up: float
    uplink: float  # the single site's uplink
    sites: int = 0  # 0: one site only
    backbone_low: float = 0.0
    backbone_high: float = 0.0
    core_uplink: float = 0.0
    core_egress: float = 0.0
    siblings: int = 0
    held_share: float = 0.0  # of the sites already holding the object (every k-th): a later wave
    chunk_exchange: bool = False  # what-if, not in the agent (bench._sim_fed)
    cpu_quota: float | None = 0.10
    seed: int = 1
    label: str = ""
    sibling_streams: int = 0  # federation.max_sibling_streams (0: no limit)
    parent_streams: int = 0  # what-if, not in the agent: a busy parent, children retry (_sim_fed)
    retry_after_s: float = 1.0
    sibling_recheck_s: float = 0.0  # federation.sibling_recheck_s (0: never)
    relay_depth: int = 0  # federation.relay_depth (0: siblings serve held objects only)
    relay_rate: float = 0.0  # with relays: a site's sibling streams are its link / this


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "min": round(ordered[0], 3),
        "p50": round(at(0.50), 3),
        "p90": round(at(0.90), 3),
        "p99": round(at(0.99), 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def project_site(plan: Plan, cal: Calibration) -> dict[str, Any]:
    started = time.perf_counter()
    spec = SiteSpec(plan.pis, plan.down, plan.up, plan.uplink, plan.cpu_quota, None, "site")
    sim = Simulator()
    run = SiteRun(sim, spec, cal, plan.size, "uplink")
    run.start()
    sim.run()
    times = run.pi_times()
    bound = lower_bound(plan.size, plan.pis, Rates(int(plan.uplink), int(plan.down), int(plan.up)))
    assert bound is not None
    chunks = len(run.chunks)
    control = site_frames(plan.pis, chunks, max(times) - cal.start_s)
    return {
        "case": plan.label or f"site N={plan.pis}",
        "kind": "site",
        "pis": plan.pis,
        "size_bytes": plan.size,
        "uplink_bytes": run.uplink_bytes(),
        "uplink_ratio": run.uplink_bytes() / plan.size,
        "origin_bytes": run.uplink_bytes(),
        "origin_ratio": run.uplink_bytes() / plan.size,
        "lan_bytes": run.lan_bytes(),
        "t_bound_s": round(bound, 2),
        "t_last_s": round(max(times), 2),
        "bound_ratio": round(max(times) / bound, 3),
        "times_s": [round(t, 3) for t in times],
        "time_quantiles_s": _quantiles(times),
        "ratio_quantiles": _quantiles([t / bound for t in times]),
        "control_frames": control.as_dict(),
        "events": sim.events,
        "wall_s": round(time.perf_counter() - started, 2),
    }


def project_federation(plan: Plan, cal: Calibration) -> dict[str, Any]:
    started = time.perf_counter()
    rates = backbone_rates(plan.sites, plan.backbone_low, plan.backbone_high, plan.seed)
    spec = FederationSpec(
        plan.pis, plan.down, plan.up, rates, plan.core_uplink, plan.core_egress,
        plan.siblings, plan.cpu_quota, every_kth(plan.sites, plan.held_share),
        plan.chunk_exchange, sibling_streams=plan.sibling_streams,
        parent_streams=plan.parent_streams, retry_after_s=plan.retry_after_s,
        sibling_recheck_s=plan.sibling_recheck_s, relay_depth=plan.relay_depth,
        relay_rate=plan.relay_rate,
    )  # fmt: skip
    result = run_federation(spec, cal, plan.size, chunk_size=CHUNK_SIZE)
    asking = len(spec.askers())
    times, bound = result.times_s, result.bound_s
    backbone = result.backbone.backbone_bytes()
    chunks = len(result.backbone.core_has)
    fetch_s = max(times) - cal.start_s
    control = site_frames(
        plan.pis, chunks, fetch_s, siblings=len(spec.sibling_ids(0)), federated=True
    )
    origin = result.backbone.origin_bytes()
    return {
        "case": plan.label or f"federation {plan.sites}x{plan.pis}",
        "kind": "federation",
        "sites": plan.sites,
        "pis": plan.pis * asking,
        "pis_per_site": plan.pis,
        "sites_holding": len(spec.held_by),
        "size_bytes": plan.size,
        "backbone_mbit": [plan.backbone_low * 8e-6, plan.backbone_high * 8e-6],
        "core_uplink_mbit": plan.core_uplink * 8e-6,
        "core_egress_mbit": plan.core_egress * 8e-6,
        "siblings_per_site": len(spec.sibling_ids(0)),
        "chunk_exchange": plan.chunk_exchange,
        "sibling_streams": plan.sibling_streams,
        **_epidemic(plan, sum(e.busy_answers for e in result.backbone.edges)),
        **_recheck(plan, sum(e.switches for e in result.backbone.edges)),
        **_relay(plan),
        "origin_bytes": origin,
        "origin_ratio": origin / plan.size,
        "backbone_bytes": backbone,
        "backbone_ratio": backbone["into_sites"] / (plan.size * asking),
        "t_bound_s": round(bound, 2),
        "t_last_s": round(max(times), 2),
        "bound_ratio": round(max(times) / bound, 3),
        # Reached only by a rule that lets finished sites serve (else the same as t_bound_s).
        "t_bound_first_holders_s": round(first_holders_bound(spec, plan.size), 2),
        "times_s": [round(t, 3) for t in times],
        "time_quantiles_s": _quantiles(times),
        "ratio_quantiles": _quantiles([t / bound for t in times]),
        "control_frames": {
            **control.as_dict(),
            "parent_during_fetch_per_s": round(parent_frames(asking, fetch_s), 3),
        },
        "events": result.backbone.sim.events + sum(s.sim.events for s in _distinct(result.sites)),
        "wall_s": round(time.perf_counter() - started, 2),
    }


def _epidemic(plan: Plan, busy_answers: int) -> dict[str, int]:
    """The epidemic what-if's own figures (absent from the other rows, which keep their shape)."""
    if not plan.parent_streams:
        return {}
    return {
        "parent_streams": plan.parent_streams,
        "parent_busy_answers": busy_answers,
    }


def _recheck(plan: Plan, switches: int) -> dict[str, float]:
    """Rows where children re-ask their siblings: how often, and how many moved."""
    if not plan.sibling_recheck_s:
        return {}
    return {"sibling_recheck_s": plan.sibling_recheck_s, "switches_to_siblings": switches}


def _relay(plan: Plan) -> dict[str, float]:
    """Rows where siblings relay what they are fetching: the depth and the streams rule."""
    if not plan.relay_depth:
        return {}
    return {"relay_depth": plan.relay_depth, "relay_rate_mbit": plan.relay_rate * 8e-6}


def _distinct(runs: list[SiteRun]) -> list[SiteRun]:
    return list({id(r): r for r in runs}.values())


def projection_calibration(cal: Calibration, agent_cpu: float, client_cpu: float) -> Calibration:
    return replace(cal, agent_cpu_s_per_gb=agent_cpu, client_cpu_s_per_gb=client_cpu)
