#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests (run by scripts/check-k8s.sh from its venv).

1. Schemas: every object of the rendered `kubectl kustomize .` output, and of each manifest file
   on its own, validates against
   - the Prometheus Operator CRD schemas (ServiceMonitor, PrometheusRule; servicemonitors/crds),
     made strict: `additionalProperties: false` wherever the CRD lists `properties` (the API
     server would silently prune an unknown field), `metadata` checked as a strict ObjectMeta,
     `x-kubernetes-list-type` map/set uniqueness;
   - the upstream Kubernetes JSON schemas bundled by the `kubernetes-validate` package, strict
     variant, for Deployment, Service, ConfigMap and Namespace. Any other kind fails.
2. Cross-checks on the rendered set: ServiceMonitor -> Service -> Deployment wiring, namespaces,
   no Service scraped twice, Deployment settings (probes, env, peers, shutdown), dashboards.
3. Rules: names against docs/metrics-catalog.md and external-metrics.txt, alert labels and
   annotations, runbook anchors, a firing and a non-firing promtool test per alert.

Prints one `ok - ...` or `not ok - ...` line per check (the shell script counts them) and
exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import referencing
import referencing.jsonschema
import yaml
import kubernetes_validate
from kubernetes_validate import utils as kv_utils

# --- constants shared with the manifests (one place to change them) -------------------------

APP_NAMESPACE = "soma-agent"
OBS_NAMESPACE = "observability"
SERVICES = {  # Kubernetes Service name -> (binary, port)
    "orchestrator": ("orchestrator", 8000),
    "gateway-api": ("gateway", 8080),
    "policy-engine": ("policy-engine", 8001),
    "identity-service": ("identity-service", 8002),
    "slm-service": ("slm-service", 8003),
}
PEER_URLS = {
    "ORCHESTRATOR_URL": "http://orchestrator:8000",
    "POLICY_ENGINE_URL": "http://policy-engine:8001",
    "IDENTITY_SERVICE_URL": "http://identity-service:8002",
    "SLM_SERVICE_URL": "http://slm-service:8003",
}
DASHBOARDS = [
    "somaagent-overview.json",
    "kamachiq-workflows.json",
    "production-sla.json",
    "marketplace-analytics.json",
]
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
CORE_KINDS = {"Deployment", "Service", "ConfigMap", "Namespace"}
CRD_FILES = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
}
SHUTDOWN_DEADLINE_S = 10  # the services' drain + telemetry flush deadline
LAST_APPLIED_LIMIT = 262144  # bytes: annotations (kubectl.kubernetes.io/last-applied-configuration)
RUNBOOK_BASE = "https://github.com/somaagent/soma-observability/blob/main/docs/runbooks.md#"
SEVERITIES = {"critical", "warning"}
BASES = ("deploy", "servicemonitors", "dashboards")  # the root kustomization's resources


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, why: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok - {what}")
        else:
            self.failed += 1
            print(f"not ok - {what}" + (f": {why}" if why else ""))
        return ok


def load_docs(path: Path) -> list[dict]:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def ident(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('namespace', '-')}/{meta.get('name')}"


# --- 1. schemas -------------------------------------------------------------------------------


