"""Upstream token auth through a real agent: ``docker-registry`` with token auth, its realm
served by a test token service signing with a throw-away ``openssl`` key. Anonymous pulls of a
public repository, credentialed pulls of a private one (``oci.credentials_file``), an expired
token renewed, refusals passed on honestly, and no secret in the agent's log."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.registry import OCI_INDEX, RegistryProcess, build_layout
from frumitcache.testing.tokens import TokenService

from .conftest import REGISTRY_NAME, need

pytestmark = pytest.mark.slow

USER, PASSWORD = "ann", "pa55-w0rd-never-logged"


class AuthRegistry:
    def __init__(self, root: Path) -> None:
        self.tokens = TokenService(
            root / "tokens", loopback_address(), user=USER, password=PASSWORD
        )
        self.tokens.start()
        self.registry = RegistryProcess(
            root / "reg",
            loopback_address(),
            5000,
            token_realm=self.tokens.realm,
            token_cert=self.tokens.cert,
        )
        self.registry.start()
        self.layout = build_layout(root / "layout", "v1", shared=b"auth" * 20_000)
        for name in ("public/app", "team/private"):
            skopeo_push_creds(self.layout.path, f"{self.registry.host}/{name}:v1")

    def stop(self) -> None:
        self.registry.stop()
        self.tokens.stop()


def skopeo_push_creds(layout: Path, dest: str) -> None:
    subprocess.run(
        ["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false", "--preserve-digests",
         "--dest-creds", f"{USER}:{PASSWORD}", f"oci:{layout}:v1", f"docker://{dest}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    need("docker-registry", "skopeo", "openssl")
    up = AuthRegistry(tmp_path_factory.mktemp("authreg"))
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
async def agent(upstream: AuthRegistry, tmp_path: Path) -> AgentProcess:  # type: ignore[misc]
    creds = tmp_path / "auth.json"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    creds.write_text(json.dumps({"auths": {REGISTRY_NAME: {"auth": token}}}))
    creds.chmod(0o600)
    proc = AgentProcess(
        tmp_path / "node",
        address=loopback_address(),
        settings={
            "oci": {
                "enabled": True,
                "port": 3146,
                "registries": [f"{REGISTRY_NAME}=http://{upstream.registry.host}"],
                "allowed_hosts": [
                    f"{upstream.registry.address}:*",
                    f"{upstream.tokens.address}:*",
                ],
                "credentials_file": str(creds),
                "tag_window_s": 1.0,
            },
        },
    )
    await proc.start()
    try:
        yield proc
    finally:
        proc.kill()


async def get(agent: AgentProcess, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(30):
            return await client.get(
                f"http://{agent.address}:3146{path}",
                headers={"Accept": OCI_INDEX},
            )


async def test_anonymous_and_credentialed_pulls(
    upstream: AuthRegistry, agent: AgentProcess
) -> None:
    public = await get(agent, f"/v2/{REGISTRY_NAME}/public/app/manifests/v1")
    assert public.status_code == 200, public.text
    assert public.headers["docker-content-digest"] == upstream.layout.index_digest
    private = await get(agent, f"/v2/{REGISTRY_NAME}/team/private/manifests/v1")
    assert private.status_code == 200, private.text
    layer = upstream.layout.layers["arm/v7"][-1]
    blob = await get(agent, f"/v2/{REGISTRY_NAME}/team/private/blobs/{layer}")
    assert blob.status_code == 200
    assert blob.content == upstream.layout.blobs[layer]
    assert any(r.authorized for r in upstream.tokens.requests)  # credentials were used
    log = agent.log()
    assert PASSWORD not in log
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in log
    assert "eyJ" not in log  # no JWT (base64 of '{"') in the log


async def test_expired_token_is_renewed(upstream: AuthRegistry, agent: AgentProcess) -> None:
    upstream.tokens.token_lifetime_s = 1  # the JWT dies in 1 s, the answer claims 300 s
    try:
        first = await get(agent, f"/v2/{REGISTRY_NAME}/team/private/manifests/v1")
        assert first.status_code == 200, first.text
        asked = len(upstream.tokens.requests)
        await trio.sleep(2.5)  # past the JWT's exp and past tag_window_s: revalidated upstream
        again = await get(agent, f"/v2/{REGISTRY_NAME}/team/private/manifests/v1")
        assert again.status_code == 200, again.text
        assert len(upstream.tokens.requests) > asked  # a fresh token after the 401
    finally:
        upstream.tokens.token_lifetime_s = 300


async def test_refusals_are_passed_on(upstream: AuthRegistry, agent: AgentProcess) -> None:
    upstream.tokens.fail_with = 403
    try:
        refused = await get(agent, f"/v2/{REGISTRY_NAME}/team/other/manifests/v1")
        assert refused.status_code == 401, refused.text  # the registry's own 401, honestly
        assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
    finally:
        upstream.tokens.fail_with = None
    missing = await get(agent, f"/v2/{REGISTRY_NAME}/public/nothing/manifests/v1")
    assert missing.status_code in (401, 404)  # distribution answers 401 for an unknown name
    assert PASSWORD not in agent.log()
