#!/usr/bin/env bash
# CPU per exported span, per thread: the export capacity of one core.
#
# Starts the bench receiver (CPU 1) and `bench-server --mode full` (every request sampled,
# exported over OTLP/gRPC; CPU 0), warms up, then reads every server thread's utime + stime
# (/proc/<pid>/task/<tid>/stat) before and after DURATION seconds of wrk, and divides each
# thread's CPU by the spans the receiver got. CPU time is what the export threads really used,
# so the figure holds even while other processes compete for the cores (wall-clock throughput
# on a shared machine does not). Prints one line per thread and the capacity:
# 1 s / (export threads' CPU per span) = spans/s one core can export.
#
# Usage: bash benches/export-cpu.sh     (about 30 s)
# Knobs: DURATION=10 WARMUP=2 CONNS=64 THREADS=2 PIN=1 (server on CPU 0; wrk and the receiver
#        on CPU 1; PIN=0: all share both cores) PORT=18090 OTLP_PORT=14327 STATS_PORT=14329
# Needs wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PIN=${PIN:-1}
PORT=${PORT:-18090}
OTLP_PORT=${OTLP_PORT:-14327}
STATS_PORT=${STATS_PORT:-14329}
OUT=$(mktemp -d)

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "export-cpu.sh: $tool not found" >&2; exit 1; }
done
server_cpus=()
client_cpus=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  server_cpus=(taskset -c 0)
  client_cpus=(taskset -c 1)
fi

cargo build --quiet --profile bench -p soma-benches --bin bench-server
bin=${CARGO_TARGET_DIR:-target}/release/bench-server
clk_tck=$(getconf CLK_TCK)

receiver_pid=
server_pid=
cleanup() {
  for pid in $server_pid $receiver_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

wait_http() {
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "export-cpu.sh: $1 did not answer" >&2
  return 1
}
receiver_spans() {
  curl -sf "http://127.0.0.1:$STATS_PORT/stats" | awk '$1 == "spans" { print $2 }'
}
# "<tid> <comm> <utime+stime ticks>" for every thread of $1.
thread_ticks() {
  for task in /proc/"$1"/task/*; do
    local comm stat
    comm=$(tr ' ' '_' <"$task/comm")
    stat=$(cat "$task/stat")
    # Fields after the ")" that closes comm: utime is the 12th, stime the 13th.
    echo "${task##*/} $comm $(echo "${stat##*) }" | awk '{ print $12 + $13 }')"
  done
}

"${client_cpus[@]}" "$bin" --mode receiver --addr "127.0.0.1:$OTLP_PORT" --stats "127.0.0.1:$STATS_PORT" \
  >"$OUT/receiver.log" 2>&1 &
receiver_pid=$!
wait_http "http://127.0.0.1:$STATS_PORT/stats"

OTEL_LOGS_EXPORTER=none RUST_LOG=warn "${server_cpus[@]}" "$bin" --mode full --addr "127.0.0.1:$PORT" \
  --otlp "http://127.0.0.1:$OTLP_PORT" >"$OUT/server.log" 2>&1 &
server_pid=$!
url="http://127.0.0.1:$PORT"
wait_http "$url/hello"

"${client_cpus[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$url/hello" >/dev/null
# Let the warm-up's spans drain before counting.
sleep 2
spans0=$(receiver_spans)
thread_ticks "$server_pid" | sort >"$OUT/before"
"${client_cpus[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$url/hello" >"$OUT/wrk.txt"
sleep 2 # the last batch (schedule delay 1 s)
thread_ticks "$server_pid" | sort >"$OUT/after"
spans=$(($(receiver_spans) - spans0))
dropped=$(curl -sf "$url/metrics" | awk '/^otel_sdk_span_dropped_total/ { s += $NF } END { print s + 0 }')
rps=$(awk '/^Requests\/sec:/ { print $2 }' "$OUT/wrk.txt")

echo "== $CONNS connections, ${DURATION}s: $rps req/s, $spans spans received, $dropped dropped (whole run)"
join "$OUT/before" "$OUT/after" | awk -v hz="$clk_tck" -v n="$spans" '
  { d = ($5 - $3) / hz * 1e6 / n; cpu[$2] += d; total += d }
  END {
    for (t in cpu) if (cpu[t] >= 0.01) printf "%-18s %6.2f us CPU/span\n", t, cpu[t]
    export = cpu["OpenTelemetry.T"] + cpu["otel-trace-expo"]
    printf "export threads     %6.2f us CPU/span -> %.0f spans/s per core of export CPU\n", export, 1e6 / export
    printf "all threads        %6.2f us CPU/request\n", total
  }'
