"""Fixtures shared by every test area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frumitcache.testing.net import loopback_address


@pytest.fixture
def address() -> str:
    """A loopback address of its own for the node under test."""
    return loopback_address()


@pytest.fixture
def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path
