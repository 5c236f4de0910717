"""The seam's request and its public surface: what a front door may ask."""

from __future__ import annotations

import pytest

import frumitcache.content
from frumitcache.content import ContentRequest
from frumitcache.errors import BadUrlError, ProtocolError

DIGEST = bytes(range(32))


def test_exports_are_pinned() -> None:
    assert set(frumitcache.content.__all__) == {
        "DIGEST_SCHEME",
        "PROVENANCES",
        "ChunkFile",
        "Content",
        "ContentInfo",
        "ContentRequest",
        "ContentSource",
        "Freshness",
        "FreshnessWindow",
        "HttpMeta",
        "Piece",
        "Plan",
        "Provenance",
        "Revalidation",
        "TunnelOpener",
        "UpstreamAuth",
        "http_date",
        "http_status",
        "open_piece",
        "parse_http_date",
        "plan_response",
        "send_head",
        "send_piece",
    }


def test_a_request_by_digest_names_content_not_a_place() -> None:
    req = ContentRequest.by_digest(DIGEST, "control")
    assert req.url == "sha256:" + DIGEST.hex()
    assert req.digest_only
    assert req.sha256 == DIGEST
    assert req.freshness == "immutable"
    assert not ContentRequest("http://h/x", "apt").digest_only


def test_upstream_headers_pass_as_given() -> None:
    accept = ("Accept", "application/vnd.oci.image.index.v1+json")
    req = ContentRequest("https://r/v2/x/manifests/1", "control", "revalidate", headers=(accept,))
    assert req.headers == (accept,)


@pytest.mark.parametrize(
    "name", ["Range", "if-none-match", "Authorization", "Accept-Encoding", "Host", "TE"]
)
def test_headers_the_uplink_client_owns_are_refused(name: str) -> None:
    with pytest.raises(ProtocolError, match=name):
        ContentRequest("http://h/x", "apt", headers=((name, "v"),))


@pytest.mark.parametrize("header", [("Accept", "a\r\nX-Evil: 1"), ("X\nY", "v")])
def test_header_injection_is_refused(header: tuple[str, str]) -> None:
    with pytest.raises(ProtocolError, match="line break"):
        ContentRequest("http://h/x", "apt", headers=(header,))


def test_bad_digest_and_size_are_refused() -> None:
    with pytest.raises(BadUrlError):
        ContentRequest("http://h/x", "apt", sha256=b"short")
    with pytest.raises(ProtocolError):
        ContentRequest("http://h/x", "apt", size=-1)
