"""The building blocks of a config section: :func:`opt` fields that carry their own doc and
unit, the :class:`Section` base every section derives from, and size constants."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from frumitcache.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def opt(default: Any, text: str, unit: str = "") -> Any:
    """A config field: its default, what it means, and its unit (bytes, bytes/s, s, ...)."""
    meta = {"doc": text, "unit": unit}
    if isinstance(default, list):
        value = list(default)
        return field(default_factory=lambda: list(value), metadata=meta)
    return field(default=default, metadata=meta)


class Section:
    """Base of every config section (a frozen, slotted dataclass of :func:`opt` fields).

    The loader has already checked each value's type and sign; :meth:`check` adds what a type
    cannot say (ranges, rules between two fields of the section).
    """

    __slots__ = ()

    def check(self) -> None:
        """Raise :class:`~frumitcache.errors.ConfigError` naming the key of a bad value."""


def check_port(key: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: must be a port number (0-65535), got {port}")
