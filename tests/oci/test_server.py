"""The registry door over real loopback sockets (httpx as the client), with an in-memory content
source: the spec's headers, Range, errors as the spec's JSON, and hostile requests that never
stop the door."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
import trio

from frumitcache.config import OciConfig
from frumitcache.errors import OriginStatusError, OriginUnreachableError
from frumitcache.oci import MANIFEST_TYPES, RegistryContent, RegistryMirror
from frumitcache.oci._spec import DOCKER_MANIFEST, OCI_INDEX
from frumitcache.testing.net import loopback_address

from ._fakes import MemorySource

REG = "http://127.0.0.5:5000"
INDEX = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
BLOB = bytes(range(256)) * 40
BLOB_D = "sha256:" + hashlib.sha256(BLOB).hexdigest()
INDEX_D = "sha256:" + hashlib.sha256(INDEX).hexdigest()


@pytest.fixture
def source() -> MemorySource:
    s = MemorySource()
    s.add(f"{REG}/v2/team/app/manifests/v1", INDEX, OCI_INDEX + "; charset=utf-8")
    s.add(f"{REG}/v2/team/app/blobs/{BLOB_D}", BLOB)
    return s


@pytest.fixture
async def base(nursery: trio.Nursery, source: MemorySource) -> str:
    cfg = OciConfig(
        port=0,
        listen=loopback_address(),
        registries=[f"lab={REG}", "docker.io=registry-1.docker.io"],
        header_timeout_s=0.5,
        idle_timeout_s=2.0,
        max_header_bytes=4096,
    )
    door = RegistryMirror(cfg, RegistryContent(source))
    host, port = await nursery.start(door.serve)
    return f"http://{host}:{port}"


async def request(base: str, method: str, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base) as client:
        with trio.fail_after(10):
            return await client.request(method, path, headers=headers)


async def test_api_root(base: str) -> None:
    for method in ("GET", "HEAD"):
        r = await request(base, method, "/v2/")
        assert r.status_code == 200
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_manifest_by_tag_and_digest(base: str, source: MemorySource) -> None:
    r = await request(base, "GET", "/v2/team/app/manifests/v1?ns=lab")
    assert r.status_code == 200
    assert r.content == INDEX
    assert r.headers["docker-content-digest"] == INDEX_D
    assert r.headers["content-type"] == OCI_INDEX
    assert r.headers["content-length"] == str(len(INDEX))
    tag_request = source.requests[-1]
    assert tag_request.freshness == "revalidate"
    assert tag_request.door == "oci"
    assert dict(tag_request.headers)["Accept"] == ", ".join(MANIFEST_TYPES)
    h = await request(base, "HEAD", f"/v2/lab/team/app/manifests/{INDEX_D}")
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["docker-content-digest"] == INDEX_D
    assert h.headers["content-length"] == str(len(INDEX))
    by_digest = source.requests[-1]
    assert by_digest.freshness == "immutable"
    assert by_digest.sha256 == bytes.fromhex(INDEX_D[7:])
    cached = await request(
        base, "GET", f"/v2/lab/team/app/manifests/{INDEX_D}", **{"If-None-Match": f'"{INDEX_D}"'}
    )
    assert cached.status_code == 304


async def test_narrow_accept_is_keyed_apart(base: str, source: MemorySource) -> None:
    source.add(f"{REG}/v2/team/app/manifests/v1#accept=docker-manifest", INDEX, DOCKER_MANIFEST)
    r = await request(base, "GET", "/v2/team/app/manifests/v1?ns=lab", Accept=DOCKER_MANIFEST)
    assert r.status_code == 200
    assert source.requests[-1].url.endswith("#accept=docker-manifest")
    assert dict(source.requests[-1].headers)["Accept"] == DOCKER_MANIFEST


async def test_blob_and_ranges(base: str) -> None:
    r = await request(base, "GET", f"/v2/lab/team/app/blobs/{BLOB_D}")
    assert r.status_code == 200
    assert r.content == BLOB
    assert r.headers["docker-content-digest"] == BLOB_D
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["accept-ranges"] == "bytes"
    part = await request(base, "GET", f"/v2/lab/team/app/blobs/{BLOB_D}", Range="bytes=1000-4999")
    assert part.status_code == 206
    assert part.content == BLOB[1000:5000]
    assert part.headers["content-range"] == f"bytes 1000-4999/{len(BLOB)}"
    tail = await request(base, "GET", f"/v2/lab/team/app/blobs/{BLOB_D}", Range="bytes=-10")
    assert tail.content == BLOB[-10:]
    bad = await request(
        base, "GET", f"/v2/lab/team/app/blobs/{BLOB_D}", Range=f"bytes={len(BLOB)}-"
    )
    assert bad.status_code == 416
    assert bad.headers["content-range"] == f"bytes */{len(BLOB)}"


async def test_errors_are_fast_spec_json(base: str, source: MemorySource) -> None:
    unknown = "sha256:" + "0" * 64
    cases = [
        (f"/v2/lab/team/app/blobs/{unknown}", 404, "BLOB_UNKNOWN"),
        ("/v2/lab/team/app/manifests/nope", 404, "MANIFEST_UNKNOWN"),
        ("/v2/app/manifests/v1?ns=evil.example", 404, "NAME_UNKNOWN"),
        ("/v2/lab/Team/app/manifests/v1", 400, "NAME_INVALID"),
        ("/v2/lab/team/app/blobs/sha256:1234", 400, "DIGEST_INVALID"),
    ]
    for path, status, code in cases:
        with trio.fail_after(2):  # fast: containerd goes on to its next host
            r = await request(base, "GET", path)
        assert r.status_code == status, path
        assert r.json()["errors"][0]["code"] == code
    source.errors[f"{REG}/v2/team/app/manifests/limited"] = OriginStatusError("429", status=429)
    source.errors[f"{REG}/v2/team/app/manifests/down"] = OriginUnreachableError("down")
    source.errors[f"{REG}/v2/team/app/manifests/private"] = OriginStatusError("401", status=401)
    limited = await request(base, "GET", "/v2/lab/team/app/manifests/limited")
    assert (limited.status_code, limited.json()["errors"][0]["code"]) == (429, "TOOMANYREQUESTS")
    private = await request(base, "GET", "/v2/lab/team/app/manifests/private")
    assert (private.status_code, private.json()["errors"][0]["code"]) == (401, "UNAUTHORIZED")
    down = await request(base, "GET", "/v2/lab/team/app/manifests/down")
    assert down.status_code == 404


async def test_read_only_and_hostile_requests_keep_the_door_up(
    base: str, source: MemorySource
) -> None:
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        r = await request(base, method, "/v2/lab/team/app/manifests/v1")
        assert r.status_code == 405
        assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
    # A huge "manifest" from upstream is refused, not read into memory and served.
    source.add(f"{REG}/v2/team/app/manifests/huge", b"{" + b" " * (4 * 1024 * 1024 + 1))
    huge = await request(base, "GET", "/v2/lab/team/app/manifests/huge")
    assert huge.status_code == 502
    assert huge.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    # Raw garbage, an oversized head, and a client that hangs up: the door keeps serving.
    host, port = base.removeprefix("http://").split(":")
    for raw in (
        b"\x00\xff garbage\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nX: " + b"a" * 8000 + b"\r\n\r\n",
        b"GET /v2/",
    ):
        stream = await trio.open_tcp_stream(host, int(port))
        with trio.fail_after(5):
            await stream.send_all(raw)
            await stream.aclose()
    ok = await request(base, "GET", f"/v2/lab/team/app/blobs/{BLOB_D}")
    assert ok.status_code == 200
    metrics = await request(base, "GET", "/metrics")
    assert 'frumitcache_oci_bytes_served_total{source="uplink"}' in metrics.text
