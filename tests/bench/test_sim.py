"""The simulator's logic: fair sharing, conservation of bytes, bounds, single-flight, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from bench import _sim_control, sim
from bench._report import lower_bound
from bench._sim_control import idle_validation, site_frames
from bench._sim_fed import FederationSpec, backbone_rates, run_federation, site_bound
from bench._sim_flow import Flow, Resource, Simulator, fair_rates
from bench._sim_site import CHUNK_SIZE, Calibration, SiteRun, SiteSpec
from bench._sim_validate import MEASURED, base_calibration, simulate_case
from bench._testbed import Rates

MBIT = 1e6 / 8
MiB = 1 << 20
CAL = Calibration(efficiency=1.0, start_s=0.0, chunk_latency_s=0.0, http_latency_s=0.0)


def test_chunk_size_is_the_stores() -> None:
    assert 4 * MiB == CHUNK_SIZE


def test_fair_rates_share_a_link_and_respect_caps() -> None:
    link = Resource("link", 10.0)
    a = Flow(100, ((link, 1.0),))
    b = Flow(100, ((link, 1.0),), cap=2.0)
    c = Flow(100, ((link, 1.0),))
    fair_rates([a, b, c])
    assert b.rate == pytest.approx(2.0)
    assert a.rate == pytest.approx(4.0)
    assert c.rate == pytest.approx(4.0)


def test_fair_rates_weigh_copies() -> None:
    # A flow of 3 copies loads the link three times per unit of its rate.
    link = Resource("link", 12.0)
    many = Flow(10, ((link, 3.0),))
    one = Flow(10, ((link, 1.0),))
    fair_rates([many, one])
    assert many.rate == pytest.approx(3.0)
    assert one.rate == pytest.approx(3.0)
    assert 3 * many.rate + one.rate == pytest.approx(12.0)


def test_simulator_finishes_flows_in_order_and_counts_bytes() -> None:
    sim = Simulator()
    link = Resource("link", 10.0)
    done: dict[str, float] = {}
    for name, size in (("small", 10), ("big", 30)):
        sim.start(Flow(size, ((link, 1.0),), on_done=partial(done.__setitem__, name)))
    sim.run()
    # Both at 5/s until small is done at 2 s, then big alone at 10/s for its last 20.
    assert done["small"] == pytest.approx(2.0)
    assert done["big"] == pytest.approx(4.0)
    assert link.carried == 40


def test_a_flow_left_with_rounding_crumbs_finishes() -> None:
    # Rounding can leave a flow a few 1e-10 bytes: it gets no rate, and must still finish
    # (a 100-site federation with start_s 0 stalled on exactly this).
    sim = Simulator()
    link = Resource("link", 10.0)
    done: list[float] = []
    flow = sim.start(Flow(4, ((link, 1.0),), on_done=done.append))
    other = sim.start(Flow(10, ((link, 1.0),)))
    flow.done = flow.size - 5e-10
    assert sim.run() == pytest.approx(1.0)
    assert done == [0.0]
    assert other.remaining == 0


def _site(pis: int, size: int, feed: str, chunk_latency_s: float = 0.0) -> SiteRun:
    sim = Simulator()
    spec = SiteSpec(pis, 100 * MBIT, 100 * MBIT, 20 * MBIT)
    run = SiteRun(sim, spec, replace(CAL, chunk_latency_s=chunk_latency_s), size, feed)
    run.start()
    sim.run()
    return run


@pytest.mark.parametrize("pis", [1, 2, 8, 33])
@pytest.mark.parametrize("size", [1, 3 * MiB, 64 * MiB + 12345])
def test_site_conserves_bytes_and_fetches_once(pis: int, size: int) -> None:
    run = _site(pis, size, "uplink")
    assert run.uplink_bytes() == size
    lan = run.lan_bytes()
    # Every member receives the object exactly once, from the seeder or another member.
    assert lan["from_seeder"] + lan["from_members"] == (pis - 1) * size
    if pis > 2:  # super-seeding: the seeder's port carries one copy
        assert lan["from_seeder"] == size
    assert len(run.pi_times()) == pis


@pytest.mark.parametrize("feed", ["uplink", "warm"])
@pytest.mark.parametrize("pis", [2, 8, 16, 100])
def test_site_never_beats_its_bound(feed: str, pis: int) -> None:
    size = 64 * MiB
    run = _site(pis, size, feed)
    rates = Rates(int(20 * MBIT), int(100 * MBIT), int(100 * MBIT))
    bound = lower_bound(size, pis, rates, warm=feed == "warm")
    assert bound is not None
    assert max(run.pi_times()) >= bound * (1 - 1e-9)
    if feed == "warm":
        assert run.uplink_bytes() == 0


def test_cpu_budget_throttles_and_latency_delays() -> None:
    free = max(_site(8, 64 * MiB, "warm").pi_times())
    costly = replace(CAL, agent_cpu_s_per_gb=20.0, client_cpu_s_per_gb=6.0)
    sim = Simulator()
    spec = SiteSpec(8, 100 * MBIT, 100 * MBIT, 20 * MBIT, cpu_quota=0.1)
    run = SiteRun(sim, spec, costly, 64 * MiB, "warm")
    run.start()
    sim.run()
    budget = max(run.pi_times())
    # A member's receiving CPU for the object, at a tenth of a core.
    assert budget >= 64 * MiB * costly.cpu_rx / 0.1
    assert budget > 2 * free
    assert run.cpu_s()["members"] > 0
    slow = max(_site(8, 64 * MiB, "warm", chunk_latency_s=1.0).pi_times())
    assert slow >= free + 1.0


def _federation(sites: int, siblings: int, striped: bool, egress: float) -> FederationSpec:
    return FederationSpec(
        pis=5, down=100 * MBIT, up=100 * MBIT,
        backbone=backbone_rates(sites, 10 * MBIT, 50 * MBIT, seed=7),
        core_uplink=100 * MBIT, core_egress=egress, siblings=siblings, striped=striped,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("siblings", "striped", "egress"),
    [(0, False, 1000 * MBIT), (1, True, 60 * MBIT), (3, True, 20 * MBIT)],
)
def test_federation_origin_once_and_bound(siblings: int, striped: bool, egress: float) -> None:
    size = 40 * MiB + 7
    spec = _federation(6, siblings, striped, egress)
    result = run_federation(spec, CAL, size)
    # The parent single-flights every child's miss: the origin sends F, once.
    assert result.backbone.origin_bytes() == size
    bytes_ = result.backbone.backbone_bytes()
    # Each site receives F over its backbone link, from the parent or a sibling.
    assert bytes_["into_sites"] == spec.sites * size
    assert bytes_["from_parent"] + bytes_["from_siblings"] == bytes_["into_sites"]
    if siblings:
        assert bytes_["from_siblings"] > 0
    else:
        assert bytes_["from_siblings"] == 0
    assert len(result.times_s) == spec.sites * spec.pis
    for t, b in zip(result.times_s, result.bounds_s, strict=True):
        assert t >= b * (1 - 1e-9)
    assert max(result.bounds_s) == max(site_bound(spec, i, size) for i in range(spec.sites))
    for site in result.sites:
        lan = site.lan_bytes()
        assert lan["from_seeder"] + lan["from_members"] == (spec.pis - 1) * size


def test_same_seed_same_result() -> None:
    spec = _federation(6, 1, True, 50 * MBIT)
    one = run_federation(spec, CAL, 16 * MiB).times_s
    two = run_federation(spec, CAL, 16 * MiB).times_s
    assert one == two
    assert backbone_rates(6, 1, 2, seed=1) != backbone_rates(6, 1, 2, seed=2)


def test_control_frames_follow_the_rules() -> None:
    small = site_frames(10, 16, 30.0)
    big = site_frames(100, 16, 30.0)
    # Under a seeder a member's rate does not grow with the site; the seeder's does.
    assert big.member_idle == pytest.approx(small.member_idle)
    assert big.seeder_idle == pytest.approx(small.seeder_idle * 99 / 9, rel=0.05)
    assert small.member_fetch > small.member_idle
    assert site_frames(10, 16, 30.0, warm=True).member_fetch < small.member_fetch
    static = site_frames(10, 16, 30.0, multicast=False)
    assert static.member_idle == pytest.approx(small.member_idle)
    assert static.seeder_idle > small.seeder_idle  # its beacon goes to each peer


def test_the_control_model_uses_the_agents_constants() -> None:
    from frumitcache.agent._plan import QUIET_S
    from frumitcache.site._core import BACKOFF

    assert (_sim_control.QUIET_S, _sim_control.BACKOFF) == (QUIET_S, BACKOFF)


def test_the_control_model_matches_bench_scale_at_rest() -> None:
    for row in idle_validation():
        assert abs(row["error_pct"]) <= 5, row


def test_validation_uplink_bytes_exact() -> None:
    cal = base_calibration()
    for case in MEASURED:
        run = simulate_case(case, cal)
        assert run.uplink_bytes() == (0 if case.warm else case.size)


def test_cli_small_run(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    code = sim.main(
        ["--sizes", "8MiB", "--pis", "6", "--sites", "4", "--core-egress", "50Mbit",
         "--siblings", "0,all", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "sim.json").read_text())
    assert [row["case"] for row in report["validation"]] == [c.name for c in MEASURED]
    kinds = [row["kind"] for row in report["projection"]]
    assert kinds == ["site", "federation", "federation"]
    for row in report["projection"]:
        assert row["origin_bytes"] == 8 * MiB
        assert row["bound_ratio"] >= 1.0
    assert "| N=8 cold |" in (out / "sim.md").read_text()
