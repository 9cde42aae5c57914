"""`recovery metrics`: the Prometheus exposition of a real store's projections, read back with
prometheus_client's own parser; the textfile, the command and the /metrics server of watch."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import httpx
import pytest
import typer
from prometheus_client.parser import text_string_to_metric_families
from recovery_cli.main import guarded
from recovery_cli.metrics import metrics as metrics_command
from recovery_cli.reports import report as report_command
from typer.testing import CliRunner

from recovery import metrics, projections
from recovery.config import load
from recovery.errors import MetricsError
from recovery.events import Event
from recovery.store import Store, spool_locations, spool_write
from recovery.units import format_ts

from .test_projections import Timeline
from .test_report import CONFIG  # web and api, the store beside the file

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
START = NOW - dt.timedelta(hours=3)  # the history runs from 3 h ago to about 1 h ago: inside every window

# What point 1 of issue 18 asks for, each with its TYPE (a counter's samples end in _total).
WANTED = {
    "recovery_up": "gauge",
    "recovery_state": "gauge",
    "recovery_probe_latency_seconds": "gauge",
    "recovery_probe_latency_quantile_seconds": "gauge",
    "recovery_probe_duration_seconds": "histogram",
    "recovery_probes": "counter",
    "recovery_restarts": "counter",
    "recovery_incidents": "counter",
    "recovery_incident_open": "gauge",
    "recovery_availability_ratio": "gauge",
    "recovery_last_check_timestamp_seconds": "gauge",
    "recovery_events_spooled": "gauge",
    "recovery_store_readable": "gauge",
}

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "recovery.toml").write_text(CONFIG)
    return tmp_path


@pytest.fixture
def timeline(workdir: Path):
    store = Store.open(workdir / "recovery.db")
    yield Timeline(store, START)
    store.close()


def config(workdir: Path, extra: str = ""):
    (workdir / "recovery.toml").write_text(CONFIG + extra)
    return load(workdir / "recovery.toml")


def parsed(text: str | bytes) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """{family: {(sample name, sorted labels): value}} through prometheus_client's parser."""
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[str, dict] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
        out[fam.name]["__type__"] = fam.type  # type: ignore[assignment]
    return out


def value(fams: dict, name: str, sample: str | None = None, **labels: str) -> float | None:
    family = fams[name]
    return family.get((sample or name, tuple(sorted(labels.items()))))


def exposition(workdir: Path, now: dt.datetime = NOW) -> dict:
    snap = metrics.read(config(workdir), now)
    assert snap.problem is None, snap.problem
    return parsed(b"".join(_text(snap)))


def _text(snap: metrics.Snapshot) -> list[bytes]:
    from prometheus_client import CollectorRegistry, generate_latest

    class Fixed:
        def collect(self):
            return metrics.families(snap)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Fixed())  # type: ignore[arg-type]
    return [generate_latest(reg)]


def healthy_history(tl: Timeline, app: str = "web", n: int = 10, ms: float = 20.0) -> None:
    for k in range(n):
        tl.healthy(60 * k, app=app, ms=ms)


def test_every_metric_of_the_issue_is_there_with_help_and_type(workdir, timeline):
    healthy_history(timeline)
    text = metrics.exposition(config(workdir))[0].decode()
    fams = parsed(text)
    assert {name: fams[name]["__type__"] for name in WANTED} == WANTED
    for name, kind in WANTED.items():
        shown = name + "_total" if kind == "counter" else name  # the text format names a counter by its samples
        assert f"# HELP {shown} " in text and f"# TYPE {shown} {kind}\n" in text


def test_a_healthy_app_is_up_with_its_last_latency_and_last_check(workdir, timeline):
    healthy_history(timeline, ms=20.0)
    timeline.healthy(600, ms=42.0)
    fams = exposition(workdir)
    assert value(fams, "recovery_up", app="web") == 1.0
    assert value(fams, "recovery_state", app="web", state="healthy") == 1.0
    assert sum(v for k, v in fams["recovery_state"].items() if k != "__type__" and ("app", "web") in k[1]) == 1.0
    assert value(fams, "recovery_probe_latency_seconds", app="web") == pytest.approx(0.042)
    last = projections.parse_ts(timeline.at(600)).timestamp()
    assert value(fams, "recovery_last_check_timestamp_seconds", app="web") == pytest.approx(last, abs=1.0)
    assert value(fams, "recovery_probes", "recovery_probes_total", app="web", result="ok") == 11.0
    assert value(fams, "recovery_probes", "recovery_probes_total", app="web", result="failed") == 0.0
    assert value(fams, "recovery_incident_open", app="web") == 0.0
    assert value(fams, "recovery_availability_ratio", app="web", window="24h") == 1.0


