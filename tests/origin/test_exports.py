"""The public surface of frumitcache.origin, pinned: others integrate against it."""

from __future__ import annotations

import inspect

import frumitcache.origin
from frumitcache.origin import OriginFetcher


def test_public_names() -> None:
    assert sorted(frumitcache.origin.__all__) == sorted(
        [
            "DIGEST_EXTENSION",
            "FRESHNESS_EXTENSION",
            "META_CONTENT_TYPE",
            "META_ETAG",
            "META_FETCHED_AT",
            "META_LAST_MODIFIED",
            "SKIP_EXTENSION",
            "VIA_EXTENSION",
            "Action",
            "AllowList",
            "AllowPolicy",
            "Authorizer",
            "Door",
            "FetchHold",
            "FetchInfo",
            "OriginFetcher",
            "OriginStats",
            "RateMeter",
            "Step",
            "TokenBucket",
            "UplinkStream",
            "UpstreamBackoff",
            "parse_content_range",
            "plan_response",
        ]
    )
    for name in frumitcache.origin.__all__:
        assert hasattr(frumitcache.origin, name)


def test_fetch_signature() -> None:
    params = inspect.signature(OriginFetcher.fetch).parameters
    assert list(params) == [
        "self",
        "url",
        "expected_digest",
        "expected_size",
        "revalidate",
        "door",
        "headers",
        "auth",
        "digest_header",
        "keep_on_status",
        "backoff",
        "hold",
        "restarted",
        "task_status",
    ]
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in list(params)[2:])
