"""``[federation]``: off by default, strict about members and keys, and the key never shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from frumitcache.config import Config, config_from_mapping, split_member
from frumitcache.errors import ConfigError

KEY = "ab" * 32


def test_off_by_default() -> None:
    fed = Config().federation
    assert not fed.enabled
    assert fed.parents == []
    assert fed.siblings == []
    assert fed.max_rate == 0


def test_members_take_ipv4_ipv6_and_default_port() -> None:
    assert split_member("10.1.2.3") == ("10.1.2.3", 3147)
    assert split_member("10.1.2.3:4000") == ("10.1.2.3", 4000)
    assert split_member("fd00:42::7") == ("fd00:42::7", 3147)
    assert split_member("[fd00:42::7]:4000") == ("fd00:42::7", 4000)
    assert split_member("core-pi-1.example:3147") == ("core-pi-1.example", 3147)


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"key": "zz" * 16}, "federation.key"),
        ({"key": "ab" * 4}, "federation.key"),
        ({"key": KEY, "key_file": "/k"}, "federation.key"),
        ({"parents": ["10.0.0.1"]}, "federation.parents"),  # links without a key
        ({"key": KEY, "parents": ["[fd00::1"]}, "federation.parents"),
        ({"key": KEY, "siblings": ["10.0.0.1:99999"]}, "federation.siblings"),
        ({"key": KEY, "port": 70000}, "federation.port"),
        ({"key": KEY, "max_rate": -1}, "federation.max_rate"),
    ],
)
def test_bad_values_name_the_key(section: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        config_from_mapping({"federation": section})


def test_rates_take_link_units() -> None:
    cfg = config_from_mapping({"federation": {"key": KEY, "max_rate": "8Mbit"}})
    assert cfg.federation.max_rate == 1_000_000


def test_the_key_is_never_shown(tmp_path: Path) -> None:
    assert KEY not in repr(config_from_mapping({"federation": {"key": KEY}}))
    path = tmp_path / "f.toml"
    path.write_text(f'[federation]\nkey = "{KEY}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "frumitcache", "config", "show", "--config", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert KEY not in out
    assert json.loads(out)["federation"]["key"] == "<set>"
