#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: Prometheus (server and promtool),
# the shell linter and wrk. Idempotent; needs root (or sudo) only when something is missing.
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
echo "install-deps: promtool $(promtool --version 2>&1 | head -n1 | awk '{print $3}'), shellcheck $(shellcheck --version | awk '/^version/ {print $2}')"
