#!/usr/bin/env bash
# Load test over loopback: the bench server bare, with our metrics, with the peer
# opentelemetry-instrumentation-tower (metrics only, `otel_tower`), and with metrics plus traces
# (every trace sampled, exported over OTLP/gRPC to a live receiver), under wrk at 64 and 1 000
# connections. Runs are interleaved (bare, metrics, full, bare, metrics, full, ...) so that machine
# drift cancels in the ratios. Prints requests/s, p50/p99 latency, server CPU per request (from
# /proc/<pid>/stat), resident memory after the load, and instrumented/bare ratios; for the full
# mode also spans received versus requests sent and otel_sdk_span_dropped_total.
#
# Usage: bash benches/load.sh            (about 5 minutes)
# Knobs: DURATION=10 WARMUP=2 ROUNDS=2 CONNECTIONS="64 1000" MODES="bare metrics otel_tower full"
#        (also: axum_prometheus)
#        THREADS=2 (wrk threads) PIN=1 (server on CPU 0; wrk and the receiver on CPU 1)
#        PORT=18080 OTLP_PORT=14317 STATS_PORT=14319 OUT=<dir for raw wrk output>
# Needs wrk (Debian's package; `bash scripts/install-deps.sh` installs it) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-"64 1000"}
MODES=${MODES:-"bare metrics otel_tower full"}
THREADS=${THREADS:-2}
PIN=${PIN:-1}
PORT=${PORT:-18080}
OTLP_PORT=${OTLP_PORT:-14317}
STATS_PORT=${STATS_PORT:-14319}
OUT=${OUT:-$(mktemp -d)}

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "load.sh: $tool not found (bash scripts/install-deps.sh)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then PIN=0; fi
server_cpus=()
client_cpus=()
if [ "$PIN" = 1 ]; then
  server_cpus=(taskset -c 0)
  client_cpus=(taskset -c 1)
fi
# 1 000 connections need more descriptors than some defaults allow.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== building bench-server (profile bench)"
cargo build --quiet --profile bench -p soma-benches --bin bench-server
bin=${CARGO_TARGET_DIR:-target}/release/bench-server
clk_tck=$(getconf CLK_TCK)

# The mix: half /hello, half /users/{id} with changing ids.
lua="$OUT/mix.lua"
cat >"$lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("GET", "/hello")
  end
  return wrk.format("GET", "/users/" .. (n % 1000))
end
LUA

# Only the processes this script started and has not yet waited for (a waited-for PID may be
# reused by another process).
receiver_pid=
server_pid=
cleanup() {
  for pid in $server_pid $receiver_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

wait_http() {
  local url=$1
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$url" && return 0
    sleep 0.1
  done
  echo "load.sh: $url did not answer" >&2
  return 1
}

receiver_spans() {
  curl -sf "http://127.0.0.1:$STATS_PORT/stats" | awk '$1 == "spans" { print $2 }'
}

echo "== OTLP receiver on 127.0.0.1:$OTLP_PORT"
"${client_cpus[@]}" "$bin" --mode receiver --addr "127.0.0.1:$OTLP_PORT" --stats "127.0.0.1:$STATS_PORT" \
  >"$OUT/receiver.log" 2>&1 &
receiver_pid=$!
wait_http "http://127.0.0.1:$STATS_PORT/stats"

cpu_ticks() {
  # utime + stime (fields 14 and 15) of every thread of the process; the command name, which may
  # hold spaces, is skipped first.
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# wrk's latency ("1.23ms", "870.00us", "1.01s") in microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n
  }'
}

results="$OUT/results.tsv"
printf 'mode\tconns\tround\trps\tp50_us\tp99_us\tcpu_us_per_req\trss_mib\trequests\terrors\tspans\tdropped\tsent\n' >"$results"

