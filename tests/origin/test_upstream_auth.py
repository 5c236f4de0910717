"""A door's upstream headers and credentials (``fetch(headers=, auth=)``): forwarded as given,
signed before the first try, asked again once after a 401 challenge, never looped."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from frumitcache.config import OriginConfig
from frumitcache.errors import OriginError, OriginStatusError
from frumitcache.origin import OriginFetcher
from frumitcache.store import Store

URL = "https://registry.test/v2/library/app/manifests/1.0"
BODY = b'{"schemaVersion": 2}'
CHALLENGE = 'Bearer realm="https://auth.test/token",service="registry.test",scope="pull"'


class TokenAuth:
    """Hands out a token only once challenged (as a registry client does)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, str | None]] = []

    async def authorize(self, url: str, challenge: str | None) -> Mapping[str, str]:
        self.calls.append((url, challenge))
        return {} if challenge is None else {"Authorization": f"Bearer {self.token}"}


class Registry(httpx.AsyncBaseTransport):
    """A registry that wants a Bearer token (a transport, so the body streams as from a socket;
    httpx's MockTransport reads it first)."""

    def __init__(self) -> None:
        self.seen: list[httpx.Headers] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.headers)
        if request.headers.get("authorization") != "Bearer good":
            return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})
        return httpx.Response(
            200,
            stream=httpx.ByteStream(BODY),
            headers={
                "Content-Type": "application/vnd.oci.image.manifest",
                "Content-Length": str(len(BODY)),
            },
        )


def fetcher(tmp_path: Path, registry: Registry) -> tuple[OriginFetcher, Store]:
    store = Store.open(tmp_path / "store", max_bytes=1 << 20, chunk_size=4096)
    config = OriginConfig(retries=0, allow=["registry.test"])
    return OriginFetcher(config, store, transport=registry), store


async def test_challenge_is_answered_once_and_headers_are_forwarded(tmp_path: Path) -> None:
    registry, auth = Registry(), TokenAuth("good")
    f, store = fetcher(tmp_path, registry)
    accept = ("Accept", "application/vnd.oci.image.index.v1+json")
    try:
        manifest = await f.fetch(URL, headers=[accept], auth=auth)
    finally:
        await f.aclose()
    assert auth.calls == [(URL, None), (URL, CHALLENGE)]
    assert [h.get("accept") for h in registry.seen] == [accept[1], accept[1]]
    assert manifest.size == len(BODY)
    async with store.open_reader(URL) as reader:
        assert await reader.readall() == BODY
    store.close()


async def test_a_refused_token_is_not_retried_forever(tmp_path: Path) -> None:
    registry, auth = Registry(), TokenAuth("revoked")
    f, store = fetcher(tmp_path, registry)
    try:
        with pytest.raises(OriginStatusError) as caught:
            await f.fetch(URL, auth=auth)
    finally:
        await f.aclose()
    assert caught.value.status == 401
    assert len(registry.seen) == 2  # the unsigned try and one signed retry
    assert store.lookup(URL) is None
    store.close()


async def test_a_failing_hook_is_an_origin_error(tmp_path: Path) -> None:
    class Broken:
        async def authorize(self, url: str, challenge: str | None) -> Mapping[str, str]:
            raise RuntimeError("token service down")

    f, store = fetcher(tmp_path, Registry())
    try:
        with pytest.raises(OriginError, match="authorization failed"):
            await f.fetch(URL, auth=Broken())
    finally:
        await f.aclose()
    store.close()


async def test_without_a_hook_a_401_is_the_origin_status(tmp_path: Path) -> None:
    registry = Registry()
    f, store = fetcher(tmp_path, registry)
    try:
        with pytest.raises(OriginStatusError) as caught:
            await f.fetch(URL)
    finally:
        await f.aclose()
    assert caught.value.status == 401
    assert len(registry.seen) == 1
    store.close()
