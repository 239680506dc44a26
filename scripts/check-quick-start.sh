#!/usr/bin/env bash
# The README's quick start as an outside crate (tests/outside-crate: its own workspace, only the
# dependencies the README's `cargo add` lines give) builds, its unit tests (written with
# soma_observability::testing) pass, and with an invalid OTEL_* value it exits non-zero printing
# the readable message, not the error's fields. tests/tests/outside_crate.rs then runs its
# binaries against the real OTLP receiver.
# It reuses the repository's target/ (CARGO_TARGET_DIR), so only the crate itself and
# soma-observability compile after a workspace build. Offline: every crate it needs is already
# in cargo's cache after the workspace build.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="$PWD/target"
cargo build --offline --quiet --manifest-path tests/outside-crate/Cargo.toml --bins
cargo test --offline --quiet --manifest-path tests/outside-crate/Cargo.toml

stderr_file="$(mktemp)"
trap 'rm -f "$stderr_file"' EXIT
status=0
OTEL_EXPORTER_OTLP_PROTOCOL=htp "$CARGO_TARGET_DIR/debug/quick-start" >/dev/null 2>"$stderr_file" || status=$?
stderr="$(cat "$stderr_file")"

expected='Error: OTEL_EXPORTER_OTLP_PROTOCOL="htp" is not valid: expected '
fail() {
  echo "quick start with OTEL_EXPORTER_OTLP_PROTOCOL=htp: $1" >&2
  echo "exit status: $status; stderr:" >&2
  echo "$stderr" >&2
  exit 1
}
[ "$status" -ne 0 ] || fail "exited with status 0"
[[ "$stderr" == "$expected"* ]] || fail "stderr does not start with: $expected"
if grep -q 'InvalidEnv\|Config(' <<<"$stderr"; then
  fail "stderr shows the error's Debug fields"
fi
echo "quick start: builds outside the workspace; a bad OTEL_* value prints: $stderr"
