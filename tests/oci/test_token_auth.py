"""Upstream token auth through a real agent: a real ``docker-registry`` with token auth, its
realm a test token service signing JWTs with a throw-away key. Anonymous pulls of public
repositories, credentialed pulls of private ones from ``oci.credentials_file``, an expired token
renewed, the realm's 403/429 and the registry's 401 passed on as they are, and neither the
password nor a token ever in the agent's log."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.registry import (
    Layout,
    RegistryProcess,
    build_layout,
    skopeo_push,
)
from frumitcache.testing.tokens import TokenService

from .conftest import REGISTRY_NAME, need

pytestmark = pytest.mark.slow

USER, SECRET = "robot", "s3cret-never-logged"
# docker-registry accepts a JWT up to 60 s past its exp (clock-skew leeway): a lifetime of
# -57 s makes a token the registry refuses after about 3 s, while the answer claims 300 s.
SHORT_LIFETIME_S = -57


class Auth:
    def __init__(self, registry: RegistryProcess, tokens: TokenService, layout: Layout) -> None:
        self.registry, self.tokens, self.layout = registry, tokens, layout


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Auth]:
    need("docker-registry", "skopeo", "openssl")
    root = tmp_path_factory.mktemp("token-registry")
    address = loopback_address()
    tokens = TokenService(root / "tokens", address, user=USER, password=SECRET)
    tokens.start()
    registry = RegistryProcess(
        root / "reg", address, 5000, token_realm=tokens.realm, token_cert=tokens.cert
    )
    try:
        registry.start()
        layout = build_layout(root / "layout", "v1", shared=b"auth" * 10_000, per_platform=1)
        for name in ("team/private", "public/app"):
            skopeo_push(layout.path, "v1", f"{registry.host}/{name}:v1", creds=f"{USER}:{SECRET}")
        yield Auth(registry, tokens, layout)
    finally:
        registry.stop()
        tokens.stop()


def agent_for(auth: Auth, directory: Path, *, credentials: bool) -> AgentProcess:
    settings: dict[str, object] = {
        "registries": [f"{REGISTRY_NAME}=http://{auth.registry.host}"],
        "allowed_hosts": [f"{auth.registry.address}:*"],
    }
    if credentials:
        directory.mkdir(parents=True, exist_ok=True)
        blob = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        path = directory / "auth.json"
        path.write_text(json.dumps({"auths": {REGISTRY_NAME: {"auth": blob}}}))
        settings["credentials_file"] = str(path)
    return AgentProcess(directory, address=loopback_address(), settings={"oci": settings})


def assert_no_secret(agent: AgentProcess) -> None:
    log = agent.log()
    assert SECRET not in log
    assert base64.b64encode(f"{USER}:{SECRET}".encode()).decode() not in log
    assert "eyJ" not in log  # the start of every JWT (base64 of '{"')


async def test_anonymous_credentialed_and_renewed(auth: Auth, tmp_path: Path) -> None:
    auth.tokens.fail_with = None
    auth.tokens.token_lifetime_s = SHORT_LIFETIME_S
    agent = agent_for(auth, tmp_path / "a", credentials=True)
    await agent.start()
    try:
        mirror = f"http://{agent.address}:3146"
        async with httpx.AsyncClient(timeout=30) as client:

            async def get(path: str) -> httpx.Response:
                return await client.get(f"{mirror}/v2/{path}?ns={REGISTRY_NAME}")

            asked = len(auth.tokens.requests)
            index = await get("team/private/manifests/v1")
            assert index.status_code == 200, index.text
            assert index.headers["docker-content-digest"] == auth.layout.index_digest
            assert [r.authorized for r in auth.tokens.requests[asked:]] == [True]
            # The token dies (the registry refuses it) long before its expires_in: the next
            # upstream request gets a 401, the hook drops the token and asks for a new one.
            await trio.sleep(4)  # the token's real lifetime is what is tested
            asked = len(auth.tokens.requests)
            platform = auth.layout.manifests["arm/v7"]
            manifest = await get(f"team/private/manifests/{platform}")
            assert manifest.status_code == 200, manifest.text
            layer = auth.layout.layers["arm/v7"][-1]
            blob = await get(f"team/private/blobs/{layer}")
            assert blob.status_code == 200
            assert blob.content == auth.layout.blobs[layer]
            renewed = auth.tokens.requests[asked:]
            assert 1 <= len(renewed) <= 2, renewed  # a new token per expiry, not per request
            assert all(r.authorized for r in renewed)
        assert_no_secret(agent)
    finally:
        await agent.stop()


async def test_refusals_pass_on(auth: Auth, tmp_path: Path) -> None:
    auth.tokens.fail_with = None
    auth.tokens.token_lifetime_s = 300
    agent = agent_for(auth, tmp_path / "a", credentials=False)
    await agent.start()
    try:
        mirror = f"http://{agent.address}:3146"
        async with httpx.AsyncClient(timeout=30) as client:

            async def get(path: str) -> httpx.Response:
                return await client.get(f"{mirror}/v2/{path}?ns={REGISTRY_NAME}")

            public = await get("public/app/manifests/v1")  # anonymous token, pull on public/
            assert public.status_code == 200, public.text
            private = await get("team/private/manifests/v1")  # anonymous: no access
            assert private.status_code == 401, private.text
            assert private.json()["errors"][0]["code"] == "UNAUTHORIZED"
            # The 429 last: it backs the registry off (the mirror answers 429 itself a while).
            for status, code in ((403, "DENIED"), (429, "TOOMANYREQUESTS")):
                # A repository of its own: a new scope, so a new token flow meets the refusal.
                auth.tokens.fail_with = status
                refused = await get(f"public/other{status}/manifests/v1")
                assert refused.status_code == status, refused.text
                assert refused.json()["errors"][0]["code"] == code
        assert "oci.no_token" in agent.log()
        assert_no_secret(agent)
    finally:
        auth.tokens.fail_with = None
        await agent.stop()
