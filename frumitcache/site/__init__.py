"""The site control plane: membership, seeder election and the catalogue, as pure state
machines (time passed in) plus a thin trio driver; frames are msgpack signed with the site key.

Pure parts (no sockets, no clock): :class:`Membership`, :class:`Election` (composed by
:class:`SiteCore`), :class:`Catalogue`, :class:`FrameCodec`. The driver: :class:`SiteNode`,
customised by the agent through :class:`SiteHooks`.
"""

from frumitcache.site._catalogue import Catalogue
from frumitcache.site._codec import REASONS, FrameCodec, FrameRejected, derive_mac_key
from frumitcache.site._core import SiteCore, Timings
from frumitcache.site._driver import SiteNode
from frumitcache.site._election import Durable, Election, Outgoing, Role, rank_key
from frumitcache.site._membership import Membership
from frumitcache.site._messages import (
    MESSAGE_TYPES,
    Beacon,
    Bulk,
    Bye,
    ChunkAnnounce,
    ChunkHolders,
    Claim,
    ErrorReply,
    FetchFailed,
    FetchRequest,
    Have,
    Lease,
    LeaseAck,
    Lookup,
    MemberInfo,
    Message,
    ObjectAnnounce,
    ObjectInfo,
    ObjectManifest,
    Vote,
    split_have,
)
from frumitcache.site._policy import Reports
from frumitcache.site._pullers import Pullers, lists_alone
from frumitcache.site._setup import SiteHooks, SiteStatistics, member_from_config, parse_peer

__all__ = [
    "MESSAGE_TYPES",
    "REASONS",
    "Beacon",
    "Bulk",
    "Bye",
    "Catalogue",
    "ChunkAnnounce",
    "ChunkHolders",
    "Claim",
    "Durable",
    "Election",
    "ErrorReply",
    "FetchFailed",
    "FetchRequest",
    "FrameCodec",
    "FrameRejected",
    "Have",
    "Lease",
    "LeaseAck",
    "Lookup",
    "MemberInfo",
    "Membership",
    "Message",
    "ObjectAnnounce",
    "ObjectInfo",
    "ObjectManifest",
    "Outgoing",
    "Pullers",
    "Reports",
    "Role",
    "SiteCore",
    "SiteHooks",
    "SiteNode",
    "SiteStatistics",
    "Timings",
    "Vote",
    "derive_mac_key",
    "lists_alone",
    "member_from_config",
    "parse_peer",
    "rank_key",
    "split_have",
]
