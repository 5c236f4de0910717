"""The systemd notify protocol (``sd_notify``), spoken directly: no libsystemd.

Under ``Type=notify`` systemd passes the path of a datagram socket in ``$NOTIFY_SOCKET`` (a file
path, or ``@name`` for a Linux abstract socket) and, with ``WatchdogSec=``, the watchdog period
in ``$WATCHDOG_USEC``. The service sends newline-separated ``KEY=value`` assignments:
``READY=1`` once it really serves, ``STATUS=...`` for ``systemctl status``, ``WATCHDOG=1`` more
often than the period, ``STOPPING=1`` when a graceful stop begins.

:class:`Notifier` is what the agent holds: built once with :meth:`Notifier.from_environ`; every
method is a no-op when the agent is not under systemd (no ``$NOTIFY_SOCKET``), so callers never
branch. :meth:`Notifier.watchdog_loop` pings from the trio event loop itself, so a loop that
hangs stops the pings and systemd restarts the agent.

The encoding (:func:`encode_assignments`) and the environment parsing (:func:`parse_address`,
:func:`parse_watchdog_usec`) are pure functions; only :meth:`Notifier.send` touches a socket.
Sending never blocks: systemd's notify socket has a deep queue, and a datagram that cannot be
queued at once is reported (logged, ``False``) rather than stalling the event loop.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping

import trio

from frumitcache._log import get_logger

log = get_logger("systemd")

# What systemd sets for the service; cleared from os.environ by from_environ(unset=True) so that
# processes the agent starts do not inherit them.
_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def parse_address(value: str | None) -> str | bytes | None:
    """The socket address for ``$NOTIFY_SOCKET``; ``None`` when unset or not a Unix socket.

    ``@name`` is an abstract socket (address ``b"\\0name"``); a path must be absolute. Other
    forms (``vsock:...`` in newer systemd) are not spoken here and read as ``None``.
    """
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def parse_watchdog_usec(value: str | None, pid_value: str | None, pid: int) -> int | None:
    """The watchdog period in microseconds, or ``None`` if the watchdog is off for ``pid``.

    Like ``sd_watchdog_enabled``: ``$WATCHDOG_USEC`` must be a positive integer, and when
    ``$WATCHDOG_PID`` is set it must name this process (the variables leaked to a child are not
    the child's watchdog).
    """
    if not value:
        return None
    try:
        usec = int(value)
    except ValueError:
        return None
    if usec <= 0:
        return None
    if pid_value:
        try:
            if int(pid_value) != pid:
                return None
        except ValueError:
            return None
    return usec


def encode_assignments(assignments: Mapping[str, str]) -> bytes:
    """``{"READY": "1", "STATUS": "serving"}`` as the datagram systemd expects.

    Values are single-line by protocol: a newline would start a new assignment, so newlines
    in a status text become spaces.
    """
    lines = []
    for key, value in assignments.items():
        if not key or not key.replace("_", "").isalnum() or not key.isupper():
            raise ValueError(f"not a notify variable name: {key!r}")
        flat = value.replace("\r", " ").replace("\n", " ")
        lines.append(f"{key}={flat}")
    return ("\n".join(lines) + "\n").encode()


class Notifier:
    """Talks to systemd about this service; inert when not started by systemd.

    ``address`` is the notify socket address (see :func:`parse_address`), ``None`` for none.
    ``watchdog_usec`` is the watchdog period, ``None`` when the watchdog is off.
    """

    def __init__(self, address: str | bytes | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec if address is not None else None
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """Read ``$NOTIFY_SOCKET``/``$WATCHDOG_USEC``/``$WATCHDOG_PID`` (default ``os.environ``).

        With ``unset`` (the default) the variables are removed from the mapping afterwards, as
        ``sd_notify(unset_environment=1)`` does, so subprocesses do not talk to systemd as us.
        """
        env = os.environ if environ is None else environ
        address = parse_address(env.get("NOTIFY_SOCKET"))
        usec = parse_watchdog_usec(env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"), os.getpid())
        if unset:
            for name in _ENV_VARS:
                env.pop(name, None)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        """Whether there is a notify socket to talk to."""
        return self._address is not None

    @property
    def watchdog_usec(self) -> int | None:
        """The watchdog period systemd enforces, in microseconds; ``None`` when off."""
        return self._watchdog_usec

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two ``WATCHDOG=1`` pings: half the period, as systemd advises."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def send(self, **assignments: str) -> bool:
        """Send one datagram of ``KEY=value`` assignments; ``True`` if it was queued.

        ``False`` when disabled or when the socket refused it (logged): losing a notification
        must never take the agent down.
        """
        if self._address is None:
            return False
        data = encode_assignments(assignments)
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(data, self._address)
        except OSError as exc:
            log.warning("systemd.notify-failed", address=self._address, detail=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: the agent serves (call it only once every front door accepts)."""
        if status is None:
            return self.send(READY="1")
        return self.send(READY="1", STATUS=status)

    def status(self, text: str) -> bool:
        """``STATUS=...``: one line shown by ``systemctl status``."""
        return self.send(STATUS=text)

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: a graceful stop has begun."""
        if status is None:
            return self.send(STOPPING="1")
        return self.send(STOPPING="1", STATUS=status)

    def reloading(self) -> bool:
        """``RELOADING=1``: the configuration is being re-read (``ready()`` ends it)."""
        return self.send(RELOADING="1")

    def watchdog(self) -> bool:
        """One ``WATCHDOG=1`` keep-alive ping."""
        return self.send(WATCHDOG="1")

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: ask for ``seconds`` more to finish starting or stopping
        (a store recovery on a slow SD card can outlast ``TimeoutStartSec``)."""
        return self.send(EXTEND_TIMEOUT_USEC=str(max(0, round(seconds * 1_000_000))))

    async def watchdog_loop(self) -> None:
        """Ping ``WATCHDOG=1`` every :attr:`watchdog_interval` seconds, forever.

        Returns at once when the watchdog is off, so it can always be started in the agent's
        nursery; otherwise it runs until cancelled. The first ping goes out immediately.
        """
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.watchdog()
            await trio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``fd`` (stderr) is connected to journald, per ``$JOURNAL_STREAM`` (``dev:ino``).

    Only then may a logger drop its own timestamps or use ``<N>`` priority prefixes: a stderr
    redirected elsewhere by the service inherits the variable but not the journal.
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(fd)
        return st.st_dev == int(dev) and st.st_ino == int(ino)
    except (OSError, ValueError):
        return False


# sd-daemon(3) priority prefixes; journald strips them and files the line at that priority.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def journal_prefix(levelno: int) -> str:
    """The ``<N>`` prefix that makes journald record a stderr line at the matching priority."""
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return f"<{priority}>"
    return "<7>"


__all__ = [
    "Notifier",
    "encode_assignments",
    "journal_prefix",
    "parse_address",
    "parse_watchdog_usec",
    "stderr_is_journal",
]