def test_an_app_never_checked_is_in_state_unknown_and_has_no_up_series(workdir, timeline):
    healthy_history(timeline)
    fams = exposition(workdir)
    assert value(fams, "recovery_state", app="api", state="unknown") == 1.0
    assert value(fams, "recovery_up", app="api") is None  # neither up nor down: nobody looked
    assert value(fams, "recovery_last_check_timestamp_seconds", app="api") is None


def test_an_open_incident_shows_the_app_down_with_its_incident_open(workdir, timeline):
    healthy_history(timeline)
    timeline.run(
        600,
        ("probe.failed", "web", {"phase": "check", "error": "timeout", "latency_ms": 2000}),
        ("decision.made", "web", {"action": "escalate", "reason": "x", "state": "down"}),
    )
    fams = exposition(workdir)
    assert value(fams, "recovery_up", app="web") == 0.0
    assert value(fams, "recovery_state", app="web", state="down") == 1.0
    assert value(fams, "recovery_state", app="web", state="healthy") == 0.0
    assert value(fams, "recovery_incident_open", app="web") == 1.0
    assert value(fams, "recovery_incidents", "recovery_incidents_total", app="web") == 1.0
    assert value(fams, "recovery_probes", "recovery_probes_total", app="web", result="failed") == 1.0
    assert value(fams, "recovery_availability_ratio", app="web", window="24h") < 1.0


def test_restarts_are_counted_by_who_made_them_ours_and_pm2s(workdir, timeline):
    healthy_history(timeline)
    timeline.hang_recovered(600)
    timeline.hang_recovered(900, by="operator")
    timeline._restarts["web"] += 2  # PM2 restarted it twice on its own: restart_time grew by 2 more
    timeline.run(
        1200,
        (
            "process.sampled",
            "web",
            {"source": "jlist", "status": "online", "restart_time": timeline.restarts("web"), "known": True},
        ),
        ("decision.made", "web", {"action": "none", "reason": "healthy", "state": "healthy"}),
    )
    fams = exposition(workdir)
    by = {
        dict(k[1])["by"]: v
        for k, v in fams["recovery_restarts"].items()
        if k != "__type__" and ("app", "web") in k[1] and k[0] == "recovery_restarts_total"
    }
    assert by == {"check": 1.0, "operator": 1.0, "schedule": 0.0, "pm2": 2.0}
    assert value(fams, "recovery_incidents", "recovery_incidents_total", app="web") == 2.0
    assert value(fams, "recovery_incident_open", app="web") == 0.0


def test_availability_is_the_one_recovery_report_gives(workdir, timeline):
    healthy_history(timeline)
    timeline.run(
        600,
        ("probe.failed", "web", {"phase": "check", "error": "timeout"}),
        ("decision.made", "web", {"action": "escalate", "reason": "x", "state": "down"}),
    )
    for k in range(11, 20):
        timeline.healthy(60 * k)
    timeline.store.close()
    app = typer.Typer()
    app.command()(guarded(report_command))
    app.command()(guarded(metrics_command))
    got = runner.invoke(app, ["report", "--since", "24h", "--json", "--config", str(workdir / "recovery.toml")])
    assert got.exit_code == 0, got.output
    percent = json.loads(got.output)["apps"]["web"]["availability_percent"]
    assert 90 < percent < 100
    out = runner.invoke(app, ["metrics", "--config", str(workdir / "recovery.toml")])
    assert out.exit_code == 0, out.output
    ratio = value(parsed(out.output), "recovery_availability_ratio", app="web", window="24h")
    assert ratio == pytest.approx(percent / 100, abs=1e-5)


