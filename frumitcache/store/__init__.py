"""Content-addressed store: objects and chunks by SHA-256, an sqlite index, atomic writes,
a size cap with LRU eviction and pins, and a scrub that detects bit rot."""
