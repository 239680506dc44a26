#!/usr/bin/env bash
# Offline checks of everything operators apply on Kubernetes; no cluster needed.
#
#   scripts/check-k8s.sh
#
#   1. renders the root kustomization (kubectl kustomize .) and the OTLP/TLS overlay
#      (kubectl kustomize overlays/otlp-tls);
#   2. validates every object, rendered and file by file, against the Prometheus Operator CRD
#      schemas (servicemonitors/crds, v0.93, made strict) and the Kubernetes schemas, and
#      cross-checks ServiceMonitors, Services, Deployments, dashboards and rules
#      (servicemonitors/tests/check_manifests.py); then the OpenTelemetry Collector's Helm values,
#      merged into the chart's defaults, against the chart's values.schema.json (vendored in
#      deploy/vendor/), the collector configuration for consistency, and the overlay's render
#      (servicemonitors/tests/check_collector.py), and each merged collector configuration (plain,
#      TLS, backend example, both) with the collector itself (`otelcol-soma validate`, the
#      pinned collector that scripts/backends.sh builds);
#   3. promtool check rules + promtool test rules (servicemonitors/tests/*.test.yaml) with
#      Prometheus 3's promtool, and the le/quantile lint of rules, dashboards and promtool
#      fixtures (scripts/check-prometheus3-selectors.py: values Prometheus 3 never stores);
#   4. shellcheck on the shell scripts under scripts/ and .ci/;
#   5. scripts/deploy-observability.sh: --dry-run prints the helm and kubectl commands (both
#      releases, with and without --otlp-tls) and runs neither, --help, clear messages when a
#      prerequisite or a TLS Secret is missing, and a full run against stub kubectl and helm.
#
# Installs what it needs (as root, on a fresh machine): the pinned Prometheus 3 and collector
# (scripts/backends.sh, a no-op when built), the Debian packages shellcheck and python3-venv,
# and the pinned Python packages of
# servicemonitors/tests/requirements.txt into target/k8s-check/venv. Ends with "N passed, M failed"; exits 1 if anything failed.
# Environment: SOMA_SCHEMAS_DIR overrides the CRD schema folder.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly SCHEMAS="${SOMA_SCHEMAS_DIR:-${ROOT}/servicemonitors/crds}"
readonly WORK="${ROOT}/target/k8s-check"
readonly VENV="${WORK}/venv"
readonly REQUIREMENTS="${ROOT}/servicemonitors/tests/requirements.txt"
readonly BACKENDS="${ROOT}/target/backends/bin"
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
  check "Prometheus 3 and the collector are built (scripts/backends.sh)" bash "${ROOT}/scripts/backends.sh"
  check "promtool 3 is available (${BACKENDS}/promtool)" test -x "${BACKENDS}/promtool"
  check "otelcol-soma is available (${BACKENDS}/otelcol-soma)" test -x "${BACKENDS}/otelcol-soma"
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
render() { kubectl kustomize "$1" >"$2"; }

# script_const NAME: the value of `readonly NAME=value` in the deploy script (one word).
script_const() {
  sed -n "s/^readonly $1=\\([A-Za-z0-9._-]*\\).*/\\1/p" "${ROOT}/scripts/deploy-observability.sh"
}

# run_counted NAME CMD...: runs a Python checker that prints ok/not ok lines and adds them up.
run_counted() {
  local name="$1" out status n_ok n_bad
  shift
  out="$("$@" 2>&1)"
  status=$?
  printf '%s\n' "${out}"
  n_ok="$(grep -c '^ok - ' <<<"${out}")"
  n_bad="$(grep -c '^not ok - ' <<<"${out}")"
  PASSED=$((PASSED + n_ok))
  FAILED=$((FAILED + n_bad))
  if [[ ${status} -ne 0 && ${n_bad} -eq 0 ]]; then
    fail "${name} exited ${status}"
  fi
}

