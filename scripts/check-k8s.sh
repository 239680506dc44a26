#!/usr/bin/env bash
# Offline checks of everything operators apply on Kubernetes; no cluster needed.
#
#   scripts/check-k8s.sh
#
#   1. renders the root kustomization (kubectl kustomize .);
#   2. validates every object, rendered and file by file, against the Prometheus Operator CRD
#      schemas (servicemonitors/crds, v0.93, made strict) and the Kubernetes schemas, and
#      cross-checks ServiceMonitors, Services, Deployments, dashboards and rules
#      (servicemonitors/tests/check_manifests.py);
#   3. promtool check rules + promtool test rules (servicemonitors/tests/*.test.yaml);
#   4. shellcheck on the shell scripts under scripts/ and .ci/;
#   5. scripts/deploy-observability.sh: --dry-run prints the helm and kubectl commands and runs
#      neither, --help, and clear messages when a prerequisite is missing.
#
# Installs what it needs (as root, on a fresh machine): the Debian packages prometheus (for
# promtool), shellcheck and python3-venv, and the pinned Python packages of
# servicemonitors/tests/requirements.txt into target/k8s-check/venv. Ends with "N passed, M failed"; exits 1 if anything failed.
# Environment: SOMA_SCHEMAS_DIR overrides the CRD schema folder.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly SCHEMAS="${SOMA_SCHEMAS_DIR:-${ROOT}/servicemonitors/crds}"
readonly WORK="${ROOT}/target/k8s-check"
readonly VENV="${WORK}/venv"
readonly REQUIREMENTS="${ROOT}/servicemonitors/tests/requirements.txt"
# Kubernetes schema versions: the oldest supported (preStop `sleep` needs 1.30) and the newest.
readonly K8S_VERSIONS=(1.30 1.37)

PASSED=0
FAILED=0

pass() {
  PASSED=$((PASSED + 1))
  printf 'ok - %s\n' "$*"
}
fail() {
  FAILED=$((FAILED + 1))
  printf 'not ok - %s\n' "$*"
}
# check "description" CMD ARGS...: one check from a command's exit status; its output is shown
# only when it fails.
check() {
  local what="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    pass "${what}"
  else
    fail "${what}"
    printf '%s\n' "${out}" | sed 's/^/    /'
  fi
}

finish() {
  echo "${PASSED} passed, ${FAILED} failed"
  exit $((FAILED > 0 ? 1 : 0))
}

