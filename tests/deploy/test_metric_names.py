"""Every metric name the cluster config queries is one the code registers.

PromQL in the PrometheusRule, the Argo AnalysisTemplates, the Grafana dashboards and the
prometheus-adapter rules is collected (from the rendered chart and k8s/), and each metric name is
looked up in prometheus_client's registry after importing every Cascade module that defines
metrics. A query on a name nobody emits returns "no data" forever (an alert that never fires, an
analysis that errors every canary) -- exactly what `cascade_recommend_clicks_total` was.
"""

from __future__ import annotations

import importlib
import json
import re

import pytest
import yaml

# Modules that define Prometheus collectors (grep -l 'Counter(\\|Gauge(\\|Histogram(' services libs).
METRIC_MODULES = [
    "cascade_platform.metrics",
    "cascade_router.metrics",
    "cascade_stream.metrics",
    "cascade_stream.attribution",
    "cascade_gateway.metrics",
]
# Series other software exports, by prefix: NVIDIA Triton's metrics endpoint.
EXTERNAL_PREFIXES = {"nv_": "NVIDIA Triton (tritonserver --metrics-port)"}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}
# PromQL words that look like metric names but are not.
_PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "histogram_quantile", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "avg", "min", "max", "count", "topk",
    "bottomk", "label_values", "label_replace", "le", "offset", "bool", "clamp_min", "clamp_max",
    "abs", "absent", "vector", "scalar", "time", "delta", "deriv", "quantile",
    "quantile_over_time", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
}


def registered_names() -> set[str]:
    """Sample names (with _total/_bucket/_count/_sum...) of every collector Cascade registers."""
    from prometheus_client import REGISTRY

    for mod in METRIC_MODULES:
        importlib.import_module(mod)
    names = set()
    for fam in REGISTRY.collect():
        names |= {fam.name + s for s in _SUFFIXES.get(fam.type, ("",))}
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, strings and durations removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (regexes, label values)
    expr = re.sub(r"\{[^{}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    tokens = re.findall(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w(])", expr)
    return {t for t in tokens if t not in _PROMQL_WORDS and not re.fullmatch(r"\d+\w*", t)}


def queried_expressions(render, repo) -> list[tuple[str, str]]:
    """(where, PromQL) for every query the chart and k8s/ ship."""
    out = []
    for value_set in ("default", "rollouts"):
        for o in render(value_set):
            if o["kind"] == "PrometheusRule":
                for g in o["spec"]["groups"]:
                    for r in g["rules"]:
                        out.append((f"PrometheusRule {r.get('alert') or r.get('record')}", r["expr"]))
            elif o["kind"] == "AnalysisTemplate":
                for m in o["spec"]["metrics"]:
                    q = re.sub(r"\{\{\s*args\.[\w-]+\s*\}\}", "x", m["provider"]["prometheus"]["query"])
                    out.append((f"AnalysisTemplate {o['metadata']['name']}/{m['name']}", q))
    for dash in sorted((repo / "charts/cascade/dashboards").glob("*.json")):
        doc = json.loads(dash.read_text())
        for panel in doc.get("panels", []):
            for t in panel.get("targets", []):
                out.append((f"{dash.name}: {panel['title']}", t["expr"]))
        for var in doc.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if var.get("type") == "query" and q:
                out.append((f"{dash.name}: variable {var['name']}", re.sub(r"^label_values\((.*),[^,]*\)$", r"\1", q)))
    adapter = repo / "k8s/base/monitoring/prometheus-adapter-rules.yaml"
    for rule in yaml.safe_load(yaml.safe_load(adapter.read_text())["data"]["config.yaml"])["rules"]:
        out.append((f"prometheus-adapter {rule['name']['as']} seriesQuery", rule["seriesQuery"]))
        series = rule["seriesQuery"].split("{")[0]
        q = rule["metricsQuery"].replace("<<.Series>>", series).replace("<<.LabelMatchers>>", "")
        out.append((f"prometheus-adapter {rule['name']['as']}", q.replace("<<.GroupBy>>", "pod")))
    return out


def test_metric_name_extraction():
    """The extractor itself: names found, functions/labels/strings/durations ignored."""
    got = metric_names(
        'sum by (service, le) (rate(a_bucket{ns="x",code=~"(?i)ok"}[5m])) / on (pod) b_total > 0.5 '
        "and histogram_quantile(0.99, c_seconds_bucket)"
    )
    assert got == {"a_bucket", "b_total", "c_seconds_bucket"}


