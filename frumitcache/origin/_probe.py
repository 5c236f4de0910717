"""Revalidation by ``HEAD`` for origins that name their content's digest in a header (a
registry's ``Docker-Content-Digest``): a tag is checked without its body crossing the uplink,
and without counting against a registry's pull quota (Docker Hub counts GETs only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from frumitcache.errors import OriginError, OriginUnreachableError
from frumitcache.origin._allow import ALLOW_EXTENSION

if TYPE_CHECKING:
    from frumitcache.origin._job import _Job
    from frumitcache.store import Manifest


async def probe(job: _Job) -> Manifest | None:
    """Revalidation by ``HEAD``: the stored object when the origin's digest header names
    it (no body crosses the uplink; a registry does not count a HEAD against its pull
    quota); None when a GET must follow (changed, or no digest header). Errors as a GET's."""
    assert job.stored is not None
    client = job.f._client
    for _ in range(2):  # the second time signed, after a 401 with a challenge
        headers = {**dict(job.upstream.headers), **job.auth_headers}
        try:
            resp = await client.head(
                job.url, headers=headers, extensions={ALLOW_EXTENSION: job.allow}
            )
        except (
            httpx.TimeoutException,
            httpx.NetworkError,
            httpx.ProxyError,
            httpx.RemoteProtocolError,  # accepted, then closed without an answer: as a GET's
        ) as exc:
            raise OriginUnreachableError(f"{job.url}: HEAD failed: {exc}") from exc
        except httpx.TooManyRedirects as exc:
            raise OriginError(f"{job.url}: too many redirects") from exc
        except httpx.HTTPError as exc:
            raise OriginError(f"{job.url}: {exc}") from exc
        challenge = resp.headers.get("www-authenticate")
        if resp.status_code != 401 or job.upstream.auth is None or not challenge:
            break
        if job.challenged:
            break
        job.challenged = True
        job.auth_headers = await job._authorize(challenge)
    status = resp.status_code
    if job._kept(status, resp.headers):
        job._remember(resp, keep_old=True, only_dates=True)
        job.share(job._info(resp, cached=True))
        return job.stored
    if status in (405, 501) or 300 <= status < 400:
        return None  # HEAD not served (or a redirect not followed): the GET decides
    if status >= 400:
        await job._fail_status(status, f"{status} {resp.reason_phrase}".strip(), resp.headers)
    named = resp.headers.get(job.upstream.digest_header, "").strip()
    if named != "sha256:" + job.stored.digest.hex():
        return None
    job._remember(resp, keep_old=True)
    job.share(job._info(resp, cached=True))
    return job.stored
