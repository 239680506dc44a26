#!/usr/bin/env bash
# The project's test command: formatting, lints, docs, every test of the workspace (unit,
# integration, doc and system tests with a real Prometheus and OTLP receiver), the Kubernetes
# manifest checks and the dashboard checks. Run from anywhere; installs missing tools first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== cargo build (the service binaries the system tests start)"
cargo build --workspace --bins --locked
echo "== the README's quick start as an outside crate, run with an invalid OTEL_* value"
bash scripts/check-quick-start.sh
echo "== cargo test"
cargo test --workspace --locked
if [ -x scripts/check-k8s.sh ]; then
  echo "== Kubernetes manifests, rules and deploy script"
  bash scripts/check-k8s.sh
fi
if [ -f dashboards/check.py ]; then
  echo "== dashboards"
  python3 dashboards/check.py
fi
