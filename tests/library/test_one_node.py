"""Every library call against a real one-node agent and a real origin."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

import frumitcache
from frumitcache import (
    AgentClient,
    AgentUnavailableError,
    BadUrlError,
    Client,
    DigestMismatchError,
    NotInStoreError,
    OriginStatusError,
)
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.origin import OriginServer

MiB = 1024 * 1024


async def test_fetch_stream_locate_pin_estimate_site(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(5 * MiB + 17)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/pkg/a.deb", data)
    origin.add("/pkg/unseen.bin", b"x" * 12345)
    url = origin.url("/pkg/a.deb")
    client = AgentClient(agent.socket)
    with trio.fail_after(60):
        # Before the fetch: the site knows nothing; the agent sizes it with a HEAD.
        before = await client.estimate([url])
        assert before.items[0].size == len(data)
        assert before.items[0].source == "origin-head"
        assert before.uplink_bytes == len(data)
        assert before.in_site_bytes == 0
        where = await client.locate(url)
        assert not where.known
        assert where.holders == ()

        path = await client.fetch(url, sha256=digest, dest=tmp_path / "out")
        assert path == tmp_path / "out"
        assert path.read_bytes() == data
        assert sorted(os.listdir(tmp_path)) == ["node", "out"]  # no temp left
        # A directory as dest: the URL's name inside it.
        (tmp_path / "dir").mkdir()
        assert (await client.fetch(url, dest=tmp_path / "dir")) == tmp_path / "dir" / "a.deb"

        got = bytearray()
        async with client.stream(url, sha256=digest) as chunks:
            async for block in chunks:
                got += block
        assert bytes(got) == data
        assert origin.stats.bytes_sent["/pkg/a.deb"] == len(data)  # the store served since

        where = await client.locate(url)
        assert where.complete
        assert where.digest == digest
        assert where.size == len(data)
        me = (await client.status()).node
        assert where.full == (me,)
        assert where.holders[0].bytes == len(data)
        assert (await client.locate(digest)).url == url  # by digest too

        est = await client.estimate([url, origin.url("/pkg/unseen.bin"), origin.url("/nope")])
        assert [i.uplink for i in est.items] == [0, 12345, None]
        assert est.items[0].in_site == len(data)
        assert est.items[0].source == "site"
        assert est.uplink_bytes == 12345
        assert est.in_site_bytes == len(data)
        assert est.unknown == (origin.url("/nope"),)
        assert "404" in (est.items[2].error or "")

        pinned = await client.pin(url)
        assert pinned.digest == digest
        assert pinned.pinned
        assert pinned.present
        listing = await client.cache_list()
        assert [(o.digest, o.pinned, o.keys) for o in listing.objects] == [(digest, True, (url,))]
        assert (await client.unpin(digest)).pinned is False
        assert not (await client.cache_list()).objects[0].pinned

        site = await client.site()
        assert site.solo
        assert site.seeder == me
        assert site.node == me
        assert [m.node for m in site.members] == [me]
        assert site.members[0].ram_bytes > 0
        assert site.members[0].free_disk_bytes > 0
        # The body once, and the heads of the estimates' four HEAD answers (uplink bytes too).
        assert len(data) < site.uplink.bytes_fetched < len(data) + 4 * 2000
        # Three deliveries of the object, two of them (the second fetch, the stream) from
        # the store: those did not cross the uplink.
        assert site.uplink.bytes_served == 3 * len(data)
        assert site.uplink.bytes_spared == 2 * len(data)
        assert site.cache.objects == 1
        assert site.cache.bytes_used >= len(data)

        report = await client.verify()
        assert report.chunks_checked >= 2
        assert report.damage == 0
        gc = await client.gc()
        assert gc.freed == 0
        assert gc.bytes_used >= len(data)


async def test_errors(agent: AgentProcess, origin: OriginServer, tmp_path: Path) -> None:
    client = AgentClient(agent.socket)
    origin.add("/x.bin", b"hello")
    with trio.fail_after(30):
        with pytest.raises(NotInStoreError):
            await client.locate("ab" * 32)
        with pytest.raises(NotInStoreError):
            await client.pin(origin.url("/never-fetched"))
        with pytest.raises(NotInStoreError):
            await client.unpin("cd" * 32)
        for bad in ("ftp://example.org/x", "not a url", "http://"):
            with pytest.raises(BadUrlError):
                await client.fetch(bad, dest=tmp_path / "bad")
            with pytest.raises(BadUrlError):
                await client.estimate([bad])
        with pytest.raises(OriginStatusError) as info:
            await client.fetch(origin.url("/missing.bin"), dest=tmp_path / "missing")
        assert info.value.status == 404
        with pytest.raises(DigestMismatchError):
            await client.fetch(origin.url("/x.bin"), sha256="00" * 32, dest=tmp_path / "x")
        # A failed fetch leaves nothing behind, not even its temporary file.
        assert sorted(os.listdir(tmp_path)) == ["node"]
        with pytest.raises(AgentUnavailableError, match="frumitcache agent"):
            await AgentClient(tmp_path / "nobody.sock").site()
    with pytest.raises(AgentUnavailableError):
        await trio.to_thread.run_sync(Client(tmp_path / "nobody.sock").site)


async def test_sync_client_in_a_thread(
    agent: AgentProcess, origin: OriginServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(MiB + 5)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/s/b.bin", data)
    url = origin.url("/s/b.bin")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def use() -> None:
        client = Client(agent.socket)
        path = client.fetch(url, sha256=digest)
        assert path == frumitcache.default_download_dir() / "b.bin"
        assert path.parent == tmp_path / "cache" / "frumitcache" / "downloads"
        assert path.read_bytes() == data
        assert b"".join(client.stream(url)) == data
        with pytest.raises(DigestMismatchError):
            b"".join(client.stream(url, sha256="11" * 32))
        assert client.locate(url).full == (client.status().node,)
        assert client.pin(digest).pinned
        assert not client.unpin(url).pinned
        handle = client.prefetch([url])
        assert list(handle.started[url].values()) == ["present"]
        assert all(p.complete for p in handle.wait(timeout_s=10))
        assert client.estimate([url]).uplink_bytes == 0
        assert client.site().uplink.bytes_fetched == len(data)
        assert len(client.cache_list().objects) == 1
        assert client.verify().damage == 0
        assert client.gc().freed == 0

    with trio.fail_after(60):
        await trio.to_thread.run_sync(use)


async def test_prefetch_on_one_node(agent: AgentProcess, origin: OriginServer) -> None:
    data = os.urandom(3 * MiB)
    origin.add("/p.bin", data)
    url = origin.url("/p.bin")
    client = AgentClient(agent.socket)
    with trio.fail_after(60):
        handle = await client.prefetch({url: hashlib.sha256(data).hexdigest()})
        me = (await client.status()).node
        assert handle.started == {url: {me: "fetching"}}
        progress = await handle.wait(poll_s=0.1)
        assert [(p.node, p.bytes, p.complete) for p in progress] == [(me, len(data), True)]
        assert origin.stats.requests["/p.bin"] == 1
        # An unknown node is reported per node, not as a failure of the whole call.
        other = await client.prefetch([url], nodes=["no-such-node"])
        assert other.started[url]["no-such-node"].startswith("error")
        with pytest.raises(frumitcache.PeerError):
            await other.wait()


async def test_import_debs(agent: AgentProcess, tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    (archives / "partial").mkdir(parents=True)
    debs = {f"pkg{i}_1.0_arm64.deb": os.urandom(100_000 * (i + 1)) for i in range(3)}
    for name, body in debs.items():
        (archives / name).write_bytes(body)
    (archives / "lock").write_bytes(b"")
    (archives / "partial" / "half.deb").write_bytes(b"")  # an empty file is still a file
    client = AgentClient(agent.socket)
    with trio.fail_after(60):
        report = await client.import_debs(archives)
        assert (report.files, report.imported, report.present, report.failed) == (4, 4, 0, 0)
        assert report.bytes_imported == sum(len(b) for b in debs.values())
        again = await client.import_debs(archives)
        assert (again.imported, again.present) == (0, 4)
        listing = await client.cache_list()
        keys = {k for o in listing.objects for k in o.keys}
        for body in debs.values():
            digest = hashlib.sha256(body).hexdigest()
            assert f"sha256:{digest}" in keys
            where = await client.locate(digest)
            assert where.complete
            assert where.size == len(body)
        with pytest.raises(NotInStoreError):
            await client.import_debs(tmp_path / "no-such-dir")
