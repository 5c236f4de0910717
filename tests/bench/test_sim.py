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
from bench._sim_fed import (
    FederationSpec,
    backbone_rates,
    epidemic_bound,
    every_kth,
    federation_bound,
    first_holders_bound,
    run_federation,
    site_bound,
)
from bench._sim_flow import Flow, Resource, Simulator, fair_rates
from bench._sim_site import CHUNK_SIZE, Calibration, SiteRun, SiteSpec
from bench._sim_validate import MEASURED, base_calibration, chunk_size_note, simulate_case
from bench._testbed import Rates
from frumitcache.config import FederationConfig, StoreConfig

MBIT = 1e6 / 8
MiB = 1 << 20
CAL = Calibration(efficiency=1.0, start_s=0.0, chunk_latency_s=0.0, http_latency_s=0.0)


def test_chunk_size_is_the_stores() -> None:
    # The projections follow the store's default chunk size; the validation simulates each
    # measured herd at the chunk size it ran with, and says when that is no longer the default.
    assert StoreConfig().chunk_size == CHUNK_SIZE
    assert {c.chunk_size for c in MEASURED} != {CHUNK_SIZE} or chunk_size_note() is None


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


def _federation(
    sites: int,
    siblings: int,
    egress: float,
    *,
    exchange: bool = False,
    held_by: frozenset[int] = frozenset(),
) -> FederationSpec:
    return FederationSpec(
        pis=5, down=100 * MBIT, up=100 * MBIT,
        backbone=backbone_rates(sites, 10 * MBIT, 50 * MBIT, seed=7),
        core_uplink=100 * MBIT, core_egress=egress, siblings=siblings, held_by=held_by,
        chunk_exchange=exchange,
    )  # fmt: skip


def _check_bounds_and_sites(spec: FederationSpec, size: int, result: object) -> None:
    from bench._sim_fed import FederationResult

    assert isinstance(result, FederationResult)
    askers = spec.askers()
    assert len(result.times_s) == len(askers) * spec.pis
    # Each Pi is no faster than its own site's links allow, the last no faster than the
    # federation's bound (with the shared term).
    for t, b in zip(result.times_s, result.bounds_s, strict=True):
        assert t >= b * (1 - 1e-9)
    assert result.bounds_s == [site_bound(spec, i, size) for i in askers for _ in range(spec.pis)]
    assert max(result.times_s) >= result.bound_s * (1 - 1e-9)
    assert result.bound_s == federation_bound(spec, size)
    for site in result.sites:
        lan = site.lan_bytes()
        assert lan["from_seeder"] + lan["from_members"] == (spec.pis - 1) * size


@pytest.mark.parametrize(
    ("siblings", "exchange", "egress"),
    [(0, False, 1000 * MBIT), (2, False, 60 * MBIT), (1, True, 60 * MBIT), (3, True, 20 * MBIT)],
)
def test_federation_origin_once_and_bound(siblings: int, exchange: bool, egress: float) -> None:
    size = 40 * MiB + 7
    spec = _federation(6, siblings, egress, exchange=exchange)
    result = run_federation(spec, CAL, size)
    # The parent single-flights every child's miss: the origin sends F, once.
    assert result.backbone.origin_bytes() == size
    bytes_ = result.backbone.backbone_bytes()
    # Each site receives F over its backbone link, from the parent or a sibling.
    assert bytes_["into_sites"] == spec.sites * size
    assert bytes_["from_parent"] + bytes_["from_siblings"] == bytes_["into_sites"]
    if exchange:  # the what-if: siblings trade the chunks they hold
        assert bytes_["from_siblings"] > 0
    _check_bounds_and_sites(spec, size, result)


