#!/usr/bin/env bash
# Instruction profiles of the in-process request loop (callgrind), one per stack, and of the
# span exporter alone (opentelemetry-otlp's path, before, and the crate's, after); prints
# instructions per request (per span for the exporter). The profiles stay in OUT for callgrind_annotate and benches/callgrind-diff.py (see
# benches/README.md, "Where the instructions go").
#
# Usage: bash benches/profile.sh        (about 10 minutes on a loaded 2-core machine)
# Knobs: N=20000 (requests per stack) STACKS="bare noop_layer metrics ..." (STACKS="": the
#        exporter only) BATCHES="2 6"
#        OUT=<dir> (default target/profile)
# Needs valgrind (callgrind_annotate comes with it).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
STACKS=${STACKS-"bare noop_layer metrics traces_unsampled traces_sampled axum_prometheus otel_tower_metrics otel_tower_unsampled"}
BATCHES=${BATCHES:-"2 6"}
OUT=${OUT:-${CARGO_TARGET_DIR:-target}/profile}
command -v valgrind >/dev/null || { echo "profile.sh: valgrind not found" >&2; exit 1; }
mkdir -p "$OUT"

cargo build --quiet --profile bench -p soma-benches --bin bench-driver
bin=${CARGO_TARGET_DIR:-target}/release/bench-driver

total() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# Only the request loop is counted (collection off at start, toggled on entering
# `measured_loop`, on the thread that runs it): no setup, no warm-up, no exporter thread.
for stack in $STACKS; do
  out="$OUT/loop.$stack.out"
  valgrind --tool=callgrind --dump-instr=no --collect-atstart=no \
    --toggle-collect='bench_driver::measured_loop' --callgrind-out-file="$out" \
    "$bin" "$stack" hello "$N" >"$OUT/loop.$stack.log" 2>&1
  awk -v s="$stack" -v t="$(total "$out")" -v n="$N" 'BEGIN { printf "%-22s %8.0f instructions/request\n", s, t / n }'
done

# The exporter: two batch counts, the difference divided by the spans (setup cancels out).
set -- $BATCHES
for b in "$1" "$2"; do
  valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$OUT/export.$b.out" \
    "$bin" export "$b" >"$OUT/export.$b.log" 2>&1
done
awk -v a="$(total "$OUT/export.$1.out")" -v b="$(total "$OUT/export.$2.out")" -v n="$(( ($2 - $1) * 1024 ))" \
  'BEGIN { printf "%-22s %8.0f instructions/span (before, opentelemetry-otlp gRPC path: copy, convert, encode, drop)\n", "export", (b - a) / n }'
# The crate's exporter (after): only `direct_export` is counted (encode, the buffer as body, drop
# the batch), not the copy of the batch each round hands it.
for b in "$1" "$2"; do
  valgrind --tool=callgrind --dump-instr=no --collect-atstart=no \
    --toggle-collect='soma_benches::export::direct_export' \
    --callgrind-out-file="$OUT/export-direct.$b.out" \
    "$bin" export-direct "$b" >"$OUT/export-direct.$b.log" 2>&1
done
awk -v a="$(total "$OUT/export-direct.$1.out")" -v b="$(total "$OUT/export-direct.$2.out")" -v n="$(( ($2 - $1) * 1024 ))" \
  'BEGIN { printf "%-22s %8.0f instructions/span (after, span_export: encode, the buffer as body, drop)\n", "export-direct", (b - a) / n }'
echo "profiles in $OUT; e.g. python3 benches/callgrind-diff.py $OUT/loop.bare.out $OUT/loop.noop_layer.out $N self"
