"""The uplink client: single-flight origin fetches with Range resume, a rate limit and byte
accounting; origin errors are passed on honestly and never stored as content.

:class:`OriginFetcher` is the client, :class:`TokenBucket` and :class:`RateMeter` the pure rate
arithmetic it (and the test origin) uses, :func:`plan_response` the pure rule book of what an
origin response means for a fetch.
"""

from frumitcache._rate import RateMeter, TokenBucket
from frumitcache.origin._fetcher import (
    META_CONTENT_TYPE,
    META_ETAG,
    META_FETCHED_AT,
    META_LAST_MODIFIED,
    FetchInfo,
    OriginFetcher,
    OriginStats,
)
from frumitcache.origin._plan import Action, Step, parse_content_range, plan_response

__all__ = [
    "META_CONTENT_TYPE",
    "META_ETAG",
    "META_FETCHED_AT",
    "META_LAST_MODIFIED",
    "Action",
    "FetchInfo",
    "OriginFetcher",
    "OriginStats",
    "RateMeter",
    "Step",
    "TokenBucket",
    "parse_content_range",
    "plan_response",
]
