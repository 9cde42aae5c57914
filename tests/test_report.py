"""`recovery report` and `recovery why`: answers computed from the projections of a real store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from recovery_cli.main import guarded
from recovery_cli.reports import report as report_command
from recovery_cli.reports import why as why_command
from typer.testing import CliRunner

from recovery import projections, units
from recovery.errors import StoreError
from recovery.events import Event
from recovery.render import TIMELINE_MAX, ending, facts, report_markdown, report_text, timeline_text
from recovery.report import IncidentNotFound, Step, Timeline, build_report, why
from recovery.store import Store

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)  # the previous period is days 0-7, the reported one days 7-14
NOW = T0 + dt.timedelta(days=14)
SINCE = projections.format_ts(T0 + dt.timedelta(days=7))
DAY = 86400.0
HANG = "hung: PM2 says online but 2 failed probes (timeout)"


class Trail:
    """Writes realistic check runs at chosen times (seconds after `origin`); every decision falls exactly on t."""

    def __init__(self, store: Store, origin: dt.datetime = T0) -> None:
        self.store = store
        self.origin = origin
        self.runs = 0
        self.restart_time: dict[str, int] = {}  # what PM2 reports, per app

    def at(self, t: float) -> str:
        return projections.format_ts(self.origin + dt.timedelta(seconds=t))

    def run(self, t0: float, *events: tuple[float, str, dict], trigger: str = "cron") -> None:
        """One check run: check.started at t0, the app's events at their times, check.finished last."""
        self.runs += 1
        rid = f"run{self.runs}"
        rows = [Event("check.started", None, rid, {"trigger": trigger, "apps": ["web"]}, ts=self.at(t0))]
        rows += [Event(type_, data.pop("app", "web"), rid, data, ts=self.at(t)) for t, type_, data in events]
        last = max([t0, *(t for t, _, _ in events)])
        rows.append(Event("check.finished", None, rid, {"outcome": "OK", "code": 0}, ts=self.at(last + 0.1)))
        self.store.append(rows)

    def healthy(self, t: float, app: str = "web", ms: float = 20.0) -> None:
        self.run(
            t - 0.5,
            (
                t - 0.4,
                "probe.succeeded",
                {"app": app, "attempt": 1, "of": 2, "phase": "check", "status": 200, "latency_ms": ms},
            ),
            (t, "decision.made", {"app": app, "action": "none", "reason": "healthy", "state": "healthy"}),
        )

    def down(self, t: float, app: str = "web") -> None:
        """A failed check whose decision leaves the app down (e.g. PM2 already restarting it)."""
        self.run(
            t - 4.5,
            (
                t - 4.4,
                "probe.failed",
                {"app": app, "attempt": 1, "of": 2, "phase": "check", "error": "refused", "latency_ms": 1.2},
            ),
            (t, "decision.made", {"app": app, "action": "wait", "reason": "PM2 is restarting it", "state": "down"}),
        )

    def hang(self, t: float, app: str = "web", *, took: float = 2.0) -> None:
        """A hung app restarted by the check and verified `took` seconds after the decision."""
        rt = self.restart_time.get(app, 0)
        command = ["pm2", "restart", app]
        self.run(
            t - 4.5,
            (
                t - 4.4,
                "probe.failed",
                {"app": app, "attempt": 1, "of": 2, "phase": "check", "error": "timeout", "latency_ms": 2000.0},
            ),
            (
                t - 2.4,
                "probe.failed",
                {"app": app, "attempt": 2, "of": 2, "phase": "check", "error": "timeout", "latency_ms": 2000.0},
            ),
            (
                t - 0.1,
                "process.sampled",
                {
                    "app": app,
                    "source": "jlist",
                    "known": True,
                    "status": "online",
                    "pid": 4242,
                    "memory": 60 * 1048576,
                    "cpu": 99.5,
                    "restart_time": rt,
                },
            ),
            (t, "decision.made", {"app": app, "action": "restart", "reason": HANG, "state": "recovering"}),
            (t, "restart.requested", {"app": app, "by": "check", "reason": HANG, "command": command}),
            (
                t + took / 2,
                "restart.succeeded",
                {"app": app, "command": command, "exit_code": 0, "duration_ms": 1000.0},
            ),
            (
                t + took,
                "probe.succeeded",
                {"app": app, "attempt": 3, "phase": "verify", "status": 200, "latency_ms": 7.0},
            ),
            (t + took, "verification.passed", {"app": app, "attempts": 3, "seconds": took, "latency_ms": 7.0}),
        )
        self.restart_time[app] = rt + 1

    def restart_by(self, t: float, by: str, app: str = "web") -> None:
        """`recovery restart APP --by operator|schedule`: no decision, a restart verified like any other."""
        command = ["pm2", "restart", app]
        self.run(
            t,
            (t, "restart.requested", {"app": app, "by": by, "reason": "nightly", "command": command}),
            (t + 1, "restart.succeeded", {"app": app, "command": command, "exit_code": 0, "duration_ms": 900.0}),
            (t + 1.5, "verification.passed", {"app": app, "attempts": 1, "seconds": 0.5}),
            trigger=by,
        )
        self.restart_time[app] = self.restart_time.get(app, 0) + 1

    def pm2_restarts(self, t: float, n: int, app: str = "web") -> None:
        """A full sample showing PM2 restarted the app `n` times on its own since the last one."""
        self.restart_time[app] = self.restart_time.get(app, 0) + n
        self.run(
            t - 0.5,
            (
                t - 0.4,
                "probe.succeeded",
                {"app": app, "attempt": 1, "phase": "check", "status": 200, "latency_ms": 20.0},
            ),
            (
                t - 0.2,
                "process.sampled",
                {
                    "app": app,
                    "source": "jlist",
                    "known": True,
                    "status": "online",
                    "restart_time": self.restart_time[app],
                },
            ),
            (t, "decision.made", {"app": app, "action": "none", "reason": "healthy", "state": "healthy"}),
        )

    def baseline(self, t: float, app: str = "web") -> None:
        """A first full sample, so that later ones can show PM2's own restarts."""
        self.pm2_restarts(t, 0, app)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "recovery.db")
    yield s
    s.close()


