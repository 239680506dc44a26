#!/usr/bin/env bash
# Tests scripts/run-demo.sh the way a newcomer runs it: starts `run-demo.sh --duration N` and,
# while it runs, checks that its Prometheus (3, with its default scrape protocols) scrapes all
# five services (`up == 1` for each job, no scrape error) and has loaded the recording and
# alerting rules. Stops the demo (and only the demo) at the end.
#
# Usage: scripts/check-demo.sh [--duration SECONDS]   (default 300: an upper bound; the demo is
#                                                       stopped as soon as the checks pass)
# The demo uses fixed ports (127.0.0.1:8000-8003, 8080, 9090): if one is in use, the check is
# skipped with a message (exit 0), since another demo or a system Prometheus may own it.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=300
if [ "${1:-}" = "--duration" ] && [ -n "${2:-}" ]; then
  duration="$2"
fi
[[ "$duration" =~ ^[1-9][0-9]*$ ]] || { echo "check-demo: --duration needs a whole number of seconds" >&2; exit 2; }

jobs=(orchestrator policy-engine identity-service slm-service gateway-api)
prometheus="http://127.0.0.1:9090"

for port in 8000 8001 8002 8003 8080 9090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "check-demo: SKIPPED: 127.0.0.1:$port is in use, and the demo needs it (stop what listens there to run this check)"
    exit 0
  fi
done
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "check-demo: $tool is required" >&2; exit 1; }
done

log="$(mktemp "${TMPDIR:-/tmp}/check-demo.XXXXXX.log")"
bash scripts/run-demo.sh --duration "$duration" >"$log" 2>&1 &
demo=$!

finish() {
  local status=$?
  trap - EXIT
  if kill -0 "$demo" 2>/dev/null; then
    # run-demo.sh stops everything it started on TERM (services drain and flush first).
    kill -TERM "$demo" 2>/dev/null || true
  fi
  wait "$demo" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "check-demo: FAILED; the end of the demo's output ($log):" >&2
    tail -n 30 "$log" >&2 || true
  else
    rm -f "$log"
  fi
  exit "$status"
}
trap finish EXIT

# Polls `probe` once a second until it succeeds, for at most `limit` seconds, while the demo runs.
poll() { # what limit probe...
  local what="$1" limit="$2" deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@"; do
    if ! kill -0 "$demo" 2>/dev/null; then
      echo "check-demo: run-demo.sh exited before $what" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "check-demo: $what: not within ${limit} s" >&2
      return 1
    fi
    sleep 1
  done
}

prometheus_ready() {
  curl -fsS -o /dev/null "$prometheus/-/ready" 2>/dev/null
}

# Every job has exactly one target and it is up; prints what is missing otherwise.
all_up() {
  local body
  body="$(curl -fsS "$prometheus/api/v1/query?query=up" 2>/dev/null)" || return 1
  python3 - "$body" "${jobs[@]}" <<'PY'
import json, sys
result = json.loads(sys.argv[1])["data"]["result"]
up = {r["metric"].get("job"): r["value"][1] for r in result}
missing = [job for job in sys.argv[2:] if up.get(job) != "1"]
sys.exit(1 if missing else 0)
PY
}

# Prometheus 3 and no target with a scrape error (a Content-Type or parse error fails a scrape).
version_and_no_scrape_error() {
  local version targets
  version="$(curl -fsS "$prometheus/api/v1/status/buildinfo" 2>/dev/null)" || return 1
  targets="$(curl -fsS "$prometheus/api/v1/targets" 2>/dev/null)" || return 1
  python3 - "$version" "$targets" <<'PY'
import json, sys
version = json.loads(sys.argv[1])["data"]["version"]
targets = json.loads(sys.argv[2])["data"]["activeTargets"]
errors = {t["labels"]["job"]: t["lastError"] for t in targets if t.get("lastError")}
print(f"check-demo: Prometheus {version}, {len(targets)} targets, scrape errors: {errors or 'none'}")
sys.exit(0 if version.startswith("3.") and not errors else 1)
PY
}

rules_loaded() {
  local body
  body="$(curl -fsS "$prometheus/api/v1/rules" 2>/dev/null)" || return 1
  python3 - "$body" <<'PY'
import json, sys
groups = json.loads(sys.argv[1])["data"]["groups"]
rules = sum(len(g["rules"]) for g in groups)
print(f"check-demo: Prometheus has {len(groups)} rule groups, {rules} rules")
sys.exit(0 if rules > 0 else 1)
PY
}

# The demo builds (warm in the test command), starts the services and Prometheus, then says
# it is running; from then on its Prometheus must answer.
demo_running() {
  grep -q "SomaAgent demo is running" "$log"
}
poll "the demo said it was running" 900 demo_running
poll "Prometheus answered on $prometheus" 10 prometheus_ready
if ! poll "all five services were scraped with up == 1 (${jobs[*]})" 90 all_up; then
  echo "check-demo: Prometheus' up series:" >&2
  curl -sS "$prometheus/api/v1/query?query=up" >&2 || true
  echo >&2
  exit 1
fi
echo "check-demo: Prometheus scrapes ${jobs[*]} with up == 1"
poll "Prometheus 3 with no scrape error" 10 version_and_no_scrape_error
poll "Prometheus loaded the rules" 30 rules_loaded
echo "check-demo: OK"
