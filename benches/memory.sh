#!/usr/bin/env bash
# Resident memory of the bench server over identical bursts of requests, every request traced
# and exported over OTLP (issue 16). For each protocol (http/protobuf, grpc) and collector state
# (up: `bench-server --mode receiver`, a separate process; down: a closed port), a fresh server
# takes ROUNDS bursts of REQUESTS requests (wrk, CONNECTIONS connections, stopped after REQUESTS
# responses) with a PAUSE between them (the batches are exported, or fail); VmRSS is read from
# /proc/<pid>/status after each pause.
#
# Usage: bash benches/memory.sh          (about 2 minutes with the defaults)
# Knobs: ROUNDS=5 REQUESTS=10000 CONNECTIONS=16 BURST=3 (seconds wrk runs; it stops
#        sending after REQUESTS responses) PAUSE=2 PROTOCOLS="http/protobuf grpc"
#        COLLECTOR="up down" PORT=18090 OTLP_PORT=14327 HTTP_PORT=14328 STATS_PORT=14329
#        BUILD=1 (cargo build first; 0 to use target/release/bench-server as it is)
# Any other variable (MALLOC_ARENA_MAX, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, ...) reaches the server.
# Needs wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-10000}
CONNECTIONS=${CONNECTIONS:-16}
PAUSE=${PAUSE:-2}
BURST=${BURST:-3}
PROTOCOLS=${PROTOCOLS:-"http/protobuf grpc"}
COLLECTOR=${COLLECTOR:-"up down"}
PORT=${PORT:-18090}
OTLP_PORT=${OTLP_PORT:-14327}
HTTP_PORT=${HTTP_PORT:-14328}
STATS_PORT=${STATS_PORT:-14329}
BUILD=${BUILD:-1}
DOWN_PORT=${DOWN_PORT:-14330}

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "memory.sh: $tool not found" >&2; exit 1; }
done
if [ "$BUILD" = 1 ]; then
  cargo build --quiet --release -p soma-benches --bin bench-server
fi
bin=${CARGO_TARGET_DIR:-target}/release/bench-server
tmp=$(mktemp -d)
lua="$tmp/burst.lua"
# Each wrk thread stops after its share of REQUESTS responses.
cat >"$lua" <<'LUA'
local n, done_ = 0, 0
local limit = tonumber(os.getenv("PER_THREAD"))
request = function()
  n = n + 1
  if n % 2 == 0 then return wrk.format("GET", "/hello") end
  return wrk.format("GET", "/users/" .. (n % 1000))
end
response = function()
  done_ = done_ + 1
  if done_ >= limit then wrk.thread:stop() end
end
LUA

receiver_pid=
server_pid=
cleanup() {
  for pid in $server_pid $receiver_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

wait_http() {
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "memory.sh: $1 did not answer" >&2; return 1
}
rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

printf '%-14s %-4s %s\n' protocol coll "VmRSS MB: idle, after round 1..$ROUNDS"
for protocol in $PROTOCOLS; do
  for state in $COLLECTOR; do
    if [ "$state" = up ]; then
      "$bin" --mode receiver --addr "127.0.0.1:$OTLP_PORT" --http "127.0.0.1:$HTTP_PORT" \
        --stats "127.0.0.1:$STATS_PORT" >"$tmp/receiver.out" 2>&1 &
      receiver_pid=$!
      wait_http "http://127.0.0.1:$STATS_PORT/stats"
      if [ "$protocol" = grpc ]; then endpoint=http://127.0.0.1:$OTLP_PORT; else endpoint=http://127.0.0.1:$HTTP_PORT; fi
    else
      endpoint=http://127.0.0.1:$DOWN_PORT   # nothing listens there
    fi
    "$bin" --mode full --addr "127.0.0.1:$PORT" --otlp "$endpoint" --protocol "$protocol" \
      >"$tmp/server.out" 2>&1 &
    server_pid=$!
    wait_http "http://127.0.0.1:$PORT/hello"
    line="$(rss_mb "$server_pid")"
    for _ in $(seq 1 "$ROUNDS"); do
      PER_THREAD=$((REQUESTS / 2)) wrk -t 2 -c "$CONNECTIONS" -d "$BURST" -s "$lua" \
        "http://127.0.0.1:$PORT" >"$tmp/wrk.out"
      sleep "$PAUSE"
      line="$line $(rss_mb "$server_pid")"
    done
    extra=
    if [ "$state" = up ]; then
      extra=$(curl -sf "http://127.0.0.1:$STATS_PORT/stats" | tr '\n' ' ')
    fi
    printf '%-14s %-4s %s   %s\n' "$protocol" "$state" "$line" "$extra"
    kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    if [ -n "$receiver_pid" ]; then
      kill -TERM "$receiver_pid"; wait "$receiver_pid" 2>/dev/null || true; receiver_pid=
    fi
  done
done
