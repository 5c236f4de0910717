"""The federation endpoint of a real agent process, under hostile and wrongly keyed input: every
refusal is a clear status (403 without the key), the key never shows in the log, and the agent
serves a keyed request afterwards."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.federation import object_target
from frumitcache.swarm import sign_request
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from tests.federation.sites import fed_site, new_key

pytestmark = pytest.mark.slow


def signed(key: str, target: str) -> dict[str, str]:
    auth = sign_request(key.encode(), b"GET", target.encode(), time.time())
    return {"x-frumit-auth": auth.decode()}


async def raw(address: str, data: bytes) -> bytes:
    """What the endpoint answers to ``data`` before it ends the connection (a reset ends it)."""
    out = b""
    stream = await trio.open_tcp_stream(address, 3147)
    async with stream:
        with trio.move_on_after(10), contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(data)
            while chunk := await stream.receive_some(65536):
                out += chunk
    return out


async def test_refusals_are_clear_and_the_agent_serves_on(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    origin = OriginServer()
    await nursery.start(origin.serve, loopback_address())
    data = os.urandom(300_000)
    origin.add("/x.bin", data)
    key = new_key()
    site = fed_site(tmp_path / "core", 1, key)
    try:
        await site.start()
        address = site.addresses[0]
        base = f"http://{address}:3147"
        target = object_target(origin.url("/x.bin"))
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=20) as client:
            # No key, a wrong key, a replayed signature: 403, with a reason.
            bare = await client.get(target)
            assert bare.status_code == 403
            assert "federation key required" in bare.text
            wrong = await client.get(target, headers=signed(new_key(), target))
            assert wrong.status_code == 403
            once = signed(key, "/federation/v1/object?url=http%3A%2F%2F127.0.0.1%2Fnothing")
            other = await client.get(target, headers=once)  # signed for another target
            assert other.status_code == 403
            # Signed but not a federation request, or an only-if-cached miss.
            assert (
                await client.get("/chunk/x", headers=signed(key, "/chunk/x"))
            ).status_code == 400
            miss = await client.get(
                target, headers={**signed(key, target), "cache-control": "only-if-cached"}
            )
            assert miss.status_code == 504
            # Asked to join a fetch that does not run: still a miss, nothing is fetched.
            join = {**signed(key, target), "cache-control": "only-if-cached"}
            join["x-frumit-in-flight"] = "join"
            assert (await client.get(target, headers=join)).status_code == 504
            # Asked to relay (relay_depth is 0 here, and nothing runs): a miss as well.
            relay = {**signed(key, target), "cache-control": "only-if-cached"}
            relay.update({"x-frumit-in-flight": "relay", "x-frumit-site": "edge"})
            assert (await client.get(target, headers=relay)).status_code == 504
            # A signed request for the object: the site fetches it and streams it back.
            good = await client.get(target, headers=signed(key, target))
            assert good.status_code == 200, good.text
            assert hashlib.sha256(good.content).digest() == hashlib.sha256(data).digest()
            # Range after the bytes a child already has (how it resumes).
            part = await client.get(target, headers={**signed(key, target), "range": "bytes=1000-"})
            assert part.status_code == 206
            assert part.content == data[1000:]
            # Now held: a sibling's only-if-cached request is answered.
            held = await client.get(
                target, headers={**signed(key, target), "cache-control": "only-if-cached"}
            )
            assert held.status_code == 200
        # Garbage, a huge head, an unfinished head: the connection ends, nothing else.
        assert b"500" not in await raw(address, b"\x16\x03\x01\x00\xa5\x01garbage\r\n\r\n")
        await raw(address, b"GET / HTTP/1.1\r\nx: " + b"a" * 100_000 + b"\r\n\r\n")
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=20) as client:
            again = await client.get(target, headers=signed(key, target))
            assert again.content == data
        log = site.agents[0].log()
        assert "federation.refused" in log
        assert key not in log
        assert site.agents[0].proc is not None
        assert site.agents[0].proc.poll() is None
    finally:
        site.kill()
