#!/usr/bin/env bash
# Proves the Raspberry Pi OS / Debian install route (deploy/README.md): the agent runs on
# Debian bookworm's own /usr/bin/python3 (3.11.2) with Debian's packages at the dependency
# floors (python3-libtorrent 2.0.8, trio 0.22, httpx 0.23, h11 0.14, msgpack 1.0.3,
# xxhash 3.2, rich 13.3) and the project installed from its wheel with --no-deps.
#
#   bash deploy/debian-python-check.sh                 # the whole test suite
#   bash deploy/debian-python-check.sh tests/deploy -q # a subset; arguments go to pytest
#
# As root it installs the Debian packages it needs (apt-get); otherwise they must already be
# installed. The test tools come from Debian too (python3-pytest 7.2, python3-hypothesis
# 6.67), except pytest-trio, which bookworm does not package: it comes from PyPI, --no-deps.
# Everything lives in a venv made with --system-site-packages ($FRUMITCACHE_DEBIAN_VENV,
# default /tmp/frumitcache-debian-venv), rebuilt on every run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=/usr/bin/python3
VENV=${FRUMITCACHE_DEBIAN_VENV:-/tmp/frumitcache-debian-venv}
PYTEST_TRIO=${FRUMITCACHE_PYTEST_TRIO:-pytest-trio==0.8.0}
packages=(
    python3-libtorrent python3-trio python3-msgpack python3-xxhash python3-h11 python3-httpx
    python3-rich
    python3-venv python3-setuptools python3-wheel
    python3-pytest python3-hypothesis python3-outcome
)

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "debian-python-check: run as root to install: ${missing[*]}" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

rm -rf "$VENV"
"$PYTHON" -m venv --system-site-packages "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --no-deps "$PYTEST_TRIO"

# Build the wheel the way a Pi gets it (pure Python, so one wheel serves armhf too), from a
# copy of the sources so the work tree gets no build/ directory; build with Debian's
# setuptools, not a fresh one from PyPI.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r pyproject.toml frumitcache "$src"/
[ -f README.md ] && cp README.md "$src"/
"${pip[@]}" wheel --no-deps --no-build-isolation -w "$src/dist" "$src"
"${pip[@]}" install --no-deps "$src"/dist/frumitcache-*.whl

# Which versions, from where: every runtime dependency must be Debian's.
"$VENV/bin/python" - <<'EOF'
import importlib, importlib.metadata as md, sys
print(f"debian-python-check: {sys.executable} -> Python {sys.version.split()[0]}")
bad = []
for module, dist in [("libtorrent", None), ("trio", "trio"), ("httpx", "httpx"), ("h11", "h11"),
                     ("msgpack", "msgpack"), ("xxhash", "xxhash"), ("rich", "rich"),
                     ("pytest", "pytest"), ("hypothesis", "hypothesis"),
                     ("pytest_trio", "pytest-trio"), ("frumitcache", "frumitcache")]:
    mod = importlib.import_module(module)
    # Distribution metadata first: Debian's xxhash module says __version__ = "0.0.0".
    version = md.version(dist) if dist else getattr(mod, "__version__", "?")
    where = getattr(mod, "__file__", "?")
    print(f"debian-python-check: {module:12} {version:10} {where}")
    from_debian = where.startswith("/usr/lib/python3/dist-packages/")
    if module in ("libtorrent", "trio", "httpx", "h11", "msgpack", "xxhash", "rich") and not from_debian:
        bad.append(module)
if bad:
    sys.exit(f"debian-python-check: not Debian's: {', '.join(bad)}")
EOF

if [ $# -eq 0 ]; then
    set -- tests
fi
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