@pytest.mark.parametrize("siblings", [1, 3])
def test_a_release_to_every_site_at_once_gets_nothing_from_siblings(siblings: int) -> None:
    # Every seeder asks when no site holds the object complete: its siblings answer 504
    # (only-if-cached, complete objects only), even though they hold some chunks while their
    # own fetch runs; everything comes from the parent, as without siblings.
    size = 24 * MiB + 5
    spec = _federation(6, siblings, 60 * MBIT)
    result = run_federation(spec, CAL, size)
    bytes_ = result.backbone.backbone_bytes()
    assert bytes_["from_siblings"] == 0
    assert bytes_["from_parent"] == spec.sites * size
    assert result.backbone.origin_bytes() == size
    alone = run_federation(_federation(6, 0, 60 * MBIT), CAL, size)
    assert result.times_s == alone.times_s
    # Under the rule siblings add no capacity to a release every site asks for at once.
    assert spec.sibling_upload() == 0
    assert result.bound_s == alone.bound_s
    _check_bounds_and_sites(spec, size, result)


def test_an_object_a_sibling_holds_complete_comes_from_it() -> None:
    # Site 0 (and the core) hold the object; sites 1 and 5, its ring neighbours, ask it first
    # and get the whole object from it; the others, with no holding sibling, from the parent.
    size = 24 * MiB + 5
    spec = _federation(6, 1, 60 * MBIT, held_by=frozenset({0}))
    result = run_federation(spec, CAL, size)
    level1 = result.backbone
    assert level1.origin_bytes() == 0  # the core holds it: nothing from the origin
    assert [e.source.index if e.source else None for e in level1.edges] == [
        None, 0, None, None, None, 0,
    ]  # fmt: skip
    assert level1.edges[0].link_up.carried == 2 * size
    bytes_ = level1.backbone_bytes()
    assert bytes_["from_siblings"] == 2 * size
    assert bytes_["from_parent"] == 3 * size
    assert bytes_["into_sites"] == 5 * size
    # B: the holding sibling's link; the asking sites' Pis only (site 0's already hold it).
    assert spec.sibling_upload() == spec.backbone[0]
    _check_bounds_and_sites(spec, size, result)


def test_a_site_asks_its_nearest_holding_sibling_first() -> None:
    # Siblings are asked in the configured order (nearest first, right before left); the first
    # that holds the object serves all of it, a second holder is not used.
    spec = _federation(8, 3, 60 * MBIT, held_by=frozenset({2, 6}))
    result = run_federation(spec, CAL, 8 * MiB)
    sources = {e.index: e.source.index if e.source else None for e in result.backbone.edges}
    assert sources == {0: 2, 1: 2, 3: 2, 4: 6, 5: 6, 7: 6, 2: None, 6: None}
    assert result.backbone.backbone_bytes()["from_parent"] == 0


@pytest.mark.parametrize("streams", [1, 2])
def test_a_busy_holder_sends_later_sites_on(streams: int) -> None:
    # federation.max_sibling_streams: a holder streaming to `streams` sites answers the next
    # busy; that site asks its next holding sibling, then the parent. Two holders, six askers.
    size = 8 * MiB
    spec = replace(_federation(8, 3, 60 * MBIT, held_by=frozenset({2, 6})), sibling_streams=streams)
    result = run_federation(spec, CAL, size)
    edges = result.backbone.edges
    served: dict[int, int] = {}
    for e in edges:
        if e.source is not None:
            served[e.source.index] = served.get(e.source.index, 0) + 1
    assert served == {2: streams, 6: streams}
    assert [e.link_up.carried for e in (edges[2], edges[6])] == [streams * size] * 2
    bytes_ = result.backbone.backbone_bytes()
    assert bytes_["from_siblings"] == 2 * streams * size
    assert bytes_["from_parent"] == (6 - 2 * streams) * size
    assert all(e.streams == 0 for e in edges)  # every stream ended and gave its slot back
    _check_bounds_and_sites(spec, size, result)


def test_a_site_sent_on_busy_asks_the_next_holder_first() -> None:
    # Site 1's nearest holder (2) is busy with site 0: it takes the object from its next one.
    spec = replace(_federation(8, 3, 60 * MBIT, held_by=frozenset({2, 6})), sibling_streams=1)
    sources = {
        e.index: e.source.index if e.source else None
        for e in run_federation(spec, CAL, 8 * MiB).backbone.edges
    }
    assert sources == {0: 2, 1: 6, 3: None, 4: None, 5: None, 7: None, 2: None, 6: None}


