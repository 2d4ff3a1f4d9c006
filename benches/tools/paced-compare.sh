#!/usr/bin/env bash
# Paced CPU per call and latency of several servers, interleaved rounds on one machine:
#
#   benches/tools/paced-compare.sh ROUNDS CALLS FLOOR_BIN SERVE_BIN...
#
# FLOOR_BIN is the load bench's floor (target/release/deps/agi_load-*, run with
# AGI_LOAD_FLOOR=1); each SERVE_BIN is an `ipcountry` binary, run as `serve` on a port of its
# own against IPCOUNTRY_DB. Each round places CALLS calls at 20/s on each server in turn
# (benches/tools/pace.py) and prints its p50, p99 and CPU per call (all threads, idle share
# included). The shipped bench (`cargo bench --bench agi_load`) is the reference; this is
# the quick check between two builds.
set -euo pipefail
rounds=$1 calls=$2 floor=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp)
AGI_LOAD_FLOOR=1 "$floor" >"$log" 2>/dev/null &
pids=($!)
names=(floor)
ports=()
for _ in $(seq 1 50); do
    port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$log")
    [ -n "$port" ] && break
    sleep 0.1
done
ports+=("$port")
n=0
for bin in "$@"; do
    port=$((4590 + n))
    n=$((n + 1))
    "$bin" serve --listen "127.0.0.1:$port" >/dev/null 2>&1 &
    pids+=($!)
    names+=("$bin")
    ports+=("$port")
done
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
sleep 2
for i in "${!pids[@]}"; do python3 "$here/pace.py" "${ports[$i]}" 20 20 >/dev/null; done
for r in $(seq 1 "$rounds"); do
    for i in "${!pids[@]}"; do
        echo "round $r ${names[$i]}: $(python3 "$here/pace.py" "${ports[$i]}" 20 "$calls" "${pids[$i]}")"
    done
done
