#!/usr/bin/env bash
# Deploy the SomaAgent observability set on a Kubernetes cluster: the counterpart of the
# platform's deploy-wave-c-infra.sh, for this repository.
#
#   1. adds the prometheus-community Helm repository;
#   2. creates the namespaces observability and soma-agent;
#   3. installs or upgrades kube-prometheus-stack (release "prometheus") with the light values of
#      deploy/kube-prometheus-stack-values.yaml;
#   4. applies the rendered manifests: kubectl kustomize <repo> | kubectl apply -f -
#      (the five services, their ServiceMonitors, the PrometheusRule, the Grafana dashboards);
#   5. prints how to reach Grafana and Prometheus.
#
# Every step is idempotent: run it again after any change. See servicemonitors/README.md.
set -euo pipefail

readonly RELEASE=prometheus # the `release` label of servicemonitors/*.yaml must match it
readonly OBS_NAMESPACE=observability
readonly APP_NAMESPACE=soma-agent
readonly HELM_REPO_NAME=prometheus-community
readonly HELM_REPO_URL=https://prometheus-community.github.io/helm-charts
readonly CHART="${HELM_REPO_NAME}/kube-prometheus-stack"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly VALUES="${ROOT}/deploy/kube-prometheus-stack-values.yaml"

DRY_RUN=false
MANIFESTS_ONLY=false
CHART_VERSION="${KPS_CHART_VERSION:-}"

usage() {
  cat <<EOF
Usage: scripts/deploy-observability.sh [--dry-run] [--manifests-only] [--chart-version X] [--help]

Installs kube-prometheus-stack (Helm release "${RELEASE}", namespace ${OBS_NAMESPACE}) and applies
this repository's manifests (kubectl kustomize . | kubectl apply -f -): the five reference
services in ${APP_NAMESPACE}, their ServiceMonitors, the PrometheusRule and the Grafana dashboards.
Safe to run again: helm upgrade --install, kubectl apply, namespaces via --dry-run=client | apply.

Options:
  --dry-run            print every command instead of running it; needs neither helm, kubectl
                       nor a cluster, and touches nothing
  --manifests-only     skip the Helm repository and chart (the stack is already installed);
                       still creates the namespaces and applies the manifests
  --chart-version X    pin the kube-prometheus-stack chart version (default: the newest, or
                       \$KPS_CHART_VERSION); the CRDs this repo is checked against are v0.93
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

apply_manifests() {
  step "Applying the rendered manifests (services, ServiceMonitors, PrometheusRule, dashboards)"
  # ServiceMonitor and PrometheusRule need the operator's CRDs, installed by the chart.
  run kubectl wait --for condition=Established --timeout=120s \
    crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
  pipe kubectl kustomize "${ROOT}" -- kubectl apply -f -
}

print_access() {
  step "Done"
  cat <<EOF
${GREEN}Grafana${RESET} (dashboards in the "SomaAgent" folder):
  kubectl port-forward -n ${OBS_NAMESPACE} svc/${RELEASE}-grafana 3000:80
  open http://localhost:3000  (user admin; password:
  kubectl get secret -n ${OBS_NAMESPACE} ${RELEASE}-grafana -o jsonpath='{.data.admin-password}' | base64 -d)

${GREEN}Prometheus${RESET} (Status > Targets: one target per pod of the five services):
  kubectl port-forward -n ${OBS_NAMESPACE} svc/${RELEASE}-kube-prometheus-prometheus 9090:9090
  open http://localhost:9090

Services: kubectl get pods,svc -n ${APP_NAMESPACE}
The images somaagent/<binary>:latest in deploy/ are placeholders: push real images and set them
there (or with a kustomize images: override) before the pods can start.
EOF
}

main() {
  parse_args "$@"
  check_prerequisites
  create_namespaces
  if [[ "${MANIFESTS_ONLY}" == false ]]; then
    install_stack
  fi
  apply_manifests
  print_access
}

main "$@"