check_manifests() {
  local rendered="${WORK}/rendered.yaml" rendered_tls="${WORK}/rendered-otlp-tls.yaml"
  rm -f "${rendered}" "${rendered_tls}"
  check "CRD schemas found in ${SCHEMAS}" test -f "${SCHEMAS}/monitoring.coreos.com_servicemonitors.yaml"
  check "kubectl kustomize . renders" render "${ROOT}" "${rendered}"
  check "kubectl kustomize overlays/otlp-tls renders" render "${ROOT}/overlays/otlp-tls" "${rendered_tls}"
  [[ -s "${rendered}" ]] || return

  local release version_args=() v
  release="$(script_const RELEASE)"
  check "the deploy script names its Helm release (${release:-none})" test -n "${release}"
  for v in "${K8S_VERSIONS[@]}"; do version_args+=(--k8s-version "${v}"); done
  run_counted check_manifests.py "${VENV}/bin/python" "${ROOT}/servicemonitors/tests/check_manifests.py" \
    --root "${ROOT}" --schemas "${SCHEMAS}" --rendered "${rendered}" \
    --release "${release}" "${version_args[@]}"

  [[ -s "${rendered_tls}" ]] || return
  local name
  for name in COLLECTOR_RELEASE OBS_NAMESPACE COLLECTOR_CHART_VERSION_DEFAULT COLLECTOR_TLS_SECRET SERVICES_CA_SECRET; do
    check "the deploy script sets ${name} ($(script_const "${name}"))" test -n "$(script_const "${name}")"
  done
  run_counted check_collector.py "${VENV}/bin/python" "${ROOT}/servicemonitors/tests/check_collector.py" \
    --root "${ROOT}" --schemas "${SCHEMAS}" --plain "${rendered}" --tls "${rendered_tls}" \
    --release "${release}" --collector-release "$(script_const COLLECTOR_RELEASE)" \
    --collector-namespace "$(script_const OBS_NAMESPACE)" \
    --chart-version "$(script_const COLLECTOR_CHART_VERSION_DEFAULT)" \
    --tls-secret "$(script_const COLLECTOR_TLS_SECRET)" --ca-secret "$(script_const SERVICES_CA_SECRET)" \
    --write-configs "${WORK}/collector-configs" "${version_args[@]}"
  check_collector_configs "${WORK}/collector-configs"
}

# otelcol_validate FILE: the collector's own check of a configuration, with the environment the
# chart gives the pod (MY_POD_IP and the OTEL_K8S_* variables its defaults reference).
# shellcheck disable=SC2317 # called through check()
otelcol_validate() {
  env MY_POD_IP=127.0.0.1 OTEL_K8S_NAMESPACE=observability OTEL_K8S_NODE_NAME=node \
    OTEL_K8S_NODE_IP=127.0.0.1 OTEL_K8S_POD_NAME=otel-collector-0 OTEL_K8S_POD_IP=127.0.0.1 \
    "${BACKENDS}/otelcol-soma" validate --config="file:$1"
}

