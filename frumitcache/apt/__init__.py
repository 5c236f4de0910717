"""The apt proxy on port 3142 (h11): apt-cacher-ng conventions, index files versus immutable
files, end-to-end .deb hashes from the Packages indexes, allow-listed upstreams.

:class:`AptProxy` serves apt over a :class:`ContentSource`; :class:`LocalSource` is the
one-node source (store + origin fetcher)."""

from frumitcache.apt._local import LocalSource
from frumitcache.apt._packages import Expected, HashBook, IndexEntry, parse_packages, parse_release
from frumitcache.apt._requests import FileKind, Rejection, Target, classify, parse_target
from frumitcache.apt._server import AptProxy
from frumitcache.apt._source import Content, ContentInfo, ContentSource
from frumitcache.apt._status import ProxyMetrics, SiteStatus

__all__ = [
    "AptProxy",
    "Content",
    "ContentInfo",
    "ContentSource",
    "Expected",
    "FileKind",
    "HashBook",
    "IndexEntry",
    "LocalSource",
    "ProxyMetrics",
    "Rejection",
    "SiteStatus",
    "Target",
    "classify",
    "parse_packages",
    "parse_release",
    "parse_target",
]
