"""What the archive indexes promise: URL -> (size, SHA-256), learned from the indexes we serve.

The parsers are pure and incremental (feed bytes, get entries), so a 50 MB Packages file
decompresses and parses in bounded memory on a Pi:

- :class:`PackagesParser` reads ``Packages`` stanzas (``Filename``, ``Size``, ``SHA256``);
  their file names are relative to the archive root (the URL part before ``/dists/``, or the
  directory of the Packages file for a flat repository);
- :func:`parse_release` reads the ``SHA256:`` list of a ``Release`` or (clear-signed)
  ``InRelease``, whose paths are relative to the Release file's directory;
- :func:`decompressor_for` picks the streaming decompressor from the file name.

:class:`HashBook` keeps the learned map in a small sqlite table beside the store, so that it
survives restarts; the proxy looks every ``.deb`` up in it and passes the digest to the fetch,
which refuses (never serves, never caches) bytes that do not match.
"""

from __future__ import annotations

import bz2
import lzma
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from frumitcache.apt._requests import canonical_path
from frumitcache.errors import StoreError


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One file an index vouches for: its path relative to the index's base, size, SHA-256."""

    path: str
    size: int
    sha256: str


# Bounds on learning one index, so that a hostile or broken one (a decompression bomb, a line
# that never ends) costs bounded memory and time and is then given up: Debian's largest
# Packages file is about 60 MB uncompressed, a Release file a few hundred KB.
MAX_INDEX_BYTES = 1 << 30  # decompressed bytes of one Packages file
MAX_RELEASE_BYTES = 16 << 20  # one Release/InRelease file
MAX_LINE_BYTES = 1 << 20  # one line of a Packages file
_STEP = 1 << 20  # decompressed bytes produced per step: the most one step holds in memory
# Facts kept in apt-hashes.sqlite (about 150 bytes each): a Debian suite lists ~65,000 files per
# architecture, so several suites and mirrors fit; the ones learned longest ago go first.
MAX_HASH_ROWS = 500_000
MEMO_ROWS = 4096  # lookups remembered in memory (the packages a site's apt clients ask for)


class IndexTooLargeError(ValueError):
    """An index broke one of the learning bounds (bomb, endless line); it is not learned."""


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool:
        """Whether the whole compressed stream was read (a truncated one never gets there)."""
        ...

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed bytes of ``data``, in pieces of at most ``_STEP`` bytes."""
        ...


class _Identity:
    eof = True

    def feed(self, data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), _STEP):
            yield data[i : i + _STEP]


class _Inflate:
    """gzip, with zlib's output bound (``max_length`` + ``unconsumed_tail``)."""

    def __init__(self) -> None:
        self._dec = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self._dec.eof

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data and not self._dec.eof:
            yield self._dec.decompress(data, _STEP)
            data = self._dec.unconsumed_tail


class _Stream:
    """xz, lzma and bz2, with their output bound (``max_length`` + ``needs_input``)."""

    def __init__(self, dec: lzma.LZMADecompressor | bz2.BZ2Decompressor) -> None:
        self._dec = dec

    @property
    def eof(self) -> bool:
        return self._dec.eof

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._dec.eof:
            return  # trailing bytes after the stream carry nothing
        yield self._dec.decompress(data, _STEP)
        while not self._dec.eof and not self._dec.needs_input:
            yield self._dec.decompress(b"", _STEP)


def decompressor_for(name: str) -> _Decompressor | None:
    """A streaming decompressor for an index file name, or None if the format is unknown."""
    if name.endswith(".gz"):
        return _Inflate()
    if name.endswith(".xz"):
        return _Stream(lzma.LZMADecompressor(format=lzma.FORMAT_XZ))
    if name.endswith(".lzma"):
        return _Stream(lzma.LZMADecompressor(format=lzma.FORMAT_ALONE))
    if name.endswith(".bz2"):
        return _Stream(bz2.BZ2Decompressor())
    if "." in name.rsplit("/", 1)[-1]:
        return None  # .zst, .lz4, ...: not in the standard library; such indexes are not learned
    return _Identity()


