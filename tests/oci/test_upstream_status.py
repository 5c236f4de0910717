"""Upstream error answers through a real agent, with a real HTTP test origin standing in for a
registry (its request log is the uplink's ground truth): a 429 while a held tag is revalidated
keeps the held manifest for another window; with nothing held, 403/401/429 reach the client as
the spec's errors with their own status."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import trio

from frumitcache.testing.origin import Fault, OriginServer
from frumitcache.testing.registry import OCI_INDEX

from ._mirror import host_of, mirror

WINDOW_S = 2.0
TAG = "/v2/team/app/manifests/v1"


def since(origin: OriginServer, start: int) -> Counter[tuple[str, str, int]]:
    return Counter((r.method, r.path, r.status) for r in origin.stats.log[start:])


async def test_429_keeps_the_held_tag_and_errors_pass_on(
    origin: OriginServer, tmp_path: Path
) -> None:
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    origin.add(TAG, index, content_type=OCI_INDEX, docker_content_digest=digest)
    oci = {"tag_window_s": WINDOW_S, "unreachable_backoff_s": 1.0}
    async with mirror(tmp_path, host_of(origin), oci=oci) as m:
        first = await m.get(TAG)
        assert first.status_code == 200, first.text
        assert first.headers["docker-content-digest"] == digest

        # Nothing held: the registry's status is the client's, as the spec's JSON error.
        # A 429 backs the registry off (for 1 s here, it sent no Retry-After): it goes
        # last, and the wait for the window below outlasts it.
        for status, code in ((403, "DENIED"), (401, "UNAUTHORIZED"), (429, "TOOMANYREQUESTS")):
            path = f"/v2/team/refused{status}/manifests/v1"
            origin.misbehave(path, Fault(status=status))
            answer = await m.get(path)
            assert answer.status_code == status, answer.text
            assert answer.json()["errors"][0]["code"] == code
        # The registry now refuses with 429; once the window has passed the tag is asked
        # again (a HEAD), the 429 comes back, and the held manifest is served.
        origin.misbehave(TAG, Fault(status=429))
        start = len(origin.stats.log)
        await trio.sleep(WINDOW_S + 0.5)  # the window itself is what is tested
        held = await m.get(TAG)
        assert held.status_code == 200, held.text
        assert held.content == index
        assert since(origin, start) == Counter({("HEAD", TAG, 429): 1})
        # ... and for another window the registry is left alone.
        assert (await m.get(TAG)).status_code == 200
        assert since(origin, start) == Counter({("HEAD", TAG, 429): 1})
        kept = [line for line in m.agent.log().splitlines() if "fetch.kept-held" in line]
        assert kept, m.agent.log()
        assert "status=429" in kept[0]
