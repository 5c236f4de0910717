"""A prefetch under way: what each member answered, and its progress on demand."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from frumitcache._results import PrefetchProgress
from frumitcache.errors import PeerError

if TYPE_CHECKING:
    from frumitcache.client._agent import AgentClient


class PrefetchHandle:
    """A prefetch under way: what each member answered, and its progress on demand."""

    def __init__(self, client: AgentClient, started: dict[str, dict[str, str]]) -> None:
        self._client = client
        #: URL -> node -> "present", "fetching" or "error: ..." (the members' first answer).
        self.started = started

    @property
    def urls(self) -> tuple[str, ...]:
        """The URLs being prefetched."""
        return tuple(self.started)

    @property
    def errors(self) -> dict[tuple[str, str], str]:
        """``(url, node) -> reason`` for every member that refused or could not be asked."""
        return {
            (url, node): state
            for url, nodes in self.started.items()
            for node, state in nodes.items()
            if state.startswith("error")
        }

    async def status(self) -> tuple[PrefetchProgress, ...]:
        """Bytes each member holds of each URL now (from :meth:`AgentClient.locate`)."""
        out: list[PrefetchProgress] = []
        for url, nodes in self.started.items():
            where = await self._client.locate(url)
            held = {h.node: h for h in where.holders}
            for node, state in nodes.items():
                h = held.get(node)
                out.append(
                    PrefetchProgress(
                        url=url,
                        node=node,
                        bytes=h.bytes if h else 0,
                        size=where.size,
                        complete=bool(h and h.complete),
                        started=state,
                    )
                )
        return tuple(out)

    async def wait(self, *, poll_s: float = 0.5) -> tuple[PrefetchProgress, ...]:
        """Until every member that accepted holds every URL completely; raises
        :class:`~frumitcache.errors.PeerError` at once when a member could not be asked at
        all. A member whose fetch later fails (origin error) never completes, so bound the
        wait with ``trio.fail_after``."""
        if self.errors:
            (url, node), reason = next(iter(self.errors.items()))
            raise PeerError(f"{node} did not take {url}: {reason}")
        while True:
            progress = await self.status()
            if all(p.complete for p in progress):
                return progress
            await trio.sleep(poll_s)
