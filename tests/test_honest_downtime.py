"""Downtime counts from the first failed probe: incidents, availability (both ways), MTTR, `why`,
status and the alert text, folded from a real store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from recovery import alerts, projections
from recovery.config import load
from recovery.events import Event, format_ts
from recovery.render import timeline_text
from recovery.report import build_report, why
from recovery.status import status
from recovery.store import Store

UTC = dt.UTC
HANG = "hung: PM2 says online but 3 failed probes (timeout)"


class Checks:
    """Check runs as `recovery check` records them, at seconds after `t0`, with real probe timings."""

    def __init__(self, store: Store, t0: dt.datetime) -> None:
        self.store, self.t0, self.n = store, t0, 0

    def at(self, t: float) -> str:
        return format_ts(self.t0 + dt.timedelta(seconds=t))

    def run(self, t: float, *events: tuple[float, str, dict], app: str = "web") -> None:
        self.n += 1
        rid = f"run{self.n}"
        rows = [Event("check.started", None, rid, {"trigger": "cron", "apps": [app], "dry_run": False}, ts=self.at(t))]
        rows += [Event(type_, app, rid, data, ts=self.at(when)) for when, type_, data in events]
        last = max(when for when, _, _ in events)
        rows.append(
            Event("check.finished", None, rid, {"outcome": "OK", "code": 0, "duration_ms": 1}, ts=self.at(last))
        )
        self.store.append(rows)

    def healthy(self, t: float, ms: float = 20.0) -> None:
        """A probe sent at t that answers in `ms`, the decision right after."""
        self.run(
            t,
            (t + ms / 1000, "probe.succeeded", {"phase": "check", "attempt": 1, "status": 200, "latency_ms": ms}),
            (t + ms / 1000 + 0.01, "decision.made", {"action": "none", "reason": "healthy", "state": "healthy"}),
        )

    def hang(self, t: float, *, timeout: float = 10.0, verified_after: float = 2.0) -> float:
        """Three probes sent from t, each timing out after `timeout`, then a restart verified
        `verified_after` seconds after the decision; returns the decision's offset."""
        probes = [
            (
                t + timeout * (k + 1),
                "probe.failed",
                {"phase": "check", "attempt": k + 1, "error": "timeout", "latency_ms": timeout * 1000},
            )
            for k in range(3)
        ]
        d = t + 3 * timeout + 0.2
        self.run(
            t,
            *probes,
            (d - 0.1, "process.sampled", {"source": "jlist", "known": True, "status": "online", "pid": 42, "cpu": 99}),
            (d, "decision.made", {"action": "restart", "code": "hung", "reason": HANG, "state": "recovering"}),
            (d, "restart.requested", {"by": "check", "code": "hung", "reason": HANG, "command": ["pm2", "restart"]}),
            (d + 1, "restart.succeeded", {"command": ["pm2", "restart"], "exit_code": 0, "duration_ms": 900}),
            (d + verified_after, "probe.succeeded", {"phase": "verify", "attempt": 1, "status": 200, "latency_ms": 5}),
            (d + verified_after, "verification.passed", {"attempts": 1, "seconds": verified_after, "latency_ms": 5}),
        )
        return d


T0 = dt.datetime(2026, 11, 10, 11, 50, tzinfo=UTC)


def fresh(tmp_path: Path) -> tuple[Store, Checks]:
    store = Store.open(tmp_path / "recovery.db")
    return store, Checks(store, T0)


def report(store: Store, since: dt.datetime, now: dt.datetime) -> dict:
    projections.fold(store.conn)
    return build_report(store, ["web"], format_ts(since), now).to_dict()["apps"]["web"]


def test_a_hang_caught_after_three_timeouts_lasts_from_the_first_failed_probe(tmp_path):
    store, c = fresh(tmp_path)
    c.healthy(0)
    d = c.hang(60)  # probes sent at 60, 70, 80 s; decided at 90.2 s; answering again at 92.2 s
    c.healthy(150)
    web = report(store, T0, T0 + dt.timedelta(minutes=5))
    (inc,) = web["incidents"]
    assert inc["started_at"] == c.at(60) and inc["detected_at"] == c.at(d)
    assert inc["duration_s"] == 32.2 and inc["outcome"] == "restarted"
    assert web["mttr_s"] == 32.2
    # up 0-60 s (from the healthy check to the hang's first probe) and 92.2-150 s; down 60-92.2 s
    assert inc["unobserved_s"] == 59.98  # from the last answer (0.02 s) to the first failed probe
    assert web["availability_percent"] < 100
    assert web["availability_worst_percent"] < web["availability_percent"]
    assert abs(web["unobserved_s"] - 59.97) < 0.01  # from the healthy decision (0.03 s) on
    store.close()


def test_availability_counts_downtime_from_the_first_failure_and_the_worst_case_counts_the_gap(tmp_path):
    store, c = fresh(tmp_path)
    for k in range(10):
        c.healthy(60 * k)
    c.hang(600)
    for k in range(11, 20):
        c.healthy(60 * k)
    web = report(store, T0, T0 + dt.timedelta(minutes=30))
    down = 32.2
    unobserved = 600 - (540 + 0.03)
    up = (60 * 19 + 0.03) - 0.03 - down - unobserved
    assert abs(web["availability_percent"] - 100 * up / (up + down)) < 0.01
    assert abs(web["availability_worst_percent"] - 100 * up / (up + down + unobserved)) < 0.01
    store.close()


