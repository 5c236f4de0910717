"""The ``frumitcache`` command line: one module per command, dispatched from ``_app``."""

from frumitcache.cli._app import main as _main


def main() -> None:
    """Console-script entry point."""
    raise SystemExit(_main())


__all__ = ["main"]
