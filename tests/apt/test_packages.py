"""Index parsing (Packages, Release, InRelease) and the persisted hash book."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
from pathlib import Path

import pytest

from frumitcache.apt._packages import (
    Expected,
    HashBook,
    IndexEntry,
    PackagesParser,
    archive_base,
    index_role,
    learn_entries,
    parse_packages,
    parse_release,
    strip_clearsign,
)

SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()

PACKAGES = f"""Package: alpha
Version: 1.0
Architecture: all
Filename: pool/main/a/alpha/alpha_1.0_all.deb
Size: 1234
SHA256: {SHA_A}
Description: first
 a long description
 .
 Filename: pool/evil.deb

Package: libc++-x
Version: 2:1.0
Filename: pool/main/l/libc++/libc++-x_1.0_all.deb
Size: 99
SHA256: {SHA_B.upper()}

Package: broken
Filename: pool/main/b/broken.deb
Size: notanumber
SHA256: {SHA_A}
""".encode()


def test_parse_packages() -> None:
    entries = parse_packages(PACKAGES)
    assert entries == [
        IndexEntry("pool/main/a/alpha/alpha_1.0_all.deb", 1234, SHA_A),
        IndexEntry("pool/main/l/libc++/libc++-x_1.0_all.deb", 99, SHA_B),
    ]


@pytest.mark.parametrize("step", [1, 7, 64, 10_000])
def test_packages_parser_is_incremental(step: int) -> None:
    parser = PackagesParser()
    got: list[IndexEntry] = []
    for i in range(0, len(PACKAGES), step):
        got += parser.feed(PACKAGES[i : i + step])
    got += parser.close()
    assert got == parse_packages(PACKAGES)


RELEASE = f"""Origin: test
Suite: stable
Acquire-By-Hash: yes
MD5Sum:
 {"0" * 32} 10 main/binary-all/Packages
SHA256:
 {SHA_A}     1234 main/binary-all/Packages
 {SHA_B}      99 main/binary-all/Packages.xz
""".encode()


def test_parse_release_takes_sha256_only() -> None:
    assert parse_release(RELEASE) == [
        IndexEntry("main/binary-all/Packages", 1234, SHA_A),
        IndexEntry("main/binary-all/Packages.xz", 99, SHA_B),
    ]


def test_parse_inrelease_strips_signature_and_dash_escapes() -> None:
    signed = (
        b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"
        + RELEASE.replace(b"Origin: test", b"- -Origin: test")
        + b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
    )
    assert strip_clearsign(signed).startswith(b"-Origin: test")
    assert parse_release(signed) == parse_release(RELEASE)


def test_archive_base() -> None:
    url = "http://h/debian/dists/stable/main/binary-all/Packages.xz"
    assert archive_base(url, packages=True) == "http://h/debian/"
    assert archive_base("http://h/debian/dists/stable/InRelease", packages=False) == (
        "http://h/debian/dists/stable/"
    )
    assert archive_base("http://h/flat/Packages", packages=True) == "http://h/flat/"


def test_index_role() -> None:
    assert index_role("http://h/d/dists/s/main/binary-all/Packages.gz") == "packages"
    assert index_role("http://h/d/dists/s/InRelease") == "release"
    assert index_role("http://h/d/dists/s/Release") == "release"
    assert index_role("http://h/d/dists/s/Release.gpg") is None
    assert index_role("http://h/d/dists/s/main/binary-all/by-hash/SHA256/" + "a" * 64) is None
    assert index_role("http://h/d/dists/s/main/i18n/Translation-en") is None


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("Packages", lambda b: b),
        ("Packages.gz", gzip.compress),
        ("Packages.xz", lzma.compress),
        ("Packages.bz2", bz2.compress),
    ],
)
def test_learn_entries_from_compressed_packages(name: str, pack: object) -> None:
    data = pack(PACKAGES)  # type: ignore[operator]
    url = f"http://h/debian/dists/stable/main/binary-all/{name}"
    chunks = [data[i : i + 5] for i in range(0, len(data), 5)]
    rows = list(learn_entries(url, "packages", chunks))
    assert rows == [
        ("http://h/debian/pool/main/a/alpha/alpha_1.0_all.deb", 1234, SHA_A),
        ("http://h/debian/pool/main/l/libc%2B%2B/libc%2B%2B-x_1.0_all.deb", 99, SHA_B),
    ]


def test_learn_entries_from_release() -> None:
    rows = list(learn_entries("http://h/d/dists/stable/InRelease", "release", [RELEASE]))
    assert rows[1] == ("http://h/d/dists/stable/main/binary-all/Packages.xz", 99, SHA_B)


def test_unknown_compression_learns_nothing() -> None:
    assert (
        list(
            learn_entries(
                "http://h/d/dists/s/main/binary-all/Packages.zst", "packages", [b"\x28\xb5\x2f\xfd"]
            )
        )
        == []
    )


def test_hash_book_persists(tmp_path: Path) -> None:
    path = tmp_path / "hashes.sqlite"
    book = HashBook(path)
    assert book.record([("http://h/a.deb", 1, SHA_A), ("http://h/b.deb", 2, SHA_B)], batch=1) == 2
    book.record([("http://h/a.deb", 3, SHA_B)])  # a newer index replaces the fact
    book.close()
    again = HashBook(path)
    try:
        a = again.lookup("http://h/a.deb")
        assert a is not None
        assert (a.size, a.sha256) == (3, SHA_B)
        assert again.lookup("http://h/zzz.deb") is None
    finally:
        again.close()


def test_index_role_ignores_the_query() -> None:
    assert index_role("http://h/any/file?x=/Packages.xz") is None
    assert index_role("http://h/any/file?x=/InRelease") is None
    assert index_role("http://h/d/dists/s/main/binary-all/Packages.xz?v=1") == "packages"


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("Packages.gz", gzip.compress),
        ("Packages.xz", lzma.compress),
        ("Packages.bz2", bz2.compress),
    ],
)
def test_bomb_is_bounded(name: str, pack: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Output past MAX_INDEX_BYTES is refused, and no step holds more than _STEP bytes."""
    from frumitcache.apt import _packages

    monkeypatch.setattr(_packages, "MAX_INDEX_BYTES", 3 << 20)
    monkeypatch.setattr(_packages, "_STEP", 64 << 10)
    lines = b"Package: x\n" * (1 << 19)  # 5.5 MiB of short lines
    data = pack(lines)  # type: ignore[operator]
    learner = _packages.IndexLearner(f"http://h/d/dists/s/main/binary-all/{name}", "packages")
    dec = _packages.decompressor_for(name)
    assert dec is not None
    assert max(len(p) for p in dec.feed(data)) <= 64 << 10
    with pytest.raises(_packages.IndexTooLargeError):
        list(learner.feed(data))


