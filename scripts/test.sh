#!/usr/bin/env bash
# The project's test command: formatting, lints, docs, every test of the workspace (unit,
# integration, doc and system tests with a real Prometheus and OTLP receiver), every feature
# combination of the library, the publish dry run, the demo, the Kubernetes manifest checks and
# the dashboard checks. Run from anywhere; installs missing tools first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== no import cycle between the library's modules"
python3 scripts/check-module-cycles.py | tail -3
echo "== cargo build (the service binaries the system tests start)"
cargo build --workspace --bins --locked
echo "== the README's quick start as an outside crate, run with an invalid OTEL_* value"
bash scripts/check-quick-start.sh
echo "== cargo test"
cargo test --workspace --locked
# The workspace build unifies features (the examples enable grpc), so each feature combination
# of the library is linted and unit-tested on its own (its integration tests ran above, with all
# features). grpc implies otlp: these six are every combination.
for features in "" otlp client otlp,client grpc grpc,client; do
  echo "== soma-observability --no-default-features --features '$features'"
  cargo clippy -p soma-observability --no-default-features --features "$features" --lib --tests \
    --locked --quiet -- -D warnings
  cargo test -p soma-observability --no-default-features --features "$features" --lib --locked --quiet
done
echo "== cargo publish --dry-run (the packaged crate builds on its own)"
# --allow-dirty: the check is that the package builds, also from a tree with uncommitted work.
cargo publish --dry-run -p soma-observability --locked --allow-dirty
if [ -x scripts/check-demo.sh ]; then
  echo "== the demo (scripts/run-demo.sh) with its Prometheus"
  bash scripts/check-demo.sh
fi
if [ -x scripts/check-k8s.sh ]; then
  echo "== Kubernetes manifests, rules and deploy script"
  bash scripts/check-k8s.sh
fi
if [ -f dashboards/check.py ]; then
  echo "== dashboards"
  python3 dashboards/check.py
fi