def report_of(store: Store, apps: tuple[str, ...] = ("web",), since: str = SINCE, now: dt.datetime = NOW) -> dict:
    projections.fold(store.conn)
    return build_report(store, list(apps), since, now).to_dict()


# -- recovery report -------------------------------------------------------------------------


def test_report_json_has_the_documented_shape(store):
    trail = Trail(store)
    trail.healthy(8 * DAY)
    trail.hang(8 * DAY + 60)
    out = report_of(store)
    assert set(out) == {"since", "until", "generated_at", "apps"}
    assert (out["since"], out["until"]) == (SINCE, projections.format_ts(NOW))
    web = out["apps"]["web"]
    assert set(web) == {
        "availability_percent",
        "probes",
        "failures",
        "incidents",
        "restarts",
        "restarts_by",
        "mttr_s",
        "mtbf_s",
        "latency_ms",
        "stands_out",
        "top_errors",
        "hints",
        "worker_restarts",
        "availability_worst_percent",
        "unobserved_s",
    }
    assert set(web["incidents"][0]) == {
        "id",
        "started_at",
        "detected_at",
        "unobserved_s",
        "ended_at",
        "duration_s",
        "restarts",
        "outcome",
        "workers",
    }
    assert set(web["latency_ms"]) == {"p50", "p95", "p99"}
    json.dumps(out)


def test_report_availability_is_the_share_of_observed_time_the_app_answered(store):
    trail = Trail(store)
    start = 8 * DAY
    for k in range(121):  # a check a minute for two hours; down from minute 30 to minute 40
        (trail.down if 30 <= k < 40 else trail.healthy)(start + 60 * k)
    web = report_of(store)["apps"]["web"]
    # Down from the first failed probe (sent 4.4012 s before the decision at minute 30) to minute 40;
    # unobserved from the check at minute 29 to that probe; up the rest.
    down, unobserved = 600 + 4.4012, 60 - 4.4012
    up = 7200 - down - unobserved
    assert web["availability_percent"] == round(100 * up / (up + down), 3)
    assert web["availability_worst_percent"] == round(100 * up / 7200, 3)
    assert abs(web["unobserved_s"] - unobserved) < 0.002  # timestamps keep milliseconds
    assert (web["probes"], web["failures"]) == (121, 10)


