"""Structured logs on stderr: one line per event, ``event key=value ...`` or JSON.

Components log named events with fields (``log.event("pull.done", url=..., bytes=...)``),
so lines stay greppable and journald keeps them readable. No global state beyond the
standard logging tree.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_FIELDS = "frumitcache_fields"


class EventLogger:
    """A thin wrapper over :class:`logging.Logger` that logs events with fields."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(f"frumitcache.{name}")

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            exc_info = fields.pop("exc_info", None)
            self._logger.log(level, event, extra={_FIELDS: fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name)


class Throttle:
    """Lets an event through at most once per ``period_s`` for each key and counts the ones it
    held back (logged as ``suppressed=n`` with the next one let through). For errors a client
    can provoke at will: one line a minute tells the operator, a line per request fills the
    disk."""

    def __init__(self, period_s: float = 60.0) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, key: str, now: float | None = None) -> int | None:
        """``None``: stay quiet; else the number of events held back since the last one.
        ``now`` is the caller's clock (trio's, or a sans-IO caller's); default monotonic."""
        if now is None:
            now = time.monotonic()  # log pacing only; no protocol decision depends on it
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if len(self._last) > 1000:  # keys come from input: keep the table bounded
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        return self._held.pop(key, 0)


def _value(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex()
    text = str(v)
    if not text or any(c in text for c in ' ="'):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """``LEVEL component event k=v ...``; journald adds its own timestamp."""

    def __init__(self, *, timestamps: bool) -> None:
        super().__init__()
        self._timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        parts = [
            record.levelname.lower(),
            record.name.removeprefix("frumitcache."),
            record.getMessage(),
        ]
        parts += [f"{k}={_value(v)}" for k, v in fields.items()]
        line = " ".join(parts)
        if self._timestamps:
            line = time.strftime("%H:%M:%S ", time.localtime(record.created)) + line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "component": record.name.removeprefix("frumitcache."),
            "event": record.getMessage(),
        }
        out.update({k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()})
        return json.dumps(out, default=str)


def setup_logging(level: str, fmt: str) -> None:
    """Route frumitcache's logs to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    # Under systemd (JOURNAL_STREAM set) journald timestamps every line itself.
    timestamps = "JOURNAL_STREAM" not in os.environ
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(timestamps=timestamps))
    root = logging.getLogger("frumitcache")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
