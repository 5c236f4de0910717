"""libtorrent inside trio: one session per agent, deterministic per-chunk v2 torrents seeded
from the store, and chunk fetches from a list of site holders."""