def test_latency_quantiles_and_histogram_come_from_the_rollups(workdir, timeline):
    for k in range(100):
        timeline.healthy(10800 - 3000 + 20 * k, ms=10.0 if k < 90 else 400.0)  # the last hour (ending now)
    fams = exposition(workdir)
    p50 = value(fams, "recovery_probe_latency_quantile_seconds", app="web", window="1h", quantile="0.5")
    p95 = value(fams, "recovery_probe_latency_quantile_seconds", app="web", window="1h", quantile="0.95")
    assert p50 == pytest.approx(0.010, rel=0.01) and p95 == pytest.approx(0.400, rel=0.01)
    bucket = lambda le: value(  # noqa: E731
        fams, "recovery_probe_duration_seconds", "recovery_probe_duration_seconds_bucket", app="web", le=le
    )
    assert bucket("0.01") == 90.0 and bucket("0.25") == 90.0 and bucket("0.5") == 100.0 and bucket("+Inf") == 100.0
    total = value(fams, "recovery_probe_duration_seconds", "recovery_probe_duration_seconds_sum", app="web")
    assert total == pytest.approx(90 * 0.010 + 10 * 0.400, rel=0.01)


def test_counters_stay_the_same_when_the_projections_are_rebuilt(workdir, timeline):
    healthy_history(timeline)
    timeline.hang_recovered(600)
    before = exposition(workdir)
    projections.rebuild(timeline.store.conn)
    after = exposition(workdir)
    for name in ("recovery_probes", "recovery_restarts", "recovery_incidents", "recovery_probe_duration_seconds"):
        assert after[name] == before[name]


def test_spooled_events_are_counted_while_they_wait(workdir, timeline):
    healthy_history(timeline)
    spool = spool_locations(workdir / "recovery.db")[0]
    spool_write(spool, [Event("check.started", None, "r9", {"trigger": "cron"}) for _ in range(3)])
    fams = exposition(workdir)
    assert value(fams, "recovery_events_spooled") == 3.0


def test_an_unreadable_store_says_so_in_the_exposition_and_in_one_line(workdir):
    (workdir / "recovery.db").write_bytes(b"this is not a database, it is garbage " * 200)
    result = runner.invoke(
        typer_app(), ["metrics", "--config", str(workdir / "recovery.toml")], env={"RECOVERY_CONFIG": ""}
    )
    assert result.exit_code == 3
    fams = parsed(result.stdout)
    assert value(fams, "recovery_store_readable") == 0.0 and "recovery_up" not in fams
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "recovery.db" in errors[0] and "Traceback" not in result.output


def typer_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(guarded(metrics_command))
    app.command(name="other")(lambda: None)  # two commands, so `metrics` is named as a user types it
    return app


def test_the_command_writes_the_file_atomically_with_mode_0644(workdir, timeline):
    healthy_history(timeline)
    timeline.store.close()
    out = workdir / "node" / "recovery.prom"
    out.parent.mkdir()
    old = os.umask(0o077)  # cron's umask may be strict; node_exporter runs as another user
    try:
        result = runner.invoke(
            typer_app(), ["metrics", "--output", str(out), "--config", str(workdir / "recovery.toml")]
        )
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert value(parsed(out.read_text()), "recovery_up", app="web") == 1.0
    assert os.listdir(out.parent) == ["recovery.prom"]  # no temporary file left behind


def test_a_textfile_in_a_missing_folder_is_a_one_line_error(workdir, timeline):
    healthy_history(timeline)
    timeline.store.close()
    target = workdir / "no-such-folder" / "recovery.prom"
    cfg = config(workdir, f'\n[metrics]\ntextfile = "{target}"\n')
    with pytest.raises(MetricsError, match=r"no-such-folder.*does not exist"):
        metrics.write_textfile(cfg)
    result = runner.invoke(typer_app(), ["metrics", "-o", str(target), "--config", str(workdir / "recovery.toml")])
    assert result.exit_code == 3
    assert result.output.strip().count("\n") == 0 and "does not exist" in result.output


def test_write_textfile_writes_the_configured_file(workdir, timeline):
    healthy_history(timeline)
    target = workdir / "recovery.prom"
    metrics.write_textfile(config(workdir, f'\n[metrics]\ntextfile = "{target}"\n'))
    assert value(parsed(target.read_text()), "recovery_probes", "recovery_probes_total", app="web", result="ok") == 10


