#!/usr/bin/env bash
# Deploy the SomaAgent observability set on a Kubernetes cluster: the counterpart of the
# platform's deploy-wave-c-infra.sh, for this repository.
#
#   1. adds the prometheus-community Helm repository;
#   2. creates the namespaces observability and soma-agent;
#   3. with --otlp-tls, checks that the TLS Secrets exist (otel-collector-tls in observability,
#      otel-collector-ca in soma-agent) and stops, saying how to create them, if one is missing;
#   4. installs or upgrades kube-prometheus-stack (release "prometheus") with the light values of
#      deploy/kube-prometheus-stack-values.yaml;
#   5. installs or upgrades the OpenTelemetry Collector (release "otel-collector", chart
#      open-telemetry/opentelemetry-collector pinned to 0.170.0) with
#      deploy/otel-collector-values.yaml (+ deploy/otel-collector-tls-values.yaml with --otlp-tls,
#      + any --collector-values file): the OTLP endpoint otel-collector.observability:4317 the
#      services send traces and logs to;
#   6. applies the rendered manifests: kubectl kustomize <repo> | kubectl apply -f -
#      (the five services, their ServiceMonitors, the PrometheusRule, the Grafana dashboards),
#      or, with --otlp-tls, the same set with OTLP over TLS: kubectl kustomize overlays/otlp-tls;
#   7. prints how to reach Grafana, Prometheus and the collector.
#
# Every step is idempotent: run it again after any change. See servicemonitors/README.md.
set -euo pipefail

readonly RELEASE=prometheus # the `release` label of servicemonitors/*.yaml must match it
readonly OBS_NAMESPACE=observability
readonly APP_NAMESPACE=soma-agent
readonly HELM_REPO_NAME=prometheus-community
readonly HELM_REPO_URL=https://prometheus-community.github.io/helm-charts
readonly CHART="${HELM_REPO_NAME}/kube-prometheus-stack"
readonly COLLECTOR_RELEASE=otel-collector # the services' OTEL_EXPORTER_OTLP_ENDPOINT names it
readonly OTEL_HELM_REPO_NAME=open-telemetry
readonly OTEL_HELM_REPO_URL=https://open-telemetry.github.io/opentelemetry-helm-charts
readonly COLLECTOR_CHART="${OTEL_HELM_REPO_NAME}/opentelemetry-collector"
# Pinned: deploy/vendor/opentelemetry-collector-<version>/ (the values schema scripts/check-k8s.sh
# validates against) and image.tag in deploy/otel-collector-values.yaml must match it.
readonly COLLECTOR_CHART_VERSION_DEFAULT=0.170.0
# With --otlp-tls: the collector's certificate (tls.crt, tls.key) and the CA the services trust.
readonly COLLECTOR_TLS_SECRET=otel-collector-tls
readonly SERVICES_CA_SECRET=otel-collector-ca
readonly TLS_DOC='servicemonitors/README.md, "TLS between the services and the collector"'

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly VALUES="${ROOT}/deploy/kube-prometheus-stack-values.yaml"
readonly COLLECTOR_VALUES="${ROOT}/deploy/otel-collector-values.yaml"
readonly COLLECTOR_TLS_VALUES="${ROOT}/deploy/otel-collector-tls-values.yaml"
readonly TLS_OVERLAY="${ROOT}/overlays/otlp-tls"

DRY_RUN=false
MANIFESTS_ONLY=false
CHART_VERSION="${KPS_CHART_VERSION:-}"
COLLECTOR_CHART_VERSION="${OTELCOL_CHART_VERSION:-${COLLECTOR_CHART_VERSION_DEFAULT}}"
OTLP_TLS=false
EXTRA_COLLECTOR_VALUES=()

