"""Request targets: the three shapes apt uses, traversal, the allow-list, file kinds."""

from __future__ import annotations

import pytest

from frumitcache.apt._requests import (
    FileKind,
    Rejection,
    Target,
    canonical_path,
    classify,
    host_allowed,
    parse_connect_target,
    parse_target,
)

ALLOWED = ["deb.debian.org", "mirror.example:8080", "127.0.0.2:8000", "[::1]:9000"]


def ok(target: bytes) -> Target:
    got = parse_target(target, ALLOWED)
    assert isinstance(got, Target), got
    return got


def rejected(target: bytes) -> Rejection:
    got = parse_target(target, ALLOWED)
    assert isinstance(got, Rejection), got
    return got


def test_absolute_form() -> None:
    t = ok(b"http://deb.debian.org/debian/dists/bookworm/InRelease")
    assert t.url == "http://deb.debian.org/debian/dists/bookworm/InRelease"
    assert (t.scheme, t.host, t.port) == ("http", "deb.debian.org", 80)
    assert t.kind is FileKind.INDEX


def test_absolute_form_host_is_case_insensitive_and_port_kept() -> None:
    t = ok(b"HTTP://Mirror.Example:8080/debian/pool/main/h/hello/hello_2.10-3_amd64.deb")
    assert t.url == "http://mirror.example:8080/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
    assert t.kind is FileKind.IMMUTABLE


def test_url_prefix_form() -> None:
    t = ok(b"/deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz")
    assert t.url == "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz"
    assert t.kind is FileKind.INDEX


@pytest.mark.parametrize(
    "target",
    [
        b"http://HTTPS///deb.debian.org/debian/pool/main/a/a_1_all.deb",
        b"/HTTPS///deb.debian.org/debian/pool/main/a/a_1_all.deb",
        b"http://https///deb.debian.org/debian/pool/main/a/a_1_all.deb",
        b"/HTTPS/deb.debian.org/debian/pool/main/a/a_1_all.deb",
    ],
)
def test_https_remapping(target: bytes) -> None:
    t = ok(target)
    assert t.url == "https://deb.debian.org/debian/pool/main/a/a_1_all.deb"
    assert (t.scheme, t.port) == ("https", 443)


def test_loopback_origin_with_port() -> None:
    t = ok(b"http://127.0.0.2:8000/repo/dists/x/Release")
    assert t.authority == "127.0.0.2:8000"
    assert rejected(b"http://127.0.0.2:8001/repo/dists/x/Release").status == 403


def test_ipv6_literal() -> None:
    t = ok(b"http://[::1]:9000/repo/pool/a.deb")
    assert t.host == "::1"
    assert t.url == "http://[::1]:9000/repo/pool/a.deb"


def test_not_allowed_names_the_config_key() -> None:
    r = rejected(b"http://evil.example/debian/dists/x/InRelease")
    assert r.status == 403
    assert "apt.allowed_hosts" in r.reason
    assert "evil.example" in r.reason


def test_allowed_host_on_other_port_is_not_allowed() -> None:
    assert rejected(b"http://deb.debian.org:25/debian/x.deb").status == 403
    # https through the remapping uses 443, which the plain entry admits
    assert ok(b"/HTTPS///deb.debian.org/debian/x.deb").port == 443


def test_userinfo_tricks_rejected() -> None:
    assert rejected(b"http://deb.debian.org@evil.example/x.deb").status == 400
    assert rejected(b"http://evil.example@deb.debian.org/x.deb").status == 400


@pytest.mark.parametrize(
    "target",
    [
        b"http://deb.debian.org/debian/../../etc/passwd",
        b"http://deb.debian.org/debian/pool/..",
        b"/deb.debian.org/debian/%2e%2e/%2e%2e/etc/passwd",
        b"/deb.debian.org/debian/%2E%2e/x",
        b"/deb.debian.org/debian/.%2e/x",
        b"/deb.debian.org/debian/./x",
        b"/deb.debian.org/debian/a%2f..%2fb",
        b"/deb.debian.org/debian/a%2F..%2Fb",
        b"/deb.debian.org/debian/a%5c..%5cb",
        b"/deb.debian.org/debian/a%00b",
        b"/deb.debian.org/debian/%252e%252e/x",
        b"/deb.debian.org/debian/x\\..\\y",
        b"/deb.debian.org/debian/x?..%2f",
        b"/deb.debian.org/debian/x#frag",
    ],
)
def test_path_traversal_rejected(target: bytes) -> None:
    assert rejected(target).status == 400