def test_metrics_port_and_host_are_read_from_the_config(workdir):
    cfg = config(workdir, '\n[metrics]\nport = 9464\nhost = "0.0.0.0"\n')
    assert (cfg.metrics.port, cfg.metrics.host) == (9464, "0.0.0.0")
    assert config(workdir).metrics.port is None and config(workdir).metrics.host == "127.0.0.1"
    (workdir / "recovery.toml").write_text(CONFIG + "\n[metrics]\nport = 70000\n")
    from recovery.errors import ConfigError

    with pytest.raises(ConfigError, match=r"metrics\.port.*65535"):
        load(workdir / "recovery.toml")


def test_the_server_answers_each_scrape_from_the_store_as_it_is_then(workdir, timeline):
    healthy_history(timeline)
    server = metrics.MetricsServer(config(workdir), "127.0.0.1", 0).start()
    try:
        host, port = server.address
        assert host == "127.0.0.1"
        first = httpx.get(f"http://{host}:{port}/metrics")
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert value(parsed(first.text), "recovery_up", app="web") == 1.0
        timeline.run(
            700,
            ("probe.failed", "web", {"phase": "check", "error": "timeout"}),
            ("decision.made", "web", {"action": "escalate", "reason": "x", "state": "down"}),
        )
        second = httpx.get(f"http://{host}:{port}/metrics")
        assert value(parsed(second.text), "recovery_up", app="web") == 0.0
        assert httpx.get(f"http://{host}:{port}/").status_code == 404
    finally:
        server.close()


def test_a_port_in_use_is_a_one_line_error(workdir):
    server = metrics.MetricsServer(config(workdir), "127.0.0.1", 0).start()
    try:
        with pytest.raises(MetricsError, match=r"cannot serve metrics on 127\.0\.0\.1:\d+"):
            metrics.MetricsServer(config(workdir), "127.0.0.1", server.address[1])
    finally:
        server.close()


def test_a_server_that_keeps_past_days_merged_still_sees_old_events_replayed_late(workdir, timeline):
    healthy_history(timeline)
    collector = metrics.StoreCollector(config(workdir), now=lambda: NOW)

    def count() -> float:
        fams = parsed(b"".join(_text_of(collector)))
        return value(fams, "recovery_probe_duration_seconds", "recovery_probe_duration_seconds_count", app="web")

    assert count() == 10.0
    # Events of three days ago arrive now (a spool replayed after the store was unusable for days).
    late = Timeline(timeline.store, NOW - dt.timedelta(days=3))
    healthy_history(late, n=5)
    assert count() == 15.0
    healthy_history(Timeline(timeline.store, NOW - dt.timedelta(minutes=30)), n=2)  # and today's, as usual
    assert count() == 17.0


def _text_of(collector: metrics.StoreCollector) -> list[bytes]:
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return [generate_latest(reg)]


def test_no_secret_of_the_config_reaches_the_metrics_or_their_errors(workdir):
    secret = "s3cr3t-pw"
    text = CONFIG.replace("http://127.0.0.1:3000/", f"http://admin:{secret}@127.0.0.1:3000/health?token={secret}")
    text += f'\n[fleet]\npostgres = "postgresql://fleet:{secret}@db.example:5432/fleet"\n'
    (workdir / "recovery.toml").write_text(text)
    with Store.open(workdir / "recovery.db") as store:
        healthy_history(Timeline(store, START))
    ok = runner.invoke(typer_app(), ["metrics", "--config", str(workdir / "recovery.toml")])
    assert ok.exit_code == 0 and "recovery_up" in ok.output and secret not in ok.output
    (workdir / "recovery.db").write_bytes(b"garbage " * 1000)
    bad = runner.invoke(typer_app(), ["metrics", "--config", str(workdir / "recovery.toml")])
    assert bad.exit_code == 3 and secret not in bad.output


def test_a_paused_app_reads_paused_until_its_pause_ends(workdir, timeline):
    healthy_history(timeline)
    until = format_ts(NOW + dt.timedelta(minutes=15))
    timeline.run(700, ("maintenance.started", "web", {"until": until, "reason": "deploy", "by": "operator"}))
    fams = exposition(workdir)
    assert value(fams, "recovery_state", app="web", state="paused") == 1.0
    assert value(fams, "recovery_state", app="web", state="healthy") == 0.0
    assert value(fams, "recovery_up", app="web") == 1.0  # it still answered at its last check
    later = exposition(workdir, NOW + dt.timedelta(minutes=16))
    assert value(later, "recovery_state", app="web", state="healthy") == 1.0
