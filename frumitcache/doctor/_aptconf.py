"""apt's configuration as apt reads it: which files, in which order, and a parser for their
``Name "value";`` / ``Scope { ... };`` syntax (comments, quoting and ``#clear`` included), so
doctor can say what ``Acquire::http::Proxy`` apt really uses.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

_CONF_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def apt_config_files(apt_dir: Path) -> list[Path]:
    """The files apt reads, in its order: ``apt.conf.d/*`` sorted, then ``apt.conf``.

    Like apt, only names of ``[A-Za-z0-9_.-]`` with no extension or ``.conf`` count (so
    ``x.dpkg-old`` and ``x.disabled`` are ignored).
    """
    files: list[Path] = []
    parts = apt_dir / "apt.conf.d"
    with contextlib.suppress(OSError):
        for entry in sorted(parts.iterdir(), key=lambda p: p.name):
            if not _CONF_NAME.match(entry.name) or entry.name.startswith("."):
                continue
            if "." in entry.name and not entry.name.endswith(".conf"):
                continue
            if entry.is_file():
                files.append(entry)
    main = apt_dir / "apt.conf"
    if main.is_file():
        files.append(main)
    return files


def read_apt_config(apt_dir: Path) -> dict[str, str]:
    """apt's effective scalar settings from ``apt_dir`` (keys lower-cased, last one wins)."""
    settings: dict[str, str] = {}
    for path in apt_config_files(apt_dir):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for key, value in parse_apt_conf(text):
            if value is None:
                for k in [k for k in settings if k == key or k.startswith(key + "::")]:
                    del settings[k]
            else:
                settings[key] = value
    return settings


_TOKEN = re.compile(
    r'"(?P<str>[^"]*)"'  # apt strings have no escapes
    r"|(?P<punct>[{};])"
    r"|(?P<word>[^\s{};\"]+)"
)


def _strip_comments(text: str) -> tuple[str, list[str]]:
    """Text without comments, and the ``#clear`` targets in order (``#include`` is ignored)."""
    out: list[str] = []
    cleared: list[str] = []
    i, n = 0, len(text)
    in_str = False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            in_str = c != '"'
            i += 1
        elif c == '"':
            out.append(c)
            in_str = True
            i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif text.startswith("//", i) or c == "#":
            end = text.find("\n", i)
            line = text[i : n if end < 0 else end]
            if line.startswith("#clear"):
                cleared.extend(w.rstrip(";") for w in line.split()[1:])
                out.append("\0")  # marks where the #clear took effect
            i = n if end < 0 else end
        else:
            out.append(c)
            i += 1
    return "".join(out), cleared


def parse_apt_conf(text: str) -> list[tuple[str, str | None]]:
    """apt.conf syntax to ``[(key, value)]`` in order; ``(key, None)`` is a ``#clear key``.

    Handles ``A::B "v";``, nested ``A { B "v"; };``, comments (``//``, ``#``, ``/* */``) and
    lists (``A { "x"; "y"; };``, reported as ``A`` = last item). Keys are lower-cased, as apt
    matches them case-insensitively.
    """
    body, cleared = _strip_comments(text)
    result: list[tuple[str, str | None]] = []
    stack: list[str] = []
    pending: list[str] = []
    clear_iter = iter(cleared)
    for segment_index, segment in enumerate(body.split("\0")):
        if segment_index:
            target = next(clear_iter, "")
            if target:
                result.append((target.lower(), None))
        for m in _TOKEN.finditer(segment):
            punct = m.group("punct")
            if punct is None:
                pending.append(m.group("str") if m.group("str") is not None else m.group("word"))
                continue
            if punct == "{":
                if pending:
                    stack.append(pending[0].lower())
                    if len(pending) > 1:
                        result.append(("::".join(stack), pending[1]))
                else:
                    stack.append("")
            elif punct == ";":
                if len(pending) >= 2:
                    result.append(("::".join([*stack, pending[0].lower()]), pending[1]))
                elif len(pending) == 1 and stack:
                    result.append(("::".join(stack), pending[0]))  # a list item
            elif stack:  # "}"
                stack.pop()
            pending = []
    return [(k.strip(":"), v) for k, v in result]