check_collector_configs() {
  local dir="$1" config count=0
  for config in "${dir}"/*.yaml; do
    [[ -f "${config}" ]] || continue
    count=$((count + 1))
    check "otelcol-soma validate: the merged collector config of $(basename "${config}" .yaml)" \
      otelcol_validate "${config}"
  done
  check "the merged collector configurations were written (${count} of 4)" test "${count}" -eq 4
  # The validation can fail: an unknown component in the config is refused.
  if [[ -f "${dir}/values.yaml" ]]; then
    sed 's/^exporters:$/exporters:\n  no_such_exporter: {}/' "${dir}/values.yaml" >"${WORK}/collector-bad.yaml"
    check "otelcol-soma validate refuses a config with an unknown exporter" \
      not_otelcol_validate "${WORK}/collector-bad.yaml" "no_such_exporter"
  fi
}

# shellcheck disable=SC2317 # called through check()
not_otelcol_validate() {
  local out
  if out="$(otelcol_validate "$1" 2>&1)"; then
    echo "validated: $1"
    return 1
  fi
  grep -qF -- "$2" <<<"${out}"
}

# --- 3. promtool ------------------------------------------------------------------------------------

# promtool resolves rule_files relative to its working directory.
# shellcheck disable=SC2317 # called through check()
promtool_test() { (cd "$1" && "${BACKENDS}/promtool" test rules "$2"); }

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
  check "promtool check rules servicemonitors/prometheus-rules.yaml (spec)" "${BACKENDS}/promtool" check rules "${dir}/${rules}"
  cp "${ROOT}"/servicemonitors/tests/*.test.yaml "${dir}/"
  for test in "${dir}"/*.test.yaml; do
    check "promtool test rules servicemonitors/tests/$(basename "${test}")" \
      promtool_test "${dir}" "$(basename "${test}")"
  done
  run_counted check-prometheus3-selectors.py python3 "${ROOT}/scripts/check-prometheus3-selectors.py"
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
  local collector_version
  collector_version="$(script_const COLLECTOR_CHART_VERSION_DEFAULT)"

  for expected in \
    "+ helm repo add prometheus-community https://prometheus-community.github.io/helm-charts" \
    "+ helm repo update prometheus-community" \
    "+ helm upgrade --install prometheus prometheus-community/kube-prometheus-stack --namespace observability --values ${ROOT}/deploy/kube-prometheus-stack-values.yaml" \
    "+ kubectl create namespace observability --dry-run=client -o yaml | kubectl apply -f -" \
    "+ kubectl create namespace soma-agent --dry-run=client -o yaml | kubectl apply -f -" \
    "+ kubectl kustomize ${ROOT} | kubectl apply -f -" \
    "kubectl port-forward -n observability svc/prometheus-grafana 3000:80" \
    "kubectl port-forward -n observability svc/prometheus-kube-prometheus-prometheus 9090:9090" \
    "+ helm repo add open-telemetry https://open-telemetry.github.io/opentelemetry-helm-charts" \
    "+ helm repo update open-telemetry" \
    "+ helm upgrade --install otel-collector open-telemetry/opentelemetry-collector --namespace observability --version ${collector_version} --values ${ROOT}/deploy/otel-collector-values.yaml --wait --timeout 5m" \
    "kubectl logs -n observability deploy/otel-collector"; do
    deploy_case "deploy --dry-run prints: ${expected}" 0 "${expected}" "" "${dry[@]}"
  done
  deploy_case "deploy --dry-run without --otlp-tls: no TLS values, no overlay, no Secret check" 0 \
    "+ kubectl kustomize ${ROOT} | kubectl apply -f -" "otlp-tls" "${dry[@]}"
  deploy_case "deploy --dry-run installs the stack before the collector (its ServiceMonitor needs the CRD)" 0 \
    "prometheus-community/kube-prometheus-stack" "" stack_before_collector "${dry[@]}"
  for expected in \
    "+ kubectl get secret otel-collector-tls --namespace observability -o go-template=" \
    "+ kubectl get secret otel-collector-ca --namespace soma-agent -o go-template=" \
    "+ helm upgrade --install otel-collector open-telemetry/opentelemetry-collector --namespace observability --version ${collector_version} --values ${ROOT}/deploy/otel-collector-values.yaml --values ${ROOT}/deploy/otel-collector-tls-values.yaml --wait --timeout 5m" \
    "+ kubectl kustomize ${ROOT}/overlays/otlp-tls | kubectl apply -f -" \
    "OTLP https://otel-collector.observability:4317"; do
    deploy_case "deploy --dry-run --otlp-tls prints: ${expected}" 0 "${expected}" \
      "+ kubectl kustomize ${ROOT} | kubectl apply" "${dry[@]}" --otlp-tls
  done
  deploy_case "deploy --collector-values adds a values file last" 0 \
    "--values ${ROOT}/deploy/otel-collector-tls-values.yaml --values ${ROOT}/deploy/otel-collector-backend-values.example.yaml --wait" "" \
    "${dry[@]}" --otlp-tls --collector-values "${ROOT}/deploy/otel-collector-backend-values.example.yaml"
  deploy_case "deploy --collector-values with a missing file stops with a clear message" nonzero \
    "--collector-values ${sandbox}/no-such-values.yaml: no such file" "+ helm" \
    "${dry[@]}" --collector-values "${sandbox}/no-such-values.yaml"
  deploy_case "deploy --collector-chart-version overrides the pinned collector chart" 0 \
    "open-telemetry/opentelemetry-collector --namespace observability --version 9.8.7 " "" \
    "${dry[@]}" --collector-chart-version 9.8.7
  deploy_case "deploy honours \$OTELCOL_CHART_VERSION" 0 \
    "open-telemetry/opentelemetry-collector --namespace observability --version 9.8.6 " "" \
    env OTELCOL_CHART_VERSION=9.8.6 "${dry[@]}"
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

  check_deploy_tls_secrets "${script}" "${sandbox}"
}

# A reachable cluster, simulated: kubectl and helm stubs that succeed and record their calls;
# `kubectl get secret` answers from ${sandbox}/cluster/secrets ("namespace/name key key..." lines)
# like the API server (NotFound on stderr, exit 1, for a Secret that is not listed).
write_cluster_stubs() {
  local dir="$1/cluster"
  mkdir -p "${dir}/bin"
  cat >"${dir}/bin/kubectl" <<'EOF'
#!/bin/sh
echo "kubectl $*" >>"${STUB_DIR}/calls"
case "$1 $2" in
  "config current-context") echo sandbox ;;
  "version "*) ;;
  "create namespace") echo "apiVersion: v1" ;;
  "apply -f") cat >/dev/null ;;
  "wait --for") ;;
  "kustomize "*) echo "apiVersion: v1" ;;
  "get secret")
    # kubectl get secret NAME --namespace NS -o go-template=...: prints the key names.
    line="$(grep "^$5/$3 " "${STUB_DIR}/secrets")" || {
      echo "Error from server (NotFound): secrets \"$3\" not found" >&2
      exit 1
    }
    echo "${line}" | cut -d' ' -f2- | tr ' ' '\n'
    ;;
  *) echo "kubectl stub: unexpected call: $*" >&2; exit 1 ;;
esac
EOF
  cat >"${dir}/bin/helm" <<'EOF'
#!/bin/sh
echo "helm $*" >>"${STUB_DIR}/calls"
EOF
  chmod +x "${dir}/bin/kubectl" "${dir}/bin/helm"
}

# stack_before_collector CMD...: prints CMD's output if it installs exactly two Helm releases,
# kube-prometheus-stack first.
# shellcheck disable=SC2317 # called through deploy_case()
stack_before_collector() {
  local out installs
  out="$("$@")" || return 1
  installs="$(grep '^+ helm upgrade --install' <<<"${out}")"
  [[ "$(wc -l <<<"${installs}")" -eq 2 && "$(head -n1 <<<"${installs}")" == *kube-prometheus-stack* ]] || return 1
  printf '%s\n' "${out}"
}

# shellcheck disable=SC2317 # called through check()
grep_calls() { grep -qF -- "$2" "$1/calls"; }

check_deploy_tls_secrets() {
  local script="$1" sandbox="$2" dir
  write_cluster_stubs "${sandbox}"
  dir="${sandbox}/cluster"
  local real=(env "PATH=${dir}/bin:${PATH}" "STUB_DIR=${dir}" "KUBECONFIG=${sandbox}/no-kubeconfig" bash "${script}")

  : >"${dir}/secrets"
  rm -f "${dir}/calls"
  deploy_case "deploy --otlp-tls without the collector's Secret stops, naming it and how to create it" nonzero \
    "missing Secret otel-collector-tls in namespace observability" "" "${real[@]}" --otlp-tls
  deploy_case "  ... and the message shows the command that creates it" nonzero \
    "kubectl create secret tls otel-collector-tls --namespace observability --cert=" "" "${real[@]}" --otlp-tls
  check "deploy --otlp-tls with a missing Secret calls no helm and applies no manifests" \
    not_grep -E '^helm|^kubectl kustomize' "${dir}/calls"

  echo "observability/otel-collector-tls tls.crt tls.key" >"${dir}/secrets"
  deploy_case "deploy --otlp-tls without the services' CA Secret stops, naming it and how to create it" nonzero \
    "missing Secret otel-collector-ca in namespace soma-agent" "" "${real[@]}" --otlp-tls
  deploy_case "  ... and the message shows the command that creates it" nonzero \
    "kubectl create secret generic otel-collector-ca --namespace soma-agent --from-file=ca.crt=" "" \
    "${real[@]}" --otlp-tls
  echo "soma-agent/otel-collector-ca ca.pem" >>"${dir}/secrets"
  deploy_case "deploy --otlp-tls with a CA Secret lacking ca.crt stops with a clear message" nonzero \
    "Secret otel-collector-ca in namespace soma-agent has no key ca.crt" "" "${real[@]}" --otlp-tls
  check "deploy --otlp-tls with an incomplete Secret calls no helm and applies no manifests" \
    not_grep -E '^helm|^kubectl kustomize' "${dir}/calls"

  printf '%s\n' "observability/otel-collector-tls ca.crt tls.crt tls.key" "soma-agent/otel-collector-ca ca.crt" \
    >"${dir}/secrets"
  rm -f "${dir}/calls"
  deploy_case "deploy --otlp-tls with both Secrets runs to the end (stub cluster)" 0 \
    "Secret soma-agent/otel-collector-ca: ca.crt present" "error:" "${real[@]}" --otlp-tls
  check "  ... installs the collector with the TLS values" grep_calls "${dir}" \
    "helm upgrade --install otel-collector open-telemetry/opentelemetry-collector --namespace observability --version $(script_const COLLECTOR_CHART_VERSION_DEFAULT) --values ${ROOT}/deploy/otel-collector-values.yaml --values ${ROOT}/deploy/otel-collector-tls-values.yaml"
  check "  ... and applies the overlay" grep_calls "${dir}" "kubectl kustomize ${ROOT}/overlays/otlp-tls"

  : >"${dir}/secrets"
  rm -f "${dir}/calls"
  deploy_case "deploy without --otlp-tls needs no Secret and runs to the end (stub cluster)" 0 \
    "==> Done" "error:" "${real[@]}"
  check "  ... checks no Secret and applies the root kustomization" grep_calls "${dir}" "kubectl kustomize ${ROOT}"
  check "  ... (no overlay, no get secret)" not_grep -E 'otlp-tls|get secret' "${dir}/calls"
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
