"""deploy/'s Prometheus and Grafana files (issue 18, point 4): the dashboard's queries and the alert
rules name only metrics recovery exports, and Prometheus's own promtool accepts and runs them.

promtool comes from Debian's `prometheus` package: found on PATH or as $PROMTOOL (./test.sh
extracts it into .cache/ without installing the Prometheus service)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from recovery import metrics
from recovery.config import load
from recovery.store import Store

from .test_projections import Timeline

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ALERTS = DEPLOY / "prometheus-alerts.yml"
SCRAPE = DEPLOY / "prometheus.yml"

# PromQL words that are not metric names: keywords, and the labels that groupings name.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def exported_names(tmp_path: Path) -> set[str]:
    """Every sample name of a real exposition (a store with a healthy app and a restarted hang)."""
    (tmp_path / "recovery.toml").write_text(
        '[store]\npath = "r.db"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:1/"\n'
    )
    with Store.open(tmp_path / "r.db") as store:
        tl = Timeline(store, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        tl.healthy(0)
        tl.hang_recovered(60)
    text, problem = metrics.exposition(load(tmp_path / "recovery.toml"))
    assert problem is None
    return {s.name for fam in text_string_to_metric_families(text.decode()) for s in fam.samples}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, label matchers, ranges and groupings
    taken out; what is left and not followed by `(` is a metric name or a keyword)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", e):
        if m.group(1) not in KEYWORDS:
            names.add(m.group(1))
    return names


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # panels folded inside a row
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in panels(dash) for t in p.get("targets", [])]


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool not found (Debian's prometheus package; ./test.sh extracts it into .cache/)")
    return found


def test_metric_names_reads_promql_as_expected():
    expr = 'histogram_quantile(0.99, sum by (le, app) (rate(x_bucket{app=~"$app", a="b{c}"}[1h]))) / on(app) y > 1'
    assert metric_names(expr) == {"x_bucket", "y"}
    assert metric_names("time() - recovery_last_check_timestamp_seconds > 900") == {
        "recovery_last_check_timestamp_seconds"
    }


def test_the_dashboard_is_json_with_host_and_app_variables():
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"datasource", "host", "app"} <= set(variables)
    assert "recovery_" in variables["host"]["definition"] and "$host" in variables["app"]["definition"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)) and dash["uid"] and dash["title"]
    for p in panels(dash):
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["targets"], p["title"]


def test_every_dashboard_query_names_only_metrics_recovery_exports(tmp_path):
    exported = exported_names(tmp_path)
    for title, expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= exported, (title, expr, names - exported)


def test_every_dashboard_query_follows_the_host_and_app_variables():
    for title, expr in dashboard_exprs():
        assert 'host=~"$host"' in expr, (title, expr)
        if "recovery_events_spooled" not in expr:  # a store's, not an app's
            assert 'app=~"$app"' in expr, (title, expr)


def test_the_dashboard_shows_availability_restarts_by_who_latency_and_open_incidents():
    used = {name for _, expr in dashboard_exprs() for name in metric_names(expr)}
    assert {"recovery_availability_ratio", "recovery_restarts_total", "recovery_incident_open", "recovery_up"} <= used
    assert {"recovery_probe_latency_quantile_seconds", "recovery_probe_duration_seconds_bucket"} <= used
    assert any("by (host, app, by)" in expr for _, expr in dashboard_exprs())  # restarts split by who


def test_every_dashboard_query_is_promql_that_prometheus_parses(tmp_path):
    tool = promtool()
    rules = [
        {"record": f"recovery:panel_{i}", "expr": expr.replace("$host", ".*").replace("$app", ".*")}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_name_only_exported_metrics_and_page_on_an_app_down_for_2m(tmp_path):
    exported = exported_names(tmp_path)
    rules = alert_rules()
    for r in rules:
        assert metric_names(r["expr"]) <= exported, r
    (down,) = [r for r in rules if r["alert"] == "RecoveryAppDown"]
    assert down["expr"] == "recovery_up == 0" and down["for"] == "2m"


def test_promtool_accepts_the_scrape_config_and_its_rules(tmp_path):
    tool = promtool()
    shutil.copy(SCRAPE, tmp_path / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "prometheus-alerts.yml")
    done = subprocess.run(
        [tool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout and "4 rules found" in done.stdout
    jobs = yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
    assert all(any(rc.get("target_label") == "host" for rc in j["relabel_configs"]) for j in jobs)


def test_the_app_down_alert_fires_after_two_minutes_down_and_not_before(tmp_path):
    tool = promtool()
    labels = {"app": "web", "host": "web-1", "severity": "critical"}
    rule = next(r for r in alert_rules() if r["alert"] == "RecoveryAppDown")
    annotations = {
        k: v.replace("{{ $labels.app }}", "web").replace("{{ $labels.host }}", "web-1")
        for k, v in rule["annotations"].items()
    }
    test = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "30s",
                # up for a minute, then down: 1 1 0 0 0 ...
                "input_series": [{"series": 'recovery_up{app="web", host="web-1"}', "values": "1 1 0x20"}],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "RecoveryAppDown", "exp_alerts": []},  # down 1 minute
                    {
                        "eval_time": "3m30s",
                        "alertname": "RecoveryAppDown",
                        "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "alerts-test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run([tool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_wheel_carries_the_dashboard_and_the_prometheus_examples(tmp_path):
    root = DEPLOY.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("recovery-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("grafana-dashboard.json", "prometheus.yml", "prometheus-alerts.yml"):
        assert f"recovery_deploy/{f}" in names, f
