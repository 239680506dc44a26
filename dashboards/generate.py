#!/usr/bin/env python3
"""Generate the four SomaAgent Grafana dashboards and panels-index.json.

Run from anywhere (Python 3.8+, standard library only):

    python3 dashboards/generate.py           # (re)write the JSON files next to this script
    python3 dashboards/generate.py --check   # exit 1 if a committed file differs from the output

The output is byte-stable: the same generator always writes the same bytes, so `--check` in CI
catches hand edits of the JSON and a generator change whose JSON was not committed.

Metric names come from docs/metrics-catalog.md only (plus Prometheus' own `up`);
dashboards/check.py verifies that, the panel structure and the PromQL syntax.
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------
# Constants shared by the dashboards
# --------------------------------------------------------------------------------------------

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
TAG = "somaagent"

# Selectors. `$namespace` and `$job` are multi-value variables whose "All" is `.*`.
NS = 'namespace=~"$namespace"'
NS_JOB = 'namespace=~"$namespace", job=~"$job"'

# Alert thresholds drawn on the panels (keep them equal to servicemonitors/prometheus-rules.yaml).
HTTP_P95_ALERT_S = 0.5  # SomaAgent Overview: P95 latency above 500 ms
DECOMPOSITION_P95_ALERT_S = 30  # KAMACHIQ: decomposition P95 above 30 s
SEARCH_P95_ALERT_S = 1  # Marketplace: search P95 above 1 s
SLO_TARGET = 0.999  # Production SLA: 99.9 % availability over 30 days
ERROR_BUDGET = 0.001  # 1 - SLO_TARGET, written out so PromQL shows a plain number
BURN_RATE_ALERTS = {"1h": 14.4, "6h": 6, "3d": 1}  # multi-window burn-rate alert factors
LATENCY_SLO_TARGET = 0.95  # share of requests under 500 ms (the P95 alert, seen as an SLO)
POD_RESTARTS_ALERT = 2  # restarts of one container within 30 minutes
CONSUMER_LAG_ALERT = 1000  # messages behind, per consumer group and topic
GENAI_TTFT_P95_ALERT_S = 1  # GenAI: time to first token P95 above 1 s, per job and model
RUNTIME_SATURATION_ALERT = 0.9  # tokio workers busy more than 90 % of the time, for 15 minutes

HTTP_DURATION = "http_server_request_duration_seconds"
HTTP_COUNT = HTTP_DURATION + "_count"
HTTP_BUCKET = HTTP_DURATION + "_bucket"
FIVE_XX = 'http_response_status_code=~"5.."'

# --------------------------------------------------------------------------------------------
# Small builders
# --------------------------------------------------------------------------------------------


def sel(metric, *matchers):
    """`metric{m1, m2}`."""
    return "%s{%s}" % (metric, ", ".join(m for m in matchers if m))


def rate(metric, *matchers, window=RI, fn="rate"):
    return "%s(%s[%s])" % (fn, sel(metric, *matchers), window)


def quantile(q, bucket_metric, by, *matchers, window=RI):
    """histogram_quantile over a bucket rate, aggregated by `by` (a list of labels) plus `le`."""
    labels = ", ".join(list(by) + ["le"])
    return "histogram_quantile(%s, sum by (%s) (%s))" % (
        q,
        labels,
        rate(bucket_metric, *matchers, window=window),
    )


def percentiles(bucket_metric, *matchers, by=(), qs=(0.95, 0.5), legend=""):
    """The (expr, legend) pairs of the quantiles `qs` of one histogram: "P95 <legend>", ..."""
    return [
        (quantile(q, bucket_metric, list(by), *matchers), ("P%g %s" % (q * 100, legend)).rstrip())
        for q in qs
    ]


def latency_panel(title, description, bucket_metric, *matchers, by=(), qs=(0.95, 0.5), legend="",
                  thresholds=None, custom=None, min_zero=True, w=12):
    """A timeseries of the quantiles `qs` of one seconds histogram (its exemplars shown)."""
    return panel(
        "timeseries", title, description,
        targets(*percentiles(bucket_metric, *matchers, by=by, qs=qs, legend=legend)),
        "s", thresholds or steps("green"), custom=custom,
        extra_defaults={"min": 0} if min_zero else None, w=w,
    )


def process_panel(title, description, expr, unit, thresholds=None, *, custom=None):
    """A timeseries of one series per service process (`{{job}} {{instance}}`), from 0, a third
    of a row wide."""
    return panel(
        "timeseries", title, description, targets((expr, "{{job}} {{instance}}")),
        unit, thresholds or steps("green"), custom=custom, extra_defaults={"min": 0}, w=8,
    )


def steps(base, *pairs):
    """Absolute thresholds: a base colour, then (value, colour) pairs."""
    out = [{"color": base, "value": None}]
    out.extend({"color": color, "value": value} for value, color in pairs)
    return {"mode": "absolute", "steps": out}


def target(expr, legend="", ref="A", instant=False):
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if not instant and "_seconds_bucket" in expr:
        # Latency panels show the exemplars of the histogram they read: dots that open the
        # trace of a request in that bucket (Prometheus with exemplar storage, OpenMetrics).
        t["exemplar"] = True
    return t


def targets(*pairs, instant=False):
    """targets(("expr", "legend"), ...) with refIds A, B, C..."""
    return [
        target(expr, legend, chr(ord("A") + i), instant=instant)
        for i, (expr, legend) in enumerate(pairs)
    ]


def panel(kind, title, description, tgts, unit, thresholds, *, external=None, extra_defaults=None,
          custom=None, options=None, w=12, h=8):
    defaults = {"unit": unit, "thresholds": thresholds, "mappings": []}
    if kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "lineInterpolation": "linear",
            "lineWidth": 1,
            "fillOpacity": 10,
            "gradientMode": "none",
            "showPoints": "never",
            "pointSize": 4,
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "none"},
            "axisPlacement": "auto",
            "axisLabel": "",
            "thresholdsStyle": {"mode": "off"},
        }
        if custom:
            defaults["custom"].update(custom)
        opts = {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        opts = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
            "wideLayout": True,
            "showPercentChange": False,
        }
    elif kind == "bargauge":
        defaults["color"] = {"mode": "thresholds"}
        defaults["min"] = 0
        opts = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "valueMode": "color",
            "namePlacement": "auto",
            "sizing": "auto",
            "minVizHeight": 16,
            "minVizWidth": 8,
            "maxVizHeight": 300,
        }
    else:
        raise ValueError("unknown panel type " + kind)
    if extra_defaults:
        defaults.update(extra_defaults)
    if options:
        opts.update(options)
    return {
        "_w": w,
        "_h": h,
        "_external": external,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": opts,
        "targets": tgts,
    }


def alert_line(value, colour="red", below="green", style="line"):
    """Thresholds + custom settings for a timeseries panel that draws its alert threshold."""
    return steps(below, (value, colour)), {"thresholdsStyle": {"mode": style}}


def layout(rows):
    """Place panels row by row (each row fills at most 24 columns) and number them from 1."""
    panels, y, next_id = [], 0, 1
    for row in rows:
        x, height = 0, 0
        for p in row:
            w, h = p.pop("_w"), p.pop("_h")
            if x + w > 24:
                raise ValueError("row wider than 24 columns at panel %r" % p["title"])
            placed = {"id": next_id, "gridPos": {"h": h, "w": w, "x": x, "y": y}}
            placed.update(p)
            panels.append(placed)
            next_id += 1
            x += w
            height = max(height, h)
        y += height
    return panels


def variables(with_job):
    out = [
        {
            "current": {},
            "hide": 0,
            "includeAll": False,
            "label": "Data source",
            "multi": False,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
            "type": "datasource",
        },
        query_variable("namespace", "Namespace", "label_values(up, namespace)"),
    ]
    if with_job:
        out.append(
            query_variable("job", "Service", 'label_values(up{namespace=~"$namespace"}, job)')
        )
    return out


def query_variable(name, label, query):
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DS,
        "definition": query,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": query,
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


def dashboard(uid, title, description, rows, *, with_job, extra_tags, time_from="now-6h"):
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": [TAG],
                "targetBlank": False,
                "title": "SomaAgent dashboards",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }
        ],
        "panels": layout(rows),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": [TAG] + list(extra_tags),
        "templating": {"list": variables(with_job)},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --------------------------------------------------------------------------------------------
# SomaAgent Overview
# --------------------------------------------------------------------------------------------


def overview():
    req = "sum by (job) (%s)" % rate(HTTP_COUNT, NS_JOB)
    err = "sum by (job) (%s)" % rate(HTTP_COUNT, NS_JOB, FIVE_XX)
    err_ratio = "(%s or (%s * 0)) / %s" % (err, req, req)

    def lat(q):
        return quantile(q, HTTP_BUCKET, ["job"], NS_JOB)

    p95_thr, p95_custom = alert_line(HTTP_P95_ALERT_S)
    up_mappings = [
        {
            "type": "value",
            "options": {
                "0": {"color": "red", "index": 0, "text": "DOWN"},
                "1": {"color": "green", "index": 1, "text": "UP"},
            },
        }
    ]
    rows = [
        [
            panel(
                "stat", "Service up/down",
                "Prometheus' `up` for every scraped target of the selected services: UP when the "
                "last scrape of /metrics succeeded, DOWN when it failed.",
                targets(("up{%s}" % NS_JOB, "{{job}} {{instance}}")),
                "none", steps("red", (1, "green")),
                extra_defaults={"mappings": up_mappings, "min": 0, "max": 1},
                options={"graphMode": "none", "colorMode": "background"},
                w=24, h=4,
            )
        ],
        [
            panel(
                "timeseries", "Request rate by service",
                "HTTP requests per second served by each service "
                "(`http_server_request_duration_seconds_count`), /metrics scrapes excluded.",
                targets((req, "{{job}}")),
                "reqps", steps("green"),
            ),
            panel(
                "timeseries", "Error ratio (5xx) by service",
                "Share of requests answered with a 5xx status. Services without any 5xx show 0. "
                "The dashed line is the 0.1 % error budget of the 99.9 % SLO.",
                targets((err_ratio, "{{job}}")),
                "percentunit", steps("green", (ERROR_BUDGET, "red")),
                custom={"thresholdsStyle": {"mode": "dashed"}},
                extra_defaults={"min": 0},
            ),
        ],
        [
            panel(
                "timeseries", "Latency P50 by service",
                "Median server-side request duration per service, from the "
                "`http_server_request_duration_seconds` histogram.",
                targets((lat(0.5), "{{job}}")),
                "s", steps("green"), w=8,
            ),
            panel(
                "timeseries", "Latency P95 by service (alert > 500 ms)",
                "95th percentile of the server-side request duration per service. Alert: P95 "
                "above 500 ms (the red line).",
                targets((lat(0.95), "{{job}}")),
                "s", p95_thr, custom=p95_custom, w=8,
            ),
            panel(
                "timeseries", "Latency P99 by service",
                "99th percentile of the server-side request duration per service.",
                targets((lat(0.99), "{{job}}")),
                "s", steps("green", (1, "red")), w=8,
            ),
        ],
        [
            panel(
                "timeseries", "In-flight requests",
                "Requests being served right now (`http_server_active_requests`), per service.",
                targets(("sum by (job) (%s)" % sel("http_server_active_requests", NS_JOB),
                         "{{job}}")),
                "short", steps("green"), w=8,
            ),
            panel(
                "timeseries", "Responses by status code",
                "Responses per second by service and HTTP status code.",
                targets(("sum by (job, http_response_status_code) (%s)" % rate(HTTP_COUNT, NS_JOB),
                         "{{job}} {{http_response_status_code}}")),
                "reqps", steps("green"), w=16,
            ),
        ],
        [
            panel(
                "bargauge", "Top routes by traffic",
                "The 10 busiest routes (axum route templates, `http_route`) right now, in "
                "requests per second. Requests that matched no route have no `http_route`.",
                targets(("topk(10, sum by (job, http_route) (%s))" % rate(HTTP_COUNT, NS_JOB),
                         "{{job}} {{http_route}}"), instant=True),
                "reqps", steps("green"), h=9,
            ),
            panel(
                "bargauge", "Top routes by P95 latency",
                "The 10 routes with the highest 95th percentile duration right now. Red above "
                "the 500 ms alert threshold.",
                targets(("topk(10, %s)" % quantile(0.95, HTTP_BUCKET, ["job", "http_route"], NS_JOB),
                         "{{job}} {{http_route}}"), instant=True),
                "s", steps("green", (HTTP_P95_ALERT_S, "red")), h=9,
            ),
        ],
        [
            process_panel(
                "Process CPU",
                "CPU time used per second by each service process "
                "(`rate(process_cpu_seconds_total)`); 100 % is one full core.",
                "sum by (job, instance) (%s)" % rate("process_cpu_seconds_total", NS_JOB),
                "percentunit",
            ),
            process_panel(
                "Process memory (RSS)",
                "Resident memory of each service process (`process_resident_memory_bytes`).",
                "sum by (job, instance) (%s)" % sel("process_resident_memory_bytes", NS_JOB),
                "bytes",
            ),
            process_panel(
                "Open file descriptors (share of limit)",
                "`process_open_fds / process_max_fds` per process; close to 100 % the process "
                "cannot accept connections.",
                "max by (job, instance) (%s / %s)" % (
                    sel("process_open_fds", NS_JOB), sel("process_max_fds", NS_JOB)),
                "percentunit", steps("green", (0.8, "red")),
                custom={"thresholdsStyle": {"mode": "dashed"}},
            ),
        ],
        [
            process_panel(
                "Tokio worker utilisation (alert > 90 %)",
                "Share of time the tokio runtime's worker threads are busy, averaged over the "
                "workers of each process: `rate(tokio_runtime_worker_busy_seconds_total)` / "
                "`tokio_runtime_workers`. Close to 100 % every worker is always busy and new work "
                "waits (the red line is the SomaTokioRuntimeSaturated alert).",
                "sum by (job, instance) (%s) / sum by (job, instance) (%s)" % (
                    rate("tokio_runtime_worker_busy_seconds_total", NS_JOB),
                    sel("tokio_runtime_workers", NS_JOB)),
                "percentunit", steps("green", (RUNTIME_SATURATION_ALERT, "red")),
                custom={"thresholdsStyle": {"mode": "dashed"}},
            ),
            process_panel(
                "Tokio global queue depth",
                "Tasks waiting in the tokio runtime's global queue for a free worker "
                "(`tokio_runtime_global_queue_depth`). Staying above 0 means the workers cannot "
                "keep up.",
                "max by (job, instance) (%s)" % sel("tokio_runtime_global_queue_depth", NS_JOB),
                "short",
            ),
            process_panel(
                "Tokio alive tasks",
                "Tasks alive in each process's tokio runtime (`tokio_runtime_alive_tasks`): "
                "in-flight requests, connections and background tasks. Steady growth is a task "
                "leak.",
                "sum by (job, instance) (%s)" % sel("tokio_runtime_alive_tasks", NS_JOB),
                "short",
            ),
        ],
        [
            latency_panel(
                "Time to first token P50 / P95 by model (alert > 1 s)",
                "GenAI: time from the request to the first token frame leaving the service "
                "(`gen_ai_server_time_to_first_token_seconds`), per service and model: "
                "slm-service generates, the gateway shows what its clients wait, relay included. "
                "Alert SomaGenAITimeToFirstTokenP95High: P95 above 1 s (the red line).",
                "gen_ai_server_time_to_first_token_seconds_bucket", NS_JOB,
                by=["job", "gen_ai_request_model"], qs=(0.5, 0.95),
                legend="{{job}} {{gen_ai_request_model}}",
                thresholds=alert_line(GENAI_TTFT_P95_ALERT_S)[0],
                custom=alert_line(GENAI_TTFT_P95_ALERT_S)[1], min_zero=False, w=8,
            ),
            panel(
                "timeseries", "Output tokens per second by model",
                "GenAI: tokens generated per second, from the output token usage "
                "(`gen_ai_client_token_usage_sum{gen_ai_token_type=\"output\"}`).",
                targets(("sum by (job, gen_ai_request_model) (%s)" % rate(
                    "gen_ai_client_token_usage_sum", NS_JOB, 'gen_ai_token_type="output"'),
                    "{{job}} {{gen_ai_request_model}}")),
                "short", steps("green"), extra_defaults={"min": 0}, w=8,
            ),
            panel(
                "timeseries", "Token usage by type",
                "GenAI: input (prompt) and output tokens per second per service "
                "(`gen_ai_client_token_usage_sum` by `gen_ai_token_type`).",
                targets(("sum by (job, gen_ai_token_type) (%s)" % rate(
                    "gen_ai_client_token_usage_sum", NS_JOB),
                    "{{job}} {{gen_ai_token_type}}")),
                "short", steps("green"), extra_defaults={"min": 0}, w=8,
            ),
        ],
        [
            panel(
                "timeseries", "Span export failures and drops",
                "Spans per second that the OTLP exporter failed to deliver "
                "(`otel_sdk_exporter_span_exported_total{error_type=\"export_failed\"}`) or "
                "that were dropped because the export queue was full "
                "(`otel_sdk_span_dropped_total`). Should stay at 0.",
                targets(
                    ("sum by (job) (%s) or (%s * 0)" % (
                        rate("otel_sdk_exporter_span_exported_total", NS_JOB,
                             'error_type="export_failed"'), req),
                     "{{job}} export failed"),
                    ("sum by (job) (%s) or (%s * 0)" % (
                        rate("otel_sdk_span_dropped_total", NS_JOB), req),
                     "{{job}} dropped"),
                ),
                "short", steps("green", (0.001, "red")),
                custom={"thresholdsStyle": {"mode": "dashed"}}, extra_defaults={"min": 0},
            ),
            panel(
                "timeseries", "Identity tokens issued and verified",
                "identity-service: tokens issued per second (`identity_tokens_issued_total`) and "
                "verifications per second by result (`identity_token_verifications_total`).",
                targets(
                    ("sum(%s)" % rate("identity_tokens_issued_total", NS_JOB), "issued"),
                    ("sum by (result) (%s)" % rate("identity_token_verifications_total", NS_JOB),
                     "verified {{result}}"),
                ),
                "ops", steps("green"), extra_defaults={"min": 0},
            ),
        ],
    ]
    return dashboard(
        "soma-overview",
        "SomaAgent Overview",
        "Health of every SomaAgent service: traffic, errors, latency, saturation and process "
        "resources, from the soma-observability HTTP metrics.",
        rows,
        with_job=True,
        extra_tags=["overview"],
    )


# --------------------------------------------------------------------------------------------
# KAMACHIQ Workflows
# --------------------------------------------------------------------------------------------


def kamachiq():
    started = "sum(%s)" % rate("kamachiq_workflows_started_total", NS)
    completed = "(sum(%s) or (%s * 0))" % (rate("kamachiq_workflows_completed_total", NS), started)
    failed = "(sum(%s) or (%s * 0))" % (rate("kamachiq_workflows_failed_total", NS), started)
    success = "%s / (%s + %s)" % (completed, completed, failed)
    failed_by_reason = 'sum by (reason) (%s) or on() label_replace(%s * 0, "reason", "none", "", "")' % (
        rate("kamachiq_workflows_failed_total", NS), started)
    orch_client = 'job="orchestrator", ' + NS
    decomp_thr, decomp_custom = alert_line(DECOMPOSITION_P95_ALERT_S)
    success_thr = steps("red", (0.95, "orange"), (0.99, "green"))

    rows = [
        [
            panel(
                "stat", "Workflow success rate",
                "completed / (completed + failed) workflows over the last rate interval "
                "(`kamachiq_workflows_completed_total`, `kamachiq_workflows_failed_total`).",
                targets((success, "success rate")),
                "percentunit", success_thr, extra_defaults={"min": 0, "max": 1, "decimals": 2},
                w=6, h=5,
            ),
            panel(
                "stat", "Active workflows",
                "Workflows running right now in the orchestrator (`kamachiq_workflows_active`).",
                targets(("sum(%s)" % sel("kamachiq_workflows_active", NS), "active")),
                "short", steps("green"), w=6, h=5,
            ),
            panel(
                "stat", "Workflow starts",
                "Workflows started per second (`kamachiq_workflows_started_total`).",
                targets((started, "started")),
                "ops", steps("green"), w=6, h=5,
            ),
            panel(
                "stat", "Workflow failures",
                "Workflows failed per second, all reasons (`kamachiq_workflows_failed_total`).",
                targets((failed, "failed")),
                "ops", steps("green", (0.001, "red")), w=6, h=5,
            ),
        ],
        [
            panel(
                "timeseries", "Workflow starts and outcomes",
                "Workflows started, completed and failed per second.",
                targets((started, "started"), (completed, "completed"), (failed, "failed")),
                "ops", steps("green"), extra_defaults={"min": 0},
            ),
            panel(
                "timeseries", "Workflow success rate over time",
                "completed / (completed + failed) over time. The dashed line marks 99 %.",
                targets((success, "success rate")),
                "percentunit", steps("red", (0.99, "green")),
                custom={"thresholdsStyle": {"mode": "dashed"}},
                extra_defaults={"min": 0, "max": 1},
            ),
        ],
        [
            panel(
                "timeseries", "Workflow failures by reason",
                "Failed workflows per second by `reason` (`policy_denied`, `slm_error`, "
                "`policy_error`). A single `none` series at 0 means no workflow failed yet.",
                targets((failed_by_reason, "{{reason}}")),
                "ops", steps("green"), extra_defaults={"min": 0},
            ),
            latency_panel(
                "Decomposition time P95 (alert > 30 s)",
                "95th and 50th percentile of the time to decompose a goal into tasks "
                "(`kamachiq_decomposition_duration_seconds`). Alert: P95 above 30 s (the red "
                "line). The histogram's largest finite bucket bounds what a quantile can show.",
                "kamachiq_decomposition_duration_seconds_bucket", NS,
                thresholds=decomp_thr, custom=decomp_custom,
            ),
        ],
        [
            panel(
                "timeseries", "Tasks per workflow",
                "How many tasks a workflow is decomposed into (`kamachiq_workflow_tasks` "
                "histogram): P50, P95 and the average.",
                targets(
                    *percentiles("kamachiq_workflow_tasks_bucket", NS, qs=(0.5, 0.95)),
                    ("sum(%s) / sum(%s)" % (rate("kamachiq_workflow_tasks_sum", NS),
                                            rate("kamachiq_workflow_tasks_count", NS)), "average"),
                ),
                "short", steps("green"), extra_defaults={"min": 0},
            ),
            panel(
                "timeseries", "Active workflows over time",
                "Workflows in progress over time (`kamachiq_workflows_active`, a gauge).",
                targets(("sum(%s)" % sel("kamachiq_workflows_active", NS), "active")),
                "short", steps("green"), extra_defaults={"min": 0},
            ),
        ],
        [
            panel(
                "timeseries", "Policy decisions by outcome",
                "Decisions per second taken by the policy-engine (`policy_decisions_total`), "
                "by `outcome` (`allow`, `deny`).",
                targets(("sum by (outcome) (%s)" % rate("policy_decisions_total", NS),
                         "{{outcome}}")),
                "ops", steps("green"), extra_defaults={"min": 0},
            ),
            panel(
                "bargauge", "Top policy rules",
                "The 10 policy rules that decide most often right now, with their outcome.",
                targets(("topk(10, sum by (rule, outcome) (%s))" % rate("policy_decisions_total", NS),
                         "{{rule}} {{outcome}}"), instant=True),
                "ops", steps("green"),
            ),
        ],
        [
            latency_panel(
                "SLM and policy latency seen by the orchestrator",
                "P95 and P50 duration of the orchestrator's outgoing calls "
                "(`http_client_request_duration_seconds{job=\"orchestrator\"}`) by "
                "`server_address`: the policy-engine and slm-service Services in Kubernetes.",
                "http_client_request_duration_seconds_bucket", orch_client,
                by=["server_address"], legend="{{server_address}}",
            ),
            panel(
                "timeseries", "Orchestrator outgoing calls by status",
                "Calls per second from the orchestrator to its peers by `server_address` and "
                "`http_response_status_code` (no status code when the call itself failed).",
                targets(("sum by (server_address, http_response_status_code) (%s)"
                         % rate("http_client_request_duration_seconds_count", orch_client),
                         "{{server_address}} {{http_response_status_code}}")),
                "reqps", steps("green"), extra_defaults={"min": 0},
            ),
        ],
        [
            latency_panel(
                "Policy evaluation time",
                "P95 and P50 of the policy-engine's own evaluation time "
                "(`policy_evaluation_duration_seconds`), without the network.",
                "policy_evaluation_duration_seconds_bucket", NS, w=8,
            ),
            panel(
                "timeseries", "SLM time to first token and generation time",
                "P95 of the slm-service's time to first token "
                "(`slm_time_to_first_token_seconds`) and of the whole generation "
                "(`slm_generation_duration_seconds`).",
                targets(
                    (quantile(0.95, "slm_time_to_first_token_seconds_bucket", [], NS),
                     "time to first token P95"),
                    (quantile(0.95, "slm_generation_duration_seconds_bucket", [], NS),
                     "generation P95"),
                ),
                "s", steps("green"), extra_defaults={"min": 0}, w=8,
            ),
            panel(
                "timeseries", "SLM tokens generated",
                "Tokens generated per second by the slm-service (`slm_tokens_generated_total`).",
                targets(("sum(%s)" % rate("slm_tokens_generated_total", NS), "tokens/s")),
                "short", steps("green"), extra_defaults={"min": 0}, w=8,
            ),
        ],
    ]
    return dashboard(
        "soma-kamachiq",
        "KAMACHIQ Workflows",
        "KAMACHIQ autonomous workflows in the orchestrator: starts, outcomes, decomposition, "
        "tasks, and the policy-engine and slm-service calls they depend on.",
        rows,
        with_job=False,
        extra_tags=["kamachiq"],
    )


# --------------------------------------------------------------------------------------------
# Production SLA
# --------------------------------------------------------------------------------------------


def window_ratio(window, fn):
    """5xx / all requests by (namespace, job) over `window`; 0 (not empty) without any 5xx."""
    total = "sum by (namespace, job) (%s)" % rate(HTTP_COUNT, NS_JOB, window=window, fn=fn)
    errors = "sum by (namespace, job) (%s)" % rate(HTTP_COUNT, NS_JOB, FIVE_XX, window=window, fn=fn)
    return "(%s or (%s * 0)) / %s" % (errors, total, total), errors, total


def sla():
    ratio30, err30, req30 = window_ratio("30d", "increase")
    availability = "1 - (%s)" % ratio30
    budget_left = "1 - ((%s) / %s)" % (ratio30, ERROR_BUDGET)
    legend = "{{job}} {{namespace}}"
    le_05 = 'le="0.5"'
    latency_now = "sum by (namespace, job) (%s) / sum by (namespace, job) (%s)" % (
        rate(HTTP_BUCKET, NS_JOB, le_05), rate(HTTP_COUNT, NS_JOB))
    latency_30d = "sum by (namespace, job) (%s) / sum by (namespace, job) (%s)" % (
        rate(HTTP_BUCKET, NS_JOB, le_05, window="30d", fn="increase"),
        rate(HTTP_COUNT, NS_JOB, window="30d", fn="increase"))

    restart_thr, restart_custom = alert_line(POD_RESTARTS_ALERT)
    lag_thr, lag_custom = alert_line(CONSUMER_LAG_ALERT)

    def burn(window):
        ratio, _, _ = window_ratio(window, "rate")
        rule = "job:slo_errors_per_request:ratio_rate" + window
        return "(max by (namespace, job) (%s) or (%s)) / %s" % (sel(rule, NS_JOB), ratio, ERROR_BUDGET)

    def burn_panel(window, meaning):
        factor = BURN_RATE_ALERTS[window]
        thr, custom = alert_line(factor, colour="red", below="green", style="dashed")
        return panel(
            "timeseries", "Burn rate %s (alert > %s)" % (window, factor),
            "Error-budget burn rate over %s: the 5xx ratio from the recording rule "
            "`job:slo_errors_per_request:ratio_rate%s` divided by the 0.1 %% budget (1 = the "
            "budget lasts exactly 30 days). Computed from the raw counters where the rule has no "
            "sample yet. Alert: above %s (%s)." % (window, window, factor, meaning),
            targets((burn(window), legend)),
            "short", thr, custom=custom, extra_defaults={"min": 0}, w=8,
        )

    rows = [
        [
            panel(
                "stat", "Availability, 30 days (SLO 99.9 %)",
                "Share of requests not answered with a 5xx over the last 30 days (or since the "
                "service first reported), per service. Red below the 99.9 % SLO.",
                targets((availability, legend), instant=True),
                "percentunit", steps("red", (SLO_TARGET, "green")),
                extra_defaults={"decimals": 3, "min": 0, "max": 1},
                options={"graphMode": "none"}, w=8, h=6,
            ),
            panel(
                "stat", "Error budget remaining, 30 days",
                "1 - (30-day 5xx ratio / 0.1 %): 100 % means no error yet, 0 % means the budget "
                "of the 99.9 % SLO is spent, below 0 the SLO is missed.",
                targets((budget_left, legend), instant=True),
                "percentunit", steps("red", (0, "orange"), (0.25, "green")),
                extra_defaults={"decimals": 1}, options={"graphMode": "none"}, w=8, h=6,
            ),
            panel(
                "stat", "Latency SLO compliance, 30 days",
                "Share of requests served in under 500 ms over the last 30 days "
                "(`http_server_request_duration_seconds_bucket{le=\"0.5\"}` / count). Red below "
                "95 %, the level at which the P95 > 500 ms alert fires.",
                targets((latency_30d, legend), instant=True),
                "percentunit", steps("red", (LATENCY_SLO_TARGET, "green")),
                extra_defaults={"decimals": 2, "min": 0, "max": 1},
                options={"graphMode": "none"}, w=8, h=6,
            ),
        ],
        [
            panel(
                "stat", "Requests, 30 days",
                "Requests served per service over the last 30 days.",
                targets((req30, legend), instant=True),
                "short", steps("green"), options={"graphMode": "none"}, w=12, h=5,
            ),
            panel(
                "stat", "5xx errors, 30 days",
                "Requests answered with a 5xx per service over the last 30 days (0 when none).",
                targets(("%s or (%s * 0)" % (err30, req30), legend), instant=True),
                "short", steps("green", (1, "orange")), options={"graphMode": "none"}, w=12, h=5,
            ),
        ],
        [
            burn_panel("1h", "fast burn: 2 % of the budget in one hour, pages"),
            burn_panel("6h", "5 % of the budget in six hours, pages"),
            burn_panel("3d", "slow burn: 10 % of the budget in three days, ticket"),
        ],
        [
            panel(
                "timeseries", "Latency SLO compliance (share under 500 ms)",
                "Share of requests served in under 500 ms right now, per service "
                "(`le=\"0.5\"` bucket / count). The red line marks 95 %: below it the P95 "
                "latency alert fires.",
                targets((latency_now, legend)),
                "percentunit", steps("red", (LATENCY_SLO_TARGET, "green")),
                custom={"thresholdsStyle": {"mode": "line"}},
                extra_defaults={"min": 0, "max": 1},
            ),
            panel(
                "timeseries", "Container restarts, last 30 min (alert > %d)" % POD_RESTARTS_ALERT,
                "Container restarts per pod over the last 30 minutes, from kube-state-metrics "
                "(`kube_pod_container_status_restarts_total`). Alert: a container restarting more "
                "than %d times within 30 minutes (the red line)." % POD_RESTARTS_ALERT,
                targets(("sum by (namespace, pod, container) (%s)"
                         % rate("kube_pod_container_status_restarts_total", NS, window="30m",
                                fn="increase"), "{{namespace}}/{{pod}} {{container}}")),
                "short", restart_thr, custom=restart_custom, external="kube-state-metrics",
                extra_defaults={"min": 0},
            ),
        ],
        [
            panel(
                "timeseries", "Available replicas by deployment",
                "Available replicas of each Deployment, from kube-state-metrics "
                "(`kube_deployment_status_replicas_available`). 0 means the service is down.",
                targets(("sum by (namespace, deployment) (%s)"
                         % sel("kube_deployment_status_replicas_available", NS),
                         "{{namespace}}/{{deployment}}")),
                "short", steps("red", (1, "green")), external="kube-state-metrics",
                extra_defaults={"min": 0},
            ),
            panel(
                "timeseries", "Kafka consumer lag (alert > %d)" % CONSUMER_LAG_ALERT,
                "Messages each consumer group is behind per topic, from kafka-exporter "
                "(`kafka_consumergroup_lag`). Not filtered by namespace: the exporter runs next "
                "to Kafka. Alert: lag above %d messages (the red line)." % CONSUMER_LAG_ALERT,
                targets(("sum by (consumergroup, topic) (kafka_consumergroup_lag)",
                         "{{consumergroup}} {{topic}}")),
                "short", lag_thr, custom=lag_custom, external="kafka-exporter",
                extra_defaults={"min": 0},
            ),
        ],
    ]
    return dashboard(
        "soma-sla",
        "Production SLA",
        "The 99.9 % availability SLO per service over 30 days: availability, error budget, "
        "multi-window burn rates, latency compliance, plus pod restarts and Kafka consumer lag.",
        rows,
        with_job=True,
        extra_tags=["sla", "slo"],
        time_from="now-24h",
    )


# --------------------------------------------------------------------------------------------
# Marketplace Analytics
# --------------------------------------------------------------------------------------------


def marketplace():
    execs = "marketplace_capsule_executions_total"
    fails = "marketplace_capsule_execution_failures_total"
    revenue = "marketplace_revenue_usd_total"
    total = "sum(%s)" % rate(execs, NS)
    success = "(sum(%s) or (%s * 0)) / %s" % (rate(execs, NS, 'outcome="success"'), total, total)
    fails_by_reason = 'sum by (reason) (%s) or on() label_replace(%s * 0, "reason", "none", "", "")' % (
        rate(fails, NS), total)
    top_failing = ('topk(10, sum by (capsule_id) (%s)) or on() '
                   'label_replace(sum(%s) * 0, "capsule_id", "none", "", "")') % (
        rate(fails, NS, window="24h", fn="increase"), rate(execs, NS, window="24h", fn="increase"))
    search_thr, search_custom = alert_line(SEARCH_P95_ALERT_S)
    gateway = 'job="gateway-api", ' + NS

    rows = [
        [
            panel(
                "stat", "Capsule executions",
                "Capsule executions per second, all outcomes "
                "(`marketplace_capsule_executions_total`).",
                targets((total, "executions")),
                "ops", steps("green"), w=6, h=5,
            ),
            panel(
                "stat", "Execution success rate",
                "Share of capsule executions with `outcome=\"success\"`.",
                targets((success, "success rate")),
                "percentunit", steps("red", (0.95, "orange"), (0.99, "green")),
                extra_defaults={"decimals": 2, "min": 0, "max": 1}, w=6, h=5,
            ),
            panel(
                "stat", "Revenue, last 24 hours",
                "Revenue in USD over the last 24 hours (or since the gateway first reported), "
                "from `marketplace_revenue_usd_total`.",
                targets(("sum(%s)" % rate(revenue, NS, window="24h", fn="increase"), "revenue"),
                        instant=True),
                "currencyUSD", steps("green"), extra_defaults={"decimals": 2},
                options={"graphMode": "none"}, w=6, h=5,
            ),
            panel(
                "stat", "Search latency P95",
                "Current 95th percentile of marketplace search "
                "(`marketplace_search_duration_seconds`). Red above the 1 s alert threshold.",
                targets(*percentiles("marketplace_search_duration_seconds_bucket", NS, qs=(0.95,))),
                "s", steps("green", (SEARCH_P95_ALERT_S, "red")), w=6, h=5,
            ),
        ],
        [
            panel(
                "timeseries", "Capsule executions by outcome",
                "Capsule executions per second by `outcome` (`success`, `failure`).",
                targets(("sum by (outcome) (%s)" % rate(execs, NS), "{{outcome}}")),
                "ops", steps("green"), extra_defaults={"min": 0},
            ),
            panel(
                "timeseries", "Revenue rate",
                "Revenue in USD per hour at the current rate "
                "(`rate(marketplace_revenue_usd_total) * 3600`).",
                targets(("sum(%s) * 3600" % rate(revenue, NS), "USD/hour")),
                "currencyUSD", steps("green"), extra_defaults={"min": 0},
            ),
        ],
        [
            latency_panel(
                "Search latency P95 (alert > 1 s)",
                "95th and 50th percentile of marketplace search "
                "(`marketplace_search_duration_seconds`). Alert: P95 above 1 s (the red line).",
                "marketplace_search_duration_seconds_bucket", NS,
                thresholds=search_thr, custom=search_custom,
            ),
            panel(
                "timeseries", "Searches",
                "Marketplace searches per second (`marketplace_search_duration_seconds_count`).",
                targets(("sum(%s)" % rate("marketplace_search_duration_seconds_count", NS),
                         "searches")),
                "ops", steps("green"), extra_defaults={"min": 0},
            ),
        ],
        [
            panel(
                "bargauge", "Top capsules by executions",
                "The 10 most executed capsules right now (`capsule_id`), executions per second.",
                targets(("topk(10, sum by (capsule_id) (%s))" % rate(execs, NS), "{{capsule_id}}"),
                        instant=True),
                "ops", steps("green"), w=8, h=9,
            ),
            panel(
                "bargauge", "Top capsules by revenue, 24 hours",
                "The 10 capsules that earned most over the last 24 hours, in USD.",
                targets(("topk(10, sum by (capsule_id) (%s))"
                         % rate(revenue, NS, window="24h", fn="increase"), "{{capsule_id}}"),
                        instant=True),
                "currencyUSD", steps("green"), w=8, h=9,
            ),
            panel(
                "bargauge", "Top failing capsules, 24 hours",
                "The 10 capsules with most failed executions over the last 24 hours "
                "(`marketplace_capsule_execution_failures_total`); `none` when nothing failed.",
                targets((top_failing, "{{capsule_id}}"), instant=True),
                "short", steps("green", (1, "orange")), w=8, h=9,
            ),
        ],
        [
            panel(
                "timeseries", "Execution failures by reason",
                "Failed capsule executions per second by `reason` (`denied`, `invalid_input`, "
                "`upstream_error`). A single `none` series at 0 means nothing failed yet.",
                targets((fails_by_reason, "{{reason}}")),
                "ops", steps("green"), extra_defaults={"min": 0},
            ),
            panel(
                "timeseries", "Gateway requests by route",
                "Requests per second served by the gateway (`gateway-api`) by route.",
                targets(("sum by (http_route) (%s)" % rate(HTTP_COUNT, gateway), "{{http_route}}")),
                "reqps", steps("green"), extra_defaults={"min": 0},
            ),
        ],
    ]
    return dashboard(
        "soma-marketplace",
        "Marketplace Analytics",
        "The capsule marketplace served by the gateway: executions, revenue, search latency, top "
        "capsules and failures.",
        rows,
        with_job=False,
        extra_tags=["marketplace"],
    )


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

DASHBOARDS = [
    ("somaagent-overview.json", overview),
    ("kamachiq-workflows.json", kamachiq),
    ("production-sla.json", sla),
    ("marketplace-analytics.json", marketplace),
]
INDEX_FILE = "panels-index.json"


def build():
    """Return {file name: bytes} for every generated file."""
    files, index = {}, []
    for name, make in DASHBOARDS:
        dash = make()
        for p in dash["panels"]:
            external = p.pop("_external")
            index.append(
                {
                    "dashboard": name,
                    "dashboard_uid": dash["uid"],
                    "panel_id": p["id"],
                    "title": p["title"],
                    "type": p["type"],
                    "exprs": [t["expr"] for t in p["targets"]],
                    "instant": [t["instant"] for t in p["targets"]],
                    "external": external,
                }
            )
        files[name] = render(dash)
    files[INDEX_FILE] = render(index)
    return files


def render(obj):
    return (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode("utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file differs from the generated output")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args(argv)

    files = build()
    if args.check:
        stale = []
        for name, data in files.items():
            path = args.out / name
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name)
        if stale:
            for name in stale:
                print("out of date: %s" % (args.out / name), file=sys.stderr)
            print("run: python3 dashboards/generate.py", file=sys.stderr)
            return 1
        print("up to date: %d files" % len(files))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    print("wrote %d files to %s" % (len(files), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
