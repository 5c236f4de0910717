"""Tests of the apt proxy (frumitcache.apt)."""