def test_report_lists_incidents_that_overlap_the_period_with_their_outcome(store):
    trail = Trail(store)
    trail.hang(2 * DAY)  # before the period: left out
    trail.healthy(7 * DAY - 120)
    trail.down(7 * DAY - 60)  # began before the period, ended inside it
    trail.healthy(7 * DAY + 60)
    trail.hang(9 * DAY)
    trail.down(13 * DAY)  # still open at the end
    incidents = report_of(store)["apps"]["web"]["incidents"]
    assert [(i["started_at"], i["ended_at"], i["duration_s"], i["restarts"], i["outcome"]) for i in incidents] == [
        # each from its first failed probe: sent 4.4012 s (down) or 6.4 s (hang) before the decision
        (trail.at(7 * DAY - 64.4012), trail.at(7 * DAY + 60), 124.402, 0, "recovered without restart"),
        (trail.at(9 * DAY - 6.4), trail.at(9 * DAY + 2), 8.4, 1, "restarted"),
        (trail.at(13 * DAY - 4.4012), None, DAY + 4.402, 0, "open"),
    ]


def test_report_counts_restarts_by_who_made_them(store):
    trail = Trail(store)
    trail.baseline(7 * DAY + 10)
    trail.hang(8 * DAY)
    trail.hang(9 * DAY)
    trail.restart_by(10 * DAY, "schedule")
    trail.restart_by(11 * DAY, "operator")
    trail.pm2_restarts(12 * DAY, 3)
    web = report_of(store)["apps"]["web"]
    assert web["restarts_by"] == {"check": 2, "schedule": 1, "operator": 1, "pm2": 3}
    assert web["restarts"] == 7


def test_report_mttr_is_the_mean_duration_of_recovered_incidents(store):
    trail = Trail(store)
    trail.healthy(8 * DAY - 60)
    trail.down(8 * DAY)
    trail.healthy(8 * DAY + 600)  # answering again by itself after 600 s
    trail.hang(9 * DAY, took=2.0)
    trail.down(13 * DAY)  # open: not recovered, not counted
    # from the first failed probes: 600 + 4.4012 s and 2 + 6.4 s
    assert report_of(store)["apps"]["web"]["mttr_s"] == 306.4


def test_report_mttr_is_null_when_nothing_recovered(store):
    trail = Trail(store)
    trail.healthy(8 * DAY)
    trail.down(9 * DAY)
    web = report_of(store)["apps"]["web"]
    assert web["mttr_s"] is None and web["incidents"][0]["outcome"] == "open"


def test_report_mtbf_is_up_time_divided_by_incidents_that_began_in_the_period(store):
    trail = Trail(store)
    start = 8 * DAY
    for k in range(61):  # an hour of checks, one a minute: 3600 s observed
        if k in (20, 40):
            trail.hang(start + 60 * k)
        else:
            trail.healthy(start + 60 * k)
    web = report_of(store)["apps"]["web"]
    # each hang: down 8.4 s from its first failed probe to the verification, unobserved 53.6 s before
    up = 3600 - 2 * (8.4 + 53.6)
    assert web["availability_percent"] == round(100 * up / (up + 2 * 8.4), 3)
    assert web["mtbf_s"] == round(up / 2, 1)


def test_report_latency_percentiles_merge_the_hourly_sketches(store):
    trail = Trail(store)
    for k in range(100):  # over several hours: 90 answers in 20 ms, 10 in 500 ms
        trail.healthy(8 * DAY + 300 * k, ms=500.0 if k % 10 == 0 else 20.0)
    latency = report_of(store)["apps"]["web"]["latency_ms"]
    # the sketch's buckets are within 0.5 % of the values in them
    assert latency == {"p50": 20.0, "p95": 500.2, "p99": 500.2}


def test_report_says_when_restarts_doubled_vs_the_previous_period(store):
    trail = Trail(store)
    trail.hang(3 * DAY)
    trail.hang(8 * DAY)
    trail.hang(9 * DAY)
    notes = report_of(store)["apps"]["web"]["stands_out"]
    assert "restarts doubled vs the previous 7 days (2, was 1)" in notes


def test_report_says_when_incidents_cluster_at_one_hour_of_the_day(store):
    trail = Trail(store)
    for day in (8, 9, 10):
        trail.hang(day * DAY + 2 * 3600 + 630)  # 02:10 UTC: its first failed probe
    trail.hang(11 * DAY + 14 * 3600)
    assert "3 of 4 incidents, on 3 different days, at 02:10 UTC" in report_of(store)["apps"]["web"]["stands_out"]


