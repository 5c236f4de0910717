"""The election's durable state on disk (``site-term.json`` in the node's state directory):
what is saved is what a restarted agent starts from."""

from __future__ import annotations

import json
from pathlib import Path

from frumitcache.site import Durable
from frumitcache.site._setup import load_durable, save_durable


def test_every_field_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "site-term.json"
    durable = Durable(term=7, voted_term=7, voted_for="pi3", electorate=100, promised_s=9.0)
    save_durable(path, durable)
    # The electorate (rule 4: a node restarted on the minority side of a partition counts
    # majorities over the site it knew) and a stretched promise come back, not only the vote.
    assert load_durable(path) == durable


def test_an_older_file_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "site-term.json"
    path.write_text(json.dumps({"term": 3, "voted_term": 3, "voted_for": "pi1"}))
    assert load_durable(path) == Durable(3, 3, "pi1")


def test_a_damaged_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "site-term.json"
    for text in ("", "{", "[]", '{"term": "x", "voted_term": 1}', '{"term": 1}'):
        path.write_text(text)
        assert load_durable(path) is None, text
    path.write_text(json.dumps({"term": 1, "voted_term": 1, "electorate": -5, "promised_s": -1}))
    assert load_durable(path) == Durable(1, 1, None, 0, 0.0)
    assert load_durable(None) is None
    assert load_durable(tmp_path / "missing.json") is None
