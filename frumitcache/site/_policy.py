"""The site catalogue policy: who records what, who is told what. A pure state machine.

The :class:`~._catalogue.Catalogue` is a data structure; this module decides what goes into
it and which messages that causes, from the election's view of the site (passed in, with the
time). The trio driver (:mod:`._driver`) carries out what it returns:

- while this node is in the seeder role, members' :class:`~._messages.ChunkAnnounce`,
  :class:`~._messages.ObjectAnnounce` and :class:`~._messages.Have` go into the catalogue,
  each only for its sender (members speak only for themselves); a new term of ours starts a
  fresh catalogue from this node's own holdings;
- while another node is the seeder, its announcements go to this node's subscribers
  (:class:`Publish`); anything from anyone else is dropped (:class:`Drop`, counted);
- when the seeder changes to another node, this node's holdings go to it as ``Have``
  reports, read afresh and sent again after ``HAVE_RESENDS`` (UDP may lose one; merging twice
  changes nothing; a fenced seeder's chunks in flight complete meanwhile) while it stays the
  seeder; a seeder that steps down (a healed partition) hands over its
  whole catalogue the same way;
- this node's own progress (:meth:`CataloguePolicy.announce`): the seeder records it,
  publishes it and tells every alive member; a member tells the seeder.

A new seeder that takes over an object mid-fetch asks :meth:`CataloguePolicy.reports` who has
reported in its term, since when it is seeder and which seeder it followed before
(:class:`Reports`): the old seeder, if still alive, may hold more of the object than anyone.

Neither reads the clock nor touches a socket: ``now`` is an argument, :meth:`next_deadline`
says when :meth:`on_timer` wants to run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import overload

from frumitcache.site._catalogue import Catalogue
from frumitcache.site._election import Outgoing
from frumitcache.site._messages import (
    ChunkAnnounce,
    FetchFailed,
    Have,
    Lookup,
    Message,
    ObjectAnnounce,
    ObjectInfo,
    Reply,
)
from frumitcache.site._pullers import Pullers

Announcement = ChunkAnnounce | ObjectAnnounce | FetchFailed

#: Seconds after a seeder change at which this node's Have reports go (again) to the seeder.
HAVE_RESENDS = (0.0, 0.3, 1.0)


@dataclass(frozen=True, slots=True)
class Publish:
    """Give ``msg`` to this node's subscribers (the agent's fetch path)."""

    msg: Announcement


@dataclass(frozen=True, slots=True)
class Drop:
    """A message dropped, counted under ``reason`` in the statistics."""

    reason: str


@dataclass(frozen=True, slots=True)
class SeederChanged:
    """The live seeder as this node sees it changed (``None``: there is none)."""

    seeder: tuple[str, int] | None
    previous: tuple[str, int] | None


Action = Outgoing | Publish | Drop | SeederChanged


@dataclass(frozen=True, slots=True)
class Reports:
    """The ``Have`` reports of this node's term as seeder, as a seeder taking over a fetch
    weighs them: ``began`` (when this term of ours began; ``-inf`` while it holds none),
    ``previous`` (the last other seeder this node followed before it, ``None`` if none),
    ``reported`` (members whose report came in this term), ``alive`` (the other alive
    members now) and ``quiet`` (members not heard within ``member_timeout_s`` but still in
    the electorate, none found dead: a lapsed seeder is often one, see :class:`View`)."""

    began: float
    previous: str | None
    reported: frozenset[str]
    alive: frozenset[str]
    quiet: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class View:
    """The election's view at one instant, as the policy needs it.

    ``seeding_term``: our term while we hold the seeder role (reports count from winning the
    term, before the first lease round is acked: members report as soon as they follow us);
    ``seeding``: we hold a live lease (only then do our own announcements go out as the
    seeder's); ``seeder``: the live seeder we see; ``alive``: the other alive members;
    ``quiet``: the other members of the electorate, not found dead. A seeder whose lease
    lapsed beacons to its best candidate and to everyone only once per gap (longer than
    ``member_timeout_s``), so the node elected after it often finds it quiet, not alive.
    """

    seeder: tuple[str, int] | None
    seeding_term: int | None = None
    seeding: bool = False
    alive: Sequence[str] = ()
    quiet: Sequence[str] = ()


class CataloguePolicy:
    """The catalogue decisions of one node (``me``).

    ``holdings`` returns this node's holdings as ``Have`` reports (the agent's store, see
    :func:`~._messages.split_have`); it is called when they must be reported or recorded.
    """

    def __init__(self, me: str, holdings: Callable[[], list[Have]]) -> None:
        self.me = me
        self.holdings = holdings
        self.catalogue = Catalogue()
        self._term = -1  # the term of ours the catalogue belongs to
        self._seeder: tuple[str, int] | None = None
        self._handover: list[Have] = []  # what we knew as seeder, when we stepped down
        self._resend_at: list[float] = []
        self._began = float("-inf")  # when our term began
        self._followed: str | None = None  # the last other seeder this node followed
        self._previous: str | None = None  # ... as of when our term began
        self._reported: set[str] = set()  # members whose Have came in our term
        self.pullers = Pullers()  # who asked for which URL lately (a lone puller is told)

    # --- the election's view ------------------------------------------------------------------

    def on_view(self, view: View, now: float, departed: Iterable[str] = ()) -> list[Action]:
        """After any event: members that left, a new term of ours, a new seeder."""
        for node in departed:
            self.catalogue.remove_member(node)
        if view.seeding_term is not None and view.seeding_term != self._term:
            self._term = view.seeding_term
            self._began, self._previous, self._reported = now, self._followed, set()
            self.catalogue = Catalogue()
            for have in self.holdings():
                self.catalogue.apply_have(dataclasses.replace(have, node_id=self.me))
        out: list[Action] = []
        if view.seeder != self._seeder:
            previous, self._seeder = self._seeder, view.seeder
            self._handover, self._resend_at = [], []
            if view.seeder is not None and view.seeder[0] != self.me:
                self._followed = view.seeder[0]
                if previous is not None and previous[0] == self.me and len(self.catalogue):
                    # We stepped down (partition healed): hand over what we knew, naming no
                    # holder (members report their own holdings to the new seeder).
                    known = self.catalogue.snapshot()
                    self._handover = [Have(self.me, objects=known, held=False)]
                self._resend_at = [now + d for d in HAVE_RESENDS]
            out.append(SeederChanged(view.seeder, previous))
        return out + self.on_timer(now)

    def on_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        while self._resend_at and self._resend_at[0] <= now and self._seeder is not None:
            self._resend_at.pop(0)
            # Read again for each resend: a fenced seeder's chunks in flight complete after
            # the first report, and the new seeder resumes the origin after what it hears.
            reports = self.holdings() + self._handover
            out += [Outgoing(self._seeder[0], have) for have in reports]
        return out

    def next_deadline(self) -> float:
        return self._resend_at[0] if self._resend_at else float("inf")

    # --- input --------------------------------------------------------------------------------

    def receive(self, sender: str, msg: Message, view: View) -> list[Action]:
        """A catalogue message (announcement or ``Have``) from ``sender``."""
        if view.seeding_term is not None:
            cat = self.catalogue
            if isinstance(msg, ChunkAnnounce) and msg.holder == sender:
                if cat.add_chunk(msg.url, msg.index, msg.digest, msg.chunk_size):
                    cat.add_holder(msg.digest, sender)
            elif isinstance(msg, ObjectAnnounce) and msg.holder == sender:
                cat.put_manifest(msg.manifest)
                for digest in msg.manifest.chunks:
                    cat.add_holder(digest, sender)
            elif isinstance(msg, Have) and msg.node_id == sender:
                cat.apply_have(msg)
                self._reported.add(sender)
            else:
                return [Drop("not-for-seeder")]
            return []
        seeder = view.seeder
        if isinstance(msg, Announcement) and seeder is not None and seeder[0] == sender:
            return [Publish(msg)]
        return [Drop("not-from-seeder")]

    def announce(self, msg: Announcement, view: View) -> list[Action]:
        """This node's own progress: a chunk or an object complete here, or (the seeder's) an
        origin fetch that failed."""
        if isinstance(msg, FetchFailed):
            self.catalogue.forget(msg.url)
            out: list[Action] = [Publish(msg)]
            return out + ([Outgoing(n, msg) for n in view.alive] if view.seeding else [])
        if not view.seeding:
            return [Outgoing(view.seeder[0], msg)] if view.seeder is not None else []
        if isinstance(msg, ChunkAnnounce):
            if self.catalogue.add_chunk(msg.url, msg.index, msg.digest, msg.chunk_size):
                self.catalogue.add_holder(msg.digest, self.me)
        else:
            self.catalogue.finish(msg.manifest)
            for digest in msg.manifest.chunks:
                self.catalogue.add_holder(digest, self.me)
        return [Publish(msg), *(Outgoing(n, msg) for n in view.alive)]

    def reports(self, view: View) -> Reports:
        """Who reported in our term as seeder (see :class:`Reports`)."""
        began = self._began if view.seeding_term is not None else float("-inf")
        return Reports(
            began,
            self._previous,
            frozenset(self._reported),
            frozenset(view.alive),
            frozenset(view.quiet),
        )

    def lookup(self, msg: Lookup) -> ObjectInfo:
        """The seeder's answer to a member's lookup."""
        return self.catalogue.info(msg.url, request_id=msg.request_id)

    def asked(self, sender: str, url: str, now: float) -> None:
        """``sender`` asked the seeder for ``url`` (a lookup or a fetch request)."""
        if sender != self.me:
            self.pullers.note(url, sender, now)

    @overload
    def answer(self, sender: str, reply: ObjectInfo, now: float) -> ObjectInfo: ...
    @overload
    def answer(self, sender: str, reply: Reply, now: float, rid: int) -> Reply: ...

    def answer(self, sender: str, reply: Reply, now: float, rid: int | None = None) -> Reply:
        """``reply`` as sent to ``sender`` (request id ``rid``): an :class:`ObjectInfo` tells
        it whether it pulls alone (:class:`Pullers`)."""
        if rid is not None:
            reply = dataclasses.replace(reply, request_id=rid)
        if sender == self.me or not isinstance(reply, ObjectInfo):
            return reply
        return self.pullers.answer(sender, reply, now)
