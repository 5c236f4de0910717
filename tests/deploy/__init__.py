"""Tests of what an operator installs: systemd unit and notify protocol, apt/avahi files,
example config, ansible role, doctor checks."""