class PackagesParser:
    """Incremental parser of a ``Packages`` file: :meth:`feed` bytes, get complete entries."""

    def __init__(self) -> None:
        self._buffer = b""
        self._fields: dict[str, str] = {}

    def feed(self, data: bytes) -> list[IndexEntry]:
        self._buffer += data
        lines = self._buffer.split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_LINE_BYTES:
            raise IndexTooLargeError(f"a line longer than {MAX_LINE_BYTES} bytes")
        out: list[IndexEntry] = []
        for line in lines:
            self._line(line, out)
        return out

    def close(self) -> list[IndexEntry]:
        out: list[IndexEntry] = []
        if self._buffer:
            self._line(self._buffer, out)
            self._buffer = b""
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[IndexEntry]) -> None:
        line = line.rstrip(b"\r")
        if not line.strip():
            entry = self._entry()
            if entry is not None:
                out.append(entry)
            self._fields = {}
            return
        if line[:1] in (b" ", b"\t"):
            return  # continuation lines (Description, ...) carry nothing we need
        name, sep, value = line.partition(b":")
        if sep and name in (b"Filename", b"Size", b"SHA256"):
            self._fields[name.decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")

    def _entry(self) -> IndexEntry | None:
        f = self._fields
        filename, size, sha = f.get("Filename"), f.get("Size"), f.get("SHA256")
        if not filename or not size or not sha or not size.isdigit() or len(sha) != 64:
            return None
        return IndexEntry(filename, int(size), sha.lower())


def parse_packages(data: bytes) -> list[IndexEntry]:
    """Every entry of a whole, uncompressed ``Packages`` file."""
    parser = PackagesParser()
    return parser.feed(data) + parser.close()


def strip_clearsign(data: bytes) -> bytes:
    """The signed text of a clear-signed message (InRelease); other data comes back as is."""
    if not data.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----"):
        return data
    _head, sep, body = data.partition(b"\n\n")
    if not sep:
        _head, sep, body = data.partition(b"\r\n\r\n")
    text, _, _ = body.partition(b"\n-----BEGIN PGP SIGNATURE-----")
    # RFC 4880 dash-escaping: "- " in front of lines that start with a dash.
    return b"\n".join(line[2:] if line.startswith(b"- ") else line for line in text.split(b"\n"))


RELEASE_HASHES = {"MD5Sum": 32, "SHA1": 40, "SHA256": 64, "SHA512": 128}


def parse_release_hashes(data: bytes) -> dict[str, list[tuple[str, int, str]]]:
    """Every hash list of a Release/InRelease: ``{"SHA512": [(hex, size, path), ...], ...}``."""
    out: dict[str, list[tuple[str, int, str]]] = {}
    current: str | None = None
    for raw in strip_clearsign(data).split(b"\n"):
        line = raw.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                parts = line.split()
                if (
                    len(parts) == 3
                    and parts[1].isdigit()
                    and len(parts[0]) == RELEASE_HASHES[current]
                ):
                    path = parts[2].decode("utf-8", "replace")
                    out[current].append((parts[0].decode().lower(), int(parts[1]), path))
            continue
        name = line.split(b":", 1)[0].decode("ascii", "replace")
        current = name if name in RELEASE_HASHES else None
        if current is not None:
            out.setdefault(current, [])
    return out


def parse_release(data: bytes) -> list[IndexEntry]:
    """The ``SHA256:`` entries of a Release or InRelease file (paths relative to its directory)."""
    return [
        IndexEntry(path, size, sha)
        for sha, size, path in parse_release_hashes(data).get("SHA256", [])
    ]


def release_by_hash(url: str, data: bytes) -> dict[str, tuple[str, str]]:
    """``{"SHA512/<hex>": (index URL, its SHA-256)}`` for every file a Release lists.

    apt fetches indexes as ``.../by-hash/<ALGO>/<hex>`` (SHA512 when offered); this map says
    which index such a URL stands for and which SHA-256 it must have.
    """
    base = archive_base(url, packages=False)
    hashes = parse_release_hashes(data)
    sha256 = {path: sha for sha, _size, path in hashes.get("SHA256", [])}
    out: dict[str, tuple[str, str]] = {}
    for algo, entries in hashes.items():
        for hexdigest, _size, path in entries:
            if path in sha256:
                out[f"{algo}/{hexdigest}"] = (entry_url(base, path), sha256[path])
    return out


def archive_base(url: str, *, packages: bool) -> str:
    """The URL prefix an index's paths are relative to (ends with "/").

    Packages file names are relative to the archive root (before ``/dists/``), or to the
    Packages file's directory in a flat repository; Release paths are relative to the Release
    file's directory.
    """
    if packages and "/dists/" in url:
        return url[: url.index("/dists/") + 1]
    return url.rsplit("/", 1)[0] + "/"


def entry_url(base: str, path: str) -> str:
    """The (canonical) URL of ``path`` under ``base``, as the proxy keys it."""
    path = path.removeprefix("./")
    return base + canonical_path(path)


def index_role(url: str) -> str | None:
    """``"packages"`` or ``"release"`` if the proxy learns hashes from this index URL."""
    url = url.partition("?")[0].partition("#")[0]  # the path decides, never a query
    name = url.rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0] if name.startswith("Packages") else name
    if stem == "Packages" and "/by-hash/" not in url:
        return "packages"
    if name in ("InRelease", "Release"):
        return "release"
    return None


