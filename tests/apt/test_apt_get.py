"""Real apt-get through the proxy, against a signed repository served by the test origin."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path

import pytest
import trio

from frumitcache.testing.aptrepo import AptClient, make_client

from ._fakes import exchange
from .conftest import OneNode

ALL = ("pkga", "pkgb", "pkgc")
APT_HELPER = Path("/usr/lib/apt/apt-helper")
HAVE_APT_HELPER = APT_HELPER.exists()


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out
    assert "hash sum mismatch" not in out.lower(), out
    return out


def origin_debs(node: OneNode) -> dict[str, bytes]:
    pool = node.root / "debian/pool/main"
    return {p.name: p.read_bytes() for p in pool.glob("*.deb")}


async def update_and_download(client: AptClient, names: tuple[str, ...] = ALL) -> str:
    ok(await client.run("update"))
    return ok(await client.run("download", *names))


async def test_update_and_download_every_package(one_node: OneNode) -> None:
    a = one_node.client()
    b = one_node.client(prefix_form=True)
    with trio.fail_after(90):
        await update_and_download(a)
        await update_and_download(b)
        ok(await b.run("install", "--download-only", "-y", *ALL))
    want = origin_debs(one_node)
    assert a.downloaded() == want
    assert b.downloaded() == want
    archives = b.home / "cache/archives"
    assert {p.name: p.read_bytes() for p in archives.glob("*.deb")} == want
    stats = one_node.origin.stats
    served = {p: n for p, n in stats.requests.items() if n}
    assert served, "the origin served nothing"
    for path, n in served.items():
        assert n == 1, (path, dict(stats.requests))
    for name in want:
        assert stats.requests[f"/debian/pool/main/{name}"] == 1
    m = one_node.proxy.metrics
    assert m.bytes_served["local"] > 0
    assert m.hits > 0


async def test_republish_window(one_node: OneNode) -> None:
    """Within the window: the old, consistent view (no hash-sum mismatch, even for a client
    that does not use by-hash); after it: the new versions."""
    first = one_node.client()
    with trio.fail_after(120):
        await update_and_download(first)
        assert first.candidate("pkga") == "1.0"
        # apt revalidates its lists with If-Modified-Since (whole seconds): republish in a
        # later second, as any real archive does.
        await trio.sleep(1.1)
        one_node.builder.publish(one_node.root, {"pkga": "2.0", "pkgb": "1.0", "pkgc": "1.0"})
        # Within the window, fresh clients (by-hash and plain) see the old repository whole.
        within = one_node.client()
        plain = one_node.client(options={"Acquire::By-Hash": "no"})
        ok(await within.run("update"))
        ok(await plain.run("update"))
        assert within.candidate("pkga") == "1.0"
        assert plain.candidate("pkga") == "1.0"
        ok(await plain.run("download", "pkga"))
        assert plain.downloaded()["pkga_1.0_all.deb"]
        one_node.pass_the_window()
        after = one_node.client()
        await update_and_download(after, ("pkga",))
        assert after.candidate("pkga") == "2.0"
        ok(await first.run("update"))
        assert first.candidate("pkga") == "2.0"
    assert after.downloaded() == {
        "pkga_2.0_all.deb": (one_node.root / "debian/pool/main/pkga_2.0_all.deb").read_bytes()
    }


async def test_corrupt_deb_at_origin(one_node: OneNode) -> None:
    client = one_node.client()
    deb = one_node.root / "debian/pool/main/pkgb_1.0_all.deb"
    good = deb.read_bytes()
    with trio.fail_after(60):
        ok(await client.run("update"))
        bad = bytearray(good)
        bad[-100] ^= 0xFF  # same size, wrong bytes: does not match Packages
        deb.write_bytes(bytes(bad))
        result = await client.run("download", "pkgb")
    assert result.returncode != 0
    assert client.downloaded() == {}
    url = f"http://{one_node.origin_authority}/debian/pool/main/pkgb_1.0_all.deb"
    assert one_node.store.lookup(url) is None  # type: ignore[attr-defined]
    assert one_node.store.lookup(hashlib.sha256(bad).digest()) is None  # type: ignore[attr-defined]
    assert one_node.proxy.metrics.digest_mismatches >= 1
    # The origin is fixed: the same client now gets the good package.
    deb.write_bytes(good)
    with trio.fail_after(60):
        ok(await client.run("download", "pkgb"))
    assert client.downloaded() == {"pkgb_1.0_all.deb": good}


async def test_offline_mode(one_node: OneNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="frumitcache.content")
    warm = one_node.client()
    with trio.fail_after(60):
        await update_and_download(warm)
    one_node.stop_origin()
    one_node.pass_the_window()  # the indexes are due for revalidation: the origin is gone
    cold = one_node.client()
    with trio.fail_after(90):
        await update_and_download(cold)
    assert cold.downloaded() == origin_debs(one_node)
    assert "fetch.offline" in caplog.text  # the content seam served the held copies
    # Something never fetched before cannot be served: an honest 504 with a clear body.
    url = f"http://{one_node.origin_authority}/debian/pool/main/never_1.0_all.deb"
    with trio.fail_after(30):
        reply = await exchange(
            one_node.proxy_addr, f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
    assert reply.status == 504
    assert b"unreachable" in reply.body


async def test_same_deb_through_two_mirrors_is_one_object(one_node: OneNode) -> None:
    from frumitcache.testing.net import loopback_address
    from frumitcache.testing.origin import OriginServer

    mirror = OriginServer(one_node.root)
    mirror_port = await one_node.nursery.start(mirror.serve, loopback_address())
    mirror_authority = f"{mirror.address}:{mirror_port}"
    one_node.proxy.config.allowed_hosts.append(mirror_authority)
    first = one_node.client()
    host, port = one_node.proxy_addr
    second = make_client(
        one_node.tmp / "mirror-client",
        one_node.builder.keyring,
        f"http://{mirror_authority}/debian",
        f"http://{host}:{port}",
    )
    with trio.fail_after(90):
        await update_and_download(first)
        await update_and_download(second)
    assert second.downloaded() == origin_debs(one_node)
    # The mirror served its indexes, but not one .deb: those were already held.
    assert mirror.stats.requests["/debian/dists/stable/InRelease"] == 1
    assert not any(p.endswith(".deb") for p, n in mirror.stats.requests.items() if n)


async def test_auto_apt_proxy_detection(one_node: OneNode, tmp_path: Path) -> None:
    """auto-apt-proxy's check: apt-helper fetches the proxy's root and looks for
    ``406.*usage.information`` in what it prints."""
    helper = APT_HELPER
    if not HAVE_APT_HELPER:
        pytest.skip("apt-helper not installed")
    host, port = one_node.proxy_addr
    with trio.fail_after(30):
        result = await trio.run_process(
            [
                str(helper),
                "-o",
                "Acquire::http::Proxy=DIRECT",
                "-o",
                "Acquire::Retries=0",
                "download-file",
                f"http://{host}:{port}",
                str(tmp_path / "out"),
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    import re

    text = (result.stdout + result.stderr).decode(errors="replace")
    assert re.search("406.*usage.information", text, re.IGNORECASE), text


async def test_pinned_index_survives_a_republish_race(one_node: OneNode) -> None:
    """A plain (not by-hash) Packages request after the origin republished, but while the
    InRelease we served is still current: the proxy answers the version that InRelease lists
    (its by-hash twin at the origin), never the new file apt would reject."""
    base = f"http://{one_node.origin_authority}/debian/dists/stable"

    def get(path: str) -> bytes:
        return f"GET {base}/{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()

    with trio.fail_after(30):
        inrelease = await exchange(one_node.proxy_addr, get("InRelease"))
        assert inrelease.status == 200
        old = (one_node.root / "debian/dists/stable/main/binary-amd64/Packages.xz").read_bytes()
        await trio.sleep(1.1)
        one_node.builder.publish(one_node.root, {"pkga": "2.0", "pkgb": "1.0", "pkgc": "1.0"})
        new = (one_node.root / "debian/dists/stable/main/binary-amd64/Packages.xz").read_bytes()
        assert new != old
        reply = await exchange(one_node.proxy_addr, get("main/binary-amd64/Packages.xz"))
    assert reply.status == 200, reply.body
    assert reply.body == old
    sha = hashlib.sha256(old).hexdigest()
    path = f"/debian/dists/stable/main/binary-amd64/by-hash/SHA256/{sha}"
    assert one_node.origin.stats.requests[path] == 1
    assert one_node.origin.stats.requests["/debian/dists/stable/main/binary-amd64/Packages.xz"] == 0
