"""The apt proxy on port 3142 (h11): apt-cacher-ng conventions, index files versus immutable
files, end-to-end .deb hashes from the Packages indexes, allow-listed upstreams."""
