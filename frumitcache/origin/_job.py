"""One leader's origin fetch (:class:`_Job`): requests, Range resumes, retries and the body
written into the store; and what it reports (:class:`FetchInfo`). The single flight, the rate
limit, the allow-list hooks and the counters live in :mod:`frumitcache.origin._fetcher`."""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Literal

import httpx
import trio

from frumitcache._log import get_logger
from frumitcache.errors import (
    DigestMismatchError,
    FrumitcacheError,
    OriginError,
    OriginTruncatedError,
    OriginUnreachableError,
    StoreFullError,
)
from frumitcache.origin._allow import ALLOW_EXTENSION, AllowList
from frumitcache.origin._body import ResponseBody, copy_body, streamed
from frumitcache.origin._links import LinkLedger
from frumitcache.origin._parts import FetchInfo, _Upstream, _Writer
from frumitcache.origin._plan import (
    Action,
    plan_response,
    retry_after,
    status_error,
    validator_of,
)
from frumitcache.origin._probe import probe
from frumitcache.origin._via import (
    DIGEST_EXTENSION,
    FRESHNESS_EXTENSION,
    SKIP_EXTENSION,
    via_of,
)

if TYPE_CHECKING:
    from frumitcache.origin._fetcher import OriginFetcher
    from frumitcache.store import Manifest

log = get_logger("origin")


# Keys this module keeps in store.key_meta(url).
META_ETAG = "etag"
META_LAST_MODIFIED = "last_modified"
META_CONTENT_TYPE = "content_type"
META_FETCHED_AT = "fetched_at"  # unix seconds, as a decimal string
META_PARTIAL_VALIDATOR = "partial_validator"  # If-Range value for a stored partial


class _Transient(Exception):
    """A connection-level failure worth resuming after (internal)."""

    def __init__(self, cause: Exception, *, in_body: bool) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause = cause
        self.in_body = in_body


def _host_of(url: httpx.URL) -> str:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return f"{url.host}:{port}"


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error (certificate not trusted, handshake failure) behind a connect error."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


