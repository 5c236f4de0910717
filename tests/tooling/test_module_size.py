"""No module of the package or of the benchmarks is over 500 lines (STYLE.md: small modules
whose names say what they hold; when one grows a second job, split it). When this fails: split
the module by job."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "frumitcache"
BENCH = ROOT.parent / "bench"
LIMIT = 500


def test_no_module_is_over_500_lines() -> None:
    files = [*ROOT.rglob("*.py"), *BENCH.rglob("*.py")]
    sizes = {p: len(p.read_text().splitlines()) for p in files}
    assert len(sizes) > 130  # the package and the benchmarks were found
    over = {str(p.relative_to(ROOT.parent)): n for p, n in sizes.items() if n > LIMIT}
    assert over == {}, over
