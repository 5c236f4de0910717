"""Site-key signatures of peer HTTP requests (sans-IO: the clock is an argument)."""

from __future__ import annotations

from frumitcache._signing import Verifier, sign

KEY = b"k" * 32


def test_signed_request_is_accepted_once() -> None:
    v = Verifier(KEY, window=30)
    header = sign(KEY, b"GET", b"/chunk/ab", 1000.0)
    assert v.check(b"GET", b"/chunk/ab", header, 1010.0)
    assert not v.check(b"GET", b"/chunk/ab", header, 1011.0)  # replayed


def test_rejects_stale_wrong_key_wrong_path_and_garbage() -> None:
    v = Verifier(KEY, window=30)
    assert not v.check(b"GET", b"/chunk/ab", sign(KEY, b"GET", b"/chunk/ab", 1000.0), 1031.0)
    assert not v.check(b"GET", b"/chunk/ab", sign(KEY, b"GET", b"/chunk/ab", 1000.0), 969.0)
    assert not v.check(b"GET", b"/chunk/ab", sign(b"x" * 32, b"GET", b"/chunk/ab", 1000.0), 1000.0)
    assert not v.check(b"GET", b"/chunk/cd", sign(KEY, b"GET", b"/chunk/ab", 1000.0), 1000.0)
    assert not v.check(b"HEAD", b"/chunk/ab", sign(KEY, b"GET", b"/chunk/ab", 1000.0), 1000.0)
    for bad in (None, b"", b"1000:abc", b"x:y:z", b"1000:\xff\xfe:00", b"1000:short:00"):
        assert not v.check(b"GET", b"/chunk/ab", bad, 1000.0)


def test_nonce_memory_is_bounded() -> None:
    v = Verifier(KEY, window=1)
    for i in range(5000):
        assert v.check(b"GET", b"/p", sign(KEY, b"GET", b"/p", float(i)), float(i))
    assert len(v._seen) <= 1100


def test_window_follows_max_clock_skew() -> None:
    # Issue 16 finding 9: a 90 s skew passes when the site allows 120 s (was fixed at 30 s).
    v = Verifier(KEY, window=120)
    assert v.check(b"GET", b"/p", sign(KEY, b"GET", b"/p", 1000.0), 1090.0)
    assert not v.check(b"GET", b"/p", sign(KEY, b"GET", b"/p", 1000.0), 1121.0)


def test_zero_skew_means_no_time_check_and_nonce_replay_protection() -> None:
    # A site without NTP: a clock a day off is fine, a replay is not, and memory stays bounded.
    v = Verifier(KEY, window=0, memory=100)
    header = sign(KEY, b"GET", b"/p", 1000.0)
    assert v.check(b"GET", b"/p", header, 1000.0 + 86400)
    assert not v.check(b"GET", b"/p", header, 1000.0 + 86401)
    for i in range(1000):
        assert v.check(b"GET", b"/p", sign(KEY, b"GET", b"/p", float(i)), 5.0)
    assert len(v._seen) <= 100


def test_hostile_times_are_refused_not_raised() -> None:
    # A 400-digit time overflowed the float clock (OverflowError stopped the agent).
    v = Verifier(KEY, window=30)
    for ts in (b"9" * 400, b"-5", b"+5", b" 5", b"1e9", b"\xd9\xa3"):
        assert not v.check(b"GET", b"/p", ts + b":abcdefgh:00", 1000.0)
