"""Blob prefetch: a client's GET of an image manifest sets every blob of it going upstream at
once (through the seeder on a site, once for the site), before the client asks for any.

The real registry's access log is the ground truth: after one manifest GET it shows one GET
for the config and for each layer, and the client's own blob GETs add none. Hostile manifests
(bad JSON, digests that are not sha256, paths in digests, too many layers) set nothing going.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.oci._prefetch import MAX_BLOBS, blobs_of
from frumitcache.oci._spec import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.registry import RegistryProcess
from frumitcache.testing.site import LoopbackSite

from .conftest import REGISTRY_NAME, Pushed, wait_for_seeder

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


def manifest(config: object, *layers: object) -> bytes:
    return json.dumps({"schemaVersion": 2, "config": config, "layers": list(layers)}).encode()


def entry(digest: object, **extra: object) -> dict[str, object]:
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, **extra}


# --- which blobs (pure) ---------------------------------------------------------------------------


def test_an_image_manifest_names_its_config_then_its_layers() -> None:
    body = manifest(entry(A), entry(B), entry(C), entry(B))
    assert blobs_of(body, OCI_MANIFEST) == (A, B, C)  # a layer listed twice is asked once
    assert blobs_of(body, DOCKER_MANIFEST) == (A, B, C)


def test_an_index_or_list_prefetches_nothing() -> None:
    # The client picks one platform and GETs its manifest: that one is followed, not all.
    index = json.dumps({"manifests": [{"digest": A}], "config": entry(B), "layers": []})
    assert blobs_of(index.encode(), OCI_INDEX) == ()


def test_hostile_manifests_prefetch_nothing() -> None:
    bad_digests = [
        "sha512:" + "a" * 128,  # another algorithm: not verifiable here
        "sha256:" + "a" * 63,  # short
        "sha256:" + "A" * 64,  # upper case is not the grammar
        "sha256:../../../../etc/passwd",
        f"{A}/../x",
        42,
        None,
    ]
    for digest in bad_digests:
        assert blobs_of(manifest(entry(A), entry(digest)), OCI_MANIFEST) == (), digest
    assert blobs_of(b"not json", OCI_MANIFEST) == ()
    assert blobs_of(b"[1, 2]", OCI_MANIFEST) == ()
    assert blobs_of(json.dumps({"config": A, "layers": []}).encode(), OCI_MANIFEST) == ()
    assert blobs_of(json.dumps({"config": entry(A), "layers": {}}).encode(), OCI_MANIFEST) == ()
    assert blobs_of(manifest(entry(A), "sha256:x"), OCI_MANIFEST) == ()
    many = [entry(f"sha256:{i:064x}") for i in range(MAX_BLOBS)]
    assert blobs_of(manifest(entry(A), *many), OCI_MANIFEST) == ()
    assert len(blobs_of(manifest(entry(A), *many[:-1]), OCI_MANIFEST)) == MAX_BLOBS


def test_a_foreign_layer_is_left_to_its_urls() -> None:
    foreign = entry(B, urls=["https://elsewhere.example/layer"])
    assert blobs_of(manifest(entry(A), foreign, entry(C)), OCI_MANIFEST) == (A, C)


# --- through a real agent and a real registry --------------------------------------------------


def platform_blobs(pushed: Pushed, platform: str) -> list[str]:
    """The config and layer digests of ``platform``'s manifest in the pushed image."""
    body = json.loads(pushed.layout.blobs[pushed.layout.manifests[platform]])
    return [body["config"]["digest"], *(layer["digest"] for layer in body["layers"])]


def blob_gets(registry: RegistryProcess, start: int) -> Counter[str]:
    return Counter(
        path.split("?")[0].rsplit("/", 1)[1]
        for method, path, _ in registry.requests()[start:]
        if method == "GET" and "/blobs/" in path
    )


async def until_fetched(registry: RegistryProcess, start: int, digests: list[str]) -> None:
    """Until the registry has served a GET of each of ``digests`` (bounded)."""
    with trio.fail_after(30):
        while not all(blob_gets(registry, start)[d] for d in digests):  # noqa: ASYNC110 - a log file
            await trio.sleep(0.05)


def manifest_url(mirror: str, pushed: Pushed, platform: str) -> str:
    digest = pushed.layout.manifests[platform]
    return f"http://{mirror}/v2/team/app/manifests/{digest}?ns={REGISTRY_NAME}"


