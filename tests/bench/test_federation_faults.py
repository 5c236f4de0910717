"""The shaped federation benchmark's fault flags, parsed without root or namespaces (the runs
themselves are root-only and slow: their figures are in bench/README.md, never asserted)."""

from __future__ import annotations

import pytest

from bench._fedfaults import (
    parse_fraction,
    parse_section_setting,
    parse_setting,
    parse_slow_link,
)
from bench._netfed import ShapedFederation
from bench.federation import main


def test_a_kill_fraction_lies_strictly_between_0_and_1() -> None:
    assert parse_fraction("0.5") == 0.5
    for bad in ("0", "1", "1.5", "-0.1"):
        with pytest.raises(ValueError, match="between 0 and 1"):
            parse_fraction(bad)
    with pytest.raises(ValueError, match="could not convert"):
        parse_fraction("half")


def test_a_slow_link_names_an_edge_and_a_rate() -> None:
    assert parse_slow_link("2=1Mbit") == (2, 125_000)
    assert parse_slow_link(" 3 = 256KiB ") == (3, 256 * 1024)
    for bad in ("1Mbit", "0=1Mbit", "core=1Mbit", "=1Mbit", "2="):
        with pytest.raises(ValueError, match=r"EDGE=RATE|a number of bytes/s"):
            parse_slow_link(bad)


def test_a_setting_is_a_toml_value_or_text() -> None:
    assert parse_setting("member_forget_s=6") == ("member_forget_s", 6)
    assert parse_setting("slow_window_s = 2.5") == ("slow_window_s", 2.5)
    assert parse_setting("min_rate=2Mbit") == ("min_rate", "2Mbit")  # the agent reads quantities
    assert parse_setting("parents=[]") == ("parents", [])
    for bad in ("min_rate", "=3", "min rate=3"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_setting(bad)


def test_a_section_setting_names_its_section() -> None:
    assert parse_section_setting("site.member_forget_s=6") == ("site", "member_forget_s", 6)
    assert parse_section_setting("log.level=debug") == ("log", "level", "debug")
    for bad in ("member_forget_s=6", "site.=6", ".x=1", "site.member_forget_s"):
        with pytest.raises(ValueError, match=r"SECTION\.KEY=VALUE"):
            parse_section_setting(bad)


def test_the_cli_refuses_bad_fault_flags_before_it_needs_root(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv, said in (
        (["--slow-link", "4=1Mbit", "--edges", "3"], "edge 4 of 3"),
        (["--slow-link", "1"], "EDGE=RATE"),
        (["--kill-parent-seeder-at", "2"], "between 0 and 1"),
        (["--edge-federation", "min_rate"], "KEY=VALUE"),
        (["--set", "member_forget_s=6"], "SECTION.KEY=VALUE"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert said in capsys.readouterr().err


def test_a_slow_link_must_be_an_edges_and_below_its_uplink() -> None:
    # Checked before any namespace is made (so no root needed here).
    for slow in ({0: 125_000}, {3: 125_000}, {1: 2_500_000}, {1: 0}):
        fed = ShapedFederation([2, 3, 3], uplink=2_500_000, slow_links=slow)
        with pytest.raises(ValueError, match="slow link"):
            fed.build()
        assert fed.created == []
