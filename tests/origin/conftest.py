"""Fixtures of the origin tests: a real test origin on a loopback address of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.config import OriginConfig
from frumitcache.origin import OriginFetcher
from frumitcache.store import Store
from frumitcache.testing.origin import OriginServer


@pytest.fixture
async def origin(nursery: trio.Nursery, address: str) -> OriginServer:
    server = OriginServer()
    await nursery.start(server.serve, address)
    return server


CHUNK = 16 * 1024


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    with Store.open(store_dir, max_bytes=1 << 30, chunk_size=CHUNK) as store:
        yield store


@pytest.fixture
async def fetchers(store: Store) -> AsyncIterator[Callable[..., OriginFetcher]]:
    """Make fetchers on ``store`` with test-sized timeouts; all closed at the end."""
    made: list[OriginFetcher] = []

    def make(**overrides: Any) -> OriginFetcher:
        settings: dict[str, Any] = {
            "connect_timeout_s": 2.0,
            "read_timeout_s": 2.0,
            "retries": 3,
            "allow": ["127.0.0.0/8:*"],  # the test origin's loopback address, named
        }
        fetcher = OriginFetcher(OriginConfig(**{**settings, **overrides}), store)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.aclose()


@pytest.fixture
def fetcher(fetchers: Callable[..., OriginFetcher]) -> OriginFetcher:
    return fetchers()
