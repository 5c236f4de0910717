"""The agent refuses a site key file every user can read, or one too short to be a secret,
with a clear error, and starts (with a warning) on a group-readable one."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import trio

from frumitcache.agent._keys import key_material
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address


def test_key_material_counts_what_hex_and_base64_encode() -> None:
    assert key_material(secrets.token_hex(32).encode()) == 32
    assert key_material(b"bGFiMSBzaXRlIGtleQ==") == 13  # base64 of "lab1 site key"
    assert key_material(b"short passphrase") == 16


async def start(tmp_path: Path, key: str, mode: int) -> AgentProcess:
    path = tmp_path / "site.key"
    await trio.Path(path).write_text(key + "\n")
    await trio.Path(path).chmod(mode)
    return AgentProcess(
        tmp_path / "node",
        address=loopback_address(),
        # A static peer makes it a site member, which is when the key is loaded.
        settings={"site": {"key_file": str(path), "peers": [loopback_address()]}},
    )


@pytest.mark.parametrize(
    ("key", "mode", "error"),
    [
        (secrets.token_hex(32), 0o644, "readable by every user"),
        ("0123456789abcdef", 0o600, "holds 8 bytes of key"),  # hex: 8 bytes of material
    ],
)
async def test_the_agent_refuses_a_loose_or_weak_key(
    tmp_path: Path, key: str, mode: int, error: str
) -> None:
    agent = await start(tmp_path, key, mode)
    try:
        with trio.fail_after(30), pytest.raises(RuntimeError, match="exited") as info:
            await agent.start()
    finally:
        agent.kill()  # should it start after all, it must not outlive the test
    assert error in str(info.value)


async def test_a_group_readable_key_starts_with_a_warning(tmp_path: Path) -> None:
    agent = await start(tmp_path, secrets.token_hex(32), 0o640)
    with trio.fail_after(30):
        await agent.start()
    try:
        assert "key.group-readable" in agent.log()
    finally:
        agent.kill()
