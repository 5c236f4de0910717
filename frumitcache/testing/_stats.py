"""The test origin's counts: per path, and each request as it saw it (who asked, how much it
sent), answered by ``GET /_stats``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from frumitcache.testing._delivered import Delivery


@dataclass(slots=True)
class RequestRecord:
    """One request as the server saw it (in :attr:`ServerStats.log`), logged on arrival;
    ``status`` and ``bytes_sent`` fill in as the answer goes out."""

    method: str
    path: str
    target: str  # as sent: origin-form ``/a`` or absolute-form ``http://host/a`` (proxy use)
    headers: Mapping[str, str]
    status: int = 0
    bytes_sent: int = 0
    peer: str = ""  # the client's address ("" if not a socket)
    delivery: Delivery | None = None  # how to tell what the client acknowledged (plain TCP)

    @property
    def bytes_delivered(self) -> int | None:
        """Body bytes the client's TCP acknowledged (None over TLS): ``bytes_sent`` less
        what was still in the origin's socket (testing/_delivered.py)."""
        return None if self.delivery is None else self.delivery.delivered(self.bytes_sent)


@dataclass(slots=True)
class ServerStats:
    """Counts per path; missing paths count 0. Control paths (``/_stats``...) are not counted."""

    requests: Counter[str] = field(default_factory=Counter)
    connections: int = 0  # TCP connections accepted (keep-alive reuses one)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    log: list[RequestRecord] = field(default_factory=list)

    @property
    def total_bytes_sent(self) -> int:
        return sum(self.bytes_sent.values())

    @property
    def total_bytes_delivered(self) -> int | None:
        """Body bytes the clients acknowledged, over every logged request (None if any
        request cannot say)."""
        counts = [e.bytes_delivered for e in self.log]
        return None if None in counts else sum(c for c in counts if c is not None)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def reset(self) -> None:
        self.requests.clear()
        self.connections = 0
        self.bytes_sent.clear()
        self.log.clear()

    def to_json(self) -> dict[str, Any]:
        delivered = [e.bytes_delivered for e in self.log]
        return {
            "requests": dict(self.requests),
            "bytes_sent": dict(self.bytes_sent),
            "connections": self.connections,
            "total_requests": self.total_requests,
            "total_bytes_sent": self.total_bytes_sent,
            "total_bytes_delivered": (
                None if None in delivered else sum(d for d in delivered if d is not None)
            ),
            "log": [
                {
                    "method": e.method,
                    "path": e.path,
                    "peer": e.peer,
                    "status": e.status,
                    "range": e.headers.get("range", ""),
                    "bytes_sent": e.bytes_sent,
                    "bytes_delivered": d,
                }
                for e, d in zip(self.log, delivered, strict=True)
            ],
        }
