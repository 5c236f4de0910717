"""Request targets of the registry door: parsing, the upstream choice, and hostile input."""

from __future__ import annotations

import pytest

from frumitcache.errors import ConfigError
from frumitcache.oci import (
    ApiError,
    ApiRoot,
    Ask,
    accepted_manifest_types,
    is_manifest_url,
    parse_registries,
)
from frumitcache.oci import parse_request as parse
from frumitcache.oci._spec import DOCKER_MANIFEST, MANIFEST_TYPES, OCI_INDEX

REGS = parse_registries(
    ["docker.io=registry-1.docker.io", "ghcr.io", "quay.io", "lab.local:5000=http://127.0.0.5:5000"]
)
D = "sha256:" + "ab" * 32


def ask(target: str) -> Ask:
    out = parse(target.encode(), REGS)
    assert isinstance(out, Ask), out
    return out


def refused(target: bytes | str) -> ApiError:
    out = parse(target if isinstance(target, bytes) else target.encode(), REGS)
    assert isinstance(out, ApiError), out
    return out


def test_registry_table() -> None:
    assert REGS["docker.io"].base == "https://registry-1.docker.io"
    assert REGS["lab.local:5000"].base == "http://127.0.0.5:5000"
    for bad in (
        "ftp.x=ftp://x",
        "x=https://x/path",
        "UP PER",
        "x=https://u:p@x",
        '["x"]',
        "x=https://[zz]:1",
        "x=https://x:99999",
    ):
        with pytest.raises(ConfigError, match=r"oci\.registries"):
            parse_registries([bad])


def test_root() -> None:
    assert parse(b"/v2/", REGS) == ApiRoot()
    assert parse(b"/v2", REGS) == ApiRoot()


def test_docker_hub_default_and_library() -> None:
    a = ask("/v2/alpine/manifests/3.19")
    assert a.url == "https://registry-1.docker.io/v2/library/alpine/manifests/3.19"
    assert not a.is_digest
    assert a.sha256 is None
    assert ask("/v2/grafana/loki/blobs/" + D).url.endswith("/v2/grafana/loki/blobs/" + D)


def test_containerd_ns() -> None:
    a = ask("/v2/org/app/manifests/v1?ns=ghcr.io")
    assert a.url == "https://ghcr.io/v2/org/app/manifests/v1"
    assert ask("/v2/library/alpine/manifests/x?ns=docker.io").repository == "library/alpine"
    # ns wins over what looks like a registry prefix
    assert (
        ask("/v2/quay.io/app/manifests/x?ns=ghcr.io").url
        == "https://ghcr.io/v2/quay.io/app/manifests/x"
    )


def test_registry_prefixed_name() -> None:
    a = ask(f"/v2/quay.io/org/app/blobs/{D}")
    assert a.url == f"https://quay.io/v2/org/app/blobs/{D}"
    assert a.sha256 == bytes.fromhex("ab" * 32)
    b = ask("/v2/lab.local:5000/team/app/manifests/latest")
    assert b.url == "http://127.0.0.5:5000/v2/team/app/manifests/latest"


def test_unknown_registry_is_a_fast_404() -> None:
    e = refused("/v2/app/manifests/v1?ns=evil.example")
    assert (e.http_status, e.code) == (404, "NAME_UNKNOWN")


@pytest.mark.parametrize(
    "target",
    [
        "/v2/../etc/passwd/manifests/latest",  # traversal
        "/v2/library/../../x/manifests/latest",
        "/v2/library/%2e%2e/manifests/latest",  # escaped traversal
        "/v2/library/a%2fb/manifests/latest",  # escaped slash
        "/v2/Library/Alpine/manifests/latest",  # upper case
        "/v2/library//alpine/manifests/latest",  # empty component
        "/v2/-alpine/manifests/latest",
        "/v2/alpine./manifests/latest",
        "/v2/" + "a/" * 200 + "x/manifests/latest",  # name too long
        "/v2/alpine/manifests/latest?ns=a&ns=b",  # ns twice
        "/v2/alpine/manifests/latest?ns=../x",
        "/v2/alpine\\x/manifests/latest",
    ],
)
def test_hostile_names(target: str) -> None:
    e = refused(target)
    assert e.http_status in (400, 404)


def test_non_ascii_and_huge_targets() -> None:
    assert refused(b"/v2/alp\xffine/manifests/x").code == "NAME_INVALID"
    assert refused(b"/v2/a/manifests/" + b"x" * 5000).code == "NAME_INVALID"


@pytest.mark.parametrize(
    ("reference", "code", "status"),
    [
        ("sha256:" + "ab" * 31, "DIGEST_INVALID", 400),  # too short
        ("sha256:" + "ab" * 33, "DIGEST_INVALID", 400),  # too long
        ("sha256:" + "AB" * 32, "DIGEST_INVALID", 400),  # upper-case hex
        ("sha256:" + "zz" * 32, "DIGEST_INVALID", 400),
        ("md5:!x", "DIGEST_INVALID", 400),
        ("sha256:ab/../" + "ab" * 31, "NAME_UNKNOWN", 404),  # traversal in a digest
        ("sha512:" + "ab" * 64, "BLOB_UNKNOWN", 404),  # valid, not verifiable here: next host
    ],
)
def test_bad_digests(reference: str, code: str, status: int) -> None:
    e = refused(f"/v2/library/alpine/blobs/{reference}")
    assert (e.code, e.http_status) == (code, status)


def test_bad_tags_and_blob_by_tag() -> None:
    assert refused("/v2/alpine/manifests/" + "t" * 129).http_status == 400
    assert refused("/v2/alpine/manifests/.hidden").http_status == 400
    assert refused("/v2/alpine/blobs/latest").code == "DIGEST_INVALID"
    assert refused("/v2/alpine/tags/list").http_status == 404
    assert refused("/v3/alpine/manifests/x").http_status == 404


def test_error_body_is_the_spec_json() -> None:
    import json

    body = json.loads(ApiError("NAME_UNKNOWN", "nope").body())
    assert body == {"errors": [{"code": "NAME_UNKNOWN", "message": "nope", "detail": None}]}


def test_accept_narrowing() -> None:
    assert accepted_manifest_types([]) == MANIFEST_TYPES
    assert accepted_manifest_types(["*/*"]) == MANIFEST_TYPES
    assert accepted_manifest_types([f"{DOCKER_MANIFEST}; q=0.5"]) == (DOCKER_MANIFEST,)
    assert accepted_manifest_types([f"{DOCKER_MANIFEST}", OCI_INDEX]) == (
        OCI_INDEX,
        DOCKER_MANIFEST,
    )
    assert accepted_manifest_types(["text/html"]) == MANIFEST_TYPES


def test_is_manifest_url_reads_the_kind_not_the_name() -> None:
    assert is_manifest_url("http://r:5000/v2/team/app/manifests/v1")
    assert is_manifest_url("http://r:5000/v2/team/app/manifests/v1#accept=oci-index")
    assert not is_manifest_url("http://r:5000/v2/team/app/blobs/sha256:" + "a" * 64)
    # Hostile-looking but valid: a repository named "manifests" asking for a blob.
    assert not is_manifest_url("http://r:5000/v2/team/manifests/blobs/sha256:" + "a" * 64)
    assert not is_manifest_url("sha256:" + "a" * 64)
