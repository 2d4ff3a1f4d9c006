#!/usr/bin/env bash
# Instructions per paced call, counted by callgrind (deterministic, unlike timings on a
# shared VM without hardware counters):
#
#   benches/tools/callgrind-call.sh PORT CALLS -- COMMAND...
#
# Starts COMMAND (a server listening on 127.0.0.1:PORT) under
# `valgrind --tool=callgrind --separate-threads=yes`, warms it with 20 paced calls, zeroes
# the counters, places CALLS calls at 20/s with benches/tools/pace.py (one at a time, the
# block line by line), dumps, stops the server, and prints each thread's instructions per
# call (the busiest thread is the worker) and the top functions of that thread.
# PACE_LINE_GAP_US (see pace.py) spaces the block's lines, one wake-up each; PACE_RATE sets
# the calls per second (default 20; lower it when the gaps make a call longer than 50 ms).
# CALLGRIND_CACHE=1 adds callgrind's cache simulation (this machine's L1/LL sizes) and prints
# the first-level instruction-cache misses per call too: the simulated caches see only this
# process, so it is the count of a warm server running calls back to back, where the code a
# call runs does not fit in L1i (BENCHMARKS.md, "Session of 2026-12-04").
# CALLGRIND_INSTR=1 records instruction addresses (--dump-instr=yes) and prints the lines of
# code the busiest thread ran in nearly every call (benches/tools/code-lines.py).
# Example, release `serve` against a SQLite database:
#   IPCOUNTRY_DB=sqlite:///tmp/p.db benches/tools/callgrind-call.sh 4573 100 -- target/release/ipcountry serve
set -euo pipefail
port=$1 calls=$2 rate=${PACE_RATE:-20}
shift 2
[ "$1" = "--" ] && shift
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
cache=()
[ "${CALLGRIND_CACHE:-0}" = 1 ] && cache=(--cache-sim=yes)
instr=()
[ "${CALLGRIND_INSTR:-0}" = 1 ] && instr=(--dump-instr=yes)
valgrind --tool=callgrind --separate-threads=yes "${cache[@]}" "${instr[@]}" --callgrind-out-file="$out/cg.out" "$@" \
    >"$out/server.log" 2>&1 &
vg=$!
trap 'kill $vg 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done
python3 "$here/pace.py" "$port" "$rate" 20 >/dev/null
callgrind_control -z "$vg" >/dev/null
python3 "$here/pace.py" "$port" "$rate" "$calls"
callgrind_control -d "$vg" >/dev/null
kill -TERM $vg; wait $vg 2>/dev/null || true
trap - EXIT
best="" bestn=0
# The dump (-d) wrote part 1, one file per thread: cg.out.1-NN.
for f in "$out"/cg.out.1-*; do
    totals=$( (callgrind_annotate "$f" 2>/dev/null || true) | awk '/PROGRAM TOTALS/ {gsub(",",""); print; exit}')
    n=$(awk '{print $1}' <<<"$totals")
    [[ "$n" =~ ^[0-9]+$ ]] || continue
    misses=""
    if [ ${#cache[@]} -gt 0 ]; then
        # Ir Dr Dw I1mr ...: the fourth number is the L1 instruction misses (a count of 0 has
        # no percentage after it, so the numbers are counted, not the columns).
        i1=$(awk '{n=0; for (i=1;i<=NF;i++) if ($i ~ /^[0-9]+$/) {n++; if (n==4) {print $i; exit}}}' <<<"$totals")
        misses=", $((${i1:-0} / calls)) L1i misses"
    fi
    echo "$(basename "$f"): $((n / calls)) instructions$misses per call"
    if [ "$n" -gt "$bestn" ]; then best=$f bestn=$n; fi
done
echo "busiest thread: $(basename "$best"), $((bestn / calls)) per call; top functions (inclusive):"
callgrind_annotate --inclusive=yes "$best" 2>/dev/null | sed -n '/file:function/,$p' | head -40 || true
if [ ${#instr[@]} -gt 0 ]; then
    echo "code lines of the busiest thread:"
    python3 "$here/code-lines.py" "$best" "$calls" 15
fi
# The server's own account of the calls (its line per call, when it writes one): a call that
# did not end `Screened` ran another path than Asterisk's, and the counts above are not a
# call's. (pace.py once sent an empty line after the block, which the server read as the
# reply to its command: every call was cut short, see BENCHMARKS.md.)
if grep -q 'outcome=' "$out/server.log"; then
    logged=$(grep -c 'outcome=' "$out/server.log")
    other=$(grep 'outcome=' "$out/server.log" | grep -vc 'outcome=Screened' || true)
    echo "calls the server logged: $logged, of which not Screened: $other"
    [ "$other" = 0 ] || echo "WARNING: calls did not end Screened; see $out/server.log" >&2
fi
echo "files kept in $out"
