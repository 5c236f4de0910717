"""Upstream auth for the registry door: the Bearer token flow as a state machine (no I/O).

A registry answers an anonymous request with ``401`` and ``WWW-Authenticate: Bearer
realm=...,service=...,scope=...``; the client asks the realm for a token (anonymously, or with
Basic credentials from ``oci.credentials_file``) and repeats the request with ``Authorization:
Bearer <token>``. :class:`TokenBook` holds what the seeder learned: tokens by (realm, service,
scope), reused until shortly before they expire, and at most one token request per key in
flight (the others wait for it). The time is always an argument.

Credentials are kept out of ``repr`` and never formatted into a message: the door's logs name
the registry and the realm, never a user, a password or a token.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from frumitcache.errors import ConfigError

# Tokens are dropped this long before they expire, so a request never carries a token that
# expires on its way.
EXPIRY_MARGIN_S = 10.0
DEFAULT_EXPIRES_IN_S = 60.0  # the token spec's default when expires_in is missing
MAX_TOKEN_BODY = 64 * 1024

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed ``WWW-Authenticate: Bearer`` challenge."""

    realm: str
    service: str = ""
    scope: str = ""
    error: str = ""  # e.g. insufficient_scope

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.realm, self.service, self.scope)


def parse_challenge(header: str) -> Challenge | None:
    """The Bearer challenge in one ``WWW-Authenticate`` value; None if there is none (Basic,
    malformed, no https/http realm) — the 401 then goes back to the client as it came."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            return None
        quoted = match.group(2)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(3)
        params[match.group(1).lower()] = value
        pos = match.end()
    realm = params.get("realm", "")
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return None
    return Challenge(
        realm, params.get("service", ""), params.get("scope", ""), params.get("error", "")
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = field(repr=False)
    password: str = field(repr=False)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def load_credentials(where: str | Path) -> dict[str, Credentials]:
    """Registry name → credentials from a Docker/podman ``auth.json``-style file:
    ``{"auths": {"ghcr.io": {"auth": base64("user:token")}}}`` or ``username``/``password``.
    Errors name the file and the registry, never a secret."""
    path = Path(where).expanduser()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"oci.credentials_file: cannot read {path}: {type(exc).__name__}"
        ) from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise ConfigError(f'oci.credentials_file: {path} has no "auths" object')
    out: dict[str, Credentials] = {}
    for registry, entry in auths.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"oci.credentials_file: entry for {registry!r} is not an object")
        user, password = entry.get("username"), entry.get("password")
        if isinstance(entry.get("auth"), str):
            try:
                user, _, password = (
                    base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                )
            except ValueError:
                raise ConfigError(
                    f'oci.credentials_file: "auth" of {registry!r} is not base64 user:password'
                ) from None
        if not isinstance(user, str) or not isinstance(password, str) or not user:
            raise ConfigError(f"oci.credentials_file: no username/password for {registry!r}")
        name = str(registry).removeprefix("https://").removeprefix("http://").split("/")[0]
        out[name.lower()] = Credentials(user, password)
    return out


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What the shell must send: GET ``url`` with ``authorization`` (None: anonymous)."""

    key: tuple[str, str, str]
    url: str = field(repr=False)  # carries no secret, but scope names are noise in reprs
    authorization: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float


class TokenError(Exception):
    """The realm's answer was not a usable token (the text names no secret)."""


class TokenBook:
    """Bearer tokens of one seeder, by challenge; one token request per key at a time.

    Use: ``authorization(registry, repository, now)`` before a request; on a 401 with a
    challenge, ``challenged(...)`` gives the :class:`TokenRequest` to run — or None when one
    for that key is already running (wait for :meth:`finished`, then retry) — then
    ``finished(key, status, body, now)`` with the realm's answer.
    """

    def __init__(self, credentials: dict[str, Credentials] | None = None) -> None:
        self._credentials = credentials or {}
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._by_repo: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._running: set[tuple[str, str, str]] = set()
        self.requests = 0  # token requests started (statistics)

    def authorization(self, registry: str, repository: str, now: float) -> str | None:
        key = self._by_repo.get((registry, repository))
        token = self._tokens.get(key) if key is not None else None
        if token is None or now >= token.expires_at:
            return None
        return f"Bearer {token.value}"

    def running(self, key: tuple[str, str, str]) -> bool:
        return key in self._running

    def challenged(
        self,
        registry: str,
        registry_base: str,
        repository: str,
        challenge: Challenge,
        now: float,
    ) -> TokenRequest | None:
        """A 401 came back with ``challenge``: the token request to make, or None if one for
        the same key is in flight already (retry with its token once it finished). A held token
        for the key is dropped: the upstream refused it (expired early, revoked)."""
        key = challenge.key
        self._by_repo[(registry, repository)] = key
        if key in self._running:
            return None  # one flow per challenge: wait for it, then retry with its token
        # The upstream refused what we sent (no token, or one it no longer takes although its
        # expires_in said otherwise): drop it and ask for a new one.
        self._tokens.pop(key, None)
        self._running.add(key)
        self.requests += 1
        query = {k: v for k, v in (("service", challenge.service), ("scope", challenge.scope)) if v}
        url = challenge.realm + ("&" if "?" in challenge.realm else "?") + urlencode(query)
        creds = self._credentials.get(registry)
        authorization = None
        if creds is not None and (
            urlsplit(challenge.realm).scheme == "https" or registry_base.startswith("http://")
        ):
            # Never send a password in clear text unless the registry itself is plain http
            # (a LAN or test registry configured so on purpose).
            authorization = creds.basic()
        return TokenRequest(key, url, authorization)

    def finished(
        self, key: tuple[str, str, str], status: int | None, body: bytes, now: float
    ) -> None:
        """The realm answered (``status`` None: the request failed). Raises
        :class:`TokenError` when no token came of it."""
        self._running.discard(key)
        if status != 200:
            raise TokenError(f"the token service answered {status}")
        try:
            data = json.loads(body[:MAX_TOKEN_BODY])
        except ValueError:
            raise TokenError("the token service answered something that is not JSON") from None
        value = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value or not value.isprintable():
            raise TokenError("the token service's answer holds no token")
        expires_in = data.get("expires_in", DEFAULT_EXPIRES_IN_S)
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            expires_in = DEFAULT_EXPIRES_IN_S
        lifetime = max(0.0, float(expires_in) - EXPIRY_MARGIN_S)
        self._tokens[key] = _Token(value, now + lifetime)
