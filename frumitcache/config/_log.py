"""``[log]``: log level and line format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from frumitcache.config._field import Section, opt


@dataclass(frozen=True, slots=True)
class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = opt("info", "Log level.")
    format: Literal["text", "json"] = opt(
        "text", "Log line format on stderr: text (journald-friendly) or json."
    )
