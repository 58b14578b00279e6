#!/usr/bin/env bash
# Run every fuzz target of tests/fuzz/ for SECONDS each, from the committed
# corpus, and say how many inputs each ran and whether anything crashed.
# Usage: scripts/fuzz.sh BUILD-DIR SECONDS
set -uo pipefail
build=${1:?build dir}
seconds=${2:?seconds per target}
root=$(cd "$(dirname "$0")/.." && pwd)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
failed=0
for src in "$root"/tests/fuzz/fuzz-*.c; do
    t=$(basename "$src" .c)
    work="$build/fuzz-corpus/$t"
    crashes="$build/fuzz-crashes/$t"
    mkdir -p "$work" "$crashes"
    cp -n "$root/tests/fuzz/corpus/$t"/* "$work"/ 2>/dev/null || true
    log="$build/fuzz-$t.log"
    # The targets' own output (amber-img's, say) is closed; libFuzzer's reports are not.
    "$build/tests/fuzz/$t" -max_total_time="$seconds" -print_final_stats=1 -close_fd_mask=3 \
        -artifact_prefix="$crashes/" "$work" > "$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ $rc -ne 0 ]; then
        failed=1
        echo "$t: FAILED after ${runs:-?} runs (exit $rc): see $log and $crashes/"
    else
        echo "$t: ${runs:-?} runs in ${seconds} s, no crash, leak or sanitizer report" \
             "(corpus $(ls "$work" | wc -l) inputs)"
    fi
done
exit $failed
