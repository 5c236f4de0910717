"""The config object: defaults, strict loading, overrides and the generated example."""

from __future__ import annotations

from pathlib import Path

import pytest

import frumitcache.config._paths as paths_module
from frumitcache.config import (
    Config,
    GiB,
    MiB,
    config_from_mapping,
    describe,
    example_toml,
    load_config,
    parse_quantity,
    with_overrides,
)
from frumitcache.errors import ConfigError


def test_defaults_are_a_one_node_site_on_loopback() -> None:
    cfg = load_config(None)
    assert cfg.node.address == "127.0.0.1"
    assert cfg.apt.listen == "127.0.0.1"
    assert cfg.apt.port == 3142
    assert cfg.store.chunk_size == 4 * MiB
    assert cfg.site.peers == []


def test_paths_default_per_user_or_system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(paths_module, "_is_root", lambda: False)
    cfg = Config()
    assert cfg.store_path == tmp_path / "cache" / "frumitcache"
    assert cfg.socket_path == tmp_path / "run" / "frumitcache" / "agent.sock"
    monkeypatch.setattr(paths_module, "_is_root", lambda: True)
    assert cfg.store_path == Path("/var/cache/frumitcache")
    assert cfg.socket_path == Path("/run/frumitcache/agent.sock")
    explicit = with_overrides(cfg, {"store.path": str(tmp_path / "s")})
    assert explicit.store_path == tmp_path / "s"


def test_a_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[store]\nmax_bytes = "2GiB"\n[site]\npeers = ["127.0.1.2"]\n')
    cfg = load_config(path)
    assert cfg.store.max_bytes == 2 * GiB
    assert cfg.site.peers == ["127.0.1.2"]


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"nope": {}}, "[nope]"),
        ({"store": {"max_byte": 1}}, "store.max_byte"),
        ({"store": {"max_bytes": "lots"}}, "store.max_bytes"),
        ({"store": {"max_bytes": -1}}, "store.max_bytes"),
        ({"store": {"chunk_size": 1000}}, "store.chunk_size"),
        ({"apt": {"port": 70000}}, "apt.port"),
        ({"apt": {"port": True}}, "apt.port"),
        ({"site": {"peers": "a,b"}}, "site.peers"),
        ({"site": {"fallback": "sometimes"}}, "site.fallback"),
        ({"log": {"level": 3}}, "log.level"),
        ({"store": 5}, "[store]"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        config_from_mapping(data)


def test_unreadable_and_invalid_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("4MiB", "bytes", 4 * MiB),
        ("4 mib", "bytes", 4 * MiB),
        ("10M", "bytes", 10_000_000),
        ("20Mbit", "bytes/s", 2_500_000),
        ("1.5GiB", "bytes", int(1.5 * GiB)),
        ("123", "bytes", 123),
    ],
)
def test_quantities(text: str, unit: str, value: int) -> None:
    assert parse_quantity(text, unit) == value


def test_overrides_are_typed_and_checked() -> None:
    cfg = with_overrides(
        Config(),
        {
            "store.max_bytes": "1GiB",
            "site.peers": "a, b",
            "apt.enabled": "false",
            "node.priority": "7",
        },
    )
    assert cfg.store.max_bytes == GiB
    assert cfg.site.peers == ["a", "b"]
    assert cfg.apt.enabled is False
    assert cfg.node.priority == 7
    with pytest.raises(ConfigError, match=r"apt\.enabled"):
        with_overrides(Config(), {"apt.enabled": "maybe"})
    with pytest.raises(ConfigError, match=r"store\.nope"):
        with_overrides(Config(), {"store.nope": "1"})
    with pytest.raises(ConfigError, match=r"section\.key"):
        with_overrides(Config(), {"max_bytes": "1"})


def test_every_field_is_documented() -> None:
    for section, key, _default, _unit, doc in describe():
        assert doc.strip(), f"{section}.{key} has no documentation"


def test_example_is_complete_and_loads_to_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(example_toml())
    assert load_config(path) == Config()
    text = example_toml()
    for section, key, *_ in describe():
        assert f"\n{key} = " in text, f"{section}.{key} missing from the example"


def test_the_readme_site_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "site.toml"
    path.write_text(block)
    cfg = load_config(path)
    assert cfg.node.address == "10.0.0.11"
    assert cfg.site.discovery is True
    assert cfg.site.peers == ["10.0.0.12", "10.0.0.13", "10.0.0.14"]
    assert cfg.origin.max_rate == 1_000_000
