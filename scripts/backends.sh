#!/usr/bin/env bash
# Builds the pinned backends the tests and the demo run against, once per set of pins, into a
# cache folder outside the repository, and points target/backends at it:
#   - Prometheus 3 (prometheus, promtool) from github.com/prometheus/prometheus, without its
#     service-discovery plugins (build tag remove_all_sd: the tests use static targets);
#   - otelcol-soma, a minimal OpenTelemetry Collector from the collector's core modules
#     (tools/backends/otelcol-soma/main.go).
# tools/backends/go.mod and go.sum pin every module. The cache key is a hash of those two files,
# the collector's source and this script (which holds the build flags): a change to any of them
# builds anew; otherwise nothing is built.
#
#   scripts/backends.sh           build if needed; print the folder that holds the binaries
#
# Environment: SOMA_BACKENDS_CACHE overrides the cache folder
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/soma-observability/backends).
# The binaries are then at target/backends/bin/ (a symbolic link into the cache): the Rust tests
# (soma_system_tests::backend) and the scripts look for them there, and nowhere else.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly SRC="${ROOT}/tools/backends"
# The Prometheus release of the pinned module v0.316.0 (its VERSION file): `prometheus --version`.
readonly PROMETHEUS_VERSION=3.16.0

command -v go >/dev/null 2>&1 || {
  echo "backends: the go command is required (Go 1.26 or newer) to build Prometheus 3 and the collector" >&2
  exit 1
}

key="$(cat "${SRC}/go.mod" "${SRC}/go.sum" "${SRC}"/otelcol-soma/*.go "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
cache="${SOMA_BACKENDS_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/soma-observability/backends}"
dir="${cache}/${key}"

if [[ ! -f "${dir}/complete" ]]; then
  echo "backends: building Prometheus ${PROMETHEUS_VERSION} and otelcol-soma into ${dir} (a few minutes, once)" >&2
  started=${SECONDS}
  tmp="${dir}.partial.$$"
  rm -rf "${tmp}"
  mkdir -p "${tmp}/bin"
  (
    cd "${SRC}"
    export GOFLAGS="-buildvcs=false -mod=readonly"
    go build -trimpath -tags remove_all_sd \
      -ldflags "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}" \
      -o "${tmp}/bin/" tool
    go build -trimpath -o "${tmp}/bin/otelcol-soma" ./otelcol-soma
  )
  echo "built in $((SECONDS - started)) s from tools/backends (go.mod/go.sum at key ${key})" >"${tmp}/complete"
  rm -rf "${dir}"
  mv "${tmp}" "${dir}"
  echo "backends: built in $((SECONDS - started)) s" >&2
fi
mkdir -p "${ROOT}/target"
ln -sfn "${dir}" "${ROOT}/target/backends"
echo "${ROOT}/target/backends/bin"
