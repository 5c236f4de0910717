"""Who is pulling which object, as the seeder hears it. A plain data structure.

Each member's :class:`~._messages.FetchRequest` or :class:`~._messages.Lookup` of a URL makes
it a *puller* of that URL for ``window_s``. A member that asks while no other member has asked
for the URL in that window pulls it **alone**: nobody will trade its chunks on, so waiting for
the fellow each chunk is assigned to (``swarm.seeder_grace_s``, then a question to that fellow)
only makes a lone pull slow (64 MiB in 4-8 s in a 4-8 agent site, against 0.4 s with one
fellow; 2026-12-05). The seeder says so in its :class:`~._messages.ObjectInfo` answer by listing
the asker among the ``partial`` holders of every chunk it does not hold whole, and lists it in
no other answer (:meth:`Pullers.answer`): no new message field, so agents of the version
before, which drop themselves from holder lists, read the answer as before.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from frumitcache.site._messages import ChunkHolders, ObjectInfo

#: A member counts as pulling a URL this long after it last asked for it. A member pulling
#: alone asks again every second (to learn whether it still is); one in a herd need not.
PULLER_WINDOW_S = 5.0
#: URLs remembered at most (the least recently asked forgotten first).
MAX_URLS = 1024


class Pullers:
    """The members that asked for each URL lately (node id → when)."""

    def __init__(self, window_s: float = PULLER_WINDOW_S, max_urls: int = MAX_URLS) -> None:
        self.window_s = window_s
        self.max_urls = max_urls
        self._asked: OrderedDict[str, dict[str, float]] = OrderedDict()

    def note(self, url: str, node: str, now: float) -> None:
        """``node`` asked for ``url`` at ``now``."""
        asked = self._asked.setdefault(url, {})
        self._asked.move_to_end(url)
        for other in [n for n, at in asked.items() if now - at > self.window_s]:
            del asked[other]
        asked[node] = now
        while len(self._asked) > self.max_urls:
            self._asked.popitem(last=False)

    def alone(self, url: str, node: str, now: float) -> bool:
        """Has no member but ``node`` asked for ``url`` within the window?"""
        asked = self._asked.get(url, {})
        return all(n == node or now - at > self.window_s for n, at in asked.items())

    def answer(self, node: str, info: ObjectInfo, now: float) -> ObjectInfo:
        """``info`` as the seeder answers ``node``: listed as a partial holder of each chunk it
        does not hold whole when it pulls alone, and nowhere as a partial holder otherwise
        (so that being listed means exactly that)."""
        if info.manifest is None or not info.holders:
            return info
        alone = self.alone(info.url, node, now)
        if not alone and not lists_alone(info, node):
            return info  # the common case (a herd, apt): nothing to add or take out
        holders = tuple(
            _listed(held, node, alone and node not in held.full) for held in info.holders
        )
        return dataclasses.replace(info, holders=holders)


def _listed(held: ChunkHolders, node: str, listed: bool) -> ChunkHolders:
    partial = tuple(n for n in held.partial if n != node)
    if listed:
        partial = (*partial, node)
    return held if partial == held.partial else ChunkHolders(held.full, partial)


def lists_alone(info: ObjectInfo, node: str) -> bool:
    """Does the seeder's ``info`` say that ``node`` pulls it alone (see :class:`Pullers`)?"""
    return any(node in held.partial for held in info.holders)


__all__ = ["MAX_URLS", "PULLER_WINDOW_S", "Pullers", "lists_alone"]
