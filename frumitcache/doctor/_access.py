"""What every doctor check stands on: the :class:`Check` record, the agent's service user, and
file access judged for that user by the mode bits (as root everything is writable, so trying
would prove nothing). Shared by the local checks (:mod:`._checks`) and the federation's
(:mod:`._federation`).
"""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "frumitcache"
"""The user the systemd unit runs the agent as (deploy/systemd/frumitcache.service)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: ``ok`` or not, what was seen (``message``) and what to do (``hint``)."""

    name: str
    ok: bool
    message: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """The user whose access the file checks judge (by mode bits, not by trying)."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def lookup(cls, name: str) -> ServiceUser:
        """The user ``name`` with all its groups; :class:`KeyError` if there is none."""
        entry = pwd.getpwnam(name)
        return cls(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


def default_service_user() -> str | None:
    """``"frumitcache"`` when running as root and that user exists, else ``None`` (check as
    the caller): what ``frumitcache doctor`` should pass as ``service_user`` by default."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None
    return SERVICE_USER


def mode_allows(st: os.stat_result, user: ServiceUser, want: int) -> bool:
    """Whether ``user`` has all of ``want`` (a mix of R_OK/W_OK/X_OK) by the mode bits."""
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        shift = 6
    elif st.st_gid in user.gids:
        shift = 3
    else:
        shift = 0
    bits = (st.st_mode >> shift) & 0o7
    return bits & want == want


def _unreachable_part(path: Path, user: ServiceUser) -> Path | None:
    """The first ancestor directory of ``path`` that ``user`` cannot traverse, if any."""
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except OSError:
            return None  # the missing part is reported by the caller
        if not mode_allows(st, user, os.X_OK):
            return parent
    return None


def readable(path: Path, user: ServiceUser | None) -> str | None:
    """``None`` if ``user`` (or this process) can read the file at ``path``, else why not."""
    if user is None:
        try:
            with path.open("rb") as f:
                f.read(1)
        except OSError as exc:
            return exc.strerror or str(exc)
        return None
    blocked = _unreachable_part(path, user)
    if blocked is not None:
        return f"{user.name} cannot enter {blocked}"
    if not mode_allows(path.stat(), user, os.R_OK):
        return f"{user.name} has no read permission"
    return None


def writable_dir(path: Path, user: ServiceUser | None) -> str | None:
    """``None`` if files can be created in the directory ``path``, else why not."""
    if user is None:
        try:
            fd, name = tempfile.mkstemp(prefix=".doctor-", dir=path)
        except OSError as exc:
            return exc.strerror or str(exc)
        os.close(fd)
        os.unlink(name)
        return None
    blocked = _unreachable_part(path / "x", user)
    if blocked is not None:
        return f"{user.name} cannot enter {blocked}"
    if not mode_allows(path.stat(), user, os.W_OK | os.X_OK):
        return f"{user.name} has no write permission"
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        return "read-only file system"
    return None


def check_secret_file(name: str, setting: str, path: Path, user: ServiceUser | None) -> Check:
    """A key file (``name``, set by ``setting``): a readable, non-empty regular file that only
    the agent's user can read."""
    try:
        st = path.stat()
    except OSError as exc:
        return Check(
            name,
            False,
            f"{path}: {exc.strerror or exc}",
            f"install the {name} there, readable by the agent only: "
            f"install -o {SERVICE_USER} -g root -m 0600 KEY {path}",
        )
    if not stat.S_ISREG(st.st_mode):
        return Check(name, False, f"{path} is not a regular file", f"point {setting} at the key")
    why = readable(path, user)
    if why is not None:
        return Check(
            name,
            False,
            f"{path} is not readable: {why}",
            f"chown {SERVICE_USER}:root {path} && chmod 0600 {path}",
        )
    if st.st_mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IRGRP | stat.S_IWGRP):
        # Group-readable is a leak too: the socket's group (users of `pull`) must not read it.
        return Check(
            name,
            False,
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: users other than the agent's "
            f"can read or change the {name}",
            f"chmod 0600 {path}",
        )
    if st.st_size == 0:
        return Check(name, False, f"{path} is empty", f"install the {name} in it")
    return Check(name, True, f"{path} is readable")
