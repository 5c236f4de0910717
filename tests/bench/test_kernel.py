"""bench._kernel: the one-kernel LAN's limits are raised for a run and put back after."""

from __future__ import annotations

from pathlib import Path

from bench._kernel import raise_limits, restore, wanted


def _proc(root: Path) -> dict[Path, int]:
    defaults = {"core/netdev_max_backlog": 1000}
    for family in ("ipv4", "ipv6"):
        for n, value in ((1, 128), (2, 512), (3, 1024)):
            defaults[f"{family}/neigh/default/gc_thresh{n}"] = value
    out = {}
    for name, value in defaults.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
        out[path] = value
    return out


def test_a_100_pi_lan_gets_room_for_every_neighbour_and_the_host_is_restored(
    tmp_path: Path,
) -> None:
    before = _proc(tmp_path)
    old = raise_limits(100, tmp_path)
    assert old == before  # every default is below what 100 Pis need
    now = {p: int(p.read_text()) for p in before}
    assert now[tmp_path / "core/netdev_max_backlog"] == 30_000
    for family in ("ipv4", "ipv6"):
        t1, t2, t3 = (now[tmp_path / f"{family}/neigh/default/gc_thresh{n}"] for n in (1, 2, 3))
        assert 100 * 99 * 2 <= t1 <= t2 <= t3  # ULA and link-local peers, in order
    restore(old)
    assert {p: int(p.read_text()) for p in before} == before


def test_a_small_lan_or_a_host_already_raised_is_left_alone(tmp_path: Path) -> None:
    before = _proc(tmp_path)
    assert raise_limits(3, tmp_path) == {}  # fits the defaults
    for path, value in wanted(100, tmp_path).items():
        path.write_text(f"{value * 2}\n")
    assert raise_limits(100, tmp_path) == {}
    assert all(int(p.read_text()) > v for p, v in before.items())
