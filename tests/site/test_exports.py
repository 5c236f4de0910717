"""The public surface of frumitcache.site is exactly ``__all__``."""

from __future__ import annotations

import frumitcache.site as site


def test_public_names() -> None:
    public = {name for name in dir(site) if not name.startswith("_")}
    assert set(site.__all__) <= public
    assert sorted(site.__all__) == sorted(set(site.__all__))
    assert {
        "SiteNode",
        "SiteHooks",
        "SiteCore",
        "Membership",
        "Election",
        "Catalogue",
        "FrameCodec",
        "MemberInfo",
    } <= set(site.__all__)
    for name in site.__all__:
        obj = getattr(site, name)
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            assert obj.__module__.startswith("frumitcache.site"), name
