"""Loading a :class:`Config`: strictly from TOML, and with ``--set section.key=value``
overrides; quantities such as ``4MiB`` or ``20Mbit`` are parsed here."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from frumitcache.config._config import Config, section_fields, sections
from frumitcache.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b|bit)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_quantity(text: str, unit: str) -> int:
    """Parse ``"4MiB"``, ``"10M"``, ``"20Mbit"`` into bytes (or bytes/s for rates).

    Binary suffixes (KiB) are powers of 1024, decimal ones (kB, M) powers of 1000; ``bit``
    divides by eight, which is how link speeds are usually written.
    """
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"expected a number of {unit} such as 4MiB or 20Mbit, got {text!r}")
    number, prefix, binary, suffix = m.groups()
    base = 1024 if binary else 1000
    value = float(number) * base ** _POWERS[prefix.lower()]
    if suffix and suffix.lower() == "bit":
        value /= 8
    return int(value)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list of strings"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


def _convert(key: str, tp: Any, unit: str, value: Any) -> Any:
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad
        return list(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, str) and unit in ("bytes", "bytes/s"):
            try:
                value = parse_quantity(value, unit)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - a bug in this module


def _check_values(cfg: Config, allow_lists: bool) -> None:
    for name in sections():
        getattr(cfg, name).check()
    if allow_lists:
        from frumitcache.origin import AllowPolicy  # here: origin imports this package

        AllowPolicy.from_config(cfg)  # a bad allow-list entry raises ConfigError naming its key


def config_from_mapping(
    data: Mapping[str, Any], *, source: str = "config", allow_lists: bool = True
) -> Config:
    """Build a :class:`Config` from parsed TOML, rejecting unknown keys and bad values.

    ``allow_lists=False`` leaves the upstream allow-lists unparsed: their parser comes with the
    uplink client (httpx), a third of a ``pull``'s start-up, and a client that only needs the
    control socket's path has no use for them (the agent checks them when it starts)."""
    types = sections()
    built: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in types:
            known = ", ".join(types)
            raise ConfigError(f"{source}: unknown section [{name}] (known: {known})")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table")
        fields = section_fields(types[name])
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in fields:
                raise ConfigError(
                    f"{name}.{key}: unknown key (known in [{name}]: {', '.join(fields)})"
                )
            tp, f = fields[key]
            values[key] = _convert(f"{name}.{key}", tp, f.metadata.get("unit", ""), value)
        built[name] = types[name](**values)
    cfg = Config(**built)
    _check_values(cfg, allow_lists)
    return cfg


_SYSTEM_CONFIG = Path("/etc/frumitcache/frumitcache.toml")


def find_config_file() -> Path | None:
    """The config file used when none is named.

    ``$FRUMITCACHE_CONFIG``, else the first that exists of
    ``$XDG_CONFIG_HOME/frumitcache/frumitcache.toml`` (``~/.config/...``) and
    ``/etc/frumitcache/frumitcache.toml``. ``$FRUMITCACHE_SYSTEM_CONFIG`` replaces the ``/etc``
    path; it exists so that tests can check this order without writing to ``/etc``.
    """
    env = os.environ.get("FRUMITCACHE_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    system = os.environ.get("FRUMITCACHE_SYSTEM_CONFIG") or str(_SYSTEM_CONFIG)
    for candidate in (Path(base) / "frumitcache" / "frumitcache.toml", Path(system)):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None, *, allow_lists: bool = True) -> Config:
    """Load the TOML file at ``path``; ``None`` gives the embedded one-node defaults.
    ``allow_lists``: see :func:`config_from_mapping`."""
    if path is None:
        return config_from_mapping({}, allow_lists=allow_lists)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_mapping(data, source=str(path), allow_lists=allow_lists)


def _parse_override_value(tp: Any, text: str) -> Any:
    if typing.get_origin(tp) is list:
        return [p.strip() for p in text.split(",") if p.strip()]
    if tp is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        return text
    if tp is int:
        try:
            return int(text)
        except ValueError:
            return text  # a quantity such as 4MiB, or garbage that _convert names
    if tp is float:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def with_overrides(
    cfg: Config, overrides: Mapping[str, str], *, allow_lists: bool = True
) -> Config:
    """Apply ``{"store.max_bytes": "2GiB"}``-style overrides (from ``--set`` and CLI flags)."""
    data: dict[str, dict[str, Any]] = {
        name: dataclasses.asdict(getattr(cfg, name)) for name in sections()
    }
    types = sections()
    for dotted, text in overrides.items():
        section, _, key = dotted.partition(".")
        if section not in types or not key:
            raise ConfigError(f"{dotted}: unknown setting (write it as section.key)")
        fields = section_fields(types[section])
        if key not in fields:
            raise ConfigError(f"{dotted}: unknown key (known in [{section}]: {', '.join(fields)})")
        data[section][key] = _parse_override_value(fields[key][0], text)
    return config_from_mapping(data, source="overrides", allow_lists=allow_lists)
