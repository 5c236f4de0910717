"""A rate-limited registry is left alone for as long as its ``Retry-After`` asks: through a real
agent, a real HTTP test origin standing in for the registry (its request log is the uplink's
ground truth). After one 429, a burst of pulls of anything on that registry is answered 429 by
the mirror itself, with the seconds left as ``Retry-After``, and the registry sees none of
them; once the time has passed it is asked again and serves."""

from __future__ import annotations

import hashlib
from pathlib import Path

import trio

from frumitcache.client import AgentClient
from frumitcache.testing.origin import Fault, OriginServer

from ._mirror import host_of, mirror

RETRY_AFTER_S = 3


async def test_a_429_retry_after_is_honoured(origin: OriginServer, tmp_path: Path) -> None:
    blob = b"layer " * 5000
    blob_path = f"/v2/team/app/blobs/sha256:{hashlib.sha256(blob).hexdigest()}"
    origin.add(blob_path, blob)
    other = "/v2/team/other/manifests/v1"
    # Without the Retry-After the registry would be asked again after 0.2 s.
    oci = {"unreachable_backoff_s": 0.2, "unreachable_backoff_max_s": 60.0}
    async with mirror(tmp_path, host_of(origin), oci=oci) as m:
        origin.misbehave(blob_path, Fault(status=429, retry_after=str(RETRY_AFTER_S), times=1))
        start = len(origin.stats.log)
        first = await m.get(blob_path)
        told = trio.current_time()
        assert first.status_code == 429, first.text
        assert first.headers["retry-after"] == str(RETRY_AFTER_S)

        # For the next ~2 s, pulls of this blob and of anything else on the registry are
        # answered by the mirror, 429 with the seconds left; the registry hears nothing.
        with trio.move_on_at(told + RETRY_AFTER_S - 1):
            while True:
                for path in (blob_path, other):
                    answer = await m.get(path)
                    assert answer.status_code == 429, answer.text
                    assert answer.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
                    assert 1 <= int(answer.headers["retry-after"]) <= RETRY_AFTER_S
                await trio.sleep(0.1)
        assert [(r.method, r.path) for r in origin.stats.log[start:]] == [("GET", blob_path)]

        # Once the Retry-After has passed, the registry is asked again, and serves.
        with trio.fail_after(RETRY_AFTER_S + 10):
            while (answer := await m.get(blob_path)).status_code == 429:  # noqa: ASYNC110 - polls a real server
                await trio.sleep(0.2)
        assert trio.current_time() - told >= RETRY_AFTER_S - 0.1
        assert answer.status_code == 200, answer.text
        assert answer.content == blob
        assert len(origin.stats.log[start:]) == 2
        status = await AgentClient(m.agent.socket).status()
        assert status.origin["backed_off"] > 0, status.origin
        backoff = [line for line in m.agent.log().splitlines() if "fetch.backoff" in line]
        assert backoff, m.agent.log()
        assert "status=429" in backoff[0]
        assert "Traceback" not in m.agent.log()
