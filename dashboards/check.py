#!/usr/bin/env python3
"""Validate the SomaAgent Grafana dashboards (Python 3.8+, standard library only).

    python3 dashboards/check.py                                  # structure, names, PromQL syntax
    python3 dashboards/check.py --prometheus http://127.0.0.1:9090   # also run every query

Checks, each counted once: the committed JSON equals the generator's output; every panel has a
type, gridPos, datasource, description, unit, thresholds and targets with refId and expr;
dashboard uids are stable and unique; there are at least 28 panels; every expression has balanced
brackets, uses `$__rate_interval` or a deliberate SLO window, and names only metrics from
docs/metrics-catalog.md (or `up`); panels with an alert draw it; panels-index.json matches the
dashboards; and every expression parses as PromQL (Prometheus 3's promtool from
target/backends/bin, built by scripts/install-deps.sh; else a promtool on PATH).

With --prometheus, every expression of a panel not backed by an external exporter is evaluated
(instant query, `$__rate_interval` -> 1m, `$namespace`/`$job` -> .*) and must return a sample.

The last line is `N passed, M failed`; the exit code is 1 when anything failed.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CATALOG = ROOT / "docs" / "metrics-catalog.md"

EXPECTED = {
    "somaagent-overview.json": ("soma-overview", "SomaAgent Overview"),
    "kamachiq-workflows.json": ("soma-kamachiq", "KAMACHIQ Workflows"),
    "production-sla.json": ("soma-sla", "Production SLA"),
    "marketplace-analytics.json": ("soma-marketplace", "Marketplace Analytics"),
}
INDEX = "panels-index.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
MIN_PANELS = 28
# Range windows allowed besides $__rate_interval: the SLO windows (burn rates, 30-day
# availability), restarts per 30 minutes and daily revenue. Anything else (5m, 1m...) is a mistake.
LONG_WINDOWS = {"30m", "1h", "6h", "3d", "24h", "30d"}
EXTERNAL = {"kube-state-metrics", "kafka-exporter"}
SUBSTITUTIONS = [("$__rate_interval", "1m"), ("${namespace}", ".*"), ("$namespace", ".*"),
                 ("${job}", ".*"), ("$job", ".*")]
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2",
}


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, problems):
        """Record one named check; `problems` is a list of strings (empty = passed)."""
        if problems:
            self.failed += 1
            print("FAIL %s" % name)
            for p in problems[:40]:
                print("     - %s" % p)
            if len(problems) > 40:
                print("     ... and %d more" % (len(problems) - 40))
        else:
            self.passed += 1
            print("ok   %s" % name)


# --------------------------------------------------------------------------------------------
# Catalog and PromQL helpers
# --------------------------------------------------------------------------------------------


def expand_braces(token):
    """`a_{x,y}` -> [`a_x`, `a_y`]; tokens without braces are returned as they are."""
    m = re.search(r"\{([^{}]*)\}", token)
    if not m:
        return [token]
    out = []
    for alt in m.group(1).split(","):
        out.extend(expand_braces(token[: m.start()] + alt.strip() + token[m.end():]))
    return out


def catalog_names(text):
    """Metric and record names from the catalog's tables: the backticked names in the columns
    headed `Prometheus name`, `record` and `names`, with `{a,b}` suffixes expanded."""
    names, external = set(), {}
    columns, table_kind = None, None
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").strip()
        if not line.startswith("|"):
            columns = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if columns is None:
            columns = [c.lower() for c in cells]
            table_kind = section
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        for idx, header in enumerate(columns):
            if header not in ("prometheus name", "record", "names") or idx >= len(cells):
                continue
            for token in re.findall(r"`([^`]+)`", cells[idx]):
                for name in expand_braces(token):
                    if re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
                        names.add(name)
                        if header == "names" and "external" in table_kind.lower():
                            external[name] = cells[0]
    return names, external


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def balanced(expr):
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in strip_strings(expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def metric_names(expr):
    """The metric (or recording-rule) names an expression selects."""
    s = strip_strings(expr)
    s = re.sub(r"\[[^\]]*\]", "", s)  # range windows
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)", s):
        word = m.group(1)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def windows(expr):
    return re.findall(r"\[([^\]]+)\]", strip_strings(expr))


def substitute(expr):
    for old, new in SUBSTITUTIONS:
        expr = expr.replace(old, new)
    return expr


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check_up_to_date(res):
    proc = subprocess.run([sys.executable, str(HERE / "generate.py"), "--check"],
                          capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip().splitlines()
    res.check("generated files are up to date (generate.py --check)",
              [] if proc.returncode == 0 else out or ["generate.py --check failed"])


def load_dashboards(res):
    dashboards, problems = {}, []
    for name in EXPECTED:
        path = HERE / name
        try:
            dashboards[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            problems.append("%s: %s" % (name, e))
    res.check("the four dashboard files exist and are JSON", problems)
    return dashboards


def check_dashboard_meta(res, dashboards):
    problems, uids = [], []
    for name, dash in dashboards.items():
        uid, title = EXPECTED[name]
        uids.append(dash.get("uid"))
        if dash.get("uid") != uid:
            problems.append("%s: uid %r, expected %r" % (name, dash.get("uid"), uid))
        if dash.get("title") != title:
            problems.append("%s: title %r, expected %r" % (name, dash.get("title"), title))
        if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
            problems.append("%s: schemaVersion %r" % (name, dash.get("schemaVersion")))
        if "somaagent" not in dash.get("tags", []):
            problems.append("%s: missing tag somaagent" % name)
        if dash.get("id") is not None:
            problems.append("%s: id must be null for import" % name)
    if len(set(uids)) != len(uids):
        problems.append("dashboard uids are not unique: %r" % uids)
    res.check("dashboard uids, titles, schemaVersion and tags", problems)


def check_variables(res, dashboards):
    problems = []
    for name, dash in dashboards.items():
        variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        ds = variables.get("datasource")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            problems.append("%s: no `datasource` variable of type datasource/prometheus" % name)
        text = json.dumps(dash.get("panels", []))
        for var in ("namespace", "job"):
            if "$" + var not in text:
                continue
            v = variables.get(var)
            if not v:
                problems.append("%s: uses $%s but defines no such variable" % (name, var))
                continue
            if not (v.get("multi") and v.get("includeAll") and v.get("allValue") == ".*"):
                problems.append("%s: $%s must be multi, includeAll, allValue .*" % (name, var))
            if "label_values(up" not in json.dumps(v.get("query")):
                problems.append("%s: $%s should come from label_values(up, ...)" % (name, var))
            if v.get("datasource") != DS:
                problems.append("%s: $%s datasource is %r" % (name, var, v.get("datasource")))
    res.check("template variables (datasource, namespace, job)", problems)


def all_panels(dashboards):
    for name, dash in dashboards.items():
        for p in dash.get("panels", []):
            yield name, dash, p


def check_panels(res, dashboards):
    problems = []
    for name, dash in dashboards.items():
        ids, cells = set(), {}
        for p in dash.get("panels", []):
            where = "%s panel %r" % (name, p.get("title"))
            if p.get("id") in ids:
                problems.append("%s: duplicate id %r" % (where, p.get("id")))
            ids.add(p.get("id"))
            if not isinstance(p.get("id"), int):
                problems.append("%s: no integer id" % where)
            if not p.get("type"):
                problems.append("%s: no type" % where)
            if not p.get("title"):
                problems.append("%s: no title" % where)
            if not p.get("description"):
                problems.append("%s: no description" % where)
            if p.get("datasource") != DS:
                problems.append("%s: datasource %r" % (where, p.get("datasource")))
            gp = p.get("gridPos") or {}
            if not all(isinstance(gp.get(k), int) for k in "hwxy"):
                problems.append("%s: gridPos %r" % (where, gp))
            elif gp["x"] + gp["w"] > 24 or gp["w"] <= 0 or gp["h"] <= 0:
                problems.append("%s: gridPos out of the 24-column grid %r" % (where, gp))
            else:
                for x in range(gp["x"], gp["x"] + gp["w"]):
                    for y in range(gp["y"], gp["y"] + gp["h"]):
                        if (x, y) in cells:
                            problems.append("%s overlaps %r" % (where, cells[(x, y)]))
                            break
                        cells[(x, y)] = p.get("title")
                    else:
                        continue
                    break
            defaults = (p.get("fieldConfig") or {}).get("defaults") or {}
            if not defaults.get("unit"):
                problems.append("%s: no fieldConfig.defaults.unit" % where)
            steps = (defaults.get("thresholds") or {}).get("steps")
            if not steps or steps[0].get("value") is not None:
                problems.append("%s: thresholds need steps starting with a null base" % where)
            tgts = p.get("targets") or []
            if not tgts:
                problems.append("%s: no targets" % where)
            refs = [t.get("refId") for t in tgts]
            if len(set(refs)) != len(refs) or not all(refs):
                problems.append("%s: refIds %r" % (where, refs))
            for t in tgts:
                if not (t.get("expr") or "").strip():
                    problems.append("%s: target %r has no expr" % (where, t.get("refId")))
                if t.get("datasource") != DS:
                    problems.append("%s: target %r datasource %r"
                                    % (where, t.get("refId"), t.get("datasource")))
    res.check("every panel has id, type, gridPos, datasource, description, unit, thresholds, "
              "targets", problems)


def check_exemplars(res, dashboards):
    """Latency panels (range queries over a `_seconds_bucket` histogram) show exemplars."""
    problems, latency = [], 0
    for name, _, p in all_panels(dashboards):
        for t in p.get("targets") or []:
            if "_seconds_bucket" in (t.get("expr") or "") and not t.get("instant"):
                latency += 1
                if t.get("exemplar") is not True:
                    problems.append("%s panel %r target %r: no \"exemplar\": true"
                                    % (name, p.get("title"), t.get("refId")))
    if latency == 0:
        problems.append("no latency panel found")
    res.check("every latency panel shows exemplars", problems)


def check_panel_count(res, dashboards):
    counts = {name: len(d.get("panels", [])) for name, d in dashboards.items()}
    total = sum(counts.values())
    print("     panels: %s, total %d" % (", ".join("%s %d" % kv for kv in counts.items()), total))
    empty = ["%s has no panel" % n for n, c in counts.items() if c == 0]
    res.check("at least %d panels in total" % MIN_PANELS,
              empty + (["only %d panels" % total] if total < MIN_PANELS else []))


def check_alert_panels(res, dashboards):
    """A panel whose title announces an alert (`alert > X`) draws it as a threshold line."""
    problems = []
    for name, _, p in all_panels(dashboards):
        title = p.get("title", "")
        if "alert" not in title.lower():
            continue
        where = "%s panel %r" % (name, title)
        defaults = p["fieldConfig"]["defaults"]
        style = defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off")
        if p.get("type") == "timeseries" and style not in ("line", "dashed", "line+area",
                                                            "dashed+area"):
            problems.append("%s: thresholdsStyle mode %r does not draw the alert" % (where, style))
        if len(defaults["thresholds"]["steps"]) < 2:
            problems.append("%s: no threshold step for the alert" % where)
        if "alert" not in p.get("description", "").lower():
            problems.append("%s: description does not explain the alert" % where)
    # The three alerts named in the platform status doc must be there.
    titles = " | ".join(p.get("title", "") for _, _, p in all_panels(dashboards))
    for needle in ("P95 by service (alert > 500 ms)", "Decomposition time P95 (alert > 30 s)",
                   "Search latency P95 (alert > 1 s)", "Container restarts", "Kafka consumer lag"):
        if needle not in titles:
            problems.append("no panel titled like %r" % needle)
    res.check("panels with an alert draw the threshold", problems)


def check_exprs(res, dashboards, catalog):
    unbalanced, bad_windows, unknown = [], [], []
    for name, _, p in all_panels(dashboards):
        where = "%s panel %r" % (name, p.get("title"))
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if not balanced(expr):
                unbalanced.append("%s: %s" % (where, expr))
            for w in windows(expr):
                if w != "$__rate_interval" and w not in LONG_WINDOWS:
                    bad_windows.append("%s: window [%s] in %s" % (where, w, expr))
            if "$__interval" in expr or "$__range" in expr:
                bad_windows.append("%s: use $__rate_interval, not $__interval/$__range" % where)
            for metric in sorted(metric_names(expr)):
                if metric != "up" and metric not in catalog:
                    unknown.append("%s: %s" % (where, metric))
    res.check("every expression has balanced (), [] and {}", unbalanced)
    res.check("every range uses $__rate_interval or a deliberate SLO window (%s)"
              % ", ".join(sorted(LONG_WINDOWS)), bad_windows)
    res.check("every metric name is in docs/metrics-catalog.md (or is `up`)", unknown)


def check_index(res, dashboards, catalog_external):
    problems = []
    try:
        index = json.loads((HERE / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        res.check("panels-index.json lists every panel", ["%s: %s" % (INDEX, e)])
        return []
    by_key = {(e.get("dashboard"), e.get("panel_id")): e for e in index}
    if len(by_key) != len(index):
        problems.append("duplicate (dashboard, panel_id) entries")
    seen = set()
    for name, dash, p in all_panels(dashboards):
        key = (name, p.get("id"))
        seen.add(key)
        entry = by_key.get(key)
        if entry is None:
            problems.append("%s panel %r is missing" % (name, p.get("title")))
            continue
        exprs = [t.get("expr") for t in p.get("targets", [])]
        if entry.get("exprs") != exprs:
            problems.append("%s panel %r: exprs differ" % (name, p.get("title")))
        if entry.get("dashboard_uid") != dash.get("uid") or entry.get("title") != p.get("title"):
            problems.append("%s panel %r: uid/title differ" % (name, p.get("title")))
        exporters = {catalog_external[m] for e in exprs for m in metric_names(e)
                     if m in catalog_external}
        if len(exporters) > 1:
            problems.append("%s panel %r mixes exporters %r" % (name, p.get("title"), exporters))
        expected_ext = next(iter(exporters)) if exporters else None
        if entry.get("external") != expected_ext:
            problems.append("%s panel %r: external is %r, expected %r"
                            % (name, p.get("title"), entry.get("external"), expected_ext))
        if entry.get("external") not in (None,) and entry.get("external") not in EXTERNAL:
            problems.append("%s panel %r: unknown exporter %r"
                            % (name, p.get("title"), entry.get("external")))
    for key in set(by_key) - seen:
        problems.append("index entry %r has no panel" % (key,))
    res.check("panels-index.json lists every panel with its exprs and external flag", problems)
    return index


def check_promtool(res, dashboards):
    # Prometheus 3's promtool, built by scripts/backends.sh (install-deps.sh); else one on PATH.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    promtool = os.path.join(root, "target", "backends", "bin", "promtool")
    if not os.access(promtool, os.X_OK):
        promtool = shutil.which("promtool")
    if not promtool:
        print("skip PromQL syntax check: no promtool (run scripts/install-deps.sh)")
        return
    lines = ["groups:", "  - name: dashboard-exprs", "    rules:"]
    for name, dash, p in all_panels(dashboards):
        for t in p.get("targets", []):
            record = "dashboard_check:%s_%s_%s" % (
                dash["uid"].replace("-", "_"), p.get("id"), t.get("refId"))
            lines.append("      - record: %s" % record)
            lines.append("        expr: %s" % json.dumps(substitute(t.get("expr", ""))))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboard-exprs.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        proc = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip().splitlines()
    res.check("every expression parses as PromQL (promtool check rules)",
              [] if proc.returncode == 0 else out)


def check_live(res, dashboards, index, base_url):
    """Run every non-external expression against a real Prometheus."""
    external = {(e["dashboard"], e["panel_id"]) for e in index if e.get("external")}
    empty, errors, evaluated = [], [], 0
    for name, _, p in all_panels(dashboards):
        if (name, p.get("id")) in external:
            continue
        for t in p.get("targets", []):
            expr = substitute(t["expr"])
            url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            where = "%s panel %r %s" % (name, p.get("title"), t.get("refId"))
            evaluated += 1
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    body = json.loads(resp.read().decode("utf-8"))
            except Exception as e:  # noqa: BLE001 - report every failure the same way
                errors.append("%s: %s" % (where, e))
                continue
            if body.get("status") != "success":
                errors.append("%s: %s" % (where, body.get("error")))
            elif not body["data"]["result"]:
                empty.append("%s: %s" % (where, expr))
    print("     evaluated %d expressions against %s" % (evaluated, base_url))
    res.check("every non-external expression evaluates without error", errors)
    res.check("every non-external expression returns data", empty)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", metavar="URL",
                        help="also evaluate every non-external query against this Prometheus")
    args = parser.parse_args(argv)

    res = Results()
    check_up_to_date(res)
    try:
        catalog, catalog_external = catalog_names(CATALOG.read_text(encoding="utf-8"))
    except OSError as e:
        catalog, catalog_external = set(), {}
        res.check("docs/metrics-catalog.md is readable", [str(e)])
    else:
        res.check("docs/metrics-catalog.md lists metric names",
                  [] if len(catalog) >= 20 else ["only %d names parsed" % len(catalog)])
    dashboards = load_dashboards(res)
    check_dashboard_meta(res, dashboards)
    check_variables(res, dashboards)
    check_panels(res, dashboards)
    check_panel_count(res, dashboards)
    check_exemplars(res, dashboards)
    check_alert_panels(res, dashboards)
    check_exprs(res, dashboards, catalog)
    index = check_index(res, dashboards, catalog_external)
    check_promtool(res, dashboards)
    if args.prometheus:
        check_live(res, dashboards, index, args.prometheus)
    print("%d passed, %d failed" % (res.passed, res.failed))
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