run() {
  local mode=$1 conns=$2 round=$3
  local args=(--mode "$mode" --addr "127.0.0.1:$PORT")
  if [ "$mode" = full ]; then args+=(--otlp "http://127.0.0.1:$OTLP_PORT"); fi
  local spans_before=0
  [ "$mode" = full ] && spans_before=$(receiver_spans)
  OTEL_LOGS_EXPORTER=none RUST_LOG=warn "${server_cpus[@]}" "$bin" "${args[@]}" >"$OUT/server-$mode-$conns-$round.log" 2>&1 &
  local pid=$!
  server_pid=$pid
  wait_http "http://127.0.0.1:$PORT/hello"
  local url="http://127.0.0.1:$PORT"
  local warm="$OUT/warm-$mode-$conns-$round.txt" out="$OUT/wrk-$mode-$conns-$round.txt"
  "${client_cpus[@]}" wrk -t"$THREADS" -c"$conns" -d"${WARMUP}s" -s "$lua" "$url" >"$warm"
  local t0
  t0=$(cpu_ticks "$pid")
  "${client_cpus[@]}" wrk --latency -t"$THREADS" -c"$conns" -d"${DURATION}s" -s "$lua" "$url" >"$out"
  local t1
  t1=$(cpu_ticks "$pid")
  local rss_kib
  rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  local dropped=-
  if [ "$mode" = metrics ] || [ "$mode" = full ]; then
    dropped=$(curl -sf "$url/metrics" | awk '/^otel_sdk_span_dropped_total/ { s += $NF } END { print s + 0 }')
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  server_pid=
  local requests warm_requests rps p50 p99 errors
  requests=$(awk '/ requests in / { print $1 }' "$out")
  warm_requests=$(awk '/ requests in / { print $1 }' "$warm")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
  p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
  errors=$(awk '/Socket errors|Non-2xx/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i } END { print s + 0 }' "$out")
  local spans=-
  if [ "$mode" = full ]; then
    # The server flushed its spans on SIGTERM; give the receiver a moment to count the last batch.
    sleep 1
    spans=$(( $(receiver_spans) - spans_before ))
  fi
  # Spans cover the warm-up too: compare them with every request answered by this server.
  local sent=$((requests + warm_requests))
  local cpu_us rss_mib
  cpu_us=$(awk -v d="$((t1 - t0))" -v hz="$clk_tck" -v n="$requests" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
  rss_mib=$(awk -v k="$rss_kib" 'BEGIN { printf "%.1f", k / 1024 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$conns" "$round" "$rps" "$p50" "$p99" \
    "$cpu_us" "$rss_mib" "$requests" "$errors" "$spans" "$dropped" "$sent" >>"$results"
  printf '%-8s c=%-5s round %s: %10.0f req/s  p50 %8.0f us  p99 %8.0f us  %6s us CPU/req  RSS %6s MiB' \
    "$mode" "$conns" "$round" "$rps" "$p50" "$p99" "$cpu_us" "$rss_mib"
  if [ "$mode" = full ]; then
    printf '  spans %s / requests %s, dropped %s' "$spans" "$sent" "$dropped"
  fi
  printf '\n'
}

echo "== $ROUNDS rounds of ${DURATION}s per mode and connection count (after ${WARMUP}s of warm-up); raw output in $OUT"
for conns in $CONNECTIONS; do
  for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
      run "$mode" "$conns" "$round"
    done
  done
done

echo
echo "== means over rounds; ratios against bare at the same connection count"
awk -F'\t' '
  NR == 1 { next }
  {
    k = $1 SUBSEP $2; n[k]++
    rps[k] += $4; p50[k] += $5; p99[k] += $6; cpu[k] += $7; rss[k] += $8; err[k] += $10
    if ($11 != "-") { spans[k] += $11 } ; if ($12 != "-") { drop[k] += $12 }
    if (!(($2) in seen)) { seen[$2] = 1; order[++nc] = $2 }
    if (!(($1) in seenm)) { seenm[$1] = 1; modes[++nm] = $1 }
  }
  END {
    printf "| mode | conns | req/s | p50 | p99 | CPU/req | RSS after | errors | req/s ratio | p99 ratio | CPU/req ratio | RSS - bare |\n"
    printf "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    for (c = 1; c <= nc; c++) {
      conns = order[c]; b = "bare" SUBSEP conns
      for (m = 1; m <= nm; m++) {
        k = modes[m] SUBSEP conns
        if (!(k in n)) continue
        r = rps[k] / n[k]; q50 = p50[k] / n[k]; q99 = p99[k] / n[k]; u = cpu[k] / n[k]; s = rss[k] / n[k]
        line = sprintf("| %s | %s | %.0f | %.2f ms | %.2f ms | %.1f us | %.1f MiB | %d |", modes[m], conns, r, q50 / 1000, q99 / 1000, u, s, err[k])
        if ((b in n) && modes[m] != "bare") {
          line = line sprintf(" %.3f | %.2f | %.2f | %+.1f MiB |", r / (rps[b] / n[b]), q99 / (p99[b] / n[b]), u / (cpu[b] / n[b]), s - rss[b] / n[b])
        } else {
          line = line " | | | |"
        }
        print line
      }
    }
  }' "$results"
if grep -q '^full' "$results"; then
  echo
  echo "full mode: spans received by the receiver and spans dropped (otel_sdk_span_dropped_total), per run"
  awk -F'\t' '$1 == "full" { printf "  c=%s round %s: %s spans received for %s requests answered (warm-up included), %s dropped\n", $2, $3, $11, $13, $12 }' "$results"
fi

kill -TERM "$receiver_pid"
wait "$receiver_pid" || true
receiver_pid=
