"""When a member's pull asks the seeder again: another seeder named, or the same node elected
in a new term (its catalogue was rebuilt and may say an object it holds whole is partial);
a lapse (no seeder named for a moment) is not a reason."""

from __future__ import annotations

from frumitcache.agent._member import seeder_moved


def test_the_same_seeder_in_the_same_term_is_not_a_move() -> None:
    assert not seeder_moved(("pi1", 7), ("pi1", 7))


def test_another_seeder_is_a_move() -> None:
    assert seeder_moved(("pi1", 7), ("pi0", 8))


def test_the_same_node_elected_again_in_a_new_term_is_a_move() -> None:
    assert seeder_moved(("pi1", 7), ("pi1", 9))


def test_a_lapse_with_no_seeder_named_is_not_a_move() -> None:
    assert not seeder_moved(("pi1", 7), None)
