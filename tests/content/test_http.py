"""Range, If-Range and If-Modified-Since decisions (pure)."""

from __future__ import annotations

import pytest

from frumitcache.content import FreshnessWindow, http_status
from frumitcache.content._http import http_date, parse_http_date, parse_range, plan_response
from frumitcache.errors import (
    BadUrlError,
    DigestMismatchError,
    FrumitcacheError,
    NotAllowedError,
    NotSeederError,
    OriginStatusError,
    OriginTruncatedError,
    OriginUnreachableError,
    StoreError,
)

LM = 1_700_000_000.0


def plan(**kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "size": 1000,
        "last_modified": LM,
        "etag": '"abc"',
        "range_header": None,
        "if_range": None,
        "if_modified_since": None,
    }
    args.update(kw)
    return plan_response(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (None, None),
        ("bytes=0-", (0, 1000)),
        ("bytes=100-", (100, 1000)),
        ("bytes=100-199", (100, 200)),
        ("bytes=900-5000", (900, 1000)),
        ("bytes=-100", (900, 1000)),
        ("bytes=-5000", (0, 1000)),
        ("bytes=1000-", "416"),
        ("bytes=-0", "416"),
        ("bytes=5-1", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str | None, want: object) -> None:
    assert parse_range(header, 1000) == want


def test_plain_get() -> None:
    p = plan()
    assert (p.status, p.start, p.end, p.headers) == (200, 0, 1000, ())


def test_range_206() -> None:
    p = plan(range_header="bytes=10-")
    assert (p.status, p.start, p.end) == (206, 10, 1000)
    assert ("Content-Range", "bytes 10-999/1000") in p.headers


def test_range_416() -> None:
    p = plan(range_header="bytes=1000-")
    assert p.status == 416
    assert ("Content-Range", "bytes */1000") in p.headers


def test_if_range_date_match_and_mismatch() -> None:
    assert plan(range_header="bytes=10-", if_range=http_date(LM)).status == 206
    assert plan(range_header="bytes=10-", if_range=http_date(LM - 10)).status == 200


def test_if_range_etag() -> None:
    assert plan(range_header="bytes=10-", if_range='"abc"').status == 206
    assert plan(range_header="bytes=10-", if_range='"other"').status == 200
    assert plan(range_header="bytes=10-", if_range='W/"abc"').status == 200


def test_if_modified_since() -> None:
    assert plan(if_modified_since=http_date(LM)).status == 304
    assert plan(if_modified_since=http_date(LM + 60)).status == 304
    assert plan(if_modified_since=http_date(LM - 60)).status == 200
    assert plan(if_modified_since="garbage").status == 200
    assert plan(if_modified_since=http_date(LM), last_modified=None).status == 200


def test_http_date_round_trip() -> None:
    assert parse_http_date(http_date(LM)) == LM
    assert parse_http_date(None) is None
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37") is None  # no zone: refused


def test_freshness_window() -> None:
    w = FreshnessWindow(30.0)
    url = "http://h/d/dists/s/InRelease"
    assert w.due(url, 100.0)
    w.mark(url, 100.0)
    assert not w.due(url, 129.9)
    assert w.due(url, 130.0)


def test_tied_object_follows_the_one_it_is_tied_to() -> None:
    w = FreshnessWindow(30.0)
    rel, sig = "http://h/d/dists/s/Release", "http://h/d/dists/s/Release.gpg"
    w.mark(sig, 100.0)
    w.mark(rel, 100.0)
    assert not w.due(sig, 110.0, tied_to=rel)
    w.mark(rel, 111.0)  # Release was revalidated after the signature: the signature is due
    assert w.due(sig, 112.0, tied_to=rel)
    assert not w.due(sig, 112.0)  # untied, only the window counts
    w.forget_before(200.0)
    assert w.last(rel) is None


@pytest.mark.parametrize(
    "header",
    [
        "bytes=\u00b2-",  # str.isdigit() says yes, int() says no
        "bytes=-\u0661",
        "bytes=1" + "0" * 5000 + "-",  # past int()'s digit limit
        "bytes=0-" + "9" * 40,
        "bytes=1-2-3",
        "bytes= - ",
        "bytes=\x00-",
    ],
)
def test_malformed_range_is_ignored(header: str) -> None:
    assert parse_range(header, 1000) is None
    assert (
        plan_response(
            size=1000,
            last_modified=None,
            etag=None,
            range_header=header,
            if_range=None,
            if_modified_since=None,
        ).status
        == 200
    )


@pytest.mark.parametrize(
    "text", ["Mon, 01 Jan 99999999 00:00:00 GMT", "\u00b2", "Mon, 01 Jan 1 00:00:00 +9999"]
)
def test_malformed_dates_are_ignored(text: str) -> None:
    assert parse_http_date(text) is None


def _plan(**kw: object) -> tuple[int, int, int]:
    args: dict[str, object] = {
        "size": 100,
        "last_modified": LM,
        "etag": '"v1"',
        "range_header": None,
        "if_range": None,
        "if_modified_since": None,
    }
    args.update(kw)
    p = plan_response(**args)  # type: ignore[arg-type]
    return p.status, p.start, p.end


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ('"v1"', 304),
        ('W/"v1"', 304),  # weak comparison for GET/HEAD
        ('"v0", "v1"', 304),
        ("*", 304),
        ('"v2"', 200),
        ("", 200),
    ],
)
def test_if_none_match(header: str, status: int) -> None:
    assert _plan(if_none_match=header)[0] == status


def test_if_none_match_wins_over_if_modified_since() -> None:
    # The tag changed though the date says "not modified": the tag decides (RFC 9110 13.2.2).
    assert _plan(if_none_match='"v2"', if_modified_since=http_date(LM + 10))[0] == 200
    assert _plan(if_none_match='"v1"', if_modified_since=http_date(LM - 10))[0] == 304


def test_if_none_match_without_a_stored_etag_sends_the_body() -> None:
    assert _plan(etag=None, if_none_match='"v1"')[0] == 200


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (NotAllowedError("x"), 403),
        (OriginStatusError("x", status=404), 404),
        (OriginStatusError("x", status=301), 502),
        (OriginUnreachableError("x"), 504),
        (DigestMismatchError("x"), 502),
        (OriginTruncatedError("x"), 502),
        (NotSeederError("x"), 503),
        (BadUrlError("x"), 400),
        (StoreError("x"), 500),
    ],
)
def test_http_status_of_each_error(exc: FrumitcacheError, status: int) -> None:
    assert http_status(exc) == status


def test_freshness_window_stays_bounded() -> None:
    w = FreshnessWindow(30.0, max_entries=3)
    for i in range(5):
        w.mark(f"u{i}", 100.0 + i)
    assert [w.last(f"u{i}") for i in range(5)] == [None, None, 102.0, 103.0, 104.0]
    w.mark("u2", 105.0)  # a fresh mark moves it to the young end
    w.mark("u5", 106.0)
    assert w.last("u2") == 105.0
    assert w.last("u3") is None
