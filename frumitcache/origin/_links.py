"""Which federation links' bytes a fetch holds, and which links it has left (no I/O).

A federated fetch may take one object's bytes from several links (a sibling, a parent after
the sibling broke) and the origin, each resuming with Range after the last. Only the object's
SHA-256 (when the door knows it) or its expected size can show them wrong, and only as a whole:
the federation wire carries no chunk digests a child could trust (a parent's own list would
prove only what that parent says). So when the whole object fails its check, every link whose
bytes are in it is left for the rest of the fetch, everything stored is dropped, and the
object is fetched again from its first byte from the next link or the origin. When the
origin's bytes alone fail, the mismatch is the fetch's answer, as without federation.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class LinkLedger:
    """The links of one fetch: whose bytes the writer holds, who answers now, who was left."""

    stored: set[str] = field(default_factory=set)  # links with bytes in the current writer
    answering: str | None = None  # the link of the current answer (None: the origin)
    left: set[str] = field(default_factory=set)  # links whose bytes failed verification

    def wrote(self) -> None:
        """The current answer's bytes reached the writer."""
        if self.answering is not None:
            self.stored.add(self.answering)

    def blame(self) -> frozenset[str]:
        """The links to leave now that the object failed verification; empty when only the
        origin's bytes (or a partial of an earlier run) are in it."""
        culprits = set(self.stored)
        if self.answering is not None:
            culprits.add(self.answering)
        return frozenset(culprits - self.left)

    def leave(self, links: frozenset[str]) -> None:
        """Leave ``links`` for the rest of the fetch; the writer starts over empty."""
        self.left |= links
        self.stored.clear()
        self.answering = None
