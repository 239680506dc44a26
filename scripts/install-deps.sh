#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: Debian's Prometheus 2.42 (the
# compatibility check and `promtool check metrics` of the library's tests), the shell linter and
# wrk; then builds the pinned Prometheus 3 and OpenTelemetry Collector from their Go modules
# (scripts/backends.sh: once per set of pins, into a cache outside the repository; a few minutes
# the first time, nothing afterwards). Idempotent; needs root (or sudo) only when something is
# missing.
set -euo pipefail

packages=()
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
command -v shellcheck >/dev/null 2>&1 || packages+=(shellcheck)
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
command -v python3 >/dev/null 2>&1 || packages+=(python3 python3-venv)

if [ ${#packages[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "install-deps: installing ${packages[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
fi
# The Debian package starts a system Prometheus on :9090; the tests start their own on other
# ports, and the demo wants :9090 free.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
# Go itself comes with the machine (Go 1.26; Debian's golang-go is too old for these modules).
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/backends.sh" >/dev/null
echo "install-deps: Prometheus 3 and otelcol-soma in $(readlink -f "$root/target/backends")/bin ($(cat "$root/target/backends/complete"))"
echo "install-deps: promtool $(promtool --version 2>&1 | head -n1 | awk '{print $3}'), shellcheck $(shellcheck --version | awk '/^version/ {print $2}')"
