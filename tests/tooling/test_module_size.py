"""No module of the package is over 500 lines (STYLE.md: small modules whose names say what
they hold; when one grows a second job, split it). When this fails: split the module by job."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "frumitcache"
LIMIT = 500


def test_no_module_is_over_500_lines() -> None:
    sizes = {p: len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    assert len(sizes) > 100  # the package was found
    over = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > LIMIT}
    assert over == {}, over
