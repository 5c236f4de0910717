"""The registry door's :class:`~frumitcache.content.UpstreamAuth`: the token flow's trio shell.

Registered for door ``oci`` on the agent, it signs the seeder's upstream requests (a member's
request reaching the seeder is signed by the seeder's hook: tokens and credentials never cross
the site). Before a request it adds a held, unexpired token; on a ``401`` with a Bearer
challenge it asks the realm for a token (one request per challenge at a time, the others wait
for it) and the uplink client retries once. The token GET goes through ``get``, which the agent
wires to the uplink client (counted, allow-listed). URLs that are not a configured registry's
API (a blob's CDN redirect) get nothing: a token never leaves its registry. A realm that
answers 403 or 429 fails the request with that status: the client learns of the refusal or the
quota, not of the 401 it caused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import trio

from frumitcache._log import get_logger
from frumitcache.config import Registry
from frumitcache.errors import OriginStatusError
from frumitcache.oci._auth import Credentials, TokenBook, TokenError, parse_challenge

log = get_logger("oci")

_PASSED_ON = frozenset({403, 429})  # a token service's refusals the client is told as they are

# GET url with headers → (status, body); raises FrumitcacheError when the realm is unreachable.
TokenGet = Callable[[str, Mapping[str, str]], Awaitable[tuple[int, bytes]]]


class RegistryAuth:
    def __init__(
        self,
        registries: Mapping[str, Registry],
        get: TokenGet,
        *,
        credentials: Mapping[str, Credentials] | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._registries = list(registries.values())
        self._get = get
        self._clock = clock
        self.book = TokenBook(dict(credentials or {}))
        self._done: dict[tuple[str, str, str], trio.Event] = {}

    def _which(self, url: str) -> tuple[Registry, str] | None:
        for registry in self._registries:
            prefix = registry.base + "/v2/"
            if url.startswith(prefix):
                path = urlsplit(url).path[4:]
                repository = path.rsplit("/", 2)[0] if path.count("/") >= 2 else ""
                return registry, repository
        return None

    def _header(self, registry: Registry, repository: str) -> dict[str, str]:
        value = self.book.authorization(registry.name, repository, self._clock())
        return {"Authorization": value} if value else {}

    async def authorize(self, url: str, challenge: str | None) -> Mapping[str, str]:
        found = self._which(url)
        if found is None:
            return {}
        registry, repository = found
        if challenge is None:
            return self._header(registry, repository)
        parsed = parse_challenge(challenge)
        if parsed is None:
            return {}  # not a Bearer challenge: the 401 goes back to the client as it came
        request = self.book.challenged(
            registry.name, registry.base, repository, parsed, self._clock()
        )
        if request is None:
            event = self._done.get(parsed.key)
            if event is not None:
                await event.wait()
            return self._header(registry, repository)
        event = self._done[parsed.key] = trio.Event()
        try:
            headers = {"Authorization": request.authorization} if request.authorization else {}
            status: int | None = None
            body = b""
            try:
                status, body = await self._get(request.url, headers)
            finally:
                self.book.finished(request.key, status, body, self._clock())
        except TokenError as exc:
            realm = urlsplit(parsed.realm).netloc
            log.warning("oci.no_token", realm=realm, registry=registry.name, why=str(exc))
            if status in _PASSED_ON:
                # The realm's refusal is the answer (quota, forbidden), not the 401 it causes.
                raise OriginStatusError(
                    f"{registry.name}: token service {realm} answered {status}", status=status
                ) from None
            return {}
        finally:
            event.set()
            del self._done[parsed.key]
        return self._header(registry, repository)