@pytest.mark.parametrize(
    "target",
    [
        b"",
        b"*",
        b"deb.debian.org/debian/x",
        b"ftp://deb.debian.org/debian/x",
        b"http://",
        b"http:///x",
        b"http://deb.debian.org",
        b"http://deb.debian.org/",
        b"http://deb..debian.org/x",
        b"http://deb.debian.org:99999/x",
        b"http://deb.debian.org:/x",
        b"http://[::1/x",
        b"/\xff/x",
    ],
)
def test_malformed_rejected(target: bytes) -> None:
    assert rejected(target).status == 400


def test_canonical_form_unifies_encodings() -> None:
    a = ok(b"/deb.debian.org/debian/pool/main/g/gcc/libstdc++6_12.2.0-14_amd64.deb")
    b = ok(b"/deb.debian.org/debian/pool/main/g/gcc/libstdc%2b%2b6_12.2.0-14_amd64.deb")
    assert a.url == b.url
    assert a.url.endswith("libstdc%2B%2B6_12.2.0-14_amd64.deb")
    assert canonical_path("/a/b%7ec~d") == "/a/b~c~d"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/debian/dists/bookworm/InRelease", FileKind.INDEX),
        ("/debian/dists/bookworm/Release.gpg", FileKind.INDEX),
        ("/debian/dists/bookworm/main/binary-arm64/Packages.xz", FileKind.INDEX),
        ("/debian/dists/bookworm/main/i18n/Translation-en.bz2", FileKind.INDEX),
        ("/debian/dists/bookworm/main/Contents-arm64.gz", FileKind.INDEX),
        ("/debian/dists/bookworm/main/dep11/Components-arm64.yml.gz", FileKind.INDEX),
        ("/debian/dists/bookworm/main/binary-all/Packages.diff/Index", FileKind.INDEX),
        ("/debian/dists/bookworm/main/binary-arm64/by-hash/SHA256/" + "a" * 64, FileKind.IMMUTABLE),
        ("/debian/pool/main/h/hello/hello_2.10-3_arm64.deb", FileKind.IMMUTABLE),
        ("/debian/pool/main/h/hello/hello_2.10-3.dsc", FileKind.IMMUTABLE),
        ("/debian/pool/main/h/hello/hello_2.10.orig.tar.gz", FileKind.IMMUTABLE),
        ("/flat/Packages.gz", FileKind.INDEX),
        ("/flat/Release", FileKind.INDEX),
        ("/flat/foo_1.0_all.deb", FileKind.IMMUTABLE),
        ("/debian/README", FileKind.OTHER),
    ],
)
def test_classify(path: str, kind: FileKind) -> None:
    assert classify(path) is kind


def test_by_hash_digest_named_by_the_url() -> None:
    digest = "0123456789abcdef" * 4
    t = ok(f"http://deb.debian.org/debian/dists/x/main/binary-all/by-hash/SHA256/{digest}".encode())
    assert t.by_hash_sha256 == digest
    assert ok(b"http://deb.debian.org/debian/dists/x/by-hash/MD5Sum/abc").by_hash_sha256 is None


def test_host_allowed_default_ports() -> None:
    assert host_allowed("deb.debian.org", 80, "http", ["deb.debian.org"])
    assert host_allowed("deb.debian.org", 443, "https", ["deb.debian.org"])
    assert not host_allowed("deb.debian.org", 8080, "http", ["deb.debian.org"])
    assert host_allowed("deb.debian.org", 8080, "http", ["DEB.debian.org:8080"])
    assert not host_allowed("debian.org", 80, "http", ["deb.debian.org"])
    assert not host_allowed("x.deb.debian.org", 80, "http", ["deb.debian.org"])


def test_connect_target() -> None:
    allowed = ["packages.example.org", "127.0.0.5:4443"]
    assert parse_connect_target(b"packages.example.org:443", allowed) == (
        "packages.example.org",
        443,
    )
    assert parse_connect_target(b"127.0.0.5:4443", allowed) == ("127.0.0.5", 4443)
    denied = parse_connect_target(b"evil.example:443", allowed)
    assert isinstance(denied, Rejection)
    assert denied.status == 403
    assert "apt.connect_allowed_hosts" in denied.reason
    bad = parse_connect_target(b"/x", allowed)
    assert isinstance(bad, Rejection)
    assert bad.status == 400


@pytest.mark.parametrize(
    "target",
    [
        b"http://deb.debian.org/any/file?x=/Packages.xz",
        b"http://deb.debian.org/debian/pool/main/h/hello/hello_1_all.deb?v=1",
        b"http://deb.debian.org/debian/pool/main/h/hello/hello_1_all.deb?",
        b"/deb.debian.org/debian/dists/stable/InRelease?x",
        b"http://evil.example/x?y",  # refused as a query before the allow-list is consulted
    ],
)
def test_query_refused(target: bytes) -> None:
    """apt never sends a query; each variant would be one more uplink fetch and stored copy."""
    got = rejected(target)
    assert got.status == 400
    assert "query" in got.reason