def test_endless_line_is_refused() -> None:
    from frumitcache.apt import _packages

    data = gzip.compress(b"x" * (3 << 20))
    with pytest.raises(_packages.IndexTooLargeError):
        list(learn_entries("http://h/d/dists/s/main/binary-all/Packages.gz", "packages", [data]))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("Packages.gz", b"\x1f\x8bbad"),
        ("Packages.xz", b"\xfd7zXZ"),
        ("Packages.bz2", b"BZh9\x00"),
        ("Packages.gz", gzip.compress(PACKAGES)[:-20]),  # truncated
        ("Packages.xz", lzma.compress(PACKAGES)[:-20]),
    ],
)
def test_corrupt_index_raises_a_decoder_error(name: str, data: bytes) -> None:
    import zlib

    url = f"http://h/d/dists/s/main/binary-all/{name}"
    with pytest.raises((zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)):
        list(learn_entries(url, "packages", [data]))


def test_hash_book_is_bounded(tmp_path: Path) -> None:
    """apt-hashes.sqlite keeps the max_rows facts learned last (issue 16, finding 11)."""
    book = HashBook(tmp_path / "hashes.sqlite", max_rows=100)
    try:
        book.record((f"http://h/old{i}.deb", i, SHA_A) for i in range(80))
        book.record((f"http://h/new{i}.deb", i, SHA_B) for i in range(80))
        book.record([("http://h/old79.deb", 79, SHA_B)])  # re-learned: now among the newest
        assert len(book) == 100
        assert book.lookup("http://h/old0.deb") is None  # learned longest ago: gone
        assert book.lookup("http://h/old59.deb") is None
        assert book.lookup("http://h/old60.deb") is not None
        assert book.lookup("http://h/new0.deb") is not None
        assert book.lookup("http://h/old79.deb") == Expected(79, SHA_B)
        for _ in range(5):  # churn: the table never grows past the bound
            book.record((f"http://h/churn{i}.deb", i, SHA_A) for i in range(300))
            assert len(book) == 100
    finally:
        book.close()


def test_by_hash_map_keeps_two_generations_per_release() -> None:
    from frumitcache.apt._learn import Learner

    learner = Learner(None)
    url = "http://h/d/dists/stable/InRelease"
    for gen in range(5):
        learner._remember_by_hash(url, {f"SHA512/{gen}": (url, str(gen))})
    assert sorted(learner.by_hash) == ["SHA512/3", "SHA512/4"]