APT_UPDATED=false
apt_install() {
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "need root to apt-get install $*" >&2
    return 1
  fi
  if [[ "${APT_UPDATED}" == false ]]; then
    apt-get update -qq >/dev/null || return 1
    APT_UPDATED=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- tools --------------------------------------------------------------------------------------

install_tools() {
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
  check "promtool is available (Debian package prometheus)" command -v promtool
  command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
  check "shellcheck is available" command -v shellcheck
  # kubectl (with its built-in kustomize) ships with this project's machine image; Debian has no
  # package for it, so a machine without it cannot run the render step.
  command -v kubectl >/dev/null 2>&1 || apt_install kubectl
  check "kubectl is available (for kubectl kustomize)" command -v kubectl

  mkdir -p "${WORK}"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3 python3-venv
  fi
  local stamp="${VENV}/.requirements"
  if ! cmp -s "${REQUIREMENTS}" "${stamp}" 2>/dev/null; then
    rm -rf "${VENV}"
    if python3 -m venv "${VENV}" &&
      "${VENV}/bin/pip" install -q --disable-pip-version-check -r "${REQUIREMENTS}"; then
      cp "${REQUIREMENTS}" "${stamp}"
    fi
  fi
  check "Python venv with the pinned packages (target/k8s-check/venv)" \
    "${VENV}/bin/python" -c 'import kubernetes_validate, jsonschema, yaml'
}

# --- 1-2. render, schemas, cross-checks ----------------------------------------------------------

# shellcheck disable=SC2317 # called through check()
render() { kubectl kustomize "${ROOT}" >"$1"; }

check_manifests() {
  local rendered="${WORK}/rendered.yaml"
  check "CRD schemas found in ${SCHEMAS}" test -f "${SCHEMAS}/monitoring.coreos.com_servicemonitors.yaml"
  check "kubectl kustomize . renders" render "${rendered}"
  [[ -s "${rendered}" ]] || return

  local release version_args=() v out status
  release="$(sed -n 's/^readonly RELEASE=\([A-Za-z0-9-]*\).*/\1/p' "${ROOT}/scripts/deploy-observability.sh")"
  check "the deploy script names its Helm release (${release:-none})" test -n "${release}"
  for v in "${K8S_VERSIONS[@]}"; do version_args+=(--k8s-version "${v}"); done
  out="$("${VENV}/bin/python" "${ROOT}/servicemonitors/tests/check_manifests.py" \
    --root "${ROOT}" --schemas "${SCHEMAS}" --rendered "${rendered}" \
    --release "${release}" "${version_args[@]}" 2>&1)"
  status=$?
  printf '%s\n' "${out}"
  local n_ok n_bad
  n_ok="$(grep -c '^ok - ' <<<"${out}")"
  n_bad="$(grep -c '^not ok - ' <<<"${out}")"
  PASSED=$((PASSED + n_ok))
  FAILED=$((FAILED + n_bad))
  if [[ ${status} -ne 0 && ${n_bad} -eq 0 ]]; then
    fail "check_manifests.py exited ${status}"
  fi
}

# --- 3. promtool ------------------------------------------------------------------------------------

# promtool resolves rule_files relative to its working directory.
# shellcheck disable=SC2317 # called through check()
promtool_test() { (cd "$1" && promtool test rules "$2"); }

check_rules() {
  local dir="${WORK}/promtool" rules="prometheus-rules.rules.yaml" test
  rm -rf "${dir}" && mkdir -p "${dir}"
  # promtool wants a plain rules file: the `spec` of the PrometheusRule.
  check "extract the PrometheusRule spec into a plain rules file" \
    "${VENV}/bin/python" -c '
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
assert doc["kind"] == "PrometheusRule", doc["kind"]
yaml.safe_dump(doc["spec"], open(sys.argv[2], "w"), sort_keys=False)
' "${ROOT}/servicemonitors/prometheus-rules.yaml" "${dir}/${rules}"
  check "promtool check rules servicemonitors/prometheus-rules.yaml (spec)" promtool check rules "${dir}/${rules}"
  cp "${ROOT}"/servicemonitors/tests/*.test.yaml "${dir}/"
  for test in "${dir}"/*.test.yaml; do
    check "promtool test rules servicemonitors/tests/$(basename "${test}")" \
      promtool_test "${dir}" "$(basename "${test}")"
  done
}

# --- 4. shellcheck ------------------------------------------------------------------------------------

check_shell() {
  local file
  while IFS= read -r -d '' file; do
    if [[ "${file}" == *.sh ]] || head -n1 "${file}" | grep -qE '^#!.*\b(ba|da|k)?sh\b'; then
      check "shellcheck ${file#"${ROOT}/"}" shellcheck -x "${file}"
    fi
  done < <(find "${ROOT}/scripts" "${ROOT}/.ci" -type f -print0 2>/dev/null | sort -z)
}

# --- 5. the deploy script --------------------------------------------------------------------------

# deploy_case DESCRIPTION EXPECT MUST MUST_NOT CMD...: runs CMD (the deploy script, in some
# environment); one check that its exit status is EXPECT ("0" or "nonzero"), that its output holds
# the fixed string MUST, and does not hold MUST_NOT (unless empty).
deploy_case() {
  local what="$1" expect="$2" must="$3" must_not="$4" out status=0 good=true
  shift 4
  out="$("$@" 2>&1)" || status=$?
  if [[ "${expect}" == 0 ]]; then [[ ${status} -eq 0 ]] || good=false; else [[ ${status} -ne 0 ]] || good=false; fi
  grep -qF -- "${must}" <<<"${out}" || good=false
  if [[ -n "${must_not}" ]] && grep -qF -- "${must_not}" <<<"${out}"; then good=false; fi
  if [[ "${good}" == true ]]; then
    pass "${what}"
  else
    fail "${what} (exit ${status})"
    printf '%s\n' "${out}" | sed 's/^/    /'
  fi
}

# shellcheck disable=SC2317 # called through check()
not_grep() { ! grep -q "$@"; }

check_deploy_script() {
  local script="${ROOT}/scripts/deploy-observability.sh"
  local sandbox="${WORK}/deploy-sandbox" tool cmd expected
  rm -rf "${sandbox}" && mkdir -p "${sandbox}/stubs" "${sandbox}/bin"
  # Stubs that record every call and fail: a dry run must call neither.
  for tool in kubectl helm; do
    printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\nexit 1\n' "${tool}" "${sandbox}" >"${sandbox}/stubs/${tool}"
    chmod +x "${sandbox}/stubs/${tool}"
  done
  local dry=(env "PATH=${sandbox}/stubs:${PATH}" "KUBECONFIG=${sandbox}/no-kubeconfig" bash "${script}" --dry-run)

  for expected in \
    "+ helm repo add prometheus-community https://prometheus-community.github.io/helm-charts" \
    "+ helm repo update prometheus-community" \
    "+ helm upgrade --install prometheus prometheus-community/kube-prometheus-stack --namespace observability --values ${ROOT}/deploy/kube-prometheus-stack-values.yaml" \
    "+ kubectl create namespace observability --dry-run=client -o yaml | kubectl apply -f -" \
    "+ kubectl create namespace soma-agent --dry-run=client -o yaml | kubectl apply -f -" \
    "+ kubectl kustomize ${ROOT} | kubectl apply -f -" \
    "kubectl port-forward -n observability svc/prometheus-grafana 3000:80" \
    "kubectl port-forward -n observability svc/prometheus-kube-prometheus-prometheus 9090:9090"; do
    deploy_case "deploy --dry-run prints: ${expected}" 0 "${expected}" "" "${dry[@]}"
  done
  check "deploy --dry-run runs neither kubectl nor helm" test ! -e "${sandbox}/calls"
  deploy_case "deploy --dry-run --manifests-only skips Helm, still applies the manifests" 0 \
    "+ kubectl kustomize" "+ helm" "${dry[@]}" --manifests-only
  deploy_case "deploy --chart-version pins the chart" 0 "--version 1.2.3" "" "${dry[@]}" --chart-version 1.2.3
  deploy_case "deploy --help prints the usage" 0 "Usage: scripts/deploy-observability.sh [--dry-run]" "" \
    bash "${script}" --help
  deploy_case "deploy rejects an unknown option" nonzero "unknown option: --no-such-option" "" \
    bash "${script}" --no-such-option

  # Prerequisites, for real (no --dry-run), with a PATH that has only what the script needs.
  for cmd in bash dirname cat; do ln -sf "$(command -v "${cmd}")" "${sandbox}/bin/${cmd}"; done
  local real=(env "PATH=${sandbox}/bin" "KUBECONFIG=${sandbox}/no-kubeconfig" bash "${script}")
  deploy_case "deploy without kubectl stops with a clear message" nonzero "kubectl not found" "" "${real[@]}"
  ln -sf "${sandbox}/stubs/kubectl" "${sandbox}/bin/kubectl"
  deploy_case "deploy without helm stops with a clear message" nonzero "helm not found" "" "${real[@]}"
  ln -sf "${sandbox}/stubs/helm" "${sandbox}/bin/helm"
  deploy_case "deploy without a usable cluster context stops with a clear message" nonzero \
    "kubectl has no current context" "" "${real[@]}"
  check "deploy stops before any helm call when the cluster is unusable" \
    not_grep '^helm' "${sandbox}/calls"
}

main() {
  echo "# soma-observability Kubernetes checks (${ROOT})"
  install_tools
  check_manifests
  check_rules
  check_shell
  check_deploy_script
  finish
}

main "$@"
