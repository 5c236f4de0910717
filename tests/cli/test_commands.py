"""Every read and cache command of the real CLI against a real agent: text, JSON shapes and
exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.cli import _exit
from frumitcache.cli._app import build_parser
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.origin import OriginServer

MiB = 1024 * 1024


async def cli(
    agent: AgentProcess | Path, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    socket = agent.socket if isinstance(agent, AgentProcess) else agent
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "frumitcache", *args, "--socket", str(socket)],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def cli_json(agent: AgentProcess, *args: str) -> Any:
    result = await cli(agent, *args, "--json")
    assert result.returncode == 0, (args, result.stderr.decode())
    return json.loads(result.stdout)


async def test_read_commands_and_json_shapes(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(2 * MiB + 3)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/pool/main/h/hello_2.10_arm64.deb", data)
    url = origin.url("/pool/main/h/hello_2.10_arm64.deb")

    est = await cli_json(agent, "estimate", url)
    assert set(est) == {"items", "uplink_bytes", "in_site_bytes", "unknown"}
    assert est["items"] == [
        {
            "url": url,
            "size": len(data),
            "in_site": 0,
            "uplink": len(data),
            "source": "origin-head",
            "error": None,
        }
    ]

    started = await cli_json(agent, "prefetch", url, "--sha256", digest, "--wait")
    node = next(iter(started["started"][url]))
    assert started["started"] == {url: {node: "fetching"}}
    assert started["progress"] == [
        {
            "url": url,
            "node": node,
            "bytes": len(data),
            "size": len(data),
            "complete": True,
            "started": "fetching",
        }
    ]

    where = await cli_json(agent, "locate", url)
    assert where == {
        "url": url,
        "digest": digest,
        "size": len(data),
        "chunks": 1,
        "complete": True,
        "fetching": False,
        "known": True,
        "full": [node],
        "partial": [],
        "holders": [{"node": node, "chunks": 1, "bytes": len(data), "complete": True}],
    }
    assert (await cli_json(agent, "locate", digest))["url"] == url

    site = await cli_json(agent, "site")
    assert set(site) == {"node", "site", "solo", "seeder", "term", "members", "uplink", "cache"}
    assert site["seeder"] == node
    assert [m["node"] for m in site["members"]] == [node]
    assert set(site["members"][0]) == {
        "node",
        "address",
        "model",
        "ram_bytes",
        "free_disk_bytes",
        "link_mbit",
        "wired",
        "load",
        "priority",
        "seeder",
    }
    assert set(site["uplink"]) == {
        "bytes_fetched",
        "bytes_served",
        "bytes_spared",
        "rate",
        "budget",
        "fetches",
        "active_fetches",
        "bytes_from_origin",
        "bytes_from_federation",
        "federation_by_link",
        "federation_rejected",
        "served_by_source",
    }
    # The body once and the head of the estimate's HEAD answer.
    assert len(data) < site["uplink"]["bytes_fetched"] < len(data) + 2000
    assert site["cache"]["objects"] == 1

    pinned = await cli_json(agent, "cache", "pin", url)
    assert pinned == {"digest": digest, "pinned": True, "present": True}
    listing = await cli_json(agent, "cache", "ls")
    assert [(o["digest"], o["pinned"], o["keys"]) for o in listing["objects"]] == [
        (digest, True, [url])
    ]
    assert listing["partial"] == []
    assert (await cli_json(agent, "cache", "unpin", digest))["pinned"] is False
    verify = await cli_json(agent, "cache", "verify")
    assert verify["damage"] == 0
    assert verify["chunks_checked"] == 1
    assert set(await cli_json(agent, "cache", "gc", "--free", "1MiB")) == {
        "freed",
        "bytes_used",
        "max_bytes",
    }
    status = await cli_json(agent, "status")
    assert status["node"] == node

    # Plain text when piped: one line per holder / row, tab-separated tables.
    text = await cli(agent, "locate", url)
    assert text.returncode == 0
    assert f"{node}\tfull\t1/1\t{len(data)}" in text.stdout.decode()
    text = await cli(agent, "estimate", "-", stdin=f"{url}\n".encode())
    assert text.returncode == 0
    assert "total: 0 B over the uplink" in text.stdout.decode()
    text = await cli(agent, "cache", "ls")
    assert digest in text.stdout.decode()
    assert url in text.stdout.decode()
    text = await cli(agent, "site")
    assert f"seeder: {node} (term" in text.stdout.decode()


async def test_cache_import(agent: AgentProcess, tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    bodies = [os.urandom(70_000), os.urandom(130_000)]
    for i, body in enumerate(bodies):
        (archives / f"p{i}_1_all.deb").write_bytes(body)
    (archives / "lock").write_bytes(b"")
    report = await cli_json(agent, "cache", "import", str(archives))
    assert report == {
        "files": 2,
        "imported": 2,
        "present": 0,
        "failed": 0,
        "bytes_imported": sum(map(len, bodies)),
        "errors": [],
    }
    again = await cli(agent, "cache", "import", str(archives))
    assert again.returncode == 0
    assert again.stdout.decode() == "2 .deb files: 0 imported (0 B), 2 already stored, 0 failed\n"
    digest = hashlib.sha256(bodies[1]).hexdigest()
    assert (await cli_json(agent, "locate", digest))["size"] == len(bodies[1])


async def test_exit_codes(agent: AgentProcess, origin: OriginServer, tmp_path: Path) -> None:
    unknown = "ab" * 32
    cases = [
        (("locate", unknown), _exit.NOT_FOUND, "no member of the site holds"),
        (("cache", "unpin", unknown), _exit.NOT_FOUND, "neither stored nor pinned"),
        (("cache", "pin", origin.url("/never")), _exit.NOT_FOUND, "not in this node's store"),
        (("locate", "ftp://example.org/x"), _exit.USAGE, "not an http"),
        (("estimate", "not-a-url"), _exit.USAGE, "not an http"),
        (("prefetch", "gopher://x/y"), _exit.USAGE, "not an http"),
        (("prefetch", origin.url("/a"), "--node", "nobody"), _exit.SITE, "nobody"),
        (("cache", "import", str(tmp_path / "nope")), _exit.NOT_FOUND, "not a directory"),
        (("cache", "gc", "--free", "lots"), _exit.USAGE, "--free"),
    ]
    for args, code, message in cases:
        result = await cli(agent, *args)
        assert result.returncode == code, (args, result.stderr.decode())
        assert message in result.stderr.decode(), (args, result.stderr.decode())
    nobody = tmp_path / "nobody.sock"
    for args in (
        ("site",),
        ("locate", unknown),
        ("estimate", origin.url("/a")),
        ("cache", "ls"),
        ("prefetch", origin.url("/a")),
    ):
        result = await cli(nobody, *args)
        assert result.returncode == _exit.AGENT_UNAVAILABLE, (args, result.stderr.decode())
        assert "frumitcache agent" in result.stderr.decode()


NEW_COMMANDS = [
    ["prefetch"],
    ["site"],
    ["locate"],
    ["estimate"],
    ["cache"],
    *[["cache", action] for action in ("ls", "verify", "gc", "pin", "unpin", "import")],
]


@pytest.mark.parametrize("command", NEW_COMMANDS, ids=" ".join)
def test_help_of_every_new_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: frumitcache {' '.join(command)}" in out
    assert "exit codes:" in out
    if command != ["cache"]:
        assert "--json" in out
