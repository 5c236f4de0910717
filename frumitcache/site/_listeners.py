"""This node's local listeners of the catalogue traffic: subscriptions and change waiters.

The driver (:mod:`._driver`) hands every announcement the policy publishes to
:meth:`Listeners.publish` (the agent's fetch path reads them from its subscription) and calls
:meth:`Listeners.changed` when the catalogue has taken a member's message, so that whoever
waits for the catalogue to settle (a new seeder gathering ``Have`` reports after a failover)
waits on an event instead of polling it.
"""

from __future__ import annotations

from collections import Counter

import trio

from frumitcache.site._policy import Announcement


class Listeners:
    """Fan-out of announcements to subscribers, and the catalogue-changed event.

    ``dropped`` is the driver's drop counter: a full subscriber's announcements are counted
    there as ``subscriber-full``."""

    def __init__(self, dropped: Counter[str]) -> None:
        self._dropped = dropped
        self._subscribers: list[trio.MemorySendChannel[Announcement]] = []
        self._changed = trio.Event()

    def subscribe(self, max_buffer: int) -> trio.MemoryReceiveChannel[Announcement]:
        send, receive = trio.open_memory_channel[Announcement](max_buffer)
        self._subscribers.append(send)
        return receive

    def publish(self, msg: Announcement) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(msg)
            except trio.WouldBlock:
                self._dropped["subscriber-full"] += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(channel)

    def changed(self) -> None:
        """The catalogue took a member's message: wake every waiter (once)."""
        # A fresh event per change: a waiter that looks again and waits misses nothing,
        # as there is no checkpoint between its look and its wait.
        event, self._changed = self._changed, trio.Event()
        event.set()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def close(self) -> None:
        """The node stopped: every subscription ends."""
        for channel in self._subscribers:
            channel.close()
