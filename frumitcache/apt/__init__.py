"""The apt proxy on port 3142 (h11): apt-cacher-ng conventions, index files versus immutable
files, end-to-end .deb hashes from the Packages indexes, allow-listed upstreams.

:class:`AptProxy` serves apt over the content seam (:class:`frumitcache.content.ContentSource`);
this package keeps only apt's HTTP policy: by-hash twins, index revalidation, hashes learned
from Release and Packages files."""

from frumitcache.apt._packages import Expected, HashBook, IndexEntry, parse_packages, parse_release
from frumitcache.apt._requests import FileKind, Rejection, Target, classify, parse_target
from frumitcache.apt._server import AptProxy
from frumitcache.apt._status import ProxyMetrics, SiteStatus

__all__ = [
    "AptProxy",
    "Expected",
    "FileKind",
    "HashBook",
    "IndexEntry",
    "ProxyMetrics",
    "Rejection",
    "SiteStatus",
    "Target",
    "classify",
    "parse_packages",
    "parse_release",
    "parse_target",
]
