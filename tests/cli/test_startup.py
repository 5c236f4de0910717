"""A command loads only what it runs: ``pull`` and ``status`` start without the registry door,
the uplink client (httpx), the agent's modules or trio (they talk to the agent blocking) —
interpreter start-up is most of what a ``pull`` costs a Pi (0.46 → 0.18 → 0.10 CPU-s here for
``pull --help``; bench/README, "What one pull costs the client")."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import frumitcache
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.origin import OriginServer

PROBE = """
import sys
from frumitcache.cli._app import main
try:
    main([{args}])
except SystemExit:
    pass
heavy = sorted(m for m in ("httpx", "frumitcache.oci", "frumitcache.origin", "frumitcache.agent",
                           "libtorrent", "rich", "trio") if m in sys.modules)
print("loaded:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["pull", "--help"], ["status", "--help"]])
def test_a_client_command_does_not_load_the_agent_or_httpx(command: list[str]) -> None:
    args = ", ".join(repr(a) for a in command)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = [line for line in done.stderr.splitlines() if line.startswith("loaded:")]
    assert loaded == ["loaded:"], f"{command}: {loaded}"


async def test_a_real_pull_does_not_load_the_agent_or_httpx(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    """The whole pull, through a real agent, finding its socket in the agent's own config file
    (whose allow-lists are the agent's to check: parsing them would load the uplink client)."""
    data = b"artifact " * 1000
    origin.add("/a.bin", data)
    out = tmp_path / "a.bin"
    args = ["pull", origin.url("/a.bin"), "-o", str(out), "--config", str(agent.config_path)]
    assert "[origin]" in agent.config_path.read_text()  # allow-lists are there to skip
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-c", PROBE.format(args=", ".join(repr(a) for a in args))],
            capture_stderr=True,
            check=False,
        )
    stderr = done.stderr.decode()
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest(), stderr
    loaded = [line for line in stderr.splitlines() if line.startswith("loaded:")]
    assert loaded == ["loaded:"], stderr


async def test_a_real_status_does_not_load_trio(agent: AgentProcess) -> None:
    args = ["status", "--json", "--socket", str(agent.socket)]
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-c", PROBE.format(args=", ".join(repr(a) for a in args))],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stderr = done.stderr.decode()
    assert f'"socket": "{agent.socket}"' in done.stdout.decode(), stderr
    loaded = [line for line in stderr.splitlines() if line.startswith("loaded:")]
    assert loaded == ["loaded:"], stderr


def test_the_package_loads_the_library_on_first_use() -> None:
    """``import frumitcache`` (as ``python -m frumitcache`` does) costs no trio; the library's
    names still resolve, each to the object its module defines."""
    probe = (
        "import sys, frumitcache; assert 'trio' not in sys.modules, 'eager'; "
        "from frumitcache import Client, AgentClient, FrumitcacheError; "
        "from frumitcache.sync import Client as C; from frumitcache.client._agent import "
        "AgentClient as A; assert (Client, AgentClient) == (C, A); "
        "assert set(frumitcache.__all__) <= set(dir(frumitcache)); print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout == "ok\n", done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        frumitcache.nonesuch  # noqa: B018


def test_the_whole_help_still_lists_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "frumitcache", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name in (
        "agent",
        "pull",
        "prefetch",
        "status",
        "site",
        "locate",
        "estimate",
        "cache",
        "config",
        "doctor",
        "oci",
    ):
        assert f"    {name} " in done.stdout


def test_an_unknown_command_lists_the_choices() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "frumitcache", "bogus"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid choice: 'bogus'" in done.stderr
    assert "'oci'" in done.stderr
