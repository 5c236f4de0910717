"""first_error: which error of a failed group of tasks is the cause."""

from __future__ import annotations

from frumitcache.agent._flight import first_error
from frumitcache.errors import DigestMismatchError, FrumitcacheError, NotInStoreError, PeerError


def ours(*errors: BaseException) -> BaseExceptionGroup[FrumitcacheError]:
    """The group as the seeder and the member get it: a nursery's, split on our errors."""
    group, _ = BaseExceptionGroup("", list(errors)).split(FrumitcacheError)
    assert group is not None
    return group


def test_the_writers_error_wins_over_a_followers_echo() -> None:
    # The seeder's chunk watch may fail first, when the origin fetch discards its writer.
    echo = NotInStoreError("u: the writer stopped (discarded)")
    cause = DigestMismatchError("u: SHA-256 differs")
    assert first_error(ours(echo, BaseExceptionGroup("", [cause]))) is cause


def test_the_first_leaf_otherwise() -> None:
    first, second = PeerError("a"), DigestMismatchError("b")
    assert first_error(ours(BaseExceptionGroup("", [first]), second)) is first
    only = NotInStoreError("u: the writer stopped (aborted)")
    assert first_error(ours(only)) is only