usage() {
  cat <<EOF
Usage: scripts/deploy-observability.sh [--dry-run] [--manifests-only] [--chart-version X]
         [--collector-chart-version X] [--collector-values FILE]... [--otlp-tls] [--help]

Installs kube-prometheus-stack (Helm release "${RELEASE}", namespace ${OBS_NAMESPACE}) and the
OpenTelemetry Collector (Helm release "${COLLECTOR_RELEASE}", namespace ${OBS_NAMESPACE}: the OTLP
endpoint ${COLLECTOR_RELEASE}.${OBS_NAMESPACE}:4317 of the services), then applies this repository's
manifests (kubectl kustomize . | kubectl apply -f -): the five reference services in
${APP_NAMESPACE}, their ServiceMonitors, the PrometheusRule and the Grafana dashboards.
Safe to run again: helm upgrade --install, kubectl apply, namespaces via --dry-run=client | apply.

Options:
  --dry-run            print every command instead of running it; needs neither helm, kubectl
                       nor a cluster, and touches nothing
  --manifests-only     skip the Helm repositories and charts (kube-prometheus-stack and the
                       collector are already installed); still creates the namespaces and
                       applies the manifests
  --chart-version X    pin the kube-prometheus-stack chart version (default: the newest, or
                       \$KPS_CHART_VERSION); the CRDs this repo is checked against are v0.93
  --collector-chart-version X
                       the opentelemetry-collector chart version (default ${COLLECTOR_CHART_VERSION_DEFAULT},
                       the one deploy/otel-collector-values.yaml is checked against, or
                       \$OTELCOL_CHART_VERSION)
  --collector-values FILE
                       an extra values file for the collector, applied last (repeatable): where
                       a team points the collector at its trace and log backends, see
                       deploy/otel-collector-backend-values.example.yaml
  --otlp-tls           OTLP over TLS: the collector serves the certificate of the Secret
                       ${COLLECTOR_TLS_SECRET} (${OBS_NAMESPACE}); the services send to https://
                       and trust the CA of the Secret ${SERVICES_CA_SECRET} (${APP_NAMESPACE}).
                       Both must exist; how to create them: servicemonitors/README.md,
                       "TLS between the services and the collector"
  -h, --help           show this help

Needs: kubectl and helm on PATH, and a current kubectl context that reaches the cluster.
EOF
}

if [[ -t 1 ]]; then
  BOLD=$'\033[1m' GREEN=$'\033[32m' RED=$'\033[31m' RESET=$'\033[0m'
else
  BOLD='' GREEN='' RED='' RESET=''
fi

step() { printf '%s==> %s%s\n' "${BOLD}" "$*" "${RESET}"; }
die() {
  printf '%serror:%s %s\n' "${RED}" "${RESET}" "$*" >&2
  exit 1
}

# run CMD ARGS...: runs the command, or prints it (shell-quoted) with --dry-run.
run() {
  if [[ "${DRY_RUN}" == true ]]; then
    printf '+ %s\n' "$(quote "$@")"
  else
    "$@"
  fi
}

# pipe "CMD1 ARGS..." -- "CMD2 ARGS...": runs CMD1 | CMD2, or prints the pipeline.
pipe() {
  local left=() right=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do
    left+=("$1")
    shift
  done
  shift
  right=("$@")
  if [[ "${DRY_RUN}" == true ]]; then
    printf '+ %s | %s\n' "$(quote "${left[@]}")" "$(quote "${right[@]}")"
  else
    "${left[@]}" | "${right[@]}"
  fi
}

quote() {
  local out='' arg
  for arg in "$@"; do
    out+="$(printf '%q' "${arg}") "
  done
  printf '%s' "${out% }"
}

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dry-run) DRY_RUN=true ;;
      --manifests-only) MANIFESTS_ONLY=true ;;
      --chart-version)
        [[ $# -ge 2 && -n "$2" ]] || die "--chart-version needs a version, e.g. --chart-version 80.0.0"
        CHART_VERSION="$2"
        shift
        ;;
      --chart-version=*) CHART_VERSION="${1#*=}" ;;
      --collector-chart-version)
        [[ $# -ge 2 && -n "$2" ]] ||
          die "--collector-chart-version needs a version, e.g. --collector-chart-version ${COLLECTOR_CHART_VERSION_DEFAULT}"
        COLLECTOR_CHART_VERSION="$2"
        shift
        ;;
      --collector-chart-version=*) COLLECTOR_CHART_VERSION="${1#*=}" ;;
      --collector-values)
        [[ $# -ge 2 && -n "$2" ]] || die "--collector-values needs a file, e.g. --collector-values my-backend-values.yaml"
        EXTRA_COLLECTOR_VALUES+=("$2")
        shift
        ;;
      --collector-values=*) EXTRA_COLLECTOR_VALUES+=("${1#*=}") ;;
      --otlp-tls) OTLP_TLS=true ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
  done
}