def test_every_queried_metric_is_emitted(render, repo):
    emitted = registered_names()
    assert {"cascade_grpc_server_handled_total", "cascade_recommend_total",
            "cascade_feature_freshness_seconds_bucket"} <= emitted
    exprs = queried_expressions(render, repo)
    assert len(exprs) >= 15, exprs
    missing = {}
    for where, expr in exprs:
        for name in metric_names(expr):
            if name in emitted or any(name.startswith(p) for p in EXTERNAL_PREFIXES):
                continue
            missing.setdefault(name, []).append(where)
    assert not missing, f"queried but never registered by Cascade code: {missing}"


CTR_ON = "rollouts.analysis.ctr.enabled=true,components.ranking.routing.enabled=false"


def test_ctr_analysis_queries_the_attribution_counters(dc, repo, tmp_path):
    """cascade_stream.attribution emits the clicks/impressions by model_version; the opt-in CTR
    analysis renders only where it can judge a canary (ranking, model versions rolled by Helm)."""
    import subprocess

    import yaml as _yaml

    emitted = registered_names()
    assert {"cascade_recommend_clicks_total", "cascade_recommend_impressions_total"} <= emitted
    fails = {
        "ctr listed while disabled": ["--set", "components.ranking.canary.analyses={success-rate,ctr}"],
        "ctr on the router": ["--set", f"{CTR_ON},components.router.canary.analyses={{success-rate,ctr}}"],
        "ctr with hot-reloaded routing": [
            "--set",
            "rollouts.analysis.ctr.enabled=true,components.ranking.canary.analyses={success-rate,ctr}",
        ],
        "ctr without attribution": ["--set", f"{CTR_ON},components.attribution.enabled=false"],
        "exposures topic mismatch": ["--set", "components.router.exposures.topic=other"],
    }
    for what, args in fails.items():
        objs, problems = dc.helm_template(repo, "rollouts", args)
        assert not objs and problems, what
    objs, problems = dc.helm_template(
        repo, "rollouts", ["--set", f"{CTR_ON},components.ranking.canary.analyses={{success-rate,ctr}}"]
    )
    assert not problems, problems
    tpl = {o["metadata"]["name"]: o for o in objs if o["kind"] == "AnalysisTemplate"}["cascade-ctr"]
    args = {a["name"]: a.get("value") for a in tpl["spec"]["args"]}
    assert args["canary-model-version"] == _yaml.safe_load((repo / "charts/cascade/values.yaml").read_text())[
        "modelVersion"]
    query = tpl["spec"]["metrics"][0]["provider"]["prometheus"]["query"]
    assert 'model_version="{{args.canary-model-version}}"' in query
    filled = re.sub(r"\{\{\s*args\.[\w-]+\s*\}\}", "x", query)
    assert metric_names(filled) <= emitted, metric_names(filled) - emitted
    rollout = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Rollout"}["cascade-ranking"]
    assert {"templateName": "cascade-ctr"} in rollout["spec"]["strategy"]["canary"]["analysis"]["templates"]
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"} >= {"cascade-attribution"}
    # the query parses (promtool, as a recording rule)
    rules = tmp_path / "ctr.yaml"
    rules.write_text(_yaml.safe_dump({"groups": [{"name": "ctr", "rules": [{"record": "cascade_check:ctr",
                                                                             "expr": filled}]}]}))
    proc = subprocess.run([dc._promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("value_set", ["default", "rollouts", "gpu"])
def test_hpa_pod_metrics_come_from_emitted_series(render, repo, value_set):
    """HPA custom metrics are prometheus-adapter outputs; the series behind them must exist."""
    cm = yaml.safe_load((repo / "k8s/base/monitoring/prometheus-adapter-rules.yaml").read_text())
    rules = {r["name"]["as"]: r for r in yaml.safe_load(cm["data"]["config.yaml"])["rules"]}
    emitted = registered_names()
    for o in render(value_set):
        if o["kind"] != "HorizontalPodAutoscaler":
            continue
        for m in o["spec"]["metrics"]:
            if m["type"] == "Pods":
                series = rules[m["pods"]["metric"]["name"]]["seriesQuery"].split("{")[0]
                assert series in emitted or any(series.startswith(p) for p in EXTERNAL_PREFIXES), series
