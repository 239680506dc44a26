#!/usr/bin/env bash
# Runs the whole SomaAgent demo on this machine: the five reference services on 127.0.0.1
# (ports 8000-8003 and 8080), a local Prometheus 3 on 127.0.0.1:9090 scraping them with the
# ServiceMonitors' job names and the recording/alerting rules, and steady traffic through the
# gateway (soma-traffic). Prints where to look, then runs until Ctrl-C (or --duration), and stops
# everything it started.
#
# Usage: scripts/run-demo.sh [--duration SECONDS] [--release]
#
# Traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set; otherwise each service prints its
# spans to its log (OTEL_TRACES_EXPORTER=console) and exports no logs (OTEL_LOGS_EXPORTER=none).
# The traffic rate and concurrency follow TRAFFIC_RATE and TRAFFIC_CONCURRENCY (see
# `soma-traffic --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

duration=""
profile="debug"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration)
      [ $# -ge 2 ] || { echo "run-demo: --duration needs a number of seconds" >&2; exit 2; }
      duration="$2"
      shift 2
      ;;
    --duration=*)
      duration="${1#--duration=}"
      shift
      ;;
    --release)
      profile="release"
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "run-demo: unknown argument '$1'" >&2
      usage >&2
      exit 2
      ;;
  esac
done
if [ -n "$duration" ] && ! [[ "$duration" =~ ^[1-9][0-9]*$ ]]; then
  echo "run-demo: --duration must be a whole number of seconds, got '$duration'" >&2
  exit 2
fi

for tool in cargo curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run-demo: $tool is required" >&2; exit 1; }
done

# Prometheus 3 (and promtool) the way the test command gets them: built once from the pinned Go
# modules (scripts/backends.sh, through install-deps.sh).
echo "== checking the tools the demo needs (scripts/install-deps.sh)"
if ! bash scripts/install-deps.sh; then
  echo "run-demo: could not install the tools; run 'bash scripts/install-deps.sh' (as root, with Go 1.26) and read its error" >&2
  exit 1
fi
backends="$(bash scripts/backends.sh)"

# name, port, Prometheus job; started in this order (peers first).
services=(identity-service policy-engine slm-service orchestrator gateway)
declare -A port=([orchestrator]=8000 [policy-engine]=8001 [identity-service]=8002 [slm-service]=8003 [gateway]=8080)
declare -A job=([orchestrator]=orchestrator [policy-engine]=policy-engine [identity-service]=identity-service [slm-service]=slm-service [gateway]=gateway-api)
prometheus_port=9090

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for name in "${services[@]}"; do
  if port_in_use "${port[$name]}"; then
    echo "run-demo: 127.0.0.1:${port[$name]} (for $name) is already in use; stop what listens there first" >&2
    exit 1
  fi
done
if port_in_use "$prometheus_port"; then
  echo "run-demo: 127.0.0.1:$prometheus_port (for Prometheus) is already in use; stop what listens there first (a system Prometheus: systemctl stop prometheus)" >&2
  exit 1
fi

echo "== building the services and soma-traffic ($profile)"
build_flags=()
[ "$profile" = "release" ] && build_flags+=(--release)
cargo build "${build_flags[@]}" \
  -p example-gateway -p example-orchestrator -p example-policy-engine \
  -p example-identity-service -p example-slm-service -p example-traffic
bin="${CARGO_TARGET_DIR:-$PWD/target}/$profile"

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/soma-demo.XXXXXX")"
pids=()
names=()

# True while the process runs (a zombie, exited but not yet reaped, counts as stopped).
alive() {
  local state=""
  [ -r "/proc/$1/stat" ] || return 1
  read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [ "$state" != "Z" ]
}