def test_report_does_not_call_a_few_incidents_in_the_same_hour_a_pattern(store):
    trail = Trail(store)
    for k in range(10):  # 10 incidents, 3 of them between 02:00 and 03:00: chance, not a pattern
        trail.hang(8 * DAY + (2 * 3600 + 60 * k if k < 3 else 5 * 3600 * k))
    assert not any("different days" in n for n in report_of(store)["apps"]["web"]["stands_out"])


def test_report_says_when_pm2_restarted_the_app_on_its_own(store):
    trail = Trail(store)
    trail.baseline(8 * DAY)
    trail.pm2_restarts(9 * DAY, 5)
    notes = report_of(store)["apps"]["web"]["stands_out"]
    assert any(n.startswith("PM2 restarted web 5 times on its own") for n in notes)


def test_report_says_when_availability_is_below_target(store):
    trail = Trail(store)
    for k in range(121):
        (trail.down if 30 <= k < 40 else trail.healthy)(8 * DAY + 60 * k)
    assert "availability 91.54%, below 99.9%" in report_of(store)["apps"]["web"]["stands_out"]


def test_report_says_nothing_stands_out_for_a_quiet_app(store):
    trail = Trail(store)
    for k in range(10):
        trail.healthy(3 * DAY + 600 * k)
        trail.healthy(8 * DAY + 600 * k)
    assert report_of(store)["apps"]["web"]["stands_out"] == []


