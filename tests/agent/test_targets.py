"""What a person types as a pin/unpin/evict target: a URL, or an object's SHA-256 in hex."""

from __future__ import annotations

import hashlib

import pytest

from frumitcache.agent._library import parse_target
from frumitcache.errors import BadUrlError


def test_a_digest_in_either_case_with_or_without_its_scheme() -> None:
    digest = hashlib.sha256(b"object").digest()
    for text in (
        digest.hex(),
        digest.hex().upper(),
        f"sha256:{digest.hex()}",
        f" {digest.hex()}\n",
    ):
        assert parse_target(text) == (None, digest)
    assert parse_target("http://deb.example/a.deb") == ("http://deb.example/a.deb", None)


def test_hostile_digest_like_targets_are_not_digests() -> None:
    # 64 characters that bytes.fromhex would take for 31 bytes (it skips spaces), or not hex.
    spaced = "00 " + "00" * 29 + " 00"
    assert len(spaced) == 64
    for text in (spaced, "g" * 64, "0" * 63, "0" * 65, "sha256:" + "0" * 62):
        with pytest.raises(BadUrlError):
            parse_target(text)