def strictify(schema):
    """Copy of an OpenAPI v3 CRD schema that rejects unknown fields, as a JSON Schema."""
    if isinstance(schema, list):
        return [strictify(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strictify(v) if k in ("items", "not") else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: strictify(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strictify(schema["additionalProperties"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            out[key] = [strictify(s) for s in schema[key]]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def list_type_errors(schema: dict, inst, path: str) -> list[str]:
    """x-kubernetes-list-type map/set: the API server rejects duplicate keys/items."""
    errors: list[str] = []
    if not isinstance(schema, dict):
        return errors
    if isinstance(inst, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen = [json.dumps(i, sort_keys=True) for i in inst]
            if len(seen) != len(set(seen)):
                errors.append(f"{path}: duplicate items in a list-type=set")
        elif list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen = [tuple(json.dumps(i.get(k)) for k in keys) for i in inst if isinstance(i, dict)]
            if len(seen) != len(set(seen)):
                errors.append(f"{path}: duplicate {keys} in a list-type=map")
        for n, item in enumerate(inst):
            errors += list_type_errors(schema.get("items", {}), item, f"{path}[{n}]")
    elif isinstance(inst, dict):
        props = schema.get("properties", {})
        for key, value in inst.items():
            if key in props:
                errors += list_type_errors(props[key], value, f"{path}.{key}")
    return errors


class SchemaSet:
    def __init__(self, schemas_dir: Path, k8s_versions: list[str]) -> None:
        self.k8s_versions = k8s_versions
        self.crds: dict[str, dict] = {}
        for kind, filename in CRD_FILES.items():
            path = schemas_dir / filename
            if not path.exists():
                continue
            crd = load_docs(path)[0]
            version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
            schema = strictify(version["schema"]["openAPIV3Schema"])
            self.crds[kind] = {
                "group": crd["spec"]["group"],
                "raw": version["schema"]["openAPIV3Schema"],
                "validator": jsonschema.Draft7Validator(schema),
                "operator_version": crd["metadata"]["annotations"].get(
                    "operator.prometheus.io/version", "?"
                ),
            }
        # Strict ObjectMeta, for the metadata of custom resources (their CRD says only "object").
        version = self.k8s_versions[0]
        schema_dir = f"kubernetes-json-schema/v{version}.0-local-strict"
        meta = kv_utils.schema_contents(f"{schema_dir}/objectmeta-meta-v1.json", version)
        defs = kv_utils.schema_contents(f"{schema_dir}/_definitions.json", version)
        registry = referencing.Registry().with_resources(
            [
                (meta["$id"], referencing.Resource.from_contents(meta)),
                (defs["$id"], referencing.Resource.from_contents(defs)),
            ]
        )
        self.object_meta = jsonschema.Draft202012Validator(meta, registry=registry)

    def errors(self, obj: dict) -> list[str]:
        kind = obj.get("kind")
        api = obj.get("apiVersion", "")
        if kind in self.crds and api == f"{self.crds[kind]['group']}/v1":
            crd = self.crds[kind]
            errs = [
                f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in crd["validator"].iter_errors(obj)
            ]
            errs += [
                f"metadata.{'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in self.object_meta.iter_errors(obj.get("metadata", {}))
            ]
            errs += list_type_errors(crd["raw"], obj, "")
            return errs
        if kind in CORE_KINDS:
            errs = []
            for version in self.k8s_versions:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    where = ".".join(map(str, err.path)) or "<root>"
                    errs.append(f"Kubernetes {version}: {where}: {err.message}")
            return errs
        return [f"no schema for apiVersion={api} kind={kind} (allowed: {sorted(CORE_KINDS)} and CRDs)"]


def check_schemas(rep: Report, schemas: SchemaSet, rendered: list[dict], files: list[Path], root: Path):
    for kind, crd in sorted(schemas.crds.items()):
        rep.check(
            crd["operator_version"].startswith("0.93"),
            f"CRD schema {kind} is Prometheus Operator v0.93",
            f"found {crd['operator_version']}",
        )
    rep.check(
        all(k in schemas.crds for k in ("ServiceMonitor", "PrometheusRule")),
        "CRD schemas for ServiceMonitor and PrometheusRule found",
    )
    for obj in rendered:
        errs = schemas.errors(obj)
        rep.check(not errs, f"schema: rendered {ident(obj)}", "; ".join(errs[:5]))
    for path in files:
        docs = load_docs(path)
        rel = path.relative_to(root)
        rep.check(bool(docs), f"{rel} holds at least one object")
        for obj in docs:
            errs = schemas.errors(obj)
            rep.check(not errs, f"schema: {rel}: {ident(obj)}", "; ".join(errs[:5]))


def check_negative_controls(rep: Report, schemas: SchemaSet, rendered: list[dict]):
    """The validators really reject typos: a check that accepts everything proves nothing."""
    samples = {
        "ServiceMonitor": lambda o: o["spec"]["endpoints"][0].update(scrapeTimout="10s"),
        "PrometheusRule": lambda o: o["spec"]["groups"][0]["rules"][0].update(recrod="x"),
        "Deployment": lambda o: o["spec"]["template"]["spec"]["containers"][0].update(
            readinesProbe={}
        ),
        "Service": lambda o: o["spec"]["ports"][0].update(targetport="http"),
        "ConfigMap": lambda o: o["metadata"].update(lables={}),
        "Namespace": lambda o: o.update(specs={}),
    }
    for kind, mutate in samples.items():
        obj = next((o for o in rendered if o.get("kind") == kind), None)
        if obj is None:
            rep.check(False, f"negative control: a {kind} to mutate", "none rendered")
            continue
        bad = copy.deepcopy(obj)
        mutate(bad)
        rep.check(bool(schemas.errors(bad)), f"negative control: a typo in a {kind} is rejected")


# --- 2. cross-checks ----------------------------------------------------------------------------


def selector_matches(selector: dict, labels: dict) -> bool:
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def monitor_selects(monitor: dict, service: dict) -> bool:
    ns_sel = monitor["spec"].get("namespaceSelector") or {}
    svc_ns = service["metadata"].get("namespace")
    if ns_sel.get("any"):
        in_ns = True
    elif ns_sel.get("matchNames"):
        in_ns = svc_ns in ns_sel["matchNames"]
    else:
        in_ns = svc_ns == monitor["metadata"].get("namespace")
    return in_ns and selector_matches(monitor["spec"].get("selector") or {}, service["metadata"].get("labels"))


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def check_monitors(rep: Report, rendered: list[dict], fixtures: list[dict], release: str):
    monitors = [o for o in rendered if o.get("kind") == "ServiceMonitor"]
    services = [o for o in rendered if o.get("kind") == "Service"]
    rep.check(len(monitors) == len(SERVICES) + 1, "one ServiceMonitor per reference service plus the catch-all",
              f"found {[m['metadata']['name'] for m in monitors]}")
    for obj in rendered:
        if obj.get("kind") in ("ServiceMonitor", "PrometheusRule"):
            labels = obj["metadata"].get("labels") or {}
            rep.check(labels.get("release") == release,
                      f"{ident(obj)} has label release={release} (kube-prometheus-stack's selector)",
                      f"release={labels.get('release')!r}")
            rep.check(obj["metadata"].get("namespace") == OBS_NAMESPACE, f"{ident(obj)} is in {OBS_NAMESPACE}")
    for mon in monitors:
        name = mon["metadata"]["name"]
        spec = mon["spec"]
        rep.check(spec.get("namespaceSelector") == {"matchNames": [APP_NAMESPACE]},
                  f"ServiceMonitor {name} looks in namespace {APP_NAMESPACE}",
                  f"namespaceSelector={spec.get('namespaceSelector')}")
        rep.check(not spec.get("jobLabel"), f"ServiceMonitor {name}: job label is the Service name (no jobLabel)")
        for ep in spec.get("endpoints", []):
            rep.check(ep.get("port") == "http" and ep.get("path") == "/metrics",
                      f"ServiceMonitor {name} scrapes the named port http at /metrics", json.dumps(ep))
            try:
                interval, timeout = parse_duration(ep.get("interval", "")), parse_duration(ep.get("scrapeTimeout", ""))
                rep.check(interval == 30 and 0 < timeout <= interval,
                          f"ServiceMonitor {name}: interval 30s, 0 < scrapeTimeout <= interval",
                          f"interval={ep.get('interval')} scrapeTimeout={ep.get('scrapeTimeout')}")
            except ValueError as err:
                rep.check(False, f"ServiceMonitor {name}: interval and scrapeTimeout parse", str(err))
            rep.check(ep.get("honorLabels") is False, f"ServiceMonitor {name}: honorLabels is false")
            rep.check(not ep.get("relabelings") and not ep.get("metricRelabelings"),
                      f"ServiceMonitor {name}: no relabelings that could rewrite target labels")
        selected = [s for s in services if monitor_selects(mon, s)]
        selected_fixtures = [s for s in fixtures if monitor_selects(mon, s)]
        rep.check(bool(selected or selected_fixtures),
                  f"ServiceMonitor {name} selects at least one Service",
                  "selects no rendered Service and no fixture Service")
        for svc in selected + selected_fixtures:
            port_names = {p.get("name") for p in svc["spec"].get("ports", [])}
            for ep in spec.get("endpoints", []):
                rep.check(ep.get("port") in port_names,
                          f"ServiceMonitor {name} -> Service {svc['metadata']['name']} has port {ep.get('port')!r}",
                          f"ports {sorted(port_names)}")
        if name == "all-somaagent-services":
            rep.check(not selected,
                      "catch-all selects none of the Services that have a dedicated monitor",
                      f"selects {[s['metadata']['name'] for s in selected]}")
            rep.check(bool(selected_fixtures),
                      "catch-all selects a new Service labelled monitoring=enabled (fixture)")
    # Every Service is scraped exactly once (no double scrape through the catch-all).
    for svc in services + fixtures:
        by = [m["metadata"]["name"] for m in monitors if monitor_selects(m, svc)]
        rep.check(len(by) == 1, f"Service {svc['metadata']['name']} is selected by exactly one ServiceMonitor",
                  f"selected by {by}")


def env_map(container: dict) -> tuple[dict, list[str]]:
    values, order = {}, []
    for var in container.get("env", []):
        values[var["name"]] = var.get("value", var.get("valueFrom"))
        order.append(var["name"])
    return values, order


def check_workloads(rep: Report, rendered: list[dict]):
    deployments = {o["metadata"]["name"]: o for o in rendered if o.get("kind") == "Deployment"}
    services = {o["metadata"]["name"]: o for o in rendered if o.get("kind") == "Service"}
    namespaces = {o["metadata"]["name"] for o in rendered if o.get("kind") == "Namespace"}
    rep.check(APP_NAMESPACE in namespaces, f"Namespace {APP_NAMESPACE} is rendered")
    rep.check(OBS_NAMESPACE not in namespaces,
              f"Namespace {OBS_NAMESPACE} is not rendered (owned by the Helm release)")
    rep.check(set(deployments) == set(SERVICES), "a Deployment per reference service", f"{sorted(deployments)}")
    rep.check(set(services) == set(SERVICES), "a Service per reference service", f"{sorted(services)}")
    for name, (binary, port) in SERVICES.items():
        dep, svc = deployments.get(name), services.get(name)
        if dep is None or svc is None:
            continue
        rep.check(dep["metadata"].get("namespace") == APP_NAMESPACE == svc["metadata"].get("namespace"),
                  f"{name}: Deployment and Service in {APP_NAMESPACE}")
        pod = dep["spec"]["template"]
        pod_labels = pod["metadata"].get("labels", {})
        rep.check(selector_matches(dep["spec"]["selector"], pod_labels),
                  f"{name}: Deployment selector matches its pod template")
        rep.check(selector_matches({"matchLabels": svc["spec"].get("selector", {})}, pod_labels)
                  and bool(svc["spec"].get("selector")),
                  f"{name}: Service selector matches the Deployment's pods")
        others = [d for n, d in deployments.items() if n != name and
                  selector_matches({"matchLabels": svc["spec"].get("selector", {})},
                                   d["spec"]["template"]["metadata"].get("labels", {}))]
        rep.check(not others, f"{name}: Service selects no other Deployment's pods")
        containers = pod["spec"]["containers"]
        rep.check(len(containers) == 1, f"{name}: one container")
        ctr = containers[0]
        rep.check(ctr["name"] == binary and ctr["image"] == f"somaagent/{binary}:latest",
                  f"{name}: container {binary}, placeholder image somaagent/{binary}:latest",
                  f"{ctr['name']} {ctr['image']}")
        ctr_ports = {p.get("name"): p.get("containerPort") for p in ctr.get("ports", [])}
        rep.check(ctr_ports.get("http") == port, f"{name}: container port http = {port}", f"{ctr_ports}")
        svc_ports = {p.get("name"): p for p in svc["spec"].get("ports", [])}
        http = svc_ports.get("http", {})
        rep.check(http.get("port") == port and http.get("targetPort") in ("http", port),
                  f"{name}: Service port http {port} -> container port http", json.dumps(http))
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (ctr.get(probe) or {}).get("httpGet") or {}
            rep.check(get.get("path") == path and get.get("port") == "http",
                      f"{name}: {probe} GET {path} on port http", json.dumps(get))
        res = ctr.get("resources") or {}
        rep.check(all(k in res.get("requests", {}) for k in ("cpu", "memory"))
                  and "memory" in res.get("limits", {}),
                  f"{name}: cpu/memory requests and a memory limit", json.dumps(res))
        # Graceful shutdown: preStop sleep + drain/flush deadline must fit in the grace period.
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        pre = ((ctr.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
        rep.check(pre > 0 and pre + SHUTDOWN_DEADLINE_S < grace,
                  f"{name}: preStop sleep {pre}s + {SHUTDOWN_DEADLINE_S}s shutdown deadline < grace {grace}s")
        env, order = env_map(ctr)
        rep.check(env.get("OTEL_SERVICE_NAME") == binary, f"{name}: OTEL_SERVICE_NAME={binary}")
        rep.check(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://otel-collector.observability:4317"
                  and env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc",
                  f"{name}: OTLP gRPC to otel-collector.observability:4317")
        rep.check(env.get("LISTEN_ADDR") == f"0.0.0.0:{port}", f"{name}: LISTEN_ADDR=0.0.0.0:{port}")
        # /metrics must stay on the port the ServiceMonitors scrape (`http`).
        rep.check("SOMA_METRICS_ADDR" not in env, f"{name}: /metrics served on port http (no SOMA_METRICS_ADDR)")
        for var, url in PEER_URLS.items():
            rep.check(env.get(var) == url, f"{name}: {var}={url}", f"{env.get(var)!r}")
        field_refs = {k: v["fieldRef"]["fieldPath"] for k, v in env.items()
                      if isinstance(v, dict) and "fieldRef" in v}
        attrs = env.get("OTEL_RESOURCE_ATTRIBUTES") or ""
        pairs = dict(p.split("=", 1) for p in attrs.split(",") if "=" in p)
        pod_ref = pairs.get("k8s.pod.name", "")
        ns_ref = pairs.get("k8s.namespace.name", "")
        rep.check(field_refs.get(pod_ref[2:-1]) == "metadata.name"
                  and field_refs.get(ns_ref[2:-1]) == "metadata.namespace",
                  f"{name}: OTEL_RESOURCE_ATTRIBUTES k8s.pod.name/k8s.namespace.name from the downward API",
                  attrs)
        sanitized = {re.sub(r"[^a-zA-Z0-9_]", "_", k) for k in pairs}
        rep.check(not sanitized & TARGET_LABELS,
                  f"{name}: resource attributes do not collide with Prometheus target labels",
                  f"{sorted(sanitized & TARGET_LABELS)}")
        # Kubernetes expands $(VAR) only for variables defined earlier in the list.
        bad_refs = []
        for i, var in enumerate(order):
            value = env[var] if isinstance(env[var], str) else ""
            bad_refs += [r for r in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value) if r not in order[:i]]
        rep.check(not bad_refs, f"{name}: every $(VAR) in env refers to an earlier variable", f"{bad_refs}")
        # Peers resolve to rendered Services with that port.
        for var in PEER_URLS:
            m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", env.get(var) or "")
            peer = services.get(m.group(1)) if m else None
            ok = bool(peer) and any(p.get("port") == int(m.group(2)) for p in peer["spec"].get("ports", []))
            rep.check(ok, f"{name}: {var} resolves to a rendered Service and port")


def check_dashboards(rep: Report, rendered: list[dict], root: Path):
    maps = {o["metadata"]["name"]: o for o in rendered if o.get("kind") == "ConfigMap"}
    for file in DASHBOARDS:
        cm_name = "grafana-dashboard-" + file.removesuffix(".json")
        cm = maps.get(cm_name)
        if not rep.check(cm is not None, f"dashboard ConfigMap {cm_name} is rendered (no hash suffix)"):
            continue
        rep.check(cm["metadata"].get("namespace") == OBS_NAMESPACE, f"{cm_name} is in {OBS_NAMESPACE}")
        rep.check((cm["metadata"].get("labels") or {}).get("grafana_dashboard") == "1",
                  f'{cm_name} is labelled grafana_dashboard: "1"')
        data = cm.get("data") or {}
        rep.check(list(data) == [file], f"{cm_name} holds {file}", f"{list(data)}")
        try:
            dash = json.loads(data.get(file, ""))
            rep.check(isinstance(dash, dict), f"{cm_name}: {file} is a JSON object")
        except json.JSONDecodeError as err:
            rep.check(False, f"{cm_name}: {file} is JSON", str(err))
        on_disk = (root / "dashboards" / file).read_text() if (root / "dashboards" / file).exists() else None
        rep.check(data.get(file) == on_disk, f"{cm_name} carries dashboards/{file} unchanged")
    for obj in rendered:
        size = len(json.dumps(obj))
        rep.check(size < LAST_APPLIED_LIMIT, f"{ident(obj)} fits kubectl apply's last-applied annotation",
                  f"{size} bytes")


# --- 3. rules -----------------------------------------------------------------------------------

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                   "group_left", "group_right", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric and recording-rule names used in a PromQL expression (a small tokenizer)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"' + r"|'(?:\\.|[^'\\])*'", '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![A-Za-z0-9_:.])\d+(\.\d+)?([eE][+-]?\d+)?((ms|[smhdwy])\b)?", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        tail = text[match.end():].lstrip()
        if tail.startswith("("):
            continue  # a function or an aggregation
        if match.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def catalog_tables(path: Path) -> list[tuple[list[str], list[list[str]]]]:
    tables, header, rows = [], None, []
    for line in path.read_text().splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif header is not None:
            tables.append((header, rows))
            header, rows = None, []
    return tables


def expand(name: str) -> list[str]:
    m = re.fullmatch(r"([^{}]*)\{([^}]*)\}([^{}]*)", name)
    if not m:
        return [name]
    return [m.group(1) + part.strip() + m.group(3) for part in m.group(2).split(",")]


def catalog_names(path: Path) -> tuple[set[str], list[str], dict[str, str]]:
    """(metric names our services emit, recording-rule names, external name -> exporter)."""
    metrics, records, external = set(), [], {}
    for header, rows in catalog_tables(path):
        for row in rows:
            cells = dict(zip(header, row))
            if "Prometheus name" in cells:
                for tick in re.findall(r"`([^`]+)`", cells["Prometheus name"]):
                    metrics.update(expand(tick))
            elif "record" in cells:
                for tick in re.findall(r"`([^`]+)`", cells["record"]):
                    records += expand(tick)
            elif "exporter" in cells and "names" in cells:
                for tick in re.findall(r"`([^`]+)`", cells["names"]):
                    external[tick] = cells["exporter"]
    return metrics, records, external


def github_anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def check_rules(rep: Report, root: Path, rule_obj: dict):
    catalog = root / "docs" / "metrics-catalog.md"
    emitted, catalog_records, external_catalog = catalog_names(catalog)
    rep.check(bool(emitted) and bool(catalog_records) and bool(external_catalog),
              "docs/metrics-catalog.md parsed (metrics, recording rules, external exporters)")
    emitted_labels = set()
    for header, rows in catalog_tables(catalog):
        if "labels" in header and ("Prometheus name" in header):
            for row in rows:
                emitted_labels.update(re.findall(r"`([a-z_]+)`", dict(zip(header, row))["labels"]))
    rep.check(not emitted_labels & TARGET_LABELS,
              "no label in the catalog's metric tables collides with a Prometheus target label",
              f"{sorted(emitted_labels & TARGET_LABELS)}")

    ext_file = root / "servicemonitors" / "external-metrics.txt"
    external = {}
    for line in ext_file.read_text().splitlines():
        parts = line.split()
        if rep.check(len(parts) == 2, f"external-metrics.txt line {line!r} is `metric_name exporter`"):
            external[parts[0]] = parts[1]
    for name, exporter in external.items():
        expected = "prometheus" if name == "up" else external_catalog.get(name)
        rep.check(exporter == expected, f"external-metrics.txt: {name} comes from {expected} per the catalog",
                  f"listed as {exporter}")

    rules = [r for g in rule_obj["spec"]["groups"] for r in g["rules"]]
    records = [r["record"] for r in rules if "record" in r]
    alerts = [r for r in rules if "alert" in r]
    for name in catalog_records:
        rep.check(name in records, f"catalog recording rule {name} is defined")
    for name in records:
        rep.check(name in catalog_records, f"recording rule {name} is listed in the catalog")
    rep.check(len(records) == len(set(records)), "recording rule names are unique")
    used_external = set()
    for rule in rules:
        what = rule.get("record") or rule.get("alert")
        names = promql_metric_names(str(rule["expr"]))
        unknown = {n for n in names if n not in emitted and n not in records and n not in external}
        rep.check(bool(names) and not unknown, f"{what}: uses only catalog, recorded or external names",
                  f"unknown {sorted(unknown)}")
        used_external |= names & set(external)
    rep.check(used_external == set(external), "external-metrics.txt lists exactly the external names the rules use",
              f"used {sorted(used_external)}, listed {sorted(external)}")

    runbooks = root / "docs" / "runbooks.md"
    anchors = {github_anchor(m) for m in re.findall(r"^#{2,3} (.+)$", runbooks.read_text(), re.M)}
    names = [a["alert"] for a in alerts]
    rep.check(len(names) == len(set(names)), "alert names are unique")
    for alert in alerts:
        name = alert["alert"]
        labels, ann = alert.get("labels") or {}, alert.get("annotations") or {}
        rep.check(labels.get("severity") in SEVERITIES, f"{name}: severity is one of {sorted(SEVERITIES)}",
                  f"{labels.get('severity')!r}")
        rep.check(not set(labels) & (TARGET_LABELS - {"namespace"}),
                  f"{name}: rule labels do not override target labels")
        rep.check(all(ann.get(k) for k in ("summary", "description", "runbook_url")),
                  f"{name}: summary, description and runbook_url annotations")
        url = ann.get("runbook_url", "")
        rep.check(url == RUNBOOK_BASE + name.lower() and name.lower() in anchors,
                  f"{name}: runbook_url points at an existing section of docs/runbooks.md", url)
    return [a["alert"] for a in alerts]


def check_rule_tests(rep: Report, tests_dir: Path, alert_names: list[str]):
    firing, quiet = set(), set()
    for path in sorted(tests_dir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        rep.check(doc.get("rule_files") == ["prometheus-rules.rules.yaml"],
                  f"{path.name} loads the extracted rules file")
        for group in doc.get("tests", []):
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    for name in alert_names:
        rep.check(name in firing, f"{name}: a promtool test where it fires")
        rep.check(name in quiet, f"{name}: a promtool test where it must not fire")


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="repository root")
    parser.add_argument("--schemas", type=Path, required=True, help="dir with the Prometheus Operator CRDs")
    parser.add_argument("--rendered", type=Path, required=True, help="output of `kubectl kustomize .`")
    parser.add_argument("--release", required=True, help="Helm release name the labels must carry")
    parser.add_argument("--k8s-version", action="append", required=True,
                        help="Kubernetes schema version(s) to validate against, e.g. 1.30")
    args = parser.parse_args()
    root = args.root.resolve()
    rep = Report()

    rendered = load_docs(args.rendered)
    # The root kustomization renders three bases; each lists the manifests of its folder.
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    rep.check(kustomization.get("resources") == list(BASES),
              f"kustomization.yaml renders the bases {', '.join(BASES)}", f"{kustomization.get('resources')}")
    files = []
    for base in ("deploy", "servicemonitors"):
        listed = yaml.safe_load((root / base / "kustomization.yaml").read_text()).get("resources", [])
        # Not Kubernetes objects: the kustomization itself and the Helm values files.
        on_disk = [f for f in sorted((root / base).glob("*.yaml"))
                   if f.name != "kustomization.yaml" and "values" not in f.name]
        files += on_disk
        for f in on_disk:
            rep.check(f.name in listed, f"{f.relative_to(root)} is listed in {base}/kustomization.yaml")
        for res in listed:
            rep.check((root / base / res).is_file(), f"{base}/kustomization.yaml resource {res} exists")
    dash = yaml.safe_load((root / "dashboards" / "kustomization.yaml").read_text())
    generated = [f for g in dash.get("configMapGenerator", []) for f in g.get("files", [])]
    rep.check(sorted(generated) == sorted(DASHBOARDS),
              "dashboards/kustomization.yaml generates exactly the four dashboards", f"{generated}")

    schemas = SchemaSet(args.schemas, args.k8s_version)
    check_schemas(rep, schemas, rendered, files, root)
    check_negative_controls(rep, schemas, rendered)

    fixtures = [d for f in sorted((root / "servicemonitors" / "tests" / "fixtures").glob("*.yaml"))
                for d in load_docs(f)]
    for obj in fixtures:
        errs = schemas.errors(obj)
        rep.check(not errs, f"schema: fixture {ident(obj)}", "; ".join(errs[:5]))
    check_monitors(rep, rendered, fixtures, args.release)
    check_workloads(rep, rendered)
    check_dashboards(rep, rendered, root)

    rule_objs = [o for o in rendered if o.get("kind") == "PrometheusRule"]
    if rep.check(len(rule_objs) == 1, "one PrometheusRule is rendered"):
        alerts = check_rules(rep, root, rule_objs[0])
        check_rule_tests(rep, root / "servicemonitors" / "tests", alerts)

    print(f"# manifest checks: passed={rep.passed} failed={rep.failed}")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
