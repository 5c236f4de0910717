"""``python -m frumitcache`` is the ``frumitcache`` command."""

from frumitcache.cli import main

main()