class _Job:
    """The state of one leader's fetch: the writer, the offset, the retries left."""

    def __init__(
        self,
        fetcher: OriginFetcher,
        url: str,
        expected_digest: bytes | None,
        expected_size: int | None,
        stored: Manifest | None,
        share: Callable[[FetchInfo], None],
        allow: AllowList,
        upstream: _Upstream | None = None,
    ) -> None:
        self.f = fetcher
        self.upstream = upstream or _Upstream()
        self.auth_headers: Mapping[str, str] = {}
        self.challenged = False  # the origin answered 401 once and the authorizer was asked
        self.allow = allow
        self.store = fetcher._store
        self.url = url
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self.stored = stored  # set when revalidating a complete object
        self.share = share
        self.writer: _Writer | None = None
        self.total: int | None = None  # size the origin announced in this fetch
        self.validator: str | None = None  # If-Range value for resumes
        self.seen_body = False  # a body of this fetch reached the store
        self.body: ResponseBody | None = None  # the current response's
        self.meta: dict[str, str] = {}
        self.kept: tuple[int, str] = (0, "")  # status, Retry-After the held copy was kept under
        self.links = LinkLedger()
        self.restarting = False  # started over: the next answer's info goes to the hook

    def _open(self) -> _Writer:
        self.writer = self.store.open_writer(
            self.url, expected_digest=self.expected_digest, expected_size=self.expected_size
        )
        return self.writer

    async def _close(self, how: str) -> None:
        """``abort`` (keep full chunks resumable) or ``discard`` the writer, even if cancelled."""
        writer, self.writer = self.writer, None
        if writer is None:
            return
        with trio.CancelScope(shield=True):
            try:
                if how == "abort":
                    await writer.abort()
                    if self.validator and writer.offset > 0:
                        meta = dict(self.store.key_meta(self.url))
                        meta[META_PARTIAL_VALIDATOR] = self.validator
                        self.store.set_key_meta(self.url, meta)
                else:
                    await writer.discard()
            except FrumitcacheError:
                log.error("fetch.partial-lost", url=self.url, action=how, exc_info=True)

    async def run(self) -> Manifest:
        try:
            return await self._run()
        finally:
            if self.writer is not None:
                await self._close("abort")

    async def _run(self) -> Manifest:
        cfg = self.f.config
        conditional = self.stored is not None
        if not conditional:
            writer = self._open()
            if writer.offset > 0:
                self.validator = self.store.key_meta(self.url).get(META_PARTIAL_VALIDATOR)
        failures = 0
        if self.upstream.auth is not None:
            self.auth_headers = await self._authorize(None)
        if conditional and self.upstream.digest_header:
            held = await probe(self)
            if held is not None:
                return held
        while True:
            try:
                done = await self._attempt(conditional)
            except DigestMismatchError as exc:
                if not await self._leave_links(exc):
                    raise
                conditional = False
                continue
            except _Transient as exc:
                failures += 1
                offset = self.writer.offset if self.writer is not None else 0
                if failures > cfg.retries:
                    if exc.in_body or self.seen_body:
                        raise OriginTruncatedError(
                            f"{self.url}: body cut short at byte {offset} "
                            f"(of {self.total if self.total is not None else 'unknown'}) "
                            f"after {cfg.retries} resumes: {exc}"
                        ) from exc.cause
                    raise OriginUnreachableError(f"{self.url}: {exc}") from exc.cause
                log.info("fetch.resume", url=self.url, reason=str(exc), offset=offset)
                await trio.sleep(min(1.0, 0.05 * 2 ** (failures - 1)))
                continue
            if done is False:
                continue  # signed now: the same request again
            if done is not None:
                return done
            conditional = False  # after a restart: a plain request

    async def _leave_links(self, exc: DigestMismatchError) -> bool:
        """Bytes that failed verification came from federation links: leave them for the rest
        of this fetch, drop everything stored and start over from the next link or the origin
        (see :mod:`frumitcache.origin._links`). False when no link is to blame."""
        links = self.links.blame()
        if not links:
            return False
        for link in sorted(links):
            self.f._rejected[link] += 1
            log.warning("fetch.link-rejected", url=self.url, link=link, detail=str(exc))
        self.links.leave(links)
        await self._close("discard")
        self.total = self.validator = None
        if self.upstream.restarted is not None:
            # Before the new writer exists: a reader that handed out bytes of the dropped one
            # must learn it before it could follow the new one.
            self.upstream.restarted(None)
        self.restarting = True
        self._open()
        return True

    async def _authorize(self, challenge: str | None) -> Mapping[str, str]:
        assert self.upstream.auth is not None
        try:
            return dict(await self.upstream.auth.authorize(self.url, challenge))
        except FrumitcacheError:
            raise
        except Exception as exc:
            raise OriginError(f"{self.url}: upstream authorization failed: {exc!r}") from exc

    def _kept(self, status: int, headers: Mapping[str, str]) -> bool:
        """Does ``status``, answered while revalidating, leave the stored copy current?"""
        if self.stored is None or status not in self.upstream.keep_on_status:
            return False
        log.warning("fetch.kept-held", url=self.url, status=status, detail="revalidation failed")
        self.kept = (status, retry_after(headers))
        return True

    def _headers(self, conditional: bool) -> dict[str, str]:
        headers: dict[str, str] = dict(self.upstream.headers)
        headers.update(self.auth_headers)
        offset = self.writer.offset if self.writer is not None else 0
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        if conditional:
            meta = self.store.key_meta(self.url)
            if meta.get(META_ETAG):
                headers["If-None-Match"] = meta[META_ETAG]
            if meta.get(META_LAST_MODIFIED):
                headers["If-Modified-Since"] = meta[META_LAST_MODIFIED]
        return headers

    @contextlib.asynccontextmanager
    async def _response(self, headers: dict[str, str]) -> AsyncIterator[httpx.Response]:
        client = self.f._client
        freshness = "revalidate" if self.upstream.revalidate else "immutable"
        extensions = {ALLOW_EXTENSION: self.allow, FRESHNESS_EXTENSION: freshness}
        if self.expected_digest is not None:
            extensions[DIGEST_EXTENSION] = self.expected_digest
        if self.links.left:
            extensions[SKIP_EXTENSION] = frozenset(self.links.left)
        request = client.build_request("GET", self.url, headers=headers, extensions=extensions)
        async with streamed(client, request) as body:
            self.body = body
            self.links.answering = via_of(body.response)
            yield body.response

    async def _attempt(self, conditional: bool) -> Manifest | Literal[False] | None:
        """One request; the manifest when the object is complete, None to go again
        (False: the same request again, now signed after a 401)."""
        if self.upstream.hold is not None:
            await self.upstream.hold.wait_open()  # no new request while held either
        headers = self._headers(conditional)
        conditional = conditional and any(k.startswith("If-") for k in headers)
        offset = self.writer.offset if self.writer is not None else 0
        if offset > 0:
            self.f._resumes += 1
        in_body = False
        try:
            async with self._response(headers) as resp:
                challenge = resp.headers.get("www-authenticate")
                if (
                    resp.status_code == 401
                    and self.upstream.auth is not None
                    and challenge
                    and not self.challenged
                ):
                    self.challenged = True
                    self.auth_headers = await self._authorize(challenge)
                    return False
                step = plan_response(
                    resp.status_code,
                    resp.headers,
                    offset=offset,
                    known_total=self.total,
                    conditional=conditional,
                )
                if step.action is Action.NOT_MODIFIED:
                    assert self.stored is not None
                    if self.expected_digest not in (None, self.stored.digest):
                        assert self.expected_digest is not None
                        raise DigestMismatchError(
                            f"{self.url}: the origin still serves SHA-256 "
                            f"{self.stored.digest.hex()}, not {self.expected_digest.hex()}"
                        )
                    self._remember(resp, keep_old=True)
                    self.share(self._info(resp, cached=True))
                    return self.stored
                if step.action is Action.STATUS:
                    if self.writer is None and self._kept(resp.status_code, resp.headers):
                        self._remember(resp, keep_old=True, only_dates=True)
                        self.share(self._info(resp, cached=True))
                        return self.stored
                    await self._fail_status(resp.status_code, step.reason, resp.headers)
                if step.action is Action.LIE:
                    if not self.seen_body:
                        # The partial came from an earlier run and the object changed since.
                        await self._close("discard")
                        self._open()
                        return None
                    await self._close("discard")
                    raise OriginTruncatedError(f"{self.url}: {step.reason}")
                if step.action is Action.COMPLETE:
                    return await self._finish(resp)
                if step.action is Action.RESTART:
                    log.info("fetch.restart", url=self.url, reason=step.reason)
                    await self._close("discard")
                    self.total = self.validator = None
                    self._open()
                    return None
                if self.writer is None or self.writer.offset != step.start:
                    # A 200 to a Range request or to a revalidation: the whole object.
                    if step.reason:
                        log.info("fetch.restart", url=self.url, reason=step.reason)
                    await self._close("discard")
                    writer = self._open()
                    if writer.offset != step.start:
                        raise OriginError(f"{self.url}: store kept a partial after discard")
                await self._check_size(step.total)
                self.total = step.total
                self.validator = validator_of(
                    resp.headers.get("etag"), resp.headers.get("last-modified")
                )
                self._remember(resp, keep_old=False)
                info = self._info(resp, cached=False)
                self.share(info)
                if self.restarting and self.upstream.restarted is not None:
                    self.upstream.restarted(info)
                self.restarting = False
                in_body = True
                await self._body(resp)
                in_body = False
                assert self.writer is not None
                if self.total is not None and self.writer.offset < self.total:
                    # A shorter range than asked for: ask for the rest.
                    raise _Transient(OriginError("origin sent a shorter range"), in_body=True)
                return await self._finish(resp)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            tls = _tls_failure(exc)
            if tls is not None:
                # The origin was reached but not trusted (or refused TLS): not "unreachable",
                # so no offline copy or retry hides it, and the message says why.
                raise OriginError(f"{self.url}: TLS with the origin failed: {tls}") from exc
            raise OriginUnreachableError(f"{self.url}: cannot connect: {exc}") from exc
        except httpx.ProxyError as exc:
            raise OriginUnreachableError(f"{self.url}: proxy failed: {exc}") from exc
        except httpx.TooManyRedirects as exc:
            await self._close("discard")
            limit = self.f.config.max_redirects
            raise OriginError(f"{self.url}: more than {limit} redirects") from exc
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(exc, in_body=in_body) from exc
        except httpx.HTTPError as exc:
            raise OriginError(f"{self.url}: {exc}") from exc

    async def _check_size(self, total: int | None) -> None:
        cap = self.store.max_bytes
        if total is not None and total > cap:
            # A store holds an object whole: refuse before its bytes cross the uplink.
            await self._close("discard")
            raise StoreFullError(f"{self.url}: {total} bytes, more than store.max_bytes {cap}")
        if total is not None and self.expected_size is not None and total != self.expected_size:
            await self._close("discard")
            raise DigestMismatchError(
                f"{self.url}: origin announced {total} bytes, expected {self.expected_size}"
            )

    async def _fail_status(self, status: int, reason: str, headers: Mapping[str, str]) -> None:
        # An origin error is never content. A partial of an earlier fetch is kept for a
        # transient 5xx (it is still valid), dropped for anything else.
        keep = status >= 500 and self.writer is not None and self.writer.offset > 0
        await self._close("abort" if keep else "discard")
        raise status_error(f"{self.url}: origin answered {reason}", status, headers)

    async def _body(self, resp: httpx.Response) -> None:
        assert self.writer is not None
        assert self.body is not None
        via = via_of(resp)
        counter, key = (self.f._federation, via) if via else (self.f._bytes, _host_of(resp.url))

        def count(n: int) -> None:
            counter[key] += n

        async def written(n: int) -> None:
            self.seen_body = True
            self.links.wrote()
            await self.f._pace(n)

        limit = self.total if self.total is not None else self.expected_size
        try:
            await copy_body(
                self.body, self.writer, url=self.url, limit=limit, count=count,
                pace=written, hold=self.upstream.hold,
            )  # fmt: skip
        except DigestMismatchError:
            await self._close("discard")
            raise

    async def _finish(self, resp: httpx.Response) -> Manifest:
        assert self.writer is not None
        writer, self.writer = self.writer, None
        if self.expected_size is not None and writer.offset != self.expected_size:
            self.writer = writer
            await self._close("discard")
            raise DigestMismatchError(
                f"{self.url}: origin sent {writer.offset} bytes, expected {self.expected_size}"
            )
        try:
            manifest = await writer.finish()
        except DigestMismatchError:
            self.writer = writer
            await self._close("discard")
            raise
        except BaseException:
            self.writer = writer
            raise
        if self.expected_digest is not None and manifest.digest != self.expected_digest:
            # The store checks this too; a second look costs nothing.
            raise DigestMismatchError(
                f"{self.url}: content has SHA-256 {manifest.digest.hex()}, "
                f"expected {self.expected_digest.hex()}"
            )
        self.store.set_key_meta(self.url, self.meta)
        return manifest

    def _remember(self, resp: httpx.Response, *, keep_old: bool, only_dates: bool = False) -> None:
        """Keep the response's validators and type with the object (``only_dates``: an error
        answer's headers describe no content: only the time asked is recorded)."""
        meta = dict(self.store.key_meta(self.url)) if keep_old else {}
        meta.pop(META_PARTIAL_VALIDATOR, None)
        fields = (
            (META_ETAG, "etag"),
            (META_LAST_MODIFIED, "last-modified"),
            (META_CONTENT_TYPE, "content-type"),
        )
        for key, header in () if only_dates else fields:
            value = resp.headers.get(header)
            if value is not None:
                meta[key] = value
            elif not keep_old:
                meta.pop(key, None)
        meta[META_FETCHED_AT] = f"{time.time():.3f}"
        self.meta = meta
        if keep_old:
            self.store.set_key_meta(self.url, meta)

    def _info(self, resp: httpx.Response, *, cached: bool) -> FetchInfo:
        if cached:
            assert self.stored is not None
            size: int | None = self.stored.size
            offset = size
        else:
            size = self.total
            offset = self.writer.offset if self.writer is not None else 0
        return FetchInfo(
            url=self.url,
            size=size,
            offset=offset or 0,
            content_type=self.meta.get(META_CONTENT_TYPE),
            etag=self.meta.get(META_ETAG),
            last_modified=self.meta.get(META_LAST_MODIFIED),
            cached=cached,
            kept_status=self.kept[0],
            via=via_of(resp),
        )
