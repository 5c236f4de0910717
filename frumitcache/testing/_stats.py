"""The test origin's counts: per path, and each request as it saw it (who asked, how much it
sent), answered by ``GET /_stats``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def reset(self) -> None:
        self.requests.clear()
        self.connections = 0
        self.bytes_sent.clear()
        self.log.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "bytes_sent": dict(self.bytes_sent),
            "connections": self.connections,
            "total_requests": self.total_requests,
            "total_bytes_sent": self.total_bytes_sent,
            "log": [
                {
                    "method": e.method,
                    "path": e.path,
                    "peer": e.peer,
                    "status": e.status,
                    "range": e.headers.get("range", ""),
                    "bytes_sent": e.bytes_sent,
                }
                for e in self.log
            ],
        }