class IndexLearner:
    """Learns one index incrementally: :meth:`feed` raw (maybe compressed) bytes as they are
    served, get ``(url, size, sha256)`` rows; nothing holds the whole index (a Release file,
    small and bounded, is parsed at :meth:`close`). Raises :class:`IndexTooLargeError` past the
    bounds, and the decompressor's own error (``zlib.error``, ``lzma.LZMAError``, ``OSError``,
    ``EOFError``) on a corrupt file.
    """

    def __init__(self, url: str, role: str) -> None:
        self.url = url
        self.role = role
        self.by_hash: dict[str, tuple[str, str]] = {}  # filled by close() for a Release
        self._release = bytearray()
        self._out = 0
        name = url.partition("?")[0].rsplit("/", 1)[-1]
        self._dec = decompressor_for(name) if role == "packages" else None
        self._base = archive_base(url, packages=role == "packages")
        self._parser = PackagesParser()

    def feed(self, chunk: bytes) -> Iterator[tuple[str, int, str]]:
        if self.role == "release":
            self._release += chunk
            if len(self._release) > MAX_RELEASE_BYTES:
                raise IndexTooLargeError(f"a Release file over {MAX_RELEASE_BYTES} bytes")
            return
        if self._dec is None:
            return
        for piece in self._dec.feed(chunk):
            self._out += len(piece)
            if self._out > MAX_INDEX_BYTES:
                raise IndexTooLargeError(f"an index over {MAX_INDEX_BYTES} bytes decompressed")
            for e in self._parser.feed(piece):
                yield entry_url(self._base, e.path), e.size, e.sha256

    def close(self) -> Iterator[tuple[str, int, str]]:
        if self.role == "release":
            data = bytes(self._release)
            self._release = bytearray()
            self.by_hash = release_by_hash(self.url, data)
            for e in parse_release(data):
                yield entry_url(self._base, e.path), e.size, e.sha256
            return
        if self._dec is None:
            return
        if not self._dec.eof:
            raise EOFError(f"{self.url}: the compressed index is truncated")
        for e in self._parser.close():
            yield entry_url(self._base, e.path), e.size, e.sha256


def learn_entries(url: str, role: str, chunks: Iterable[bytes]) -> Iterator[tuple[str, int, str]]:
    """Stream ``(url, size, sha256)`` out of an index's raw (maybe compressed) bytes."""
    learner = IndexLearner(url, role)
    for chunk in chunks:
        yield from learner.feed(chunk)
    yield from learner.close()


@dataclass(frozen=True, slots=True)
class Expected:
    """What the indexes promise about one URL."""

    size: int
    sha256: str


class HashBook:
    """URL -> expected (size, SHA-256), persisted in sqlite. Thread-safe; blocking calls.

    Writes come from index learning (run in a worker thread); reads are single-row lookups,
    remembered in memory (bounded) until the next write, as every .deb request asks one.
    """

    def __init__(self, path: Path | str, *, max_rows: int = MAX_HASH_ROWS) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._memo: dict[str, Expected | None] = {}  # under _lock; emptied by every write
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS expected ("
                " url TEXT PRIMARY KEY, size INTEGER NOT NULL, sha256 TEXT NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the apt hash table {path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def lookup(self, url: str) -> Expected | None:
        with self._lock:
            if url in self._memo:
                return self._memo[url]
            row = self._db.execute(
                "SELECT size, sha256 FROM expected WHERE url = ?", (url,)
            ).fetchone()
            found = None if row is None else Expected(int(row[0]), str(row[1]))
            if len(self._memo) >= MEMO_ROWS:
                del self._memo[next(iter(self._memo))]
            self._memo[url] = found
        return found

    def record(self, rows: Iterable[tuple[str, int, str]], *, batch: int = 2000) -> int:
        """Store ``(url, size, sha256)`` rows (newer facts replace older); returns the count."""
        count = 0
        pending: list[tuple[str, int, str]] = []

        def flush() -> None:
            with self._lock:
                self._memo.clear()
                try:
                    self._db.execute("BEGIN")
                    self._db.executemany(
                        "INSERT OR REPLACE INTO expected (url, size, sha256) VALUES (?, ?, ?)",
                        pending,
                    )
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK")
                    raise StoreError(f"cannot write the apt hash table: {exc}") from None
            pending.clear()

        for row in rows:
            pending.append(row)
            count += 1
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        if count:
            self.prune()
        return count

    def prune(self) -> int:
        """Forget the facts learned longest ago past :attr:`max_rows`; returns how many.

        ``INSERT OR REPLACE`` gives a re-learned URL a new rowid, so rowid order is the order
        of learning: what goes is what no index served lately still lists.
        """
        with self._lock:
            self._memo.clear()
            try:
                cursor = self._db.execute(
                    "DELETE FROM expected WHERE rowid <= ("
                    " SELECT rowid FROM expected ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                    (self.max_rows,),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot prune the apt hash table: {exc}") from None
        return max(cursor.rowcount, 0)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM expected").fetchone()[0])