# Sends SIGTERM to the given processes and waits for them (15 s at most, then SIGKILL).
stop() {
  local pid deadline=$((SECONDS + 15))
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.2
    done
    if alive "$pid"; then
      echo "run-demo: process $pid did not stop in time; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "== stopping ${names[*]}"
    # The traffic first (it prints its summary), then the services: they drain, then flush
    # telemetry within the library's 10 s deadline.
    if [ -n "${traffic_pid:-}" ]; then
      stop "$traffic_pid"
    fi
    stop "${pids[@]}"
  fi
  rm -rf "$run_dir/prometheus-data"
  echo "== stopped; logs kept in $run_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Telemetry: traces to a collector when one is configured, else to each service's log.
if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then
  export OTEL_TRACES_EXPORTER="${OTEL_TRACES_EXPORTER:-console}"
  export OTEL_LOGS_EXPORTER="${OTEL_LOGS_EXPORTER:-none}"
fi
export RUST_LOG="${RUST_LOG:-info}"
export NO_COLOR=1 # the logs are files
export ORCHESTRATOR_URL="http://127.0.0.1:${port[orchestrator]}"
export POLICY_ENGINE_URL="http://127.0.0.1:${port[policy-engine]}"
export IDENTITY_SERVICE_URL="http://127.0.0.1:${port[identity-service]}"
export SLM_SERVICE_URL="http://127.0.0.1:${port[slm-service]}"

wait_ready() { # name url pid
  local deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null "$2" 2>/dev/null; do
    if ! alive "$3"; then
      echo "run-demo: $1 exited during start-up; the end of $run_dir/$1.log:" >&2
      tail -n 20 "$run_dir/$1.log" >&2 || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "run-demo: $1 was not ready after 30 s (see $run_dir/$1.log)" >&2
      exit 1
    fi
    sleep 0.2
  done
}

echo "== starting the services (logs in $run_dir)"
for name in "${services[@]}"; do
  LISTEN_ADDR="127.0.0.1:${port[$name]}" "$bin/$name" >"$run_dir/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
  wait_ready "$name" "http://127.0.0.1:${port[$name]}/readyz" "$!"
done

# Prometheus, scraping like the ServiceMonitors (same job names, namespace label), with the rules.
extract_rules() { # PrometheusRule CRD -> plain rules file (its .spec.groups)
  local source=servicemonitors/prometheus-rules.yaml target="$1"
  [ -f "$source" ] || return 1
  if python3 -c 'import yaml' 2>/dev/null; then
    python3 - "$source" "$target" <<'PY'
import sys, yaml
with open(sys.argv[1]) as f:
    crd = yaml.safe_load(f)
with open(sys.argv[2], "w") as f:
    yaml.safe_dump({"groups": crd["spec"]["groups"]}, f, sort_keys=False)
PY
  else
    # Without PyYAML: `spec.groups` is the CRD's last key; un-indent it by two spaces.
    awk '/^spec:/ { in_spec = 1; next }
         in_spec && /^  groups:/ { print "groups:"; grab = 1; next }
         grab && (/^[^ #]/ || /^  [^ #-]/) { exit }
         grab { sub(/^  /, ""); print }' "$source" >"$target"
  fi
  "$backends/promtool" check rules "$target" >/dev/null 2>&1 || return 1
}

prometheus_url=""
{
  config="$run_dir/prometheus.yml"
  {
    echo "global:"
    echo "  scrape_interval: 5s"
    echo "  scrape_timeout: 4s"
    echo "  evaluation_interval: 5s"
    if extract_rules "$run_dir/rules.yml"; then
      echo "rule_files:"
      echo "  - $run_dir/rules.yml"
    else
      echo "run-demo: no usable servicemonitors/prometheus-rules.yaml; Prometheus runs without rules" >&2
    fi
    echo "scrape_configs:"
    for name in "${services[@]}"; do
      echo "  - job_name: ${job[$name]}"
      echo "    metrics_path: /metrics"
      echo "    static_configs:"
      echo "      - targets: ['127.0.0.1:${port[$name]}']"
      echo "        labels:"
      echo "          namespace: soma-agent"
    done
  } >"$config"
  "$backends/prometheus" --config.file="$config" --storage.tsdb.path="$run_dir/prometheus-data" \
    --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$prometheus_port" \
    --enable-feature=exemplar-storage \
    >"$run_dir/prometheus.log" 2>&1 &
  pids+=("$!")
  names+=(prometheus)
  wait_ready prometheus "http://127.0.0.1:$prometheus_port/-/ready" "$!"
  prometheus_url="http://127.0.0.1:$prometheus_port"
}

# One workflow by hand, for a sample trace id (the gateway's traceresponse header).
gateway="http://127.0.0.1:${port[gateway]}"
token="$(curl -fsS -H 'content-type: application/json' \
  -d '{"user": "demo", "password": "demo-password"}' "$gateway/v1/auth/token" |
  sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')"
trace_id="$(curl -sS -o /dev/null -D - -H 'content-type: application/json' \
  -H "authorization: Bearer $token" \
  -d '{"goal": "Research the top three competitors and summarize their pricing, then draft a launch email"}' \
  "$gateway/v1/workflows" | tr -d '\r' | sed -n 's/^traceresponse: *00-\([0-9a-f]\{32\}\)-.*/\1/Ip')"

echo
echo "SomaAgent demo is running. Ctrl-C stops everything."
echo
printf '  %-18s %-34s %s\n' "service (job)" "metrics" "log"
for name in "${services[@]}"; do
  printf '  %-18s %-34s %s\n' "${job[$name]}" "http://127.0.0.1:${port[$name]}/metrics" "$run_dir/$name.log"
done
echo
if [ -n "$prometheus_url" ]; then
  echo "  Prometheus UI      $prometheus_url  (/targets, /rules, /alerts; log $run_dir/prometheus.log)"
  echo "                     e.g. $prometheus_url/graph?g0.expr=job:http_server_requests:rate5m"
fi
if [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then
  echo "  Traces and logs    OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT"
else
  echo "  Traces             'span trace_id=...' lines in each service's log (set OTEL_EXPORTER_OTLP_ENDPOINT for a collector)"
fi
if [ -n "$trace_id" ]; then
  echo "  Sample trace       $trace_id (POST /v1/workflows); its spans in every service:"
  echo "                     grep -c $trace_id $run_dir/*.log"
fi
echo "  Demo user          demo / demo-password (see examples/README.md for the API)"
echo

# Steady traffic: --duration bounds the demo; otherwise one hour of traffic (the services keep
# running after it until Ctrl-C).
traffic_args=(--url "$gateway" --duration "${duration:-3600}" --requests 1000000)
"$bin/soma-traffic" "${traffic_args[@]}" &
traffic_pid=$!

end=$((SECONDS + ${duration:-0}))
while :; do
  for i in "${!services[@]}"; do
    if ! alive "${pids[i]}"; then
      echo "run-demo: ${services[i]} stopped unexpectedly; the end of $run_dir/${services[i]}.log:" >&2
      tail -n 20 "$run_dir/${services[i]}.log" >&2 || true
      exit 1
    fi
  done
  if [ -n "$duration" ] && [ "$SECONDS" -ge "$end" ]; then
    break
  fi
  sleep 1
done
# soma-traffic stops by itself at the same deadline; let it print its summary.
wait "$traffic_pid" || true
