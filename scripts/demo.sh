#!/usr/bin/env bash
# Run the built-in guest for a few seconds and show what it reports:
# the time from starting amber to the guest's first report line, and the
# page writes per second each vCPU achieves.  Then a background snapshot
# of a loaded guest, restored in a second process (scripts/demo-bgsnapshot.py),
# and a postcopy live migration of a guest that outruns the link
# (scripts/demo-postcopy.py).
#
#   scripts/demo.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: scripts/demo.sh BUILD_DIR}
amber=$build/amber
[ -x "$amber" ] || { echo "demo: $amber is not built (run make)" >&2; exit 1; }
# Say it before starting anything: every part of the demo runs a guest.
if [ ! -e /dev/kvm ]; then
    echo "demo: this host has no /dev/kvm, and the demo runs the built-in guest on KVM." >&2
    echo "      Without it: make check (its guest tests skip, saying so), amber -machine none" >&2
    echo "      (QMP and HMP only), tests/bench/ramio.py (RAM to a file and back, no guest)." >&2
    exit 1
fi

cpus=2
mem=512M
seconds=4
work=$(mktemp -d /tmp/amber-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
serial=$work/serial.log

now() { date +%s.%N; }

echo "amber demo: built-in guest, $cpus vCPUs, $mem RAM, report every 500 ms, ${seconds}s run"
start=$(now)
# duration= makes the guest end the run itself through the debug-exit port.
"$amber" -m "$mem" -smp "$cpus" -serial "file:$serial" \
         -append "report=500 duration=$((seconds * 1000))" &
pid=$!

until grep -q '^vcpu=' "$serial" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || true
        if [ -s "$serial" ]; then
            echo "demo: amber exited before the guest reported; serial output:" >&2
            cat "$serial" >&2
        else
            echo "demo: amber exited before the guest said anything (its error is above)" >&2
        fi
        exit 1
    fi
    sleep 0.01
done
first=$(now)

status=0
wait "$pid" || status=$?

awk -v start="$start" -v first="$first" -v status="$status" '
    /^vcpu=/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        cpu = f["vcpu"]
        n[cpu]++
        # The first report of each vCPU covers its start-up; leave it out.
        if (n[cpu] > 1) { sum[cpu] += f["writes/s"]; used[cpu]++ }
        pass[cpu] = f["pass"]; stall[cpu] = f["maxstall_us"]
    }
    END {
        printf "  start to first report: %.3f s\n", first - start
        for (cpu = 0; cpu in n; cpu++) {
            rate = used[cpu] ? sum[cpu] / used[cpu] : 0
            printf "  vCPU %d: %6.1f M writes/s (mean of %d reports), pass %d, max stall %d us\n",
                   cpu, rate / 1e6, used[cpu], pass[cpu], stall[cpu]
        }
        printf "  amber exit status: %d\n", status
    }' "$serial"
[ "$status" -eq 0 ] || exit "$status"

echo
/usr/bin/python3 "$(dirname "$0")/demo-bgsnapshot.py" "$build" --mem 512M --cpus 2 --rate 50000
echo
/usr/bin/python3 "$(dirname "$0")/demo-postcopy.py" "$build" --mem 512M --cpus 2 --bandwidth 64M
