#!/usr/bin/env python3
"""Offline checks of the OpenTelemetry Collector install and of the OTLP/TLS overlay (run by
scripts/check-k8s.sh from its venv, next to check_manifests.py).

1. The vendored chart files (deploy/vendor/opentelemetry-collector-<version>/) are those of the
   version the deploy script pins, and the image tag is the chart's appVersion.
2. For each combination the deploy script can install (the values alone, + TLS values, + the
   backend example, + both), the values are merged into the chart's defaults the way Helm merges
   them (maps key by key, lists replaced, `null` deletes a default) and
   - validated against the chart's values.schema.json (Helm refuses an install that fails it);
   - the collector configuration checked for consistency: every component a pipeline names is
     defined, memory_limiter comes first and batch after it, the otlp receiver binds
     0.0.0.0:4317 (gRPC) and 0.0.0.0:4318 (HTTP) on the container ports, TLS files lie on a
     mounted Secret volume (and only in the TLS combinations);
   - the objects the chart's templates derive from the values rebuilt (the fullname rule of
     _helpers.tpl, the port lists of _config.tpl, the pod of _pod.tpl, servicemonitor.yaml) and
     checked: Service `otel-collector` with ports 4317 and 4318, validated against the Kubernetes
     schemas, ServiceMonitor against the Prometheus Operator CRD.
3. The overlay's render (overlays/otlp-tls) validates like the root render, its Deployments send
   to https://otel-collector.observability:4317 with OTEL_EXPORTER_OTLP_CERTIFICATE on a mounted
   CA Secret, and nothing else differs from the root render.

Prints one `ok - ...` / `not ok - ...` line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import re
import sys
from pathlib import Path, PurePosixPath

import jsonschema
import kubernetes_validate
import yaml

from check_manifests import APP_NAMESPACE, OBS_NAMESPACE, Report, SchemaSet, env_map, ident, load_docs

CHART_NAME = "opentelemetry-collector"
COLLECTOR_RELEASE = "otel-collector"  # what the services' OTEL_EXPORTER_OTLP_ENDPOINT names
PIPELINES = ("traces", "logs", "metrics")
OTLP_PORTS = {"grpc": ("otlp", 4317), "http": ("otlp-http", 4318)}  # protocol -> (port name, port)
ALLOWED_SERVICE_PORTS = {"otlp", "otlp-http", "metrics"}
# image.repository (last path element) -> command.name the chart must be told (chart README).
DISTRIBUTIONS = {
    "opentelemetry-collector-k8s": "otelcol-k8s",
    "opentelemetry-collector-contrib": "otelcol-contrib",
    "opentelemetry-collector": "otelcol",
}
# Component types the image ships (the k8s distribution 0.158.0, distributions/otelcol-k8s/
# manifest.yaml of open-telemetry/opentelemetry-collector-releases): the usual ones, so that a
# typo in a type (`otlp_grcp/traces`) fails here rather than in a crash-looping pod. The k8s
# distribution has no prometheusremotewrite exporter (contrib has).
K8S_DISTRIBUTION_TYPES = {
    "receivers": {"otlp", "prometheus", "jaeger", "zipkin", "k8s_cluster", "kubeletstats",
                  "hostmetrics", "file_log", "filelog", "k8sobjects", "k8s_events"},
    "processors": {"batch", "memory_limiter", "attributes", "resource", "filter", "transform",
                   "k8s_attributes", "k8sattributes", "probabilistic_sampler", "tail_sampling",
                   "redaction", "resourcedetection"},
    "exporters": {"debug", "nop", "otlp_grpc", "otlp", "otlp_http", "otlphttp", "file", "loadbalancing"},
    "extensions": {"health_check", "pprof", "zpages", "file_storage", "bearertokenauth", "basicauth",
                   "oauth2client", "headers_setter"},
}
TLS_FILE_KEYS = ("cert_file", "key_file", "ca_file", "client_ca_file")
TLS_ENDPOINT = "https://otel-collector.observability:4317"
CA_PATH = "/etc/otel-tls/ca.crt"
TLS_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT": TLS_ENDPOINT, "OTEL_EXPORTER_OTLP_CERTIFICATE": CA_PATH}


# --- Helm's value merge --------------------------------------------------------------------------


def merge_user(base: dict, override: dict) -> dict:
    """Several -f files: later files win, maps merge recursively (Helm's mergeMaps)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_user(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def coalesce(defaults: dict, user: dict) -> dict:
    """User values over the chart's defaults: a user `null` deletes the key (Helm's coalesce)."""
    out = copy.deepcopy(defaults)
    for key, value in user.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = coalesce(out[key], value)
        else:
            out[key] = strip_nulls(copy.deepcopy(value))
    return out


def strip_nulls(value):
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    return value


# --- what the chart's templates derive from the values (chart 0.170.0) ---------------------------


def fullname(values: dict, release: str) -> str:
    """templates/_helpers.tpl, define "opentelemetry-collector.fullname"."""
    if values.get("fullnameOverride"):
        return values["fullnameOverride"][:63].rstrip("-")
    name = values.get("nameOverride") or CHART_NAME
    if name in release:  # sprig `contains $name .Release.Name`
        return release[:63].rstrip("-")
    return f"{release}-{name}"[:63].rstrip("-")


def selector_labels(values: dict, release: str) -> dict:
    name = (values.get("nameOverride") or CHART_NAME)[:63].rstrip("-")
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": release}
    if values.get("mode") == "deployment":
        labels["component"] = "standalone-collector"
    return labels


def enabled_ports(values: dict) -> dict:
    return {k: p for k, p in sorted((values.get("ports") or {}).items()) if p.get("enabled")}


def service_object(values: dict, release: str, namespace: str) -> dict:
    """templates/service.yaml with servicePortsConfig of templates/_config.tpl."""
    ports = []
    for key, port in enabled_ports(values).items():
        entry = {"name": key, "port": port.get("servicePort"), "targetPort": port.get("containerPort"),
                 "protocol": port.get("protocol")}
        if port.get("appProtocol"):
            entry["appProtocol"] = port["appProtocol"]
        ports.append(entry)
    labels = dict(selector_labels(values, release), **{"app.kubernetes.io/managed-by": "Helm"})
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": fullname(values, release), "namespace": namespace, "labels": labels},
        "spec": {"type": values.get("service", {}).get("type", "ClusterIP"), "ports": ports,
                 "selector": selector_labels(values, release), "internalTrafficPolicy": "Cluster"},
    }


