#!/usr/bin/env bash
# User-space instructions per round trip of the in-process line ping-pong
# (bench/workloads/copas/roundtrips.lua), counted by valgrind's callgrind:
# a run of TOTAL round trips minus a run of CLIENTS round trips (start-up
# and module loading cancel out). Repeatable whatever else the machine does.
#
#   bench/instructions.sh [total [clients]]      (20000 10; needs valgrind)
set -eu
cd "$(dirname "$0")/.."
TOTAL=${1:-20000}
CLIENTS=${2:-10}
LUA=${BENCH_LUA:-lua5.4}
make -s >/dev/null
eval "$(make -s env)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
    "$LUA" bench/workloads/copas/roundtrips.lua "$1" "$CLIENTS" >/dev/null 2>&1
  callgrind_annotate "$out/cg" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}
full=$(count "$TOTAL")
base=$(count "$CLIENTS")
echo "instructions per round trip: $(( (full - base) / (TOTAL - CLIENTS) )) ($TOTAL round trips, $CLIENTS clients, $LUA)"
