"""A member answers as the seeder does: the origin's Content-Type, ETag and Last-Modified cross
the site with the object, conditional requests get 304 on the member, and the member's
``/metrics`` counts the bytes it pulled from the site as ``peers``, none as ``uplink``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trio

from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import wait_for_seeder
from tests.apt._fakes import exchange

pytestmark = pytest.mark.slow

PATH = "/files/tool_1.0_all.deb"
TYPE = "application/x-frumit-test"
ETAG = '"tool-v1"'
MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"


def get(url: str, *extra: str) -> bytes:
    lines = [f"GET {url} HTTP/1.1", "Host: x", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def served(metrics: str, source: str) -> int:
    found = re.search(rf'frumitcache_apt_bytes_served_total{{source="{source}"}} (\d+)', metrics)
    return int(found.group(1)) if found else 0


async def test_member_serves_origin_metadata_and_304(tmp_path: Path, nursery: trio.Nursery) -> None:
    data = os.urandom(300 * 1024)
    origin = OriginServer()
    origin.add(PATH, data, content_type=TYPE, etag=ETAG, last_modified=MODIFIED)
    address = loopback_address()
    port = await nursery.start(origin.serve, address)
    authority = f"{address}:{port}"
    site = LoopbackSite(
        tmp_path / "site",
        2,
        settings={"apt": {"enabled": True, "allowed_hosts": [authority], "port": 3142}},
    )
    try:
        await site.start()
        seeder = await wait_for_seeder(site)
        member = next(a for a in site.agents if a.settings["node"]["name"] != seeder)
        proxy = (member.address, 3142)
        url = f"http://{authority}{PATH}"
        with trio.fail_after(60):
            first = await exchange(proxy, get(url))  # pulled from the site as it arrives
            again = await exchange(proxy, get(url))  # held by the member now
            by_tag = await exchange(proxy, get(url, f"If-None-Match: {ETAG}"))
            by_date = await exchange(proxy, get(url, f"If-Modified-Since: {MODIFIED}"))
            changed = await exchange(proxy, get(url, 'If-None-Match: "tool-v0"'))
            # A handler counts a request just after its last byte left: wait for all five.
            while True:
                metrics = (await exchange(proxy, get("/metrics"))).body
                if b'requests_total{method="GET",status="200"} 3' in metrics:
                    break
                await trio.sleep(0.05)
        for reply in (first, again, changed):
            assert reply.status == 200
            assert reply.body == data
            assert reply.headers["content-type"] == TYPE
            assert reply.headers["etag"] == ETAG
            assert reply.headers["last-modified"] == MODIFIED
        assert by_tag.status == 304
        assert by_date.status == 304
        assert by_tag.headers["etag"] == ETAG
        text = metrics.decode()
        assert served(text, "peers") == len(data)  # the first answer: bytes from the site
        assert served(text, "uplink") == 0  # this member never touched the uplink
        assert served(text, "local") == 2 * len(data)
        assert origin.stats.requests[PATH] == 1  # the seeder's one fetch
    except BaseException:
        for agent in site.agents:
            print(agent.log())
        raise
    finally:
        site.kill()