check_prerequisites() {
  step "Checking prerequisites"
  [[ -f "${ROOT}/kustomization.yaml" ]] || die "no kustomization.yaml in ${ROOT}: run the script from a checkout of the repository"
  [[ -f "${VALUES}" ]] || die "missing ${VALUES}"
  [[ -f "${COLLECTOR_VALUES}" ]] || die "missing ${COLLECTOR_VALUES}"
  [[ -n "${COLLECTOR_CHART_VERSION}" ]] || die "empty collector chart version (\$OTELCOL_CHART_VERSION is set but empty)"
  if [[ "${OTLP_TLS}" == true ]]; then
    [[ -f "${COLLECTOR_TLS_VALUES}" ]] || die "missing ${COLLECTOR_TLS_VALUES}"
    [[ -f "${TLS_OVERLAY}/kustomization.yaml" ]] || die "missing ${TLS_OVERLAY}/kustomization.yaml"
  fi
  local file
  for file in "${EXTRA_COLLECTOR_VALUES[@]}"; do
    [[ -f "${file}" ]] || die "--collector-values ${file}: no such file"
  done
  if [[ "${DRY_RUN}" == true ]]; then
    echo "dry run: not checking kubectl, helm or the cluster; commands are printed, not run"
    return
  fi
  command -v kubectl >/dev/null 2>&1 ||
    die "kubectl not found on PATH: install it (https://kubernetes.io/docs/tasks/tools/) and point it at your cluster"
  if [[ "${MANIFESTS_ONLY}" == false ]]; then
    command -v helm >/dev/null 2>&1 ||
      die "helm not found on PATH: install Helm 3 (https://helm.sh/docs/intro/install/), or pass --manifests-only if kube-prometheus-stack is already installed"
  fi
  local context
  context="$(kubectl config current-context 2>/dev/null)" ||
    die "kubectl has no current context: select one with 'kubectl config use-context NAME' (or set KUBECONFIG)"
  kubectl version --request-timeout=10s >/dev/null 2>&1 ||
    die "cannot reach the cluster of context '${context}': check 'kubectl cluster-info'"
  echo "kubectl context: ${context}"
}

create_namespaces() {
  step "Creating namespaces ${OBS_NAMESPACE} and ${APP_NAMESPACE}"
  local ns
  for ns in "${OBS_NAMESPACE}" "${APP_NAMESPACE}"; do
    pipe kubectl create namespace "${ns}" --dry-run=client -o yaml -- kubectl apply -f -
  done
}

# require_secret NAMESPACE NAME "KEY..." WHAT HOWTO: stops unless the Secret exists with every KEY.
require_secret() {
  local ns="$1" name="$2" keys="$3" what="$4" howto="$5" found err key
  # One key name per line (kubectl's go-template; the $ are its variables, not the shell's).
  # shellcheck disable=SC2016
  local template='{{range $k, $v := .data}}{{println $k}}{{end}}'
  if [[ "${DRY_RUN}" == true ]]; then
    run kubectl get secret "${name}" --namespace "${ns}" -o go-template="${template}"
    return
  fi
  err="$(mktemp)"
  if ! found="$(kubectl get secret "${name}" --namespace "${ns}" -o go-template="${template}" 2>"${err}")"; then
    if grep -q 'NotFound' "${err}"; then
      rm -f "${err}"
      die "--otlp-tls: missing Secret ${name} in namespace ${ns} (${what}). Create it, e.g.
  ${howto}
then run this script again (see ${TLS_DOC})."
    fi
    cat "${err}" >&2
    rm -f "${err}"
    die "--otlp-tls: cannot read Secret ${name} in namespace ${ns} (see the kubectl error above)"
  fi
  rm -f "${err}"
  for key in ${keys}; do
    grep -qxF "${key}" <<<"${found}" ||
      die "--otlp-tls: Secret ${name} in namespace ${ns} has no key ${key} (${what}); recreate it, e.g.
  ${howto}
(see ${TLS_DOC})."
  done
  echo "Secret ${ns}/${name}: ${keys// /, } present"
}

check_tls_secrets() {
  step "Checking the TLS Secrets of --otlp-tls"
  require_secret "${OBS_NAMESPACE}" "${COLLECTOR_TLS_SECRET}" "tls.crt tls.key" \
    "the collector's certificate and key, for ${COLLECTOR_RELEASE}.${OBS_NAMESPACE}" \
    "kubectl create secret tls ${COLLECTOR_TLS_SECRET} --namespace ${OBS_NAMESPACE} --cert=collector.crt --key=collector.key"
  require_secret "${APP_NAMESPACE}" "${SERVICES_CA_SECRET}" "ca.crt" \
    "the CA certificate the services verify the collector with" \
    "kubectl create secret generic ${SERVICES_CA_SECRET} --namespace ${APP_NAMESPACE} --from-file=ca.crt=ca.crt"
}

