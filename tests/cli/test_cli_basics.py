"""The command line without an agent: version, help everywhere, usage and no-agent errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from frumitcache._version import __version__
from frumitcache.cli import _exit

COMMANDS = ["agent", "pull", "status", "config", "doctor"]


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frumitcache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"frumitcache {__version__}"


def test_help_lists_commands_and_exit_codes() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "exit codes" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: frumitcache {command}" in result.stdout


def test_no_command_is_a_usage_error() -> None:
    assert run_cli().returncode == _exit.USAGE


def test_pull_without_agent_says_how_to_start_one(tmp_path: Path) -> None:
    socket = tmp_path / "none.sock"
    result = run_cli(
        "pull", "http://127.0.0.2/x.bin", "-o", "x.bin", "--socket", str(socket), cwd=tmp_path
    )
    assert result.returncode == _exit.AGENT_UNAVAILABLE
    assert "no frumitcache agent is listening" in result.stderr
    assert "frumitcache agent" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pull", "http://127.0.0.2/x", "--sha256", "abc"], "64 hex digits"),
        (["pull", "ftp://127.0.0.2/x"], "http:// or https://"),
        (["pull", "http://127.0.0.2/"], "give one with -o"),
    ],
)
def test_pull_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(*args, "--socket", str(tmp_path / "s"), cwd=tmp_path)
    assert result.returncode == _exit.USAGE
    assert message in result.stderr


def test_status_without_agent(tmp_path: Path) -> None:
    result = run_cli("status", "--socket", str(tmp_path / "none.sock"))
    assert result.returncode == _exit.AGENT_UNAVAILABLE


def test_config_example_and_check(tmp_path: Path) -> None:
    example = run_cli("config", "example")
    assert example.returncode == 0
    path = tmp_path / "c.toml"
    path.write_text(example.stdout)
    assert run_cli("config", "check", "--config", str(path)).returncode == 0
    path.write_text("[store]\nmax_bytes = -1\n")
    bad = run_cli("config", "check", "--config", str(path))
    assert bad.returncode == _exit.CONFIG
    assert "store.max_bytes" in bad.stderr
