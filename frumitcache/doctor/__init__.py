"""``frumitcache doctor``'s checks: what is wrong with this node's set-up, and the fix.

Kept out of :mod:`frumitcache.agent` so that a node whose agent cannot even import (a broken
libtorrent, say) can still be diagnosed: this package needs only the config and the standard
library. :func:`run_checks` runs every check for one config; each returns a :class:`Check`.
The /proc/net forensics behind the port checks are in ``_procnet``, apt's config parser in
``_aptconf``, the federation's checks in ``_federation``, file access in ``_access``.
"""

from frumitcache.doctor._access import Check, ServiceUser, default_service_user
from frumitcache.doctor._checks import (
    check_apt,
    check_control_socket,
    check_directory,
    check_key_file,
    check_ports,
    run_checks,
)
from frumitcache.doctor._federation import check_federation

__all__ = [
    "Check",
    "ServiceUser",
    "check_apt",
    "check_control_socket",
    "check_directory",
    "check_federation",
    "check_key_file",
    "check_ports",
    "default_service_user",
    "run_checks",
]
