"""What an origin response means for a fetch: the rule book, without sockets."""

from __future__ import annotations

import httpx
import pytest

from frumitcache.origin import Action, parse_content_range, plan_response


def plan(
    status: int, *, offset: int = 0, total: int | None = None, cond: bool = False, **headers: str
) -> tuple[Action, int, int | None]:
    h = httpx.Headers({k.replace("_", "-"): v for k, v in headers.items()})
    step = plan_response(status, h, offset=offset, known_total=total, conditional=cond)
    return step.action, step.start, step.total


def test_content_range() -> None:
    assert parse_content_range("bytes 0-9/10") == (0, 10, 10)
    assert parse_content_range("bytes 5-9/*") == (5, 10, None)
    assert parse_content_range("bytes 5-10/10") is None  # past the end
    assert parse_content_range("bytes 9-5/10") is None
    assert parse_content_range("items 0-9/10") is None


def test_plain_and_ranged_bodies() -> None:
    assert plan(200, content_length="10") == (Action.BODY, 0, 10)
    assert plan(200) == (Action.BODY, 0, None)  # chunked: size unknown
    assert plan(206, offset=4, total=10, content_range="bytes 4-9/10") == (Action.BODY, 4, 10)


def test_ignored_range_restarts_with_this_body() -> None:
    # start 0 below the offset: the fetch drops its partial and stores this body from 0.
    assert plan(200, offset=4, content_length="10") == (Action.BODY, 0, 10)


def test_range_answers_that_do_not_fit() -> None:
    assert plan(206, offset=4, content_range="bytes 0-9/10")[0] is Action.STATUS
    assert plan(206, offset=4, content_range="garbage")[0] is Action.STATUS
    # The object changed size under a server that ignores If-Range.
    assert plan(206, offset=4, total=10, content_range="bytes 4-19/20")[0] is Action.RESTART


def test_416() -> None:
    assert plan(416, offset=10, content_range="bytes */10")[:2] == (Action.COMPLETE, 10)
    # Announced 20 bytes, but cannot serve past 10: the Content-Length was a lie.
    assert plan(416, offset=10, total=20, content_range="bytes */10")[0] is Action.LIE
    assert plan(416, offset=10, total=20)[0] is Action.LIE


@pytest.mark.parametrize("status", [404, 410, 500, 502, 503, 302, 416])
def test_errors_are_statuses(status: int) -> None:
    assert plan(status)[0] is Action.STATUS


def test_304_only_when_asked() -> None:
    assert plan(304, cond=True)[0] is Action.NOT_MODIFIED
    assert plan(304)[0] is Action.STATUS