def test_downtime_across_an_hour_boundary_is_split_between_the_hours(tmp_path):
    store, c = fresh(tmp_path)
    c.healthy(540)  # 11:59:00
    c.hang(570)  # first probe 11:59:30, decided 12:00:00.2, verified 12:00:02.2
    c.healthy(630)
    projections.fold(store.conn)
    rows = dict(
        (start, down)
        for start, down in store.conn.execute("SELECT start, down_s FROM rollup_hour WHERE app = 'web' ORDER BY start")
    )
    assert rows == {"2026-11-10T11": 30.0, "2026-11-10T12": 2.2}
    minutes = store.conn.execute("SELECT sum(down_s) FROM rollup_minute WHERE app = 'web'").fetchone()[0]
    day = store.conn.execute("SELECT sum(down_s) FROM rollup_day WHERE app = 'web'").fetchone()[0]
    assert round(minutes, 3) == round(day, 3) == 32.2
    store.close()


def test_a_gap_longer_than_nobody_was_looking_is_not_counted_as_unobserved(tmp_path):
    store, c = fresh(tmp_path)
    c.healthy(0)
    c.hang(3600)  # the last answer an hour before: nobody was looking
    c.healthy(3700)
    web = report(store, T0, T0 + dt.timedelta(hours=2))
    assert web["incidents"][0]["unobserved_s"] is None
    assert web["unobserved_s"] == 0 and web["incidents"][0]["duration_s"] == 32.2
    store.close()


def test_a_batch_of_healthy_probes_is_the_last_success_before_a_failure(tmp_path):
    store, c = fresh(tmp_path)
    c.healthy(0)
    batch = {"url": "http://127.0.0.1:1/", "phase": "check", "start": c.at(2), "status": 200}
    batch |= {"at_ms": [2000 * i for i in range(29)], "latency_ms": [20.0] * 29}
    store.append([Event("probe.batched", "web", None, batch, ts=c.at(59))])
    c.hang(60)
    web = report(store, T0, T0 + dt.timedelta(minutes=5))
    assert web["incidents"][0]["unobserved_s"] == 2.0  # the batch's last probe at 58 s
    store.close()


def test_why_and_status_count_from_the_first_failed_probe(tmp_path):
    store, c = fresh(tmp_path)
    c.healthy(0)
    c.run(
        60,
        (70, "probe.failed", {"phase": "check", "attempt": 1, "error": "timeout", "latency_ms": 10000}),
        (80, "probe.failed", {"phase": "check", "attempt": 2, "error": "timeout", "latency_ms": 10000}),
        (80.2, "decision.made", {"action": "escalate", "code": "hung", "reason": HANG, "state": "down"}),
    )
    projections.fold(store.conn)
    t = why(store, "web", now=T0 + dt.timedelta(seconds=100))
    assert t is not None and t.incident.started_at == c.at(60) and t.incident.duration_s == 40.0
    assert "(first failed probe; detected 20.2s later)" in timeline_text(t).splitlines()[0]
    path = tmp_path / "recovery.toml"
    path.write_text('[store]\npath = "recovery.db"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n')
    (row,) = status(store, load(path), now=T0 + dt.timedelta(seconds=100))
    assert row.incident_since == c.at(60) and row.since == c.at(60) and row.state == "down"
    store.close()


def test_the_recovered_alert_says_how_long_from_the_first_failed_probe(tmp_path):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    store = Store.open(tmp_path / "recovery.db")
    c = Checks(store, now - dt.timedelta(minutes=5))
    c.healthy(0)
    c.hang(60)
    c.healthy(150)
    path = tmp_path / "recovery.toml"
    path.write_text(
        '[store]\npath = "recovery.db"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n'
        '\n[alerts]\nurls = ["json://127.0.0.1:9/hook"]\nhost = "web-1"\n'
    )
    conf = load(path)
    projections.fold(store.conn)
    owed = alerts.plan(store.conn, conf.apps[0], conf.alerts, now, host="web-1")
    recovered = next(a for a in owed if a.kind == "recovered")
    assert "after 32.2s down (from " in recovered.body
    store.close()


def test_the_report_text_shows_both_availabilities_and_the_unobserved_time(tmp_path):
    from recovery.render import report_text

    store, c = fresh(tmp_path)
    c.healthy(0)
    c.hang(60)
    c.healthy(150)
    projections.fold(store.conn)
    text = report_text(build_report(store, ["web"], format_ts(T0), T0 + dt.timedelta(minutes=5)))
    head, row = text.splitlines()[2:4]
    assert head.split()[1:4] == ["AVAILABILITY", "WORST", "UNOBSERVED"]
    assert (
        row.split()[3] == "1m00s"
    )  # 59.97 s (59.97 rounds to 60.0, which is written 1m00s) from the healthy check to the first failed probe
    store.close()
