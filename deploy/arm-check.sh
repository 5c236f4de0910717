#!/usr/bin/env bash
# Proves the 32-bit Raspberry Pi route under emulation: a minimal Debian bookworm root of the
# given architecture with exactly the Debian packages deploy/README.md lists, frumitcache
# installed into it the way a Pi owner does (wheel, venv --system-site-packages, --no-deps),
# and the suite's core run there by the ARM build of Python, libtorrent, sqlite and friends:
# the store, election and codec tests plus tests/arm (an agent as on a Pi, doctor, pull
# --sha256, a two-agent site over libtorrent and peer HTTP, apt-get download via the proxy).
#
#   sudo bash deploy/arm-check.sh armel            # Pi 1 / Zero (ARMv6: QEMU_CPU=arm1176)
#   sudo bash deploy/arm-check.sh armhf            # Pi 2 / 3 on a 32-bit OS (cortex-a7)
#   sudo bash deploy/arm-check.sh arm64 -x -q      # Pi 3/4/5 on a 64-bit OS; pytest arguments
#   sudo bash deploy/arm-check.sh armel --rss      # also the agent's idle RSS in the root
#
# Root only (binfmt_misc, chroot). Installs qemu-user-static, binfmt-support, mmdebstrap and
# arch-test if missing. The root is cached as a tarball in $FRUMITCACHE_ARM_CACHE (default
# /var/cache/frumitcache-arm), keyed by architecture and package list, and unpacked fresh into
# a temporary directory on every run (nothing from a previous run leaks in). Only /proc is
# mounted into the root, never the host's /dev: mmdebstrap makes the root's own device nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:-armel}
shift || true
rss=false
args=()
for a in "$@"; do
    if [ "$a" = --rss ]; then rss=true; else args+=("$a"); fi
done
case "$arch" in
    armel) qemu=arm; cpu=arm1176 ;;     # ARMv6, the original Pi model B and Pi Zero
    armhf) qemu=arm; cpu=cortex-a7 ;;   # ARMv7, the Pi 2 (and a Pi 3 on a 32-bit OS)
    arm64) qemu=aarch64; cpu=cortex-a53 ;;  # the Pi 3's core in 64-bit mode
    *) echo "arm-check: architecture must be armel, armhf or arm64, not '$arch'" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "arm-check: needs root (binfmt_misc, chroot); run it with sudo" >&2
    exit 2
fi

# The runtime packages deploy/README.md tells a Pi owner to install, plus what the checks
# themselves need (pytest, hypothesis; apt and dpkg for the apt-get test; mount for the
# disk-full test; a shell).
packages=(
    python3-libtorrent python3-trio python3-msgpack python3-xxhash python3-h11 python3-httpx
    python3-rich python3-venv
    python3-pytest python3-hypothesis python3-outcome
    dash bash coreutils sed grep findutils mount apt dpkg base-passwd
)
tools=(qemu-user-static binfmt-support mmdebstrap arch-test)
# Checks may run side by side (CI runs armel and armhf at once): one at a time installs the
# tools, builds a root, fetches the pytest-trio wheel and builds frumitcache's (pip wheel
# writes build/ in this tree); the roots and the tests are each run's own.
exec 9>/tmp/frumitcache-arm-check.lock
flock 9
missing=()
for pkg in "${tools[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable "qemu-$qemu" 2>/dev/null || true
if ! arch-test "$arch" >/dev/null 2>&1; then
    echo "arm-check: this machine cannot run $arch binaries (binfmt_misc / qemu-user-static)" >&2
    exit 2
fi

# The host Python that builds the wheel: the test venv's when there is one (it has pip).
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
cache=${FRUMITCACHE_ARM_CACHE:-/var/cache/frumitcache-arm}
mkdir -p "$cache"
key=$(printf '%s\n' "$arch" "${packages[@]}" | sha256sum | cut -c1-12)
tarball="$cache/bookworm-$arch-$key.tar"
if [ ! -s "$tarball" ]; then
    echo "arm-check: building the $arch root (cached as $tarball)"
    # extract: unpack packages without running maintainer scripts (those failed in a root-mode
    # chroot here); nothing the checks need depends on them.
    mmdebstrap --quiet --format=tar --variant=extract --arch="$arch" --include="$(IFS=,; echo "${packages[*]}")" \
        bookworm "$tarball.part" http://deb.debian.org/debian
    mv "$tarball.part" "$tarball"
fi
pytest_trio="$cache/wheels"
if ! ls "$pytest_trio"/pytest_trio-*.whl >/dev/null 2>&1; then
    # bookworm does not package pytest-trio; pure Python, so one wheel serves every arch.
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
        -d "$pytest_trio" pytest-trio==0.8.0
fi

work=$(mktemp -d /tmp/frumitcache-arm.XXXXXX)
root="$work/root"
cleanup() {
    umount "$root/proc" 2>/dev/null || true
    # Anything a test mounted below the root (the disk-full test's tmpfs) goes too.
    grep -o " $root/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$root"
tar -C "$root" -xf "$tarball"
# base-passwd's maintainer script never ran: give the root its passwd and group files.
cp "$root/usr/share/base-passwd/passwd.master" "$root/etc/passwd"
cp "$root/usr/share/base-passwd/group.master" "$root/etc/group"

# The wheel, built the way deploy/README.md tells a Pi owner (pure Python: one for every Pi).
mkdir -p "$root/src/wheels"
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps \
    -w "$root/src/wheels" . >/dev/null
cp "$pytest_trio"/pytest_trio-*.whl "$root/src/wheels/"
flock -u 9
cp -r pyproject.toml tests bench "$root/src/"
mount -t proc proc "$root/proc"

in_root() {
    env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 \
        QEMU_CPU="$cpu" CI="${CI:-}" chroot "$root" "$@"
}
in_root /bin/sh -c 'python3 -m venv --system-site-packages /opt/frumitcache \
    && /opt/frumitcache/bin/pip install -q --disable-pip-version-check --no-deps --no-index \
       /src/wheels/*.whl'
in_root /opt/frumitcache/bin/python - <<'EOF'
import platform, struct, sys, sqlite3
import libtorrent, trio, httpx, msgpack
import frumitcache
print(f"arm-check: {platform.machine()} {struct.calcsize('P') * 8}-bit, Python {sys.version.split()[0]},"
      f" libtorrent {libtorrent.__version__}, trio {trio.__version__}, httpx {httpx.__version__},"
      f" sqlite {sqlite3.sqlite_version}, frumitcache {frumitcache.__version__}")
for mod in (libtorrent, trio, httpx, msgpack):
    if not mod.__file__.startswith("/usr/lib/python3/dist-packages/"):
        sys.exit(f"arm-check: {mod.__name__} is not Debian's: {mod.__file__}")
EOF

status=0
if [ ${#args[@]} -eq 0 ]; then
    args=(-q)
fi
in_root /bin/sh -c 'cd /src && exec /opt/frumitcache/bin/python -m pytest -p no:cacheprovider \
    tests/store tests/site/test_election.py tests/site/test_codec.py tests/arm "$@"' \
    arm-check "${args[@]}" || status=$?
if [ "$status" = 0 ] && [ "$rss" = true ]; then
    in_root /bin/sh -c 'cd /src && exec /opt/frumitcache/bin/python -m bench.agent_rss --json' \
        || status=$?
fi
ls -l /dev/null | grep -q '^c' || { echo "arm-check: host /dev/null is not a device!" >&2; status=1; }
exit "$status"
