"""``frumitcache pull``: fetch an artifact through the local agent into a file.

The bytes go to a temporary file beside FILE: the agent passes its verified chunk files and
they are copied in the kernel (``copy_file_range``, or ``sendfile`` / read-write onto another
file system), or, from an agent too old to pass files and always for stdout, they arrive in
frames and are hashed here. FILE appears (by rename) only when the whole object checked out
against ``--sha256`` and the digest the agent reports. Anything else removes the temporary
file, so a failed pull leaves no FILE.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from frumitcache.cli import _exit
from frumitcache.cli._flags import add_client_flags, client_socket
from frumitcache.cli._output import error, human_bytes, is_terminal
from frumitcache.client import pull_into_blocking

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def register(sub: Callable[..., argparse.ArgumentParser]) -> None:
    parser = sub(
        "pull",
        help="fetch an artifact through the local agent",
        description=(
            "Fetch URL through the local agent (never around it: with no agent running this "
            "fails and says how to start one). The site fetches the origin at most once; "
            "every chunk is verified before it is written, and the agent hands its verified "
            "chunk files over for a copy inside the kernel (the bytes never cross the socket). "
            "With --sha256 the whole file is checked too, and on a mismatch no FILE is left "
            "behind. Shows a progress bar on a terminal, one summary line otherwise."
        ),
    )
    parser.add_argument("url", metavar="URL", help="http:// or https:// URL of the artifact")
    parser.add_argument(
        "--sha256", metavar="HEX", help="expected SHA-256 of the whole artifact (64 hex digits)"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it ('-' for stdout); default: the URL's file name, in the current "
        "directory",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    add_client_flags(parser)
    parser.set_defaults(handler=run)


def _parse_digest(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        digest = bytes.fromhex(text.strip())
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise _UsageError(f"--sha256 wants 64 hex digits, got {text!r}")
    return digest


class _UsageError(Exception):
    pass


def _default_output(url: str) -> Path:
    name = Path(urlsplit(url).path).name
    if not name:
        raise _UsageError(f"cannot name a file after {url!r}; give one with -o FILE")
    return Path(name)


class _Progress:
    """A rich progress bar on a terminal; nothing while running otherwise."""

    def __init__(self, label: str, enabled: bool) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if enabled:  # rich only then: its import is a tenth of a quiet pull's start-up
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._label = label

    def start(self, total: int | None) -> None:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=total)

    def advance(self, n: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def run(args: argparse.Namespace) -> int:
    try:
        digest = _parse_digest(args.sha256)
        scheme = urlsplit(args.url).scheme
        if scheme not in ("http", "https"):
            raise _UsageError(f"URL must start with http:// or https://, got {args.url!r}")
        to_stdout = args.output == "-"
        target = (
            None if to_stdout else Path(args.output) if args.output else _default_output(args.url)
        )
    except _UsageError as exc:
        error(str(exc))
        return _exit.USAGE

    # Blocking, without trio: its import is a third of a pull's cost on a Pi (client/_blocking).
    socket = client_socket(args)
    show = not args.quiet and is_terminal(sys.stderr)
    started = time.monotonic()
    if target is None:
        progress = _Progress(args.url, enabled=False)
        sys.stdout.flush()
        # Only our own temp file takes passed chunk files; stdout (a pipe, a terminal) gets
        # the frames.
        done = pull_into_blocking(socket, args.url, sys.stdout.fileno(), sha256=digest, files=False)
    else:
        target = target.absolute()
        label = target.name
        progress = _Progress(label, enabled=show)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
        tmp = Path(tmp_name)
        try:
            try:
                try:
                    done = pull_into_blocking(
                        socket,
                        args.url,
                        fd,
                        sha256=digest,
                        started=progress.start,
                        advance=progress.advance,
                    )
                finally:
                    progress.stop()
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o644 & ~_umask())
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    if not args.quiet:
        elapsed = time.monotonic() - started
        where = "stdout" if target is None else str(target)
        sys.stderr.write(
            f"{args.url} -> {where}: {human_bytes(done.size)} in {elapsed:.1f}s from "
            f"{done.source}, sha256 {done.digest.hex()}\n"
        )
    return _exit.OK


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
