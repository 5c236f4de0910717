"""Terminal output: rich progress bars and tables on a terminal, plain lines when piped."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


def is_terminal(stream: TextIO) -> bool:
    return stream.isatty()


def print_json(data: Any, stream: TextIO = sys.stdout) -> None:
    stream.write(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop always returns


def error(message: str) -> None:
    sys.stderr.write(f"frumitcache: error: {message}\n")