def _epidemic(spec: FederationSpec, parent: int, streams: int = 1) -> FederationSpec:
    return replace(spec, sibling_streams=streams, parent_streams=parent, retry_after_s=1.0)


def test_the_epidemic_beats_the_pile_up_on_a_thin_parent() -> None:
    # What-if (not in the agent): one holder among eight sites, a 20 Mbit/s core egress. Today
    # the holder serves one site and six share the core; with a parent busy above one stream
    # the others re-ask their siblings every second and find the sites that finished.
    size = 16 * MiB
    today = replace(_federation(8, 4, 20 * MBIT, held_by=frozenset({0})), sibling_streams=1)
    what_if = _epidemic(today, parent=1)
    pile_up = run_federation(today, CAL, size)
    epidemic = run_federation(what_if, CAL, size)
    assert max(epidemic.times_s) < 0.8 * max(pile_up.times_s)
    level1 = epidemic.backbone
    assert sum(e.busy_answers for e in level1.edges) > 0
    siblings = [r.backbone.backbone_bytes()["from_siblings"] for r in (pile_up, epidemic)]
    assert siblings[1] > siblings[0]
    assert level1.core_streams == 0
    assert all(e.streams == 0 for e in level1.edges)
    # The bound counts the sites that finish as servers: lower than today's S·F/(E + B).
    assert epidemic.bound_s == epidemic_bound(what_if, size) < federation_bound(today, size)
    _check_bounds_and_sites(what_if, size, epidemic)
    assert level1.origin_bytes() == 0


@pytest.mark.parametrize("held", [frozenset(), frozenset({0, 4})])
@pytest.mark.parametrize(
    ("parent", "streams", "recheck"),
    [(1, 1, 0.0), (2, 2, 0.0), (3, 1, 0.0), (0, 1, 0.5), (0, 2, 3.0), (0, 0, 1.0)],
)
def test_sites_that_serve_once_finished_never_beat_the_bound(
    held: frozenset[int], parent: int, streams: int, recheck: float
) -> None:
    # The epidemic what-if (a busy parent) and the agent's re-asking sites both let finished
    # sites serve: neither beats the epidemic bound, and every byte crosses once.
    size = 12 * MiB + 3
    spec = replace(
        _epidemic(_federation(9, 4, 30 * MBIT, held_by=held), parent, streams),
        sibling_recheck_s=recheck,
    )
    result = run_federation(spec, CAL, size)
    assert result.backbone.origin_bytes() == (0 if held else size)
    bytes_ = result.backbone.backbone_bytes()
    assert bytes_["into_sites"] == len(spec.askers()) * size
    assert bytes_["from_parent"] + bytes_["from_siblings"] == bytes_["into_sites"]
    _check_bounds_and_sites(spec, size, result)


def test_a_parent_cap_never_reached_changes_nothing() -> None:
    spec = replace(_federation(6, 3, 60 * MBIT, held_by=frozenset({0})), sibling_streams=1)
    today = run_federation(spec, CAL, 8 * MiB)
    capped = run_federation(_epidemic(spec, parent=5), CAL, 8 * MiB)
    assert capped.times_s == today.times_s
    assert sum(e.busy_answers for e in capped.backbone.edges) == 0


def test_the_epidemic_bound_by_hand() -> None:
    # Three sites asking at once, links b, core egress b, nothing else limiting: the first
    # finishes at F/b at the earliest; then two links send, so the second at 1.5 F/b; then
    # three, so the third at (1.5 + 1/3) F/b, against 3 F/b if finished sites did not serve.
    b, size = 10 * MBIT, 6 * MiB
    spec = FederationSpec(
        pis=1, down=1e12, up=1e12, backbone=(b, b, b), core_uplink=1e12, core_egress=b,
        siblings=1, parent_streams=1,
    )  # fmt: skip
    assert epidemic_bound(spec, size) == pytest.approx((1.5 + 1 / 3) * size / b)
    assert federation_bound(replace(spec, parent_streams=0), size) == pytest.approx(3 * size / b)
    # Without siblings nobody serves: the bound is the core's S·F/E again.
    assert epidemic_bound(replace(spec, siblings=0), size) == pytest.approx(3 * size / b)