async def test_a_manifest_get_sets_every_blob_going(pushed: Pushed, tmp_path: Path) -> None:
    address = loopback_address()
    agent = AgentProcess(tmp_path / "a", address=address, settings={"oci": pushed.oci_settings()})
    await agent.start()
    mirror = f"{address}:3146"
    try:
        start = len(pushed.registry.requests())
        wanted = platform_blobs(pushed, "arm64")
        async with httpx.AsyncClient(timeout=30) as client:
            # The tag's index and a HEAD of another platform's manifest follow nothing.
            index = await client.get(
                f"http://{mirror}/v2/team/app/manifests/v1?ns={REGISTRY_NAME}",
                headers={"Accept": OCI_INDEX},
            )
            assert index.status_code == 200, index.text
            head = await client.head(manifest_url(mirror, pushed, "arm/v7"))
            assert head.status_code == 200
            got = await client.get(manifest_url(mirror, pushed, "arm64"))
            assert got.status_code == 200, got.text
            # One manifest GET, no blob asked by the client: the registry serves them all.
            await until_fetched(pushed.registry, start, wanted)
            for digest in wanted:
                blob = await client.get(
                    f"http://{mirror}/v2/team/app/blobs/{digest}?ns={REGISTRY_NAME}"
                )
                assert blob.status_code == 200
                assert blob.content == pushed.layout.blobs[digest]
        gets = blob_gets(pushed.registry, start)
        assert {d: gets[d] for d in wanted} == dict.fromkeys(wanted, 1)  # the client's: none
        own_v7 = set(platform_blobs(pushed, "arm/v7")) - set(wanted)  # the base is shared
        assert not own_v7 & set(gets), gets
        assert "Traceback" not in agent.log()
    finally:
        await agent.stop()


async def test_prefetch_off_leaves_blobs_to_the_client(pushed: Pushed, tmp_path: Path) -> None:
    address = loopback_address()
    settings = {"oci": pushed.oci_settings(prefetch_blobs=False)}
    agent = AgentProcess(tmp_path / "a", address=address, settings=settings)
    await agent.start()
    mirror = f"{address}:3146"
    try:
        start = len(pushed.registry.requests())
        config, *layers = platform_blobs(pushed, "arm64")
        async with httpx.AsyncClient(timeout=30) as client:
            got = await client.get(manifest_url(mirror, pushed, "arm64"))
            assert got.status_code == 200, got.text
            blob = await client.get(
                f"http://{mirror}/v2/team/app/blobs/{config}?ns={REGISTRY_NAME}"
            )
            assert blob.status_code == 200
        gets = blob_gets(pushed.registry, start)
        assert gets[config] == 1
        assert not set(layers) & set(gets), gets
    finally:
        await agent.stop()


@pytest.mark.slow
async def test_a_member_manifest_get_has_the_seeder_fetch_every_blob(
    pushed: Pushed, tmp_path: Path
) -> None:
    site = LoopbackSite(tmp_path / "site", 3, settings={"oci": pushed.oci_settings()})
    await site.start()
    try:
        seeder = await wait_for_seeder(site)
        mirrors = {a.settings["node"]["name"]: f"{a.address}:3146" for a in site.agents}
        members = [name for name in mirrors if name != seeder]
        start = len(pushed.registry.requests())
        wanted = platform_blobs(pushed, "arm/v6")
        async with httpx.AsyncClient(timeout=30) as client:
            got = await client.get(manifest_url(mirrors[members[0]], pushed, "arm/v6"))
            assert got.status_code == 200, got.text
            # One manifest GET at a member: the site fetched every blob of it upstream.
            await until_fetched(pushed.registry, start, wanted)
            # Both members' clients then pull them: the site asks upstream no more.
            for name in members:
                for digest in wanted:
                    blob = await client.get(
                        f"http://{mirrors[name]}/v2/team/app/blobs/{digest}?ns={REGISTRY_NAME}"
                    )
                    assert blob.status_code == 200
                    assert blob.content == pushed.layout.blobs[digest]
        gets = blob_gets(pushed.registry, start)
        assert {d: gets[d] for d in wanted} == dict.fromkeys(wanted, 1), gets
        for agent in site.agents:
            assert "Traceback" not in agent.log()
    finally:
        site.kill()