def test_report_of_an_app_without_history_is_empty_not_an_error(store):
    Trail(store).healthy(8 * DAY)
    api = report_of(store, apps=("web", "api"))["apps"]["api"]
    assert api["availability_percent"] is None and api["probes"] == 0 and api["incidents"] == []
    assert api["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert api["mtbf_s"] is None and api["restarts_by"] == {"check": 0, "schedule": 0, "operator": 0, "pm2": 0}


def test_report_text_and_markdown_show_every_app_and_its_incidents(store):
    trail = Trail(store)
    trail.hang(8 * DAY)
    trail.hang(8 * DAY + 600, app="api")
    projections.fold(store.conn)
    rep = build_report(store, ["web", "api"], SINCE, NOW)
    text = report_text(rep)
    assert "2026-11-08T00:00:00Z to 2026-11-15T00:00:00Z (7 days)" in text
    assert text.count("restarted") >= 2 and "restarts by: check 1, schedule 0, operator 0, pm2 0" in text
    md = report_markdown(rep)
    assert "## web" in md and "## api" in md and "| #1 | 2026-11-08T23:59:53Z | 8.4s | 1 | restarted |" in md


def test_report_lists_the_top_error_templates_of_the_period_against_the_period_before(store, tmp_path):
    from recovery import logs

    refused = "Error: connect ECONNREFUSED 127.0.0.1:{}\n    at TCPConnectWrap.afterConnect (node:net:1555:16)\n"
    typeerr = "TypeError: Cannot read properties of undefined (reading 'id')\n    at handler (/srv/app/api.js:12:20)\n"
    batches = [
        (3 * DAY, refused.format(5432) * 2),
        (9 * DAY, refused.format(5433) * 5),
        (10 * DAY, typeerr),
        (12 * DAY, "Error: connect ECONNREFUSED 10.0.0.1:5432\n"),
        (13 * DAY, typeerr * 2),
    ]
    for n, (t, text) in enumerate(batches):
        f = tmp_path / f"web-error.{n}.log"
        f.write_text(text)
        logs.ingest(store, "web", [f], now=T0 + dt.timedelta(seconds=t))
    Trail(store).healthy(8 * DAY)
    top = report_of(store)["apps"]["web"]["top_errors"]
    assert [(e["template"], e["count"], e["previous_count"]) for e in top] == [
        ("Error: connect ECONNREFUSED <IP>", 6, 2),
        ("TypeError: Cannot read properties of undefined (reading <STR>)", 3, 0),
    ]
    assert top[1]["first_seen"].startswith("2026-11-11") and top[1]["last_seen"].startswith("2026-11-14")
    rep = build_report(store, ["web"], SINCE, NOW)
    text = report_text(rep)
    assert "top errors" in text and "+4" in text and "new" in text
    assert "### Top errors" in report_markdown(rep)
    assert (
        report_of(store, since=projections.format_ts(T0 + dt.timedelta(days=13, hours=12)))["apps"]["web"]["top_errors"]
        == []
    )


# -- recovery why ------------------------------------------------------------------------------


def test_why_shows_the_last_incident_from_the_check_that_opened_it(store):
    trail = Trail(store)
    trail.hang(8 * DAY)
    trail.hang(9 * DAY, took=3.0)
    projections.fold(store.conn)
    t = why(store, "web")
    assert t is not None and t.incident.id == 2
    assert [s.type for s in t.steps] == [
        "check.started",
        "probe.failed",
        "probe.failed",
        "process.sampled",
        "decision.made",
        "restart.requested",
        "restart.succeeded",
        "probe.succeeded",
        "verification.passed",
    ]
    # from the first failed probe, sent 2 s (its timeout) before it was recorded, 6.4 s before the decision
    assert [s.offset_s for s in t.steps] == [1.9, 2.0, 4.0, 6.3, 6.4, 6.4, 7.9, 9.4, 9.4]
    assert facts(t.steps[4].type, t.steps[4].data) == f"restart: {HANG}"
    assert ending(t) == "ended: restarted after 9.4s, 1 restart"


def test_why_shows_the_incident_asked_for(store):
    trail = Trail(store)
    trail.hang(8 * DAY)
    trail.hang(9 * DAY)
    projections.fold(store.conn)
    t = why(store, "web", incident_id=1)
    assert t is not None and t.incident.started_at == trail.at(8 * DAY - 6.4)
    assert t.incident.detected_at == trail.at(8 * DAY)
    assert all(s.ts <= trail.at(8 * DAY + 2) for s in t.steps)


def test_why_leaves_out_other_apps_events(store):
    trail = Trail(store)
    trail.hang(8 * DAY)
    trail.hang(8 * DAY + 1, app="api")
    projections.fold(store.conn)
    t = why(store, "web")
    assert t is not None and {s.app for s in t.steps} == {None, "web"}


def test_why_says_an_open_incident_is_still_open(store):
    trail = Trail(store)
    trail.down(8 * DAY)
    trail.down(8 * DAY + 60)
    projections.fold(store.conn)
    t = why(store, "web", now=T0 + dt.timedelta(days=8, seconds=90))
    assert t is not None and t.incident.ended_at is None
    assert [s.type for s in t.steps][-2:] == ["probe.failed", "decision.made"] and t.steps[-1].offset_s == 64.402
    assert ending(t) == "still open, for 1m34s so far, 0 restarts"


def test_why_text_folds_the_checks_that_repeat_themselves(store):
    trail = Trail(store)
    for k in range(150):  # an app down for 150 checks: 301 events
        trail.down(8 * DAY + 60 * k)
    projections.fold(store.conn)
    timeline = why(store, "web", now=NOW)
    assert timeline is not None and len(timeline.steps) == 301  # --json keeps every event
    lines = timeline_text(timeline).splitlines()
    assert len(lines) <= 10, "\n".join(lines)
    folded = [line for line in lines if "more times" in line]
    assert len(folded) == 1 and "149 × probe.failed refused, 149 × decision.made wait (?) over 2h29m" in folded[0]


def timeline_of(store, steps: Callable[[Step], list[Step]]) -> Timeline:
    """A real incident's timeline whose events are replaced by `steps(its first event)`."""
    Trail(store).down(8 * DAY)
    projections.fold(store.conn)
    timeline = why(store, "web", now=NOW)
    assert timeline is not None
    timeline.steps = steps(timeline.steps[0])
    return timeline


def test_why_text_elides_the_middle_of_a_long_timeline_that_does_not_repeat(store):
    timeline = timeline_of(  # 301 different events: nothing to fold
        store,
        lambda first: [dataclasses.replace(first, seq=n, type=f"alert.kind{n}", offset_s=float(n)) for n in range(301)],
    )
    lines = timeline_text(timeline).splitlines()
    assert len(lines) == 1 + TIMELINE_MAX + 1 + 1
    assert "101 more events" in lines[1 + TIMELINE_MAX // 2] and "--json lists all" in lines[1 + TIMELINE_MAX // 2]


def test_why_gives_the_key_facts_of_each_event(store):
    Trail(store).hang(8 * DAY)
    projections.fold(store.conn)
    said = {s.type: facts(s.type, s.data) for s in why(store, "web").steps}  # type: ignore[union-attr]
    assert said["probe.failed"] == "attempt 2/2, timeout, 2000ms"
    assert said["process.sampled"] == "online, pid 4242, 60.0MB, cpu 99.5% (PM2), restart_time 0"
    assert said["restart.requested"] == "by check: pm2 restart web"
    assert said["restart.succeeded"] == "pm2 restart web, exit 0, 1000ms"
    assert said["verification.passed"] == "3 attempts, 2.0s"


def test_why_without_incidents_is_none(store):
    Trail(store).healthy(8 * DAY)
    projections.fold(store.conn)
    assert why(store, "web") is None


def test_why_an_unknown_incident_is_an_error(store):
    Trail(store).hang(8 * DAY)
    projections.fold(store.conn)
    with pytest.raises(IncidentNotFound, match="no incident #7 for web; its latest is #1"):
        why(store, "web", incident_id=7)


def test_why_another_apps_incident_is_an_error(store):
    trail = Trail(store)
    trail.hang(8 * DAY, app="api")
    projections.fold(store.conn)
    with pytest.raises(IncidentNotFound, match="it is api's"):
        why(store, "web", incident_id=1)


# -- the commands ------------------------------------------------------------------------------

runner = CliRunner()
CONFIG = """
[store]
path = "recovery.db"

[[apps]]
name = "web"
url = "http://127.0.0.1:3000/"

[[apps]]
name = "api"
url = "http://127.0.0.1:3001/"
"""


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(guarded(report_command))
    app.command()(guarded(why_command))
    return app


@pytest.fixture
def workdir(tmp_path) -> Path:
    (tmp_path / "recovery.toml").write_text(CONFIG)
    return tmp_path


def recorded(workdir: Path) -> Trail:
    """A store beside the config with two hours of history, a day ago: 12 healthy checks, a hang, one more."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    s = Store.open(workdir / "recovery.db")
    trail = Trail(s, origin=now - dt.timedelta(days=1))
    for k in range(12):
        trail.healthy(600 * k)
    trail.hang(7200)
    trail.healthy(7260)
    return trail


def invoke(workdir: Path, *args: str):
    return runner.invoke(cli(), [*args, "--config", str(workdir / "recovery.toml")], env={"RECOVERY_CONFIG": ""})


def assert_one_line_exit_3(result, needle: str) -> None:
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output, result.output


def test_report_command_prints_json_for_every_configured_app(workdir):
    recorded(workdir).store.close()
    result = invoke(workdir, "report", "--since", "7d", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out["apps"]) == {"web", "api"}
    assert out["apps"]["web"]["restarts_by"]["check"] == 1 and out["apps"]["web"]["probes"] == 15


def test_report_command_limits_to_one_app(workdir):
    recorded(workdir).store.close()
    result = invoke(workdir, "report", "--app", "web", "--json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.output)["apps"]) == ["web"]


def test_report_command_prints_tables_and_markdown(workdir):
    recorded(workdir).store.close()
    text = invoke(workdir, "report", "--since", "24h")
    assert text.exit_code == 0 and "AVAILABILITY" in text.output and "restarted" in text.output, text.output
    md = invoke(workdir, "report", "--markdown")
    assert md.exit_code == 0 and md.output.startswith("# recovery report") and "## api" in md.output, md.output


def test_report_command_refuses_a_bad_since(workdir):
    assert_one_line_exit_3(invoke(workdir, "report", "--since", "last tuesday"), "--since")


def test_report_command_refuses_an_app_not_in_the_config(workdir):
    assert_one_line_exit_3(invoke(workdir, "report", "--app", "nope"), "'nope' is not in")


def test_report_command_on_a_missing_store_is_one_line_and_exit_3(workdir):
    assert_one_line_exit_3(invoke(workdir, "report"), "no event store at")
    assert not (workdir / "recovery.db").exists()


def test_why_command_prints_the_timeline(workdir):
    recorded(workdir).store.close()
    result = invoke(workdir, "why", "web")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("web incident #1: started") and lines[-1] == "ended: restarted after 8.4s, 1 restart"
    assert "(first failed probe; detected 6.4s later)" in lines[0]
    assert any("+6.4s" in line and "decision.made" in line and HANG in line for line in lines)


def test_why_command_prints_json(workdir):
    recorded(workdir).store.close()
    result = invoke(workdir, "why", "web", "--incident", "1", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["incident"]["id"] == 1 and out["events"][0]["type"] == "check.started"


def test_why_command_with_no_incident_is_one_line_and_exit_0(workdir):
    recorded(workdir).store.close()
    result = invoke(workdir, "why", "api")
    assert result.exit_code == 0 and result.output.strip() == "api: no incident recorded", result.output


def test_why_command_with_an_unknown_incident_is_one_line_and_exit_3(workdir):
    recorded(workdir).store.close()
    assert_one_line_exit_3(invoke(workdir, "why", "web", "--incident", "99"), "no incident #99 for web")


def test_every_report_command_has_help_text(workdir):
    for command in ("report", "why"):
        result = runner.invoke(cli(), [command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, result.output


def test_a_store_the_report_cannot_read_is_a_store_error_naming_it(store):
    projections.fold(store.conn)
    store.conn.execute("DROP TABLE rollup_minute")
    with pytest.raises(StoreError, match=f"cannot read the event store {store.path}: no such table: rollup_minute"):
        build_report(store, ["web"], SINCE, NOW)


def test_a_store_why_cannot_read_is_a_store_error_naming_it(store):
    projections.fold(store.conn)
    store.conn.execute("DROP TABLE incidents")
    with pytest.raises(StoreError, match=f"cannot read the event store {store.path}"):
        why(store, "web")


# -- the units the report writes with -------------------------------------------------------------


def test_counts_read_once_twice_then_n_times():
    assert [units.times(n) for n in (1, 2, 3)] == ["once", "twice", "3 times"]


def test_sizes_are_written_in_mebibytes():
    assert units.mb(60 * 1048576) == "60MB" and units.mb(62914560 + 524288, 1) == "60.5MB"


def test_percentages_round_down_so_99_899_never_reads_99_9():
    assert units.percent(99.899) == "99.89" and units.percent(100.0) == "100" and units.percent(None) == "-"


def test_one_line_collapses_whitespace_and_cuts_with_an_ellipsis():
    assert units.one_line("a\n  b") == "a b" and units.one_line("x" * 10, 5) == "xxxx…" and units.one_line(None) == ""


def test_the_hour_after_a_timestamp_crosses_midnight():
    assert units.next_hour("2026-11-30T23:59:59.999Z") == "2026-12-01T00"


def test_periods_are_named_in_days_hours_or_a_span():
    assert [units.period_label(s) for s in (7 * DAY, 86400, 3600, 90061)] == ["7 days", "24 hours", "hour", "1d01h"]


READ_SIDE = ("hints", "report", "render", "status", "units", "stats")


def test_render_imports_report_and_nothing_it_renders_imports_render():
    from tests.test_hints import imported_by

    assert "recovery.report" in imported_by("recovery.render")
    for module in ("report", "status", "hints", "projections"):
        assert "recovery.render" not in imported_by(f"recovery.{module}"), module


def test_the_read_side_modules_import_each_other_in_one_direction_only():
    from tests.test_hints import imported_by

    below = {m: imported_by(f"recovery.{m}") for m in READ_SIDE}
    circles = [
        (a, b) for a in READ_SIDE for b in READ_SIDE if f"recovery.{b}" in below[a] and f"recovery.{a}" in below[b]
    ]
    assert circles == []


def test_why_text_folds_a_probe_failing_again_and_again_into_one_line(store):
    failed = {"phase": "verify", "error": "timeout", "attempt": 1, "latency_ms": 2000}
    timeline = timeline_of(
        store,
        lambda first: [
            dataclasses.replace(first, seq=100 + n, type="probe.failed", offset_s=2.0 * n, data=failed)
            for n in range(12)
        ],
    )
    rows = timeline_text(timeline).splitlines()[1:-1]
    assert len(rows) == 1 and "#100..#111  12 ×" in rows[0] and "verify probe.failed timeout over 22.0s" in rows[0]