def test_every_kth_spreads_the_holders() -> None:
    assert every_kth(100, 0.1) == frozenset(range(0, 100, 10))
    assert every_kth(6, 0.0) == frozenset()
    assert every_kth(3, 0.01) == frozenset({0})


def test_same_seed_same_result() -> None:
    spec = _federation(6, 1, 50 * MBIT, exchange=True)
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
        assert run.uplink_bytes() == case.uplink_bytes == (0 if case.warm else case.size)


def test_validation_covers_the_issues_runs() -> None:
    # N=8 and N=16, cold and warm, with and without the Pi-class budget.
    names = [c.name for c in MEASURED]
    assert names == [
        f"N={n} {s}{budget}" for budget in ("", ", 10 %") for n in (8, 16) for s in ("cold", "warm")
    ]
    assert len({c.source for c in MEASURED}) == 1


def test_cli_small_run(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    code = sim.main(
        ["--sizes", "8MiB", "--pis", "6", "--sites", "4", "--core-egress", "50Mbit",
         "--siblings", "0,all", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "sim.json").read_text())
    assert [row["case"] for row in report["validation"]] == [c.name for c in MEASURED]
    rows = report["projection"]
    assert [row["kind"] for row in rows] == ["site"] + ["federation"] * 9
    # together x (0, all, all with relay depth 4), late x the same, the chunk-trading what-if,
    # the epidemic what-if (together, late; the parent busy above 10 streams), each labelled
    shape = [
        (r["sites_holding"], r["siblings_per_site"], r["chunk_exchange"], r.get("parent_streams"),
         r.get("relay_depth"))
        for r in rows[1:]
    ]  # fmt: skip
    assert shape == [
        (0, 0, False, None, None), (0, 3, False, None, None), (0, 3, False, None, 4),
        (1, 0, False, None, None), (1, 3, False, None, None), (1, 3, False, None, 4),
        (0, 3, True, None, None), (0, 3, False, 10, None), (1, 3, False, 10, None),
    ]  # fmt: skip
    for row in rows[-3:]:
        assert "WHAT-IF" in row["case"]
        assert "not in the agent" in row["case"]
    for row in rows:
        assert row["origin_bytes"] == (0 if row.get("sites_holding") else 8 * MiB)
        assert row["bound_ratio"] >= 1.0
    assert rows[2]["backbone_bytes"]["from_siblings"] == 0  # together: siblings hold nothing
    assert rows[3]["backbone_bytes"]["from_siblings"] > 0  # ... but relay what they fetch
    assert "relay depth 4 (sibling streams link / 12 Mbit/s)" in rows[3]["case"]
    assert rows[3]["relay_rate_mbit"] == pytest.approx(12)
    assert rows[5]["backbone_bytes"]["from_siblings"] > 0  # late: the holder serves
    # ... up to the agent's default federation.max_sibling_streams at once, then busy.
    default = FederationConfig().max_sibling_streams
    assert rows[5]["sibling_streams"] == default
    assert f"sibling streams {default}" in rows[5]["case"]
    assert "| N=8 cold |" in (out / "sim.md").read_text()


def test_a_site_on_a_thin_parent_moves_to_a_sibling_that_finished() -> None:
    # federation.sibling_recheck_s: one holder among eight sites, a 20 Mbit/s core egress, one
    # sibling stream per holder. Asking once, six sites share the core to the end; re-asking
    # every 2 s, they move to the holder once it is free and to the sites that finished, each
    # from the byte it reached: every byte still crosses once.
    size = 16 * MiB + 3
    today = replace(_federation(8, 4, 20 * MBIT, held_by=frozenset({0})), sibling_streams=1)
    rechecking = replace(today, sibling_recheck_s=2.0)
    once, again = run_federation(today, CAL, size), run_federation(rechecking, CAL, size)
    assert max(again.times_s) < 0.8 * max(once.times_s)
    level1 = again.backbone
    assert sum(e.switches for e in level1.edges) > 0
    assert sum(e.switches for e in once.backbone.edges) == 0
    bytes_ = level1.backbone_bytes()
    assert bytes_["into_sites"] == 7 * size
    assert bytes_["from_parent"] + bytes_["from_siblings"] == bytes_["into_sites"]
    assert bytes_["from_siblings"] > once.backbone.backbone_bytes()["from_siblings"]
    assert level1.origin_bytes() == 0
    assert level1.core_streams == 0
    assert all(e.streams == 0 for e in level1.edges)
    # Finished sites serve: the bound is the epidemic one, below S·F/(E + B).
    assert again.bound_s == epidemic_bound(rechecking, size) < first_holders_bound(today, size)
    _check_bounds_and_sites(rechecking, size, again)


def _depth(edge: object) -> int:
    """Relays between a site and the parent (a complete holder ends the chain), walked from
    the sim's source pointers; raises on a loop."""
    seen, depth, up = {id(edge)}, 1, getattr(edge, "source", None)
    while up is not None:
        assert id(up) not in seen, "a relay loop"
        seen.add(id(up))
        depth, up = depth + 1, up.source
    return depth


@pytest.mark.parametrize("relay", [2, 3, 4])
@pytest.mark.parametrize("held", [frozenset(), frozenset({0, 5})])
def test_relays_beat_the_pile_up_on_a_thin_parent_within_their_depth(
    relay: int, held: frozenset[int]
) -> None:
    # federation.relay_depth: ten sites ask at once behind a 20 Mbit/s core egress. Without
    # relays nine share the core to the end; with them a sibling still fetching serves the
    # next, each chunk once whole there, never deeper than the depth and never in a loop.
    size = 16 * MiB + 5
    base = replace(_federation(10, 5, 20 * MBIT, held_by=held), sibling_streams=1)
    spec = replace(base, relay_depth=relay, relay_rate=12 * MBIT)
    without = run_federation(base, CAL, size)
    relayed = run_federation(spec, CAL, size)
    assert max(relayed.times_s) < 0.75 * max(without.times_s)
    level1 = relayed.backbone
    assert level1.origin_bytes() == (0 if held else size)
    bytes_ = level1.backbone_bytes()
    assert bytes_["into_sites"] == len(spec.askers()) * size
    assert bytes_["from_parent"] + bytes_["from_siblings"] == bytes_["into_sites"]
    assert bytes_["from_siblings"] > without.backbone.backbone_bytes()["from_siblings"]
    assert all(_depth(level1.edges[i]) <= relay + (1 if held else 0) for i in spec.askers())
    assert all(e.streams == 0 for e in level1.edges)
    # Relays serve partial objects: the bound counts every site's link.
    assert relayed.bound_s == first_holders_bound(spec, size) <= federation_bound(base, size)
    _check_bounds_and_sites(spec, size, relayed)


def test_relay_depth_one_is_held_objects_only() -> None:
    # relay_depth 1 allows no relay between a site and its parent: the agent's rule without.
    base = replace(_federation(8, 4, 20 * MBIT), sibling_streams=1)
    one = run_federation(replace(base, relay_depth=1), CAL, 8 * MiB)
    assert one.times_s == run_federation(base, CAL, 8 * MiB).times_s
    assert one.backbone.backbone_bytes()["from_siblings"] == 0


def test_a_site_slower_than_the_relay_rate_does_not_relay() -> None:
    # federation.serve_relays false where the link is under the rate a relayed stream is given:
    # a faster site would otherwise take the object at that slow site's pace. Ten sites behind
    # a 20 Mbit/s core, a 30 Mbit/s relay rate: only sites with 30 Mbit/s or more relay.
    size = 16 * MiB + 5
    spec = replace(
        _federation(10, 5, 20 * MBIT), sibling_streams=1, relay_depth=4, relay_rate=30 * MBIT
    )
    result = run_federation(spec, CAL, size)
    level1 = result.backbone
    slow = {e.index for e in level1.edges if spec.backbone[e.index] < 30 * MBIT}
    assert slow  # the draw has both kinds
    assert len(slow) < spec.sites
    # No site takes the object from a slow site (none holds it complete before the others ask).
    sources = {e.source.index for e in level1.edges if e.source is not None}
    assert sources
    assert not sources & slow
    assert level1.backbone_bytes()["into_sites"] == len(spec.askers()) * size
    _check_bounds_and_sites(spec, size, result)
