"""The README's front-door examples, run as written against a real agent and a real origin.

Only the origin's address (deb.debian.org is out of reach of tests), the ``HEX`` placeholder
and the apt archive directory are substituted; the agent is found the way a user's is, through
``$FRUMITCACHE_CONFIG``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.origin import OriginServer

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEBIAN = "http://deb.debian.org/debian"


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


async def run(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            args, env=env, cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )


def user_env(agent: AgentProcess, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FRUMITCACHE_CONFIG": str(agent.config_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


async def test_library_examples_run(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    origin.add("/README", data)
    examples = blocks(section("Library"), "python")
    assert len(examples) == 2
    env = user_env(agent, tmp_path)
    for code in examples:
        result = await run(
            [sys.executable, "-c", code.replace(DEBIAN, origin.url(""))], env, tmp_path
        )
        assert result.returncode == 0, (code, result.stderr.decode(), agent.log())
    assert (tmp_path / "cache" / "frumitcache" / "downloads" / "README").read_bytes() == data
    out = result.stdout.decode()
    assert "verified bytes" in out
    assert origin.stats.bytes_sent["/README"] == len(data)  # fetched once, then the store


async def test_pull_and_cli_examples_run(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    origin.add("/README", data)
    env = user_env(agent, tmp_path)
    lines = [
        line
        for block in blocks(section("Pull an artifact"), "sh")
        for line in block.splitlines()
        if line.startswith("frumitcache ")
    ]
    assert len(lines) >= 6
    for line in lines:
        line = line.replace(DEBIAN, origin.url("")).replace("HEX", hashlib.sha256(data).hexdigest())
        args = shlex.split(line)
        result = await run([sys.executable, "-m", *args], env, tmp_path)
        assert result.returncode == 0, (line, result.stderr.decode())
    assert (tmp_path / "README").read_bytes() == data


async def test_apt_examples(agent: AgentProcess, tmp_path: Path) -> None:
    text = section("apt proxy")
    shipped = (ROOT / "deploy" / "apt" / "01frumitcache").read_text()
    proxy_lines = re.findall(r"Acquire::http::Proxy \"[^\"]+\";", text)
    assert proxy_lines
    assert all(line in shipped.splitlines() for line in proxy_lines)
    archives = tmp_path / "archives"
    archives.mkdir()
    (archives / "hello_2.10-3_arm64.deb").write_bytes(os.urandom(50_000))
    [line] = [
        line
        for block in blocks(text, "sh")
        for line in block.splitlines()
        if line.startswith("frumitcache ")
    ]
    args = shlex.split(line.replace("/var/cache/apt/archives", str(archives)))
    result = await run([sys.executable, "-m", *args], user_env(agent, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "1 imported" in result.stdout.decode()
