#!/usr/bin/env bash
# Install what amber needs to build, test and benchmark, from Debian's archive.
# Idempotent: packages already present are skipped, and apt is touched only when
# something is missing.
set -euo pipefail

need=(
    gcc make binutils pkg-config meson ninja-build
    libglib2.0-dev libjson-glib-dev
    python3 python3-pytest python3-matplotlib
    # The reference VMM: the "same image under QEMU" tests and the side-by-side
    # benchmarks (tests skip with the reason when it is absent).
    qemu-system-x86
    # libvirt's QEMU driver and virsh: tests/functional/test_libvirt.py probes
    # amber as an emulator through the embedded driver (no daemon needed).
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
)

# `make fuzz` (scripts/install-deps.sh --fuzz): clang and its libFuzzer runtime.
if [ "${1:-}" = "--fuzz" ]; then
    need+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt or dpkg (unattended upgrades, a parallel make) may hold the lock:
# wait for it rather than fail at once.
lock_wait=(-o DPkg::Lock::Timeout=600)
# Refresh the package lists once per boot at most: a fresh machine has none.
stamp=/var/lib/apt/periodic/amber-update-stamp
if [ ! -e "$stamp" ] || [ "$(stat -c %Y "$stamp")" -lt "$(date -d "$(uptime -s)" +%s)" ]; then
    apt-get "${lock_wait[@]}" update -q
    mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
apt-get "${lock_wait[@]}" install -y -q --no-install-recommends "${missing[@]}"
