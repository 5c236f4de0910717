"""The config as data: every setting with its default, unit and doc (:func:`describe`), the
commented example config generated from it, and a small TOML writer for generated configs."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from frumitcache.config._config import section_fields, sections


def describe() -> list[tuple[str, str, Any, str, str]]:
    """Every setting as ``(section, key, default, unit, doc)``, in declaration order."""
    rows: list[tuple[str, str, Any, str, str]] = []
    for name, section in sections().items():
        for key, (_tp, f) in section_fields(section).items():
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            rows.append((name, key, default, f.metadata.get("unit", ""), f.metadata.get("doc", "")))
    return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """Write ``{section: {key: value}}`` as TOML (what tests and tools generate configs with)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def example_toml(wrap: Callable[[str], list[str]] | None = None) -> str:
    """A complete, commented config file with every key at its default."""
    wrapper = wrap or (lambda s: textwrap.wrap(s, 96))
    lines = [
        "# frumitcache agent configuration. Every key is shown at its default; delete what you",
        "# do not change. Generated from frumitcache/config/ (`frumitcache config example`).",
    ]
    current = ""
    for section, key, default, unit, doc in describe():
        if section != current:
            lines += ["", f"[{section}]"]
            current = section
        text = doc + (f" Unit: {unit}." if unit else "")
        lines += ["# " + line for line in wrapper(text)]
        lines.append(f"{key} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"
