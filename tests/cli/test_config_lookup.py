"""Which config file the real ``frumitcache`` command uses when none is named, in the README's
order: ``--config``, ``$FRUMITCACHE_CONFIG``, ``~/.config/frumitcache/frumitcache.toml``,
``/etc/frumitcache/frumitcache.toml``, the built-in defaults.

Each candidate names a different node, and ``frumitcache config show`` (a child process with
its own environment) says which one won. ``/etc`` is never written: the system path is moved
into the test's directory with ``$FRUMITCACHE_SYSTEM_CONFIG``, which exists for that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from frumitcache.cli import _exit
from frumitcache.config import _load


def _write(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[node]\nname = "{name}"\n')
    return path


class Places:
    """A HOME, a system config path and an env-named file, all under one temp dir."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.home.mkdir()
        self.user = self.home / ".config" / "frumitcache" / "frumitcache.toml"
        self.system = root / "etc" / "frumitcache" / "frumitcache.toml"
        self.named = root / "named.toml"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FRUMITCACHE_", "XDG_"))}
        env.update(HOME=str(self.home), FRUMITCACHE_SYSTEM_CONFIG=str(self.system), **extra)
        return env


def shown_node(places: Places, *args: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "frumitcache", "config", "show", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=places.env(**env),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["node"]["name"])


def test_each_place_is_found_in_the_readme_order(tmp_path: Path) -> None:
    places = Places(tmp_path)
    assert shown_node(places) == ""  # nothing anywhere: the built-in defaults

    _write(places.system, "from-etc")
    assert shown_node(places) == "from-etc"

    _write(places.user, "from-home")
    assert shown_node(places) == "from-home"  # ~/.config before /etc

    _write(places.named, "from-env")
    assert shown_node(places, FRUMITCACHE_CONFIG=str(places.named)) == "from-env"

    flag = _write(tmp_path / "flag.toml", "from-flag")
    assert (
        shown_node(places, "--config", str(flag), FRUMITCACHE_CONFIG=str(places.named))
        == "from-flag"
    )

    # XDG_CONFIG_HOME moves the per-user place (the XDG rule behind ``~/.config``).
    _write(tmp_path / "xdg" / "frumitcache" / "frumitcache.toml", "from-xdg")
    assert shown_node(places, XDG_CONFIG_HOME=str(tmp_path / "xdg")) == "from-xdg"

    # Back down the order: without the per-user file /etc wins again.
    places.user.unlink()
    assert shown_node(places) == "from-etc"


def test_a_directory_in_a_config_place_is_skipped(tmp_path: Path) -> None:
    places = Places(tmp_path)
    places.user.mkdir(parents=True)  # not a file: ignored, not an error
    _write(places.system, "from-etc")
    assert shown_node(places) == "from-etc"


def test_a_named_file_that_is_missing_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    places = Places(tmp_path)
    _write(places.user, "from-home")
    result = subprocess.run(
        [sys.executable, "-m", "frumitcache", "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        env=places.env(FRUMITCACHE_CONFIG=str(tmp_path / "missing.toml")),
        check=False,
    )
    assert result.returncode == _exit.CONFIG
    assert "missing.toml" in result.stderr


def test_the_system_path_is_etc_by_default() -> None:
    """Without the test hook the system place is the README's /etc path."""
    assert Path("/etc/frumitcache/frumitcache.toml") == _load._SYSTEM_CONFIG
