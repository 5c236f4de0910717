"""The Bearer token flow: challenge parsing, the token book (time as an argument), the trio hook
with one token request per challenge at a time, credentials never in reprs or logs."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import pytest
import trio
import trio.testing

from frumitcache.errors import ConfigError
from frumitcache.oci import (
    Challenge,
    Credentials,
    TokenBook,
    TokenError,
    load_credentials,
    parse_challenge,
    parse_registries,
)
from frumitcache.oci._authhook import RegistryAuth

HUB = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'
SECRET = "s3cr3t-pa55"


def test_parse_challenge() -> None:
    c = parse_challenge(HUB)
    assert c == Challenge(
        "https://auth.docker.io/token", "registry.docker.io", "repository:library/alpine:pull"
    )
    assert parse_challenge('bearer realm="http://127.0.0.9:1/t",error="insufficient_scope"') == (
        Challenge("http://127.0.0.9:1/t", "", "", "insufficient_scope")
    )
    assert parse_challenge('Bearer realm="https://a/t", scope="x\\"y"') == Challenge(
        "https://a/t", "", 'x"y'
    )


@pytest.mark.parametrize(
    "header",
    [
        'Basic realm="x"',
        "Bearer",
        'Bearer realm="file:///etc/passwd"',
        'Bearer realm="https://user:pw@evil/t"',
        'Bearer realm="unterminated',
        "Bearer ,,,=",
        'Bearer service="x"',  # no realm
    ],
)
def test_unusable_challenges(header: str) -> None:
    assert parse_challenge(header) is None


def test_token_book_reuse_expiry_and_one_flow() -> None:
    book = TokenBook()
    ch = parse_challenge(HUB)
    assert ch is not None
    assert book.authorization("docker.io", "library/alpine", 0.0) is None
    req = book.challenged("docker.io", "https://registry-1.docker.io", "library/alpine", ch, 0.0)
    assert req is not None
    assert req.authorization is None  # anonymous
    assert req.url.startswith("https://auth.docker.io/token?service=registry.docker.io&scope=")
    # A second 401 for the same challenge while the first flow runs: no second request.
    assert book.challenged("docker.io", "https://x", "library/alpine", ch, 1.0) is None
    book.finished(req.key, 200, json.dumps({"token": "T1", "expires_in": 300}).encode(), 2.0)
    assert book.authorization("docker.io", "library/alpine", 100.0) == "Bearer T1"
    assert book.authorization("docker.io", "library/alpine", 2.0 + 300 - 5) is None  # margin
    assert book.requests == 1
    # Refused although unexpired (the registry's exp came first): dropped, a new flow.
    again = book.challenged("docker.io", "https://x", "library/alpine", ch, 100.0)
    assert book.authorization("docker.io", "library/alpine", 100.0) is None
    assert again is not None
    with pytest.raises(TokenError, match="403"):
        book.finished(again.key, 403, b"", 401.0)
    assert not book.running(again.key)


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"token": ""}', b'{"token": "a\\nb"}', b'{"expires_in": 5}']
)
def test_bad_token_answers(body: bytes) -> None:
    book = TokenBook()
    ch = parse_challenge(HUB)
    assert ch is not None
    req = book.challenged("docker.io", "https://r", "library/alpine", ch, 0.0)
    assert req is not None
    with pytest.raises(TokenError):
        book.finished(req.key, 200, body, 0.0)


def test_credentials_sent_only_over_https_or_to_a_plain_http_registry() -> None:
    creds = {"lab": Credentials("ann", SECRET)}
    book = TokenBook(creds)
    tls = Challenge("https://auth/t", "s", "x")
    req = book.challenged("lab", "https://lab", "r", tls, 0.0)
    assert req is not None
    assert req.authorization == "Basic " + base64.b64encode(f"ann:{SECRET}".encode()).decode()
    clear = Challenge("http://auth/t", "s", "y")
    req2 = book.challenged("lab", "https://lab", "r2", clear, 0.0)
    assert req2 is not None
    assert req2.authorization is None  # a TLS registry pointing at a clear-text realm
    req3 = book.challenged("lab", "http://lab", "r3", Challenge("http://auth/t", "s", "z"), 0.0)
    assert req3 is not None
    assert req3.authorization is not None  # a plain-http registry configured so on purpose
    for obj in (creds["lab"], req, req3):
        assert SECRET not in repr(obj)
        assert "ann" not in repr(obj)


def test_load_credentials(tmp_path: Path) -> None:
    f = tmp_path / "auth.json"
    auth = base64.b64encode(f"bob:{SECRET}".encode()).decode()
    f.write_text(
        json.dumps(
            {
                "auths": {
                    "https://ghcr.io": {"auth": auth},
                    "lab.local:5000": {"username": "ann", "password": SECRET},
                }
            }
        )
    )
    got = load_credentials(f)
    assert got["ghcr.io"] == Credentials("bob", SECRET)
    assert got["lab.local:5000"] == Credentials("ann", SECRET)
    for bad in ('{"auths": {"x": {"auth": "!!"}}}', "{}", "nope", '{"auths": {"x": {}}}'):
        f.write_text(bad.replace("!!", base64.b64encode(SECRET.encode()).decode()[:-1] + "!"))
        with pytest.raises(ConfigError) as info:
            load_credentials(f)
        assert SECRET not in str(info.value)


REGS = parse_registries(["docker.io=registry-1.docker.io", "lab=http://127.0.0.5:5000"])


async def test_hook_one_token_flow_for_concurrent_401s(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[str, Mapping[str, str]]] = []
    release = trio.Event()

    async def get(url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        calls.append((url, headers))
        await release.wait()
        return 200, json.dumps({"token": "TOK", "expires_in": 60}).encode()

    hook = RegistryAuth(REGS, get, credentials={"lab": Credentials("ann", SECRET)})
    url = "http://127.0.0.5:5000/v2/team/app/manifests/v1"
    challenge = (
        'Bearer realm="http://127.0.0.6:1/token",service="lab",scope="repository:team/app:pull"'
    )
    assert await hook.authorize(url, None) == {}
    results: list[Mapping[str, str]] = []

    async def one() -> None:
        results.append(await hook.authorize(url, challenge))

    with trio.fail_after(5), caplog.at_level(logging.DEBUG):
        async with trio.open_nursery() as n:
            for _ in range(5):
                n.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
    assert len(calls) == 1  # one token request for five 401s
    assert calls[0][1]["Authorization"].startswith("Basic ")
    assert results == [{"Authorization": "Bearer TOK"}] * 5
    assert await hook.authorize(url, None) == {"Authorization": "Bearer TOK"}  # reused
    # A redirect to a blob CDN (not a registry's API) never gets the token.
    assert await hook.authorize("https://cdn.example/blob?sig=1", None) == {}
    everything = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert SECRET not in everything
    assert "TOK" not in everything


async def test_hook_refused_token_passes_the_401_on(caplog: pytest.LogCaptureFixture) -> None:
    async def get(url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        return 401, b'{"details": "bad creds"}'

    hook = RegistryAuth(REGS, get, credentials={"docker.io": Credentials("bob", SECRET)})
    with caplog.at_level(logging.INFO):
        got = await hook.authorize("https://registry-1.docker.io/v2/library/a/manifests/x", HUB)
    assert got == {}
    everything = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert "oci.no_token" in everything
    assert "auth.docker.io" in everything
    assert SECRET not in everything