install_stack() {
  step "Installing kube-prometheus-stack (release ${RELEASE}, namespace ${OBS_NAMESPACE})"
  run helm repo add "${HELM_REPO_NAME}" "${HELM_REPO_URL}" --force-update
  run helm repo update "${HELM_REPO_NAME}"
  local version_args=()
  [[ -n "${CHART_VERSION}" ]] && version_args=(--version "${CHART_VERSION}")
  run helm upgrade --install "${RELEASE}" "${CHART}" \
    --namespace "${OBS_NAMESPACE}" \
    --values "${VALUES}" \
    "${version_args[@]}" \
    --wait --timeout 10m
}

install_collector() {
  step "Installing the OpenTelemetry Collector (release ${COLLECTOR_RELEASE}, namespace ${OBS_NAMESPACE}, chart ${COLLECTOR_CHART_VERSION})"
  run helm repo add "${OTEL_HELM_REPO_NAME}" "${OTEL_HELM_REPO_URL}" --force-update
  run helm repo update "${OTEL_HELM_REPO_NAME}"
  local values_args=(--values "${COLLECTOR_VALUES}") file
  [[ "${OTLP_TLS}" == true ]] && values_args+=(--values "${COLLECTOR_TLS_VALUES}")
  for file in "${EXTRA_COLLECTOR_VALUES[@]}"; do values_args+=(--values "${file}"); done
  # After the stack: the chart's ServiceMonitor (the collector's own metrics) needs its CRD.
  run helm upgrade --install "${COLLECTOR_RELEASE}" "${COLLECTOR_CHART}" \
    --namespace "${OBS_NAMESPACE}" \
    --version "${COLLECTOR_CHART_VERSION}" \
    "${values_args[@]}" \
    --wait --timeout 5m
}

apply_manifests() {
  local source="${ROOT}" how=""
  if [[ "${OTLP_TLS}" == true ]]; then
    source="${TLS_OVERLAY}"
    how=", OTLP over TLS"
  fi
  step "Applying the rendered manifests (services, ServiceMonitors, PrometheusRule, dashboards${how})"
  # ServiceMonitor and PrometheusRule need the operator's CRDs, installed by the chart.
  run kubectl wait --for condition=Established --timeout=120s \
    crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
  pipe kubectl kustomize "${source}" -- kubectl apply -f -
}

print_access() {
  local scheme=http exporters
  [[ "${OTLP_TLS}" == true ]] && scheme=https
  if [[ ${#EXTRA_COLLECTOR_VALUES[@]} -gt 0 ]]; then
    exporters="  Exporters: as set in ${EXTRA_COLLECTOR_VALUES[*]}."
  else
    exporters="  Traces and logs go to the debug exporter until you point the collector at your backends:
  --collector-values FILE (see deploy/otel-collector-backend-values.example.yaml)."
  fi
  step "Done"
  cat <<EOF
${GREEN}Grafana${RESET} (dashboards in the "SomaAgent" folder):
  kubectl port-forward -n ${OBS_NAMESPACE} svc/${RELEASE}-grafana 3000:80
  open http://localhost:3000  (user admin; password:
  kubectl get secret -n ${OBS_NAMESPACE} ${RELEASE}-grafana -o jsonpath='{.data.admin-password}' | base64 -d)

${GREEN}Prometheus${RESET} (Status > Targets: one target per pod of the five services):
  kubectl port-forward -n ${OBS_NAMESPACE} svc/${RELEASE}-kube-prometheus-prometheus 9090:9090
  open http://localhost:9090

${GREEN}OpenTelemetry Collector${RESET} (OTLP ${scheme}://${COLLECTOR_RELEASE}.${OBS_NAMESPACE}:4317 gRPC, :4318 HTTP):
  kubectl get pods,svc -n ${OBS_NAMESPACE} -l app.kubernetes.io/instance=${COLLECTOR_RELEASE}
  kubectl logs -n ${OBS_NAMESPACE} deploy/${COLLECTOR_RELEASE}   (errors; the debug exporter's one line per batch)
${exporters}

Services: kubectl get pods,svc -n ${APP_NAMESPACE}
The images somaagent/<binary>:latest in deploy/ are placeholders: push real images and set them
there (or with a kustomize images: override) before the pods can start.
EOF
}

main() {
  parse_args "$@"
  check_prerequisites
  create_namespaces
  if [[ "${OTLP_TLS}" == true ]]; then
    check_tls_secrets
  fi
  if [[ "${MANIFESTS_ONLY}" == false ]]; then
    install_stack
    install_collector
  fi
  apply_manifests
  print_access
}

main "$@"
