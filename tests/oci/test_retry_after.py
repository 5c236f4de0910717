"""A registry's ``Retry-After`` (on a 429 quota answer, on a 503) reaches the client through
the mirror as the registry sent it: on the seeder, whose uplink client heard it, and on a
member, to which it crossed the site with the error. A real HTTP test origin stands in for the
registry; a real 2-agent loopback site serves. Until that time has passed (at most
``oci.unreachable_backoff_max_s``) the registry is left alone and the mirror answers the same
status itself, with the seconds left."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.origin._plan import retry_after
from frumitcache.testing.origin import Fault, OriginServer
from frumitcache.testing.site import LoopbackSite

from .conftest import wait_for_seeder

pytestmark = pytest.mark.slow

BACKOFF_MAX_S = 1.0


async def test_retry_after_passes_on_at_seeder_and_member(
    origin: OriginServer, tmp_path: Path
) -> None:
    host = urlsplit(origin.url("/")).netloc
    settings = {
        "oci": {
            "registries": [f"lab.example=http://{host}"],
            "allowed_hosts": [host],
            # A 429 or 503 backs the registry off for its Retry-After, capped here at 1 s:
            # each case below waits it out, so the registry itself answers.
            "unreachable_backoff_s": 0.5,
            "unreachable_backoff_max_s": BACKOFF_MAX_S,
        },
    }
    site = LoopbackSite(tmp_path / "site", 2, settings=settings)
    await site.start()
    try:
        seeder = await wait_for_seeder(site)
        by_role = sorted(site.agents, key=lambda a: a.settings["node"]["name"] != seeder)
        async with httpx.AsyncClient(timeout=30) as client:
            for agent, role in zip(by_role, ("seeder", "member"), strict=True):
                mirror = f"http://{agent.address}:3146"
                for status, later, expected in (
                    (429, "120", 429),
                    (503, "Wed, 21 Oct 2037 07:28:00 GMT", 404),  # 404: containerd falls back
                ):
                    for kind, ref in (("manifests", "v1"), ("blobs", "sha256:" + "ab" * 32)):
                        path = f"/v2/team/{role}{status}/{kind}/{ref}"
                        origin.misbehave(path, Fault(status=status, retry_after=later))
                        await trio.sleep(BACKOFF_MAX_S + 0.2)  # the last case's backoff
                        answer = await client.get(f"{mirror}{path}?ns=lab.example")
                        assert answer.status_code == expected, (role, path, answer.text)
                        assert answer.headers.get("retry-after") == later, (role, path)
                        assert later in answer.json()["errors"][0]["message"]
                        # Backed off now: the mirror answers the same status itself, its
                        # Retry-After the seconds it leaves the registry alone.
                        again = await client.get(f"{mirror}{path}?ns=lab.example")
                        assert again.status_code == expected, (role, path, again.text)
                        assert again.headers.get("retry-after") == "1", (role, path)
                # Without one from upstream, the mirror invents none.
                await trio.sleep(BACKOFF_MAX_S + 0.2)
                path = f"/v2/team/{role}plain/manifests/v1"
                origin.misbehave(path, Fault(status=429))
                answer = await client.get(f"{mirror}{path}?ns=lab.example")
                assert answer.status_code == 429
                assert "retry-after" not in answer.headers
        # The member's answers came through the site: its own uplink client never asked.
        assert (await AgentClient(by_role[1].socket).status()).origin["requests"] == 0
        for agent in site.agents:
            assert "Traceback" not in agent.log()
    finally:
        site.kill()


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("30", "30"),
        (" 30 ", "30"),
        ("Wed, 21 Oct 2037 07:28:00 GMT", "Wed, 21 Oct 2037 07:28:00 GMT"),
        ("-1", ""),  # hostile: negative
        ("1e9", ""),
        ("30\r\nSet-Cookie: x=1", ""),  # hostile: a header smuggled in
        ("9" * 40, ""),  # hostile: absurdly long
        ("soon", ""),
    ],
)
def test_only_a_well_formed_retry_after_is_kept(sent: str, kept: str) -> None:
    assert retry_after({"retry-after": sent}) == kept