def deployment_object(values: dict, release: str, namespace: str) -> dict:
    """templates/deployment.yaml with the pod of templates/_pod.tpl (the parts values drive)."""
    image = values["image"]
    container = {
        "name": CHART_NAME,
        "args": ["--config=/conf/relay.yaml", *(values.get("command", {}).get("extraArgs") or [])],
        "securityContext": values.get("securityContext") or {},
        "image": f"{image.get('repository')}:{image.get('tag') or 'APPVERSION'}",
        "imagePullPolicy": image.get("pullPolicy", "IfNotPresent"),
        "ports": [{"name": k, "containerPort": p.get("containerPort"), "protocol": p.get("protocol")}
                  for k, p in enabled_ports(values).items()],
        "env": [{"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                *(values.get("extraEnvs") or [])],
        "livenessProbe": {"httpGet": values["livenessProbe"]["httpGet"]},
        "readinessProbe": {"httpGet": values["readinessProbe"]["httpGet"]},
        "volumeMounts": [{"mountPath": "/conf", "name": f"{CHART_NAME}-configmap"},
                         *(values.get("extraVolumeMounts") or [])],
    }
    if values.get("command", {}).get("name"):
        container["command"] = ["/" + values["command"]["name"]]
    if values.get("resources"):
        container["resources"] = values["resources"]
    pod = {
        "serviceAccountName": fullname(values, release),
        "automountServiceAccountToken": values["serviceAccount"].get("automountServiceAccountToken"),
        "securityContext": values.get("podSecurityContext") or {},
        "containers": [container],
        "terminationGracePeriodSeconds": values.get("terminationGracePeriodSeconds"),
        "volumes": [{"name": f"{CHART_NAME}-configmap",
                     "configMap": {"name": fullname(values, release),
                                   "items": [{"key": "relay", "path": "relay.yaml"}]}},
                    *(values.get("extraVolumes") or [])],
    }
    return {
        "apiVersion": values.get("apiVersion", "apps/v1"), "kind": "Deployment",
        "metadata": {"name": fullname(values, release), "namespace": namespace},
        "spec": {"replicas": values.get("replicaCount"),
                 "revisionHistoryLimit": values.get("revisionHistoryLimit"),
                 "selector": {"matchLabels": selector_labels(values, release)},
                 "template": {"metadata": {"labels": selector_labels(values, release)}, "spec": pod}},
    }


def service_monitor_object(values: dict, release: str, namespace: str) -> dict:
    """templates/servicemonitor.yaml."""
    sm = values["serviceMonitor"]
    labels = {"app.kubernetes.io/name": CHART_NAME, **(sm.get("extraLabels") or {})}
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": fullname(values, release), "namespace": namespace, "labels": labels},
        "spec": {"selector": {"matchLabels": selector_labels(values, release)},
                 "endpoints": sm.get("metricsEndpoints") or []},
    }


# --- checks ------------------------------------------------------------------------------------


def component_defined(section: dict, name: str) -> bool:
    return name in (section or {})


def walk(value, path=""):
    """(path, key, value) for every key of nested dicts and lists."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}" if path else k, k, v
            yield from walk(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")


def tls_files(config: dict) -> list[tuple[str, str]]:
    return [(path, v) for path, k, v in walk(config) if k in TLS_FILE_KEYS]


def check_config(rep: Report, label: str, values: dict, tls: bool):
    config = values.get("config") or {}
    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    rep.check(not [p for p, _, v in walk(config) if isinstance(v, str) and "{{" in v],
              f"{label}: no '{{{{' in config (the chart passes it through tpl)")
    exts = service.get("extensions") or []
    rep.check("health_check" in exts, f"{label}: health_check extension enabled (the chart's probes need it)")
    rep.check(all(component_defined(config.get("extensions"), e) for e in exts),
              f"{label}: every service extension is defined", f"{exts}")
    rep.check(sorted(pipelines) == sorted(PIPELINES), f"{label}: pipelines traces, logs and metrics",
              f"{sorted(pipelines)}")
    used = {"receivers": set(), "processors": set(), "exporters": set()}
    for name in PIPELINES:
        pipe = pipelines.get(name) or {}
        for kind in used:
            names = pipe.get(kind) or []
            used[kind] |= set(names)
            missing = [n for n in names if not component_defined(config.get(kind), n)]
            rep.check(bool(names) and not missing,
                      f"{label}: pipeline {name} has {kind}, all defined in config.{kind}",
                      f"{names}, undefined {missing}")
        procs = pipe.get("processors") or []
        rep.check(procs[:1] == ["memory_limiter"], f"{label}: pipeline {name}: memory_limiter comes first",
                  f"{procs}")
        rep.check("batch" in procs[1:], f"{label}: pipeline {name}: batch after memory_limiter", f"{procs}")
        rep.check("otlp" in (pipe.get("receivers") or []), f"{label}: pipeline {name} receives OTLP")
    for kind, types in K8S_DISTRIBUTION_TYPES.items():
        unknown = sorted(n for n in (config.get(kind) or {}) if n.split("/", 1)[0] not in types)
        rep.check(not unknown, f"{label}: every component type of config.{kind} ships in the k8s distribution",
                  f"unknown {unknown}")
    unused = set(config.get("receivers") or {}) - used["receivers"]
    rep.check(not unused, f"{label}: every receiver is used by a pipeline (no leftover chart default)",
              f"unused {sorted(unused)}")
    limiter = (config.get("processors") or {}).get("memory_limiter") or {}
    has_limit = "limit_mib" in limiter or "limit_percentage" in limiter
    pct_ok = "limit_percentage" not in limiter or bool(((values.get("resources") or {}).get("limits") or {}).get("memory"))
    rep.check(has_limit and pct_ok and bool(limiter.get("check_interval")),
              f"{label}: memory_limiter has check_interval and a limit (percent of resources.limits.memory)",
              json.dumps(limiter))
    res = values.get("resources") or {}
    rep.check(all(k in res.get("requests", {}) for k in ("cpu", "memory")) and "memory" in res.get("limits", {}),
              f"{label}: collector has cpu/memory requests and a memory limit", json.dumps(res))

    ports = enabled_ports(values)
    protocols = ((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
    for proto, (port_name, number) in OTLP_PORTS.items():
        endpoint = (protocols.get(proto) or {}).get("endpoint")
        rep.check(endpoint == f"0.0.0.0:{number}", f"{label}: otlp receiver {proto} binds 0.0.0.0:{number}",
                  f"{endpoint!r}")
        port = ports.get(port_name) or {}
        rep.check(port.get("containerPort") == number == port.get("servicePort") and port.get("protocol") == "TCP",
                  f"{label}: port {port_name} open: container and Service port {number}/TCP", json.dumps(port))
        rx_tls = (protocols.get(proto) or {}).get("tls")
        if tls:
            rep.check(bool(rx_tls and rx_tls.get("cert_file") and rx_tls.get("key_file")),
                      f"{label}: otlp receiver {proto} serves TLS (cert_file, key_file)")
        else:
            rep.check(rx_tls is None, f"{label}: otlp receiver {proto} is plaintext (the services use http://)")
    rep.check(ports.get("otlp", {}).get("appProtocol") == "grpc", f"{label}: port otlp has appProtocol grpc")
    rep.check(set(ports) <= ALLOWED_SERVICE_PORTS, f"{label}: no other ports open (Jaeger, Zipkin closed)",
              f"{sorted(ports)}")

    # TLS files must lie on a mounted volume, from a Secret that carries them.
    mounts = {m.get("mountPath"): m for m in values.get("extraVolumeMounts") or []}
    volumes = {v.get("name"): v for v in values.get("extraVolumes") or []}
    for path, file in tls_files(config):
        f = PurePosixPath(file)
        mount = mounts.get(str(f.parent))
        vol = volumes.get((mount or {}).get("name"))
        secret = (vol or {}).get("secret") or {}
        items = {i.get("path"): i.get("key") for i in secret.get("items") or []}
        ok = (bool(mount) and mount.get("readOnly") is True and bool(secret.get("secretName"))
              and (not items or f.name in items))
        rep.check(ok, f"{label}: {path}={file} is on a read-only Secret volume mount that holds {f.name}",
                  f"mount={mount} volume={vol}")
    if not tls:
        rep.check(not tls_files(config) and not values.get("extraVolumes"),
                  f"{label}: no TLS files and no extra volumes without --otlp-tls")

    # The collector's own metrics: the telemetry reader listens on the metrics port.
    readers = (((service.get("telemetry") or {}).get("metrics") or {}).get("readers") or [])
    pull_ports = [((r.get("pull") or {}).get("exporter") or {}).get("prometheus", {}).get("port") for r in readers]
    rep.check(ports.get("metrics", {}).get("containerPort") in pull_ports,
              f"{label}: the collector's own metrics (telemetry reader) are served on port metrics",
              f"readers on {pull_ports}, port metrics {ports.get('metrics')}")


def check_values(rep: Report, label: str, values: dict, validator, schemas: SchemaSet, release: str,
                 stack_release: str, tls: bool, tls_secret: str, app_version: str):
    errs = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(values)]
    rep.check(not errs, f"{label}: merged values validate against the chart's values.schema.json", "; ".join(errs[:5]))
    rep.check(values.get("mode") == "deployment", f"{label}: mode deployment")
    image = values.get("image") or {}
    repo = image.get("repository") or ""
    command = DISTRIBUTIONS.get(repo.rsplit("/", 1)[-1])
    rep.check(bool(command) and (values.get("command") or {}).get("name") == command,
              f"{label}: image.repository is a collector distribution, command.name matches it",
              f"{repo!r} command {values.get('command')}")
    rep.check(image.get("tag") == app_version, f"{label}: image.tag is the chart's appVersion {app_version}",
              f"{image.get('tag')!r}")
    name = fullname(values, release)
    rep.check(name == COLLECTOR_RELEASE and not values.get("namespaceOverride"),
              f"{label}: the chart names its objects {COLLECTOR_RELEASE} in the release namespace",
              f"fullname {name!r}")
    check_config(rep, label, values, tls)

    svc = service_object(values, release, OBS_NAMESPACE)
    dep = deployment_object(values, release, OBS_NAMESPACE)
    for obj in (svc, dep):
        errs = []
        for version in schemas.k8s_versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                errs.append(f"Kubernetes {version}: {'.'.join(map(str, err.path)) or '<root>'}: {err.message}")
        rep.check(not errs, f"{label}: schema: chart's {ident(obj)} as the templates build it", "; ".join(errs[:3]))
    vols = [v for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    if tls:
        rep.check([v["secret"].get("secretName") for v in vols] == [tls_secret],
                  f"{label}: the collector mounts the Secret {tls_secret} (what the deploy script checks)",
                  f"{[v['secret'].get('secretName') for v in vols]}")
    sm_values = values.get("serviceMonitor") or {}
    if rep.check(bool(sm_values.get("enabled")), f"{label}: ServiceMonitor for the collector's own metrics"):
        sm = service_monitor_object(values, release, OBS_NAMESPACE)
        errs = schemas.errors(sm)
        rep.check(not errs, f"{label}: schema: chart's {ident(sm)} against the CRD", "; ".join(errs[:3]))
        rep.check(sm["metadata"]["labels"].get("release") == stack_release,
                  f"{label}: collector ServiceMonitor labelled release={stack_release} (the stack's selector)")
        svc_ports = {p["name"] for p in svc["spec"]["ports"]}
        eps = sm["spec"]["endpoints"]
        rep.check(bool(eps) and all(e.get("port") in svc_ports and e.get("interval") == "30s"
                                    and e.get("honorLabels") is False for e in eps),
                  f"{label}: collector ServiceMonitor scrapes a Service port, every 30s, honorLabels false",
                  json.dumps(eps))


def check_negative_controls(rep: Report, values: dict, validator):
    """The schema really rejects typos (a check that accepts everything proves nothing)."""
    samples = {
        "image.repostory": lambda v: v["image"].update(repostory="x"),
        "ports.otlp.enbled": lambda v: v["ports"]["otlp"].update(enbled=True),
        "mode: deploy": lambda v: v.update(mode="deploy"),
    }
    for what, mutate in samples.items():
        bad = copy.deepcopy(values)
        mutate(bad)
        rep.check(any(True for _ in validator.iter_errors(bad)), f"negative control: values.schema.json rejects {what}")
    bad = copy.deepcopy(values)
    bad["config"]["service"]["pipelines"]["traces"]["processors"] = ["batch", "memory_limiter"]
    probe = Report()
    with contextlib.redirect_stdout(io.StringIO()):
        check_config(probe, "probe", bad, tls=False)
    rep.check(probe.failed > 0, "negative control: the config check rejects batch before memory_limiter")


def env_of(dep: dict) -> tuple[dict, list[str]]:
    return env_map(dep["spec"]["template"]["spec"]["containers"][0])


def strip_tls(dep: dict, ca_secret: str) -> dict:
    """A Deployment without what the overlay adds (and without the endpoint it replaces)."""
    out = copy.deepcopy(dep)
    pod = out["spec"]["template"]["spec"]
    for ctr in pod["containers"]:
        ctr["env"] = [e for e in ctr.get("env", []) if e["name"] not in TLS_ENV]
        ctr["volumeMounts"] = [m for m in ctr.get("volumeMounts", []) if m.get("name") != ca_secret]
        if not ctr["volumeMounts"]:
            del ctr["volumeMounts"]
    pod["volumes"] = [v for v in pod.get("volumes", []) if v.get("name") != ca_secret]
    if not pod["volumes"]:
        del pod["volumes"]
    return out


def check_overlay(rep: Report, schemas: SchemaSet, plain: list[dict], tls: list[dict], ca_secret: str):
    for obj in tls:
        errs = schemas.errors(obj)
        rep.check(not errs, f"schema: overlays/otlp-tls: {ident(obj)}", "; ".join(errs[:5]))
    by_plain = {ident(o): o for o in plain}
    by_tls = {ident(o): o for o in tls}
    rep.check(sorted(by_plain) == sorted(by_tls), "overlays/otlp-tls renders the same objects as the root",
              f"only root {sorted(set(by_plain) - set(by_tls))}, only overlay {sorted(set(by_tls) - set(by_plain))}")
    deployments = [o for o in tls if o.get("kind") == "Deployment"]
    rep.check(bool(deployments), "overlays/otlp-tls renders Deployments")
    for dep in deployments:
        name = dep["metadata"]["name"]
        env, order = env_of(dep)
        rep.check(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == TLS_ENDPOINT,
                  f"overlay {name}: OTEL_EXPORTER_OTLP_ENDPOINT={TLS_ENDPOINT}", f"{env.get('OTEL_EXPORTER_OTLP_ENDPOINT')!r}")
        rep.check(env.get("OTEL_EXPORTER_OTLP_CERTIFICATE") == CA_PATH,
                  f"overlay {name}: OTEL_EXPORTER_OTLP_CERTIFICATE={CA_PATH}")
        rep.check(env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc", f"overlay {name}: still OTLP gRPC")
        rep.check(len(order) == len(set(order)), f"overlay {name}: no env variable is set twice")
        pod = dep["spec"]["template"]["spec"]
        ctr = pod["containers"][0]
        mount = next((m for m in ctr.get("volumeMounts", []) if m.get("mountPath") == str(PurePosixPath(CA_PATH).parent)), None)
        vol = next((v for v in pod.get("volumes", []) if mount and v.get("name") == mount.get("name")), None)
        secret = (vol or {}).get("secret") or {}
        items = {i.get("path"): i.get("key") for i in secret.get("items") or []}
        rep.check(bool(mount) and mount.get("readOnly") is True and secret.get("secretName") == ca_secret
                  and items.get("ca.crt") == "ca.crt",
                  f"overlay {name}: {CA_PATH} is key ca.crt of the Secret {ca_secret}, mounted read-only",
                  f"mount={mount} volume={vol}")
        base = by_plain.get(ident(dep))
        rep.check(base is not None and strip_tls(dep, ca_secret) == strip_tls(base, ca_secret),
                  f"overlay {name}: nothing else differs from the root render")
    for key, obj in by_tls.items():
        if obj.get("kind") != "Deployment":
            rep.check(obj == by_plain.get(key), f"overlay: {key} is the same as in the root render")


def check_endpoint_target(rep: Report, plain: list[dict], values: dict, release: str):
    """The services' endpoint names the collector's Service and its OTLP gRPC port."""
    svc = service_object(values, release, OBS_NAMESPACE)
    for dep in (o for o in plain if o.get("kind") == "Deployment"):
        env, _ = env_of(dep)
        m = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+):(\d+)", env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "")
        port = next((p for p in svc["spec"]["ports"] if m and p["port"] == int(m.group(3))), None)
        rep.check(bool(m) and (m.group(1), m.group(2)) == (svc["metadata"]["name"], svc["metadata"]["namespace"])
                  and port is not None and port["name"] == "otlp",
                  f"{dep['metadata']['name']}: OTEL_EXPORTER_OTLP_ENDPOINT reaches the collector Service's otlp port")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--schemas", type=Path, required=True, help="dir with the Prometheus Operator CRDs")
    parser.add_argument("--plain", type=Path, required=True, help="output of `kubectl kustomize .`")
    parser.add_argument("--tls", type=Path, required=True, help="output of `kubectl kustomize overlays/otlp-tls`")
    parser.add_argument("--release", required=True, help="the kube-prometheus-stack release (ServiceMonitor label)")
    parser.add_argument("--collector-release", required=True)
    parser.add_argument("--collector-namespace", required=True)
    parser.add_argument("--chart-version", required=True, help="the collector chart version the script pins")
    parser.add_argument("--tls-secret", required=True, help="the collector's TLS Secret the script checks")
    parser.add_argument("--ca-secret", required=True, help="the services' CA Secret the script checks")
    parser.add_argument("--k8s-version", action="append", required=True)
    parser.add_argument("--write-configs", type=Path, metavar="DIR",
                        help="also write each combination's merged collector `config` to DIR/<name>.yaml "
                             "(for `otelcol validate` in scripts/check-k8s.sh)")
    args = parser.parse_args()
    root = args.root.resolve()
    rep = Report()

    rep.check(args.collector_release == COLLECTOR_RELEASE and args.collector_namespace == OBS_NAMESPACE,
              f"the deploy script installs release {COLLECTOR_RELEASE} in {OBS_NAMESPACE}",
              f"{args.collector_release} in {args.collector_namespace}")
    chart_dir = root / "deploy" / "vendor" / f"{CHART_NAME}-{args.chart_version}"
    if not rep.check((chart_dir / "values.schema.json").is_file(),
                     f"vendored chart files for the pinned version {args.chart_version}", f"no {chart_dir}"):
        return 1
    vendored = sorted(p.name for p in (root / "deploy" / "vendor").iterdir() if p.name.startswith(CHART_NAME))
    rep.check(vendored == [chart_dir.name], "one vendored collector chart version", f"{vendored}")
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    rep.check(chart.get("name") == CHART_NAME and chart.get("version") == args.chart_version,
              f"vendored Chart.yaml is {CHART_NAME} {args.chart_version}", f"{chart.get('name')} {chart.get('version')}")
    rep.check("Apache License" in (chart_dir / "LICENSE").read_text()[:200]
              and args.chart_version in (chart_dir / "README.md").read_text(),
              "vendored chart files carry their Apache-2.0 LICENSE and a README with the version")
    app_version = str(chart.get("appVersion"))

    schema = json.loads((chart_dir / "values.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    defaults = yaml.safe_load((chart_dir / "values.yaml").read_text())
    base = yaml.safe_load((root / "deploy" / "otel-collector-values.yaml").read_text())
    tls_values = yaml.safe_load((root / "deploy" / "otel-collector-tls-values.yaml").read_text())
    backend = yaml.safe_load((root / "deploy" / "otel-collector-backend-values.example.yaml").read_text())
    rep.check("mode" not in defaults or defaults["mode"] == "", "chart defaults parsed (mode unset upstream)")
    schemas = SchemaSet(args.schemas, args.k8s_version)

    combos = {
        "collector values": ([base], False),
        "collector values + TLS": ([base, tls_values], True),
        "collector values + backend example": ([base, backend], False),
        "collector values + TLS + backend example": ([base, tls_values, backend], True),
    }
    merged_plain = None
    for label, (files, tls) in combos.items():
        user = {}
        for f in files:
            user = merge_user(user, f)
        merged = coalesce(defaults, user)
        merged_plain = merged_plain or merged
        check_values(rep, label, merged, validator, schemas, args.collector_release, args.release, tls,
                     args.tls_secret, app_version)
        if args.write_configs:
            args.write_configs.mkdir(parents=True, exist_ok=True)
            name = label.replace("collector values", "values").replace(" + ", "+").replace(" ", "-")
            (args.write_configs / f"{name}.yaml").write_text(yaml.safe_dump(merged["config"], sort_keys=False))
    check_negative_controls(rep, merged_plain, validator)
    backend_exporters = (backend.get("config") or {}).get("exporters") or {}
    rep.check(bool(backend_exporters) and all(e.get("endpoint") or e.get("logs_endpoint") or e.get("traces_endpoint")
                                              for e in backend_exporters.values()),
              "backend example: every exporter names an endpoint")

    plain, tls = load_docs(args.plain), load_docs(args.tls)
    check_endpoint_target(rep, plain, merged_plain, args.collector_release)
    check_overlay(rep, schemas, plain, tls, args.ca_secret)

    print(f"# collector checks: passed={rep.passed} failed={rep.failed}")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
