"""Projections: read models folded from `events`, disposable and rebuilt identically.

Tables (same database, so Datasette and `sqlite3` see them):
    app_state       one row per app: state and since-when, last check, last PM2 sample, pause, suspension
    incidents       one row per outage: first failed check to verified recovery (or still open)
    restarts        every restart: ours (check, schedule, operator) and PM2's own (sample deltas)
    answered_urls   per app and URL: the first probe that URL ever answered (a wrong URL never did)
    rollup_minute   per app and UTC minute (the last MINUTE_KEEP_S only), rollup_hour, rollup_day:
                    probes, failures, seconds up / down / unobserved, a latency sketch (recovery.sketch)
    projection_meta the last `seq` folded, written in the same transaction as the rows

`fold()` is incremental; `rebuild()` drops everything and folds from seq 0.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import StoreError
from .events import format_ts, parse_ts
from .model import (
    DOWN_STATES,
    MAX_GAP_S,
    STATE_CODES,
    UP_STATES,
    History,
    opens_incident,
    restarts_count_since,
    suspension_kept,
)
from .rollups import DOWN, UNOBSERVED, UP, Rollups, epoch
from .store import immediate
from .urls import shown_url

__all__ = ["DOWN_STATES", "STATE_CODES", "UP_STATES", "History", "format_ts"]

VERSION = 11  # bump when the fold changes: stale projections are rebuilt on open

SCHEMA = """
CREATE TABLE IF NOT EXISTS projection_meta (
    name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS app_state (
    app TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since TEXT NOT NULL,
    since_seq INTEGER NOT NULL,
    reason TEXT,
    last_check_at TEXT,
    last_check_seq INTEGER,
    last_latency_ms REAL,
    pm2_status TEXT,
    pid INTEGER,
    memory INTEGER,
    cpu REAL,
    uptime_s REAL,
    sampled_at TEXT,
    restart_time INTEGER,
    instances INTEGER,
    paused_until TEXT,
    pause_reason TEXT,
    suspended_at TEXT,
    suspend_reason TEXT,
    lifted_at TEXT,
    open_incident INTEGER,
    last_restart_at TEXT,
    ours_since_sample INTEGER NOT NULL DEFAULT 0,
    ours_since_pid INTEGER NOT NULL DEFAULT 0,
    pm2_seen_since_sample INTEGER NOT NULL DEFAULT 0,
    workers TEXT,
    failed_workers TEXT,
    counted_at TEXT,
    last_ok_at TEXT,
    first_fail_at TEXT
);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    started_at TEXT NOT NULL,
    started_seq INTEGER NOT NULL,
    detected_at TEXT,
    unobserved_s REAL,
    ended_at TEXT,
    ended_seq INTEGER,
    duration_s REAL,
    restarts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'open',
    first_reason TEXT,
    evidence TEXT NOT NULL DEFAULT '[]',
    workers TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS incidents_app_start ON incidents (app, started_at);
CREATE TABLE IF NOT EXISTS restarts (
    seq INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    at TEXT NOT NULL,
    by TEXT NOT NULL,
    source TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    reason TEXT,
    outcome TEXT,
    run_id TEXT,
    incident_id INTEGER,
    code TEXT,
    pm_ids TEXT
);
CREATE INDEX IF NOT EXISTS restarts_app_at ON restarts (app, at);
CREATE TABLE IF NOT EXISTS decision_points (
    seq INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    ts TEXT NOT NULL,
    run_id TEXT,
    action TEXT NOT NULL,
    code TEXT NOT NULL,
    state TEXT NOT NULL,
    dry_run INTEGER NOT NULL DEFAULT 0,
    probes TEXT NOT NULL DEFAULT '[]',
    probes_n INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    first_latency_ms REAL,
    first_status INTEGER,
    sample TEXT,
    restarted_at TEXT,
    verified INTEGER
);
CREATE INDEX IF NOT EXISTS decision_points_app ON decision_points
    (app, seq, ts, code, probes_n, failed, first_latency_ms, first_status);
CREATE INDEX IF NOT EXISTS decision_points_run ON decision_points (run_id);
CREATE TABLE IF NOT EXISTS answered_urls (
    app TEXT NOT NULL,
    url TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    PRIMARY KEY (app, url)
);
"""


def _rollup_table(level: str, *, percentiles: bool) -> str:
    """One level of the rollups: the same columns at every level; hours and days also keep their percentiles."""
    extra = "    p50_ms REAL,\n    p95_ms REAL,\n    p99_ms REAL,\n" if percentiles else ""
    return (
        f"CREATE TABLE IF NOT EXISTS rollup_{level} (\n"
        "    app TEXT NOT NULL,\n    start TEXT NOT NULL,\n"
        "    probes INTEGER NOT NULL DEFAULT 0,\n    failures INTEGER NOT NULL DEFAULT 0,\n"
        "    up_s REAL NOT NULL DEFAULT 0,\n    down_s REAL NOT NULL DEFAULT 0,\n"
        "    unobserved_s REAL NOT NULL DEFAULT 0,\n    latency TEXT NOT NULL DEFAULT '[0]',\n"
        f"{extra}    PRIMARY KEY (app, start)\n) WITHOUT ROWID;\n"
    )


SCHEMA += "".join(_rollup_table(level, percentiles=level != "minute") for level in ("minute", "hour", "day"))

TABLES = (
    "app_state",
    "incidents",
    "restarts",
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    "decision_points",
    "answered_urls",
    "projection_meta",
)


def seconds_between(a: str, b: str) -> float:
    return (parse_ts(b) - parse_ts(a)).total_seconds()


@dataclass
class _App:
    """The mutable fold state of one app (a row of app_state)."""

    app: str
    state: str = "unknown"
    since: str = ""
    since_seq: int = 0
    reason: str | None = None
    last_check_at: str | None = None
    last_check_seq: int | None = None
    last_latency_ms: float | None = None
    pm2_status: str | None = None
    pid: int | None = None
    memory: int | None = None
    cpu: float | None = None
    uptime_s: float | None = None
    sampled_at: str | None = None
    restart_time: int | None = None
    instances: int | None = None
    paused_until: str | None = None
    pause_reason: str | None = None
    suspended_at: str | None = None
    suspend_reason: str | None = None
    lifted_at: str | None = None
    open_incident: int | None = None
    last_restart_at: str | None = None
    # Bookkeeping to tell PM2's own restarts from ours: restarts we made, and restarts of
    # PM2's already counted from a pid change, since the last full (jlist) sample.
    ours_since_sample: int = 0
    ours_since_pid: int = 0
    pm2_seen_since_sample: int = 0
    # A cluster's workers at the last sample, by pm_id, with the same bookkeeping per worker
    # (JSON, see `workers_of`); None for an app with one process.
    workers: str | None = None
    failed_workers: str | None = None  # JSON [pm_id, ...] the last decision named as failed
    # Honest downtime: the time counted into the rollups so far, the last successful check probe,
    # and the start of the first failed one since (None while the app answers).
    counted_at: str | None = None
    last_ok_at: str | None = None
    first_fail_at: str | None = None


_STATE_COLUMNS = list(_App.__dataclass_fields__)


class Folder:
    """Applies events to the projection tables inside one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.apps: dict[str, _App] = {}
        self.rollups = Rollups(conn)
        self.incidents: dict[int, dict[str, Any]] = {}
        self.seen = RunObservations()  # a run's check probes and sample, until its decision is folded
        self.answered: dict[tuple[str, str], tuple[int, str]] = {}  # (app, url) -> first (seq, ts) of this batch

    # -- loading and saving --------------------------------------------------------------

    def app(self, name: str) -> _App:
        a = self.apps.get(name)
        if a is None:
            row = self.conn.execute(
                f"SELECT {', '.join(_STATE_COLUMNS)} FROM app_state WHERE app = ?", (name,)
            ).fetchone()
            a = _App(**dict(zip(_STATE_COLUMNS, row))) if row else _App(name)
            self.apps[name] = a
        return a

    def incident(self, iid: int) -> dict[str, Any]:
        inc = self.incidents.get(iid)
        if inc is None:
            row = self.conn.execute(
                "SELECT id, app, started_at, started_seq, ended_at, ended_seq, duration_s, restarts, outcome,"
                " first_reason, evidence, workers FROM incidents WHERE id = ?",
                (iid,),
            ).fetchone()
            keys = (
                "id",
                "app",
                "started_at",
                "started_seq",
                "ended_at",
                "ended_seq",
                "duration_s",
                "restarts",
                "outcome",
                "first_reason",
                "evidence",
                "workers",
            )
            inc = dict(zip(keys, row))
            inc["evidence"] = json.loads(inc["evidence"])
            inc["workers"] = json.loads(inc["workers"] or "[]")
            self.incidents[iid] = inc
        return inc

    def save(self, last_seq: int) -> None:
        placeholders = ", ".join("?" * len(_STATE_COLUMNS))
        self.conn.executemany(
            f"INSERT OR REPLACE INTO app_state ({', '.join(_STATE_COLUMNS)}) VALUES ({placeholders})",
            [tuple(getattr(a, c) for c in _STATE_COLUMNS) for a in self.apps.values()],
        )
        self.conn.executemany(
            "UPDATE incidents SET ended_at = ?, ended_seq = ?, duration_s = ?, restarts = ?, outcome = ?,"
            " evidence = ?, workers = ? WHERE id = ?",
            [
                (
                    i["ended_at"],
                    i["ended_seq"],
                    i["duration_s"],
                    i["restarts"],
                    i["outcome"],
                    json.dumps(i["evidence"]),
                    json.dumps(i["workers"], separators=(",", ":")),
                    i["id"],
                )
                for i in self.incidents.values()
            ],
        )
        self.rollups.save()
        self.conn.executemany(
            "INSERT OR IGNORE INTO answered_urls (app, url, first_seq, first_at) VALUES (?, ?, ?, ?)",
            [(app, url, seq, ts) for (app, url), (seq, ts) in self.answered.items()],
        )
        self.answered.clear()
        self.conn.execute(
            "INSERT OR REPLACE INTO projection_meta (name, last_seq, version) VALUES ('events', ?, ?)",
            (last_seq, VERSION),
        )
        self.apps.clear()
        self.incidents.clear()

    # -- the fold ------------------------------------------------------------------------

    def apply(self, seq: int, ts: str, app_name: str | None, type_: str, run_id: str | None, data: dict) -> None:
        if ts > self.rollups.latest:
            self.rollups.latest = ts
        if app_name is None:
            if type_ == "restart.requested":
                # `pm2 resurrect` (code pm2_down) is one event for every app it brings back:
                # their new pids are ours, not PM2 restarting them on its own.
                # They warm up as after any restart of ours (restart_grace).
                for name in data.get("apps") or ():
                    a = self.app(name)
                    a.ours_since_sample += max(1, a.instances or 1)
                    a.ours_since_pid += 1
                    credit_workers(a, None, 1)
                    a.last_restart_at = ts
                    self.conn.execute(
                        "UPDATE decision_points SET restarted_at = ? WHERE app = ? AND run_id IS ?", (ts, name, run_id)
                    )
            return
        a = self.app(app_name)
        if type_ == "probe.succeeded" and data.get("url"):
            self.answered.setdefault((app_name, str(data["url"])), (seq, ts))  # verification probes count too
        if type_ in ("probe.succeeded", "probe.failed"):
            if data.get("phase", "check") != "check":
                return
            self.seen.see(app_name, run_id, type_, data)
            self.count_probe(a, ts, type_ == "probe.succeeded", data.get("latency_ms"))
        elif type_ == "probe.batched":
            self.batched(a, seq, data)
        elif type_ == "decision.made":
            self.point(app_name, seq, ts, run_id, data)
            self.decided(a, seq, ts, data)
            self.workers_decided(a, data)
        elif type_ == "process.sampled":
            self.seen.see(app_name, run_id, type_, data)
            self.sampled(a, seq, ts, run_id, data)
        elif type_ == "restart.requested":
            if data.get("by", "check") == "check":
                self.conn.execute(
                    "UPDATE decision_points SET restarted_at = ? WHERE app = ? AND run_id IS ?", (ts, app_name, run_id)
                )
            a.last_restart_at = ts if data.get("by", "check") == "check" else a.last_restart_at
            pm_id = worker_id(data)
            a.ours_since_sample += 1 if pm_id is not None else max(1, a.instances or 1)  # one worker, or all
            a.ours_since_pid += 1
            credit_workers(a, pm_id, 1)
            iid = a.open_incident
            if iid is not None:
                inc = self.incident(iid)
                inc["restarts"] += 1
                inc["evidence"].append(seq)
            self.conn.execute(
                "INSERT OR REPLACE INTO restarts (seq, app, at, by, source, count, reason, outcome, run_id,"
                " incident_id, code, pm_ids) VALUES (?, ?, ?, ?, 'recovery', 1, ?, 'requested', ?, ?, ?, ?)",
                (
                    seq,
                    app_name,
                    ts,
                    data.get("by", "check"),
                    data.get("reason"),
                    run_id,
                    iid,
                    decision_code(data),
                    json.dumps([pm_id]) if pm_id is not None else None,
                ),
            )
            self.set_state(a, "recovering", ts, seq, data.get("reason"))
        elif type_ in ("restart.succeeded", "restart.failed", "verification.passed", "verification.failed"):
            outcome = {
                "restart.succeeded": "succeeded",
                "restart.failed": "failed",
                "verification.passed": "verified",
                "verification.failed": "unverified",
            }[type_]
            self.conn.execute(
                "UPDATE restarts SET outcome = ? WHERE seq = (SELECT max(seq) FROM restarts"
                " WHERE app = ? AND source = 'recovery' AND run_id IS ?)",
                (outcome, app_name, run_id),
            )
            if type_ != "restart.succeeded":
                self.conn.execute(
                    "UPDATE decision_points SET verified = ? WHERE app = ? AND run_id IS ?",
                    (type_ == "verification.passed", app_name, run_id),
                )
            if type_ == "restart.failed":  # PM2 did not restart it: nothing of ours to see in a sample
                pm_id = worker_id(data)
                a.ours_since_sample = max(
                    0, a.ours_since_sample - (1 if pm_id is not None else max(1, a.instances or 1))
                )
                a.ours_since_pid = max(0, a.ours_since_pid - 1)
                credit_workers(a, pm_id, -1)
            if a.open_incident is not None:
                self.incident(a.open_incident)["evidence"].append(seq)
            if type_ == "verification.passed":
                a.failed_workers = None
                self.count_gap(a, ts)  # down until it answered again
                a.last_ok_at, a.first_fail_at = ts, None
                self.set_state(a, "healthy", ts, seq, "verified after restart")
                self.close_incident(a, seq, ts, "restarted")
                self.lift(a, ts)
            elif type_ in ("restart.failed", "verification.failed"):
                self.set_state(a, "down", ts, seq, data.get("error") or data.get("last_error") or type_)
        elif type_ == "maintenance.started":
            a.paused_until = data.get("until")
            a.pause_reason = data.get("reason")
        elif type_ == "maintenance.ended":
            a.paused_until = None
            a.pause_reason = None
        elif type_ == "suspension.lifted":
            self.lift(a, ts)
            if a.state == "suspended":
                self.set_state(a, "down", ts, seq, "suspension lifted by an operator")

    def count_probe(self, a: _App, ts: str, ok: bool, latency_ms: float | None) -> None:
        """One check probe at `ts` into the rollups (a verification probe is not counted); a failed
        one after a success is where the app's next downtime starts (when it was sent)."""
        self.rollups.probe(a.app, ts, ok, latency_ms)
        if ok:
            if latency_ms is not None:
                a.last_latency_ms = float(latency_ms)
            a.last_ok_at, a.first_fail_at = ts, None
        elif a.first_fail_at is None:
            a.first_fail_at = failure_start(ts, latency_ms, a.last_ok_at)

    def batched(self, a: _App, seq: int, data: dict) -> None:
        """A `probe.batched` event: each probe in it is a successful check probe followed by a healthy
        decision that changed nothing (`steady`), at its own time (start + at_ms)."""
        url = data.get("url")
        if url:
            self.answered.setdefault((a.app, str(url)), (seq, data["start"]))
        start = epoch(data["start"])
        n = min(len(data["at_ms"]), len(data["latency_ms"]))
        if not n:
            return
        times = [start + ms / 1000.0 for ms in data["at_ms"][:n]]
        latencies = [float(ms) for ms in data["latency_ms"][:n]]
        self.rollups.probes(a.app, times, latencies)
        last = format_ts(_dt.datetime.fromtimestamp(times[-1], _dt.UTC))
        a.last_latency_ms = latencies[-1]
        a.last_ok_at, a.first_fail_at = last, None
        self.steady(a, seq, last, times)

    def steady(self, a: _App, seq: int, ts: str, times: list[float] | None = None) -> None:
        """Healthy checks that changed nothing (the probes of a batch, at epoch `times`; the last at
        `ts`): the time since the last check counts for the app's state, as between checks; the
        last is the app's last check. No decision point is kept."""
        if a.counted_at is not None and a.state in UP_STATES | DOWN_STATES:
            index = UP if a.state in UP_STATES else DOWN
            begin = prev = epoch(a.counted_at)
            for t in times or [epoch(ts)]:
                if not 0 <= t - prev <= MAX_GAP_S:  # nobody was looking: that gap counts for nothing
                    self.rollups.span(a.app, begin, prev, index, observed=True)
                    begin = t
                prev = t
            self.rollups.span(a.app, begin, prev, index, observed=True)
        a.counted_at = ts
        a.last_check_at, a.last_check_seq = ts, seq

    def count_gap(self, a: _App, ts: str) -> None:
        """The time since the last time counted (a check, a verification) counts for the state the
        app was in during it."""
        if a.counted_at is not None and a.state in UP_STATES | DOWN_STATES:
            self.rollups.span(a.app, epoch(a.counted_at), epoch(ts), UP if a.state in UP_STATES else DOWN)
        a.counted_at = ts

    def count_failure(self, a: _App, ts: str) -> None:
        """A decision at `ts` that finds the app down after it was up: from the last time counted to
        the last success the app was up, from there to the first failed probe nobody saw (unobserved),
        and from that first failure on it was down."""
        d = epoch(ts)
        f = min(epoch(a.first_fail_at), d) if a.first_fail_at else d
        c = epoch(a.counted_at) if a.counted_at is not None else None
        if c is not None and a.state in UP_STATES:
            u = min(max(c, epoch(a.last_ok_at)) if a.last_ok_at else c, f)
            self.rollups.span(a.app, c, u, UP)
            self.rollups.span(a.app, u, f, UNOBSERVED)
        self.rollups.span(a.app, f if c is None else max(c, f), d, DOWN)
        a.counted_at = ts

    def point(self, app: str, seq: int, ts: str, run_id: str | None, data: dict) -> None:
        """A decision with what it was decided on, for `recovery replay`."""
        taken = self.seen.take(app, run_id)
        probes, sample = taken if taken is not None else _observed_before(self.conn, app, run_id, seq)
        self.conn.execute(
            "INSERT OR REPLACE INTO decision_points (seq, app, ts, run_id, action, code, state, dry_run, probes,"
            " probes_n, failed, first_latency_ms, first_status, sample) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                app,
                ts,
                run_id,
                data.get("action") or "none",
                decision_code(data),
                data.get("state") or "down",
                bool(data.get("dry_run")),
                json.dumps(probes, separators=(",", ":")),
                len(probes),
                sum(1 for probe in probes if not probe[0]),
                probes[0][2] if probes else None,
                probes[0][3] if probes else None,
                json.dumps(sample, separators=(",", ":")) if sample is not None else None,
            ),
        )

    def decided(self, a: _App, seq: int, ts: str, data: dict) -> None:
        state = data.get("state") or "down"  # every landed version recorded the state
        if data.get("dry_run") and state == "recovering":
            state = "down"
        state = suspension_kept(state, str(data.get("code") or ""), a.suspended_at)
        if state in ("paused", "stopped"):
            a.first_fail_at = None  # failures while paused or stopped start no downtime of their own
        if state == "paused":
            a.counted_at = ts  # a pause is counted for nothing
        elif state in ("down", "recovering", "suspended") and a.state not in DOWN_STATES:
            self.count_failure(a, ts)
        else:
            self.count_gap(a, ts)
        a.last_check_at, a.last_check_seq = ts, seq
        if state == "paused":
            return  # a pause hides the health state, it does not replace it
        if state in UP_STATES:
            if a.open_incident is not None:
                self.incident(a.open_incident)["evidence"].append(seq)
                self.close_incident(a, seq, ts, "recovered without restart")
            if a.suspended_at is not None:
                self.lift(a, ts)
        elif state in ("down", "recovering", "suspended"):
            if a.open_incident is None and opens_incident(state, decision_code(data)):
                started, unobserved = incident_start(a, ts)
                cur = self.conn.execute(
                    "INSERT INTO incidents (app, started_at, started_seq, detected_at, unobserved_s, first_reason,"
                    " evidence) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (a.app, started, seq, ts, unobserved, data.get("reason"), json.dumps([seq])),
                )
                a.open_incident = cur.lastrowid
                if a.state not in DOWN_STATES:
                    self.set_state(a, state, started, seq, data.get("reason"))  # down since the first failure
            elif a.open_incident is not None:
                self.incident(a.open_incident)["evidence"].append(seq)
            if state == "suspended" and a.suspended_at is None:
                a.suspended_at, a.suspend_reason = ts, data.get("reason")
        elif state == "stopped" and a.open_incident is not None:
            self.close_incident(a, seq, ts, "stopped by an operator")
        self.set_state(a, state, ts, seq, data.get("reason"))

    def sampled(self, a: _App, seq: int, ts: str, run_id: str | None, data: dict) -> None:
        if data.get("error"):
            return
        theirs, why = own_restarts(a, data)
        named = restarted_workers(a, data) if theirs else []
        old_pid = a.pid
        a.pm2_status = data.get("status")
        a.sampled_at = ts
        for key in ("pid", "memory", "cpu", "uptime_s"):
            if key in data:
                setattr(a, key, data[key])
        instances = data.get("instances")
        a.instances = _instance_count(a, data)
        if isinstance(instances, list):
            a.pid = (data.get("pids") or [None])[0]
        if theirs:
            self.pm2_restart(a, seq, ts, run_id, theirs, why, [w["pm_id"] for w in named])
        spend_credits(a, data, old_pid, theirs)
        track_workers(a, data, named)

    def pm2_restart(
        self, a: _App, seq: int, ts: str, run_id: str | None, count: int, reason: str, pm_ids: list[int]
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO restarts (seq, app, at, by, source, count, reason, outcome, run_id, incident_id,"
            " pm_ids) VALUES (?, ?, ?, 'pm2', 'pm2', ?, ?, 'seen', ?, ?, ?)",
            (seq, a.app, ts, count, reason, run_id, a.open_incident, json.dumps(pm_ids) if pm_ids else None),
        )

    def workers_decided(self, a: _App, data: dict) -> None:
        """The workers a decision names as failed (a hung worker of a cluster), kept until the app is up
        again; the incident keeps every worker named during it."""
        state = data.get("state")
        if state in UP_STATES:
            a.failed_workers = None
            return
        failed = failed_workers(data)
        if failed is None:
            return
        a.failed_workers = json.dumps(failed)
        worker = (data.get("inputs") or {}).get("worker")
        if a.open_incident is not None and isinstance(worker, dict) and isinstance(worker.get("pm_id"), int):
            named = self.incident(a.open_incident)["workers"]
            entry = {k: worker.get(k) for k in ("pm_id", "pid", "evidence")}
            if entry not in named:
                named.append(entry)

    def set_state(self, a: _App, state: str, ts: str, seq: int, reason: str | None) -> None:
        if state != a.state:
            a.state, a.since, a.since_seq = state, ts, seq
        a.reason = reason

    def close_incident(self, a: _App, seq: int, ts: str, outcome: str) -> None:
        if a.open_incident is None:
            return
        a.failed_workers = None
        inc = self.incident(a.open_incident)
        inc["ended_at"], inc["ended_seq"], inc["outcome"] = ts, seq, outcome
        inc["duration_s"] = round(max(0.0, seconds_between(inc["started_at"], ts)), 3)
        a.first_fail_at = None
        if seq not in inc["evidence"]:
            inc["evidence"].append(seq)
        a.open_incident = None

    def lift(self, a: _App, ts: str) -> None:
        if a.suspended_at is not None:
            a.suspended_at, a.suspend_reason, a.lifted_at = None, None, ts


def failure_start(ts: str, latency_ms: float | None, last_ok_at: str | None) -> str:
    """When a failed probe recorded at `ts` was sent (its latency before), not before the last success."""
    if not isinstance(latency_ms, (int, float)) or isinstance(latency_ms, bool) or not latency_ms > 0:
        return ts
    sent = format_ts(parse_ts(ts) - _dt.timedelta(milliseconds=min(float(latency_ms), 86_400_000.0)))
    return max(sent, last_ok_at) if last_ok_at else sent


def incident_start(a: _App, ts: str) -> tuple[str, float | None]:
    """Where an incident a decision at `ts` opens starts: the app's first failed check probe since its
    last success (else the decision), and the unobserved seconds from that success to it (None
    when unknown, or longer than MAX_GAP_S: nobody was looking)."""
    started = a.first_fail_at if a.first_fail_at and a.first_fail_at <= ts else ts
    if a.last_ok_at is None or a.last_ok_at > started:
        return started, None
    gap = seconds_between(a.last_ok_at, started)
    return started, round(gap, 3) if gap <= MAX_GAP_S else None


def _instance_count(a: _App, data: dict) -> int | None:
    instances = data.get("instances")
    return len(instances) if isinstance(instances, list) else (1 if data.get("known") else a.instances)


def _restart_total(data: dict) -> int | None:
    """PM2's restart counter summed over instances; None for the cheap sample, which has none."""
    instances = data.get("instances")
    if isinstance(instances, list):
        # A worker without a counter (the cheap sample of a cluster) makes the sum unknown, not lower.
        if not instances or any(not isinstance(i, dict) or i.get("restart_time") is None for i in instances):
            return None
        return sum(int(i["restart_time"]) for i in instances)
    return int(data["restart_time"]) if data.get("restart_time") is not None else None


def spend_credits(a: _App, data: dict, old_pid: int | None, theirs: int) -> None:
    """After a sample: the restarts of ours it shows are spent; those it does not show yet stay
    credited (a sample taken while `pm2 restart` was still running, by this run or another: an
    operator's `recovery restart` during `watch`), so the next sample does not take them for PM2's."""
    total = _restart_total(data)
    if total is None:  # the cheap sample: a new pid spends one restart of ours
        a.pm2_seen_since_sample += theirs
        new_pid = data.get("pid")
        if a.ours_since_pid and new_pid and old_pid and new_pid != old_pid:
            a.ours_since_pid -= 1
        return
    # No earlier counter, or one that went back (a new PM2 daemon counts from 0): nothing to wait for.
    grown = total - a.restart_time if a.restart_time is not None and total >= a.restart_time else a.ours_since_sample
    a.ours_since_sample = max(0, a.ours_since_sample - grown)
    a.ours_since_pid = min(a.ours_since_pid, a.ours_since_sample)
    a.restart_time = total
    a.pm2_seen_since_sample = 0


def own_restarts(a: _App, data: dict) -> tuple[int, str]:
    """How many restarts PM2 made on its own that this sample reveals, against the app's state
    before it (0 when none), and the evidence in words.

    A full sample shows PM2's restart counter grown by more than our restarts (and PM2's
    already counted from a pid change) explain; the cheap sample has no counter, so a new pid
    that none of our restarts explains counts as one.
    """
    if data.get("error"):
        return 0, ""
    total = _restart_total(data)
    if total is None:
        if isinstance(data.get("instances"), list):
            # A cluster's cheap sample: a worker with a new pid that none of our restarts explains.
            named = [] if a.ours_since_pid else restarted_workers(a, data)
            if named:
                return sum(w["count"] for w in named), "new pid of worker " + ", ".join(
                    f"#{w['pm_id']} {w['old_pid']} -> {w['new_pid']}" for w in named
                )
            return 0, ""
        new_pid = data.get("pid")
        if a.pid and new_pid and new_pid != a.pid and _instance_count(a, data) == 1 and not a.ours_since_pid:
            return 1, f"new pid {a.pid} -> {new_pid}"
        return 0, ""
    if a.restart_time is not None and total > a.restart_time:
        theirs = total - a.restart_time - a.ours_since_sample - a.pm2_seen_since_sample
        if theirs > 0:
            return theirs, f"PM2 restart_time {a.restart_time} -> {total}"
    return 0, ""


# -- the workers of a cluster -----------------------------------------------------------------
# Per worker (by pm_id) the fold keeps what the app-wide bookkeeping above keeps for the app: its
# pid, PM2's restart counter at the last full sample, our restarts of it not yet seen in that
# counter (`ours`) or as a new pid (`ours_pid`), PM2's restarts of it already counted from a new
# pid (`seen`); and, for `recovery status`, its status, memory and CPU at the last sample.


def worker_id(data: dict) -> int | None:
    """The pm_id of the one worker a restart event is about; None for the whole app."""
    pm_id = data.get("pm_id")
    return pm_id if isinstance(pm_id, int) and not isinstance(pm_id, bool) else None


def workers_of(a: _App) -> dict[int, dict[str, Any]]:
    """The app's workers at its last sample, by pm_id ({} for an app with one process)."""
    if not a.workers:
        return {}
    return {int(w["pm_id"]): w for w in json.loads(a.workers)}


def _save_workers(a: _App, workers: dict[int, dict[str, Any]]) -> None:
    a.workers = json.dumps([workers[k] for k in sorted(workers)], separators=(",", ":")) if workers else None


def credit_workers(a: _App, pm_id: int | None, n: int) -> None:
    """A restart of ours (n=1), or one that failed (n=-1), of worker `pm_id` or of every worker."""
    workers = workers_of(a)
    if not workers:
        return
    for k, w in workers.items():
        if pm_id is None or k == pm_id:
            w["ours"] = max(0, int(w.get("ours") or 0) + n)
            w["ours_pid"] = max(0, int(w.get("ours_pid") or 0) + n)
    _save_workers(a, workers)


def failed_workers(data: dict) -> list[int] | None:
    """The pm_ids a decision names as failed: `inputs.workers.failed`, else `inputs.worker`; None
    when it names none (a decision about the app as a whole)."""
    inputs = data.get("inputs") or {}
    workers = inputs.get("workers")
    if isinstance(workers, dict) and isinstance(workers.get("failed"), list) and workers["failed"]:
        return [int(k) for k in workers["failed"] if isinstance(k, int)]
    worker = inputs.get("worker")
    if isinstance(worker, dict) and isinstance(worker.get("pm_id"), int):
        return [worker["pm_id"]]
    return None


def restarted_workers(a: _App, data: dict) -> list[dict[str, Any]]:
    """The workers of a cluster that PM2 restarted on its own, as the sample `data` shows them
    against the app's state before it: [{pm_id, old_pid, new_pid, count, exit_code?}].

    A full sample: the worker's restart counter grew by more than our restarts of it (and PM2's
    already counted from a new pid) explain. The cheap sample: the worker has a new pid that none
    of our restarts of it explains.
    """
    instances = data.get("instances")
    if data.get("error") or not isinstance(instances, list):
        return []
    before = workers_of(a)
    out = []
    for i in instances:
        if not isinstance(i, dict) or not isinstance(i.get("pm_id"), int) or i["pm_id"] not in before:
            continue
        w = before[i["pm_id"]]
        rt, old_rt = i.get("restart_time"), w.get("restart_time")
        if rt is None:
            changed = bool(w.get("pid") and i.get("pid") and i["pid"] != w["pid"])
            n = 1 if changed and not w.get("ours_pid") else 0
        elif old_rt is not None and rt >= old_rt:
            n = rt - old_rt - int(w.get("ours") or 0) - int(w.get("seen") or 0)
        else:
            n = 0  # no earlier counter, or one that went back (a new PM2 daemon counts from 0)
        if n > 0:
            named: dict[str, Any] = {"pm_id": i["pm_id"], "old_pid": w.get("pid"), "new_pid": i.get("pid"), "count": n}
            if i.get("exit_code") is not None:
                named["exit_code"] = i["exit_code"]
            out.append(named)
    return out


def restarted_fields(a: _App, data: dict) -> dict[str, Any]:
    """What a `process.restarted` event says of the workers PM2 restarted (see restarted_workers):
    `workers`, and `pm_id`, `old_pid`, `new_pid` when it was one worker; {} for an app with one process."""
    named = restarted_workers(a, data)
    if not named:
        return {}
    out: dict[str, Any] = {"workers": named}
    if len(named) == 1:
        out.update(pm_id=named[0]["pm_id"], old_pid=named[0]["old_pid"], new_pid=named[0]["new_pid"])
    return out


def track_workers(a: _App, data: dict, named: list[dict[str, Any]]) -> None:
    """After a sample: each worker's pid, status, memory and CPU, and its bookkeeping (as
    `spend_credits` does for the app). A full sample replaces the workers; the cheap one, which
    may miss a worker (no pid file while PM2 starts it), updates those it shows."""
    instances = data.get("instances")
    if not isinstance(instances, list):
        if data.get("known") and data.get("source") == "jlist":
            a.workers = None  # one process now
        return
    before = workers_of(a)
    theirs = {w["pm_id"]: w["count"] for w in named}
    full = _restart_total(data) is not None
    after: dict[int, dict[str, Any]] = {}
    if not full:
        # A worker without a pid file (PM2 is starting it) keeps its bookkeeping; what it is now is unknown.
        after = {k: {**w, "pid": None, "status": None, "memory": None, "cpu": None} for k, w in before.items()}
    for i in instances:
        if not isinstance(i, dict) or not isinstance(i.get("pm_id"), int):
            continue
        pm_id = i["pm_id"]
        w = dict(before.get(pm_id) or {"pm_id": pm_id})
        if full:
            rt, old_rt = int(i["restart_time"]), w.get("restart_time")
            grown = rt - old_rt if old_rt is not None and rt >= old_rt else int(w.get("ours") or 0)
            w["ours"] = max(0, int(w.get("ours") or 0) - grown)
            w["ours_pid"] = min(int(w.get("ours_pid") or 0), w["ours"])
            w["restart_time"] = rt
            w["seen"] = 0
        else:
            w["seen"] = int(w.get("seen") or 0) + theirs.get(pm_id, 0)
            if w.get("ours_pid") and w.get("pid") and i.get("pid") and i["pid"] != w["pid"]:
                w["ours_pid"] -= 1
        for key in ("pid", "status", "memory", "cpu"):
            w[key] = i.get(key)
        after[pm_id] = w
    _save_workers(a, after)


def point_probe(type_: str, data: dict) -> list[Any]:
    """A check probe as decision_points keeps it: [ok, attempt, latency_ms, status, error]."""
    return [
        type_ == "probe.succeeded",
        data.get("attempt"),
        data.get("latency_ms"),
        data.get("status"),
        data.get("error"),
    ]


# A sample's instance started less than this long ago carries what the crash-loop rule reads.
YOUNG_S = 3600.0


def point_sample(data: dict) -> list[Any]:
    """A PM2 sample as decision_points keeps it: [status, known, source, pid, instances, error],
    and, when PM2's daemon was found down or frozen or an instance PM2 started less than YOUNG_S
    ago is there, [daemon or None]; then, for such an instance (the one with unstable restarts,
    else the youngest), what the crash-loop rule reads of it:
    [status, uptime or seconds since its start, restart_time, unstable_restarts, exit_code]."""
    instances = data.get("instances")
    count = len(instances) if isinstance(instances, list) else None
    row = [data.get("status"), data.get("known"), data.get("source"), data.get("pid"), count, data.get("error")]
    daemon = data["daemon"] if isinstance(data.get("daemon"), dict) else None
    young = []
    for i in instances if isinstance(instances, list) else [data]:
        up = i.get("uptime_s", i.get("since_start_s")) if isinstance(i, dict) else None
        if isinstance(up, (int, float)) and up < YOUNG_S:
            young.append((not i.get("unstable_restarts"), up, i))
    if young:
        _, up, i = min(young, key=lambda y: (y[0], y[1]))
        facts = [i.get("status", data.get("status")), up, i.get("restart_time"), i.get("unstable_restarts")]
        return [*row, daemon, *facts, i.get("exit_code")]
    return [*row, daemon] if daemon is not None else row


class RunObservations:
    """Each run's check probes and last PM2 sample, as decision_points keeps them, held until the
    run's decision takes them: for the fold, and for the replay of events not folded (yet)."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], tuple[list[list[Any]], list[Any] | None]] = {}

    def see(self, app: str, run_id: str | None, type_: str, data: dict) -> None:
        """A probe or a PM2 sample of the run; verification probes and samples after a restart do not count."""
        key = (app, run_id or "")
        probes, sample = self.pending.get(key) or ([], None)
        if type_ == "process.sampled":
            if data.get("after_restart"):
                return
            sample = point_sample(data)
        elif data.get("phase", "check") == "check":
            probes.append(point_probe(type_, data))
        else:
            return
        self.pending[key] = (probes, sample)

    def take(self, app: str, run_id: str | None) -> tuple[list[list[Any]], list[Any] | None] | None:
        """The run's probes and sample, once its decision is made; None when nothing was seen."""
        return self.pending.pop((app, run_id or ""), None)


def _observed_before(
    conn: sqlite3.Connection, app: str, run_id: str | None, seq: int
) -> tuple[list[list[Any]], list[Any] | None]:
    """A run's check probes and last sample before its decision, read back from the events (for a
    run split across two fold batches)."""
    seen = RunObservations()
    rows = conn.execute(
        "SELECT type, data FROM events WHERE run_id IS ? AND app = ? AND seq < ?"
        " AND type IN ('probe.succeeded', 'probe.failed', 'process.sampled') ORDER BY seq",
        (run_id, app, seq),
    )
    for type_, text in rows:
        seen.see(app, run_id, type_, json.loads(text) if text else {})
    return seen.take(app, run_id) or ([], None)


def restarts_not_folded(conn: sqlite3.Connection, app: str) -> int:
    """Restarts of ours requested (any run, any `by`) after the last folded event, less those that failed."""
    rows = conn.execute(
        "SELECT type, count(*) FROM events WHERE app = ? AND type IN ('restart.requested', 'restart.failed')"
        " AND seq > ? GROUP BY type",
        (app, last_folded(conn)),
    ).fetchall()
    counts = dict(rows)
    return max(0, counts.get("restart.requested", 0) - counts.get("restart.failed", 0))


def app_before(conn: sqlite3.Connection, app: str) -> _App:
    """The app's folded state (its app_state row), as the next sample will be compared with."""
    return Folder(conn).app(app)


# -- running the fold ---------------------------------------------------------------------


def ensure(conn: sqlite3.Connection) -> None:
    """Create the projection tables; rebuild them when they come from another fold version."""
    try:
        row = conn.execute("SELECT version FROM projection_meta WHERE name = 'events'").fetchone()
    except sqlite3.OperationalError:
        row = None  # no projections yet
    if row is not None and row[0] == VERSION:
        return  # the usual case, on every check run: nothing to create
    _exec_all(conn, SCHEMA)
    row = conn.execute("SELECT version FROM projection_meta WHERE name = 'events'").fetchone()
    if row is not None and row[0] != VERSION:
        _drop(conn)
        _exec_all(conn, SCHEMA)


def _exec_all(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _drop(conn: sqlite3.Connection) -> None:
    for t in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {t}")


def last_folded(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT last_seq FROM projection_meta WHERE name = 'events'").fetchone()
    return row[0] if row else 0


def fold(conn: sqlite3.Connection, *, batch: int = 50_000) -> int:
    """Fold every event after the last folded seq; returns how many were folded."""
    try:
        ensure(conn)
        total = _fold_segments(conn, batch)
        while True:
            with immediate(conn):
                start = last_folded(conn)
                rows = conn.execute(
                    "SELECT seq, ts, app, type, run_id, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (start, batch),
                ).fetchall()
                if not rows:
                    return total
                _apply(conn, rows)
                total += len(rows)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot update the projections: {exc}") from exc


def _apply(conn: sqlite3.Connection, rows: list[Any]) -> None:
    folder = Folder(conn)
    for seq, ts, app, type_, run_id, data in rows:
        if app is not None or type_ == "restart.requested":  # `pm2 resurrect` names its apps
            folder.apply(seq, ts, app, type_, run_id, json.loads(data) if data else {})
    folder.save(rows[-1][0])


def _fold_segments(conn: sqlite3.Connection, batch: int) -> int:
    """Events `recovery archive` moved into segment files that the projections have not folded
    (after a rebuild): the segments' first, oldest first. One indexed read when there are none."""
    first = conn.execute("SELECT seq FROM events ORDER BY seq LIMIT 1").fetchone()
    if first is None or first[0] <= last_folded(conn) + 1:
        return 0
    from . import segments

    path = segments.main_path(conn)
    total = 0
    for rows in segments.rows_after(path, last_folded(conn), batch) if path else ():
        with immediate(conn):
            done = last_folded(conn)  # another process may have folded some meanwhile
            rows = [r for r in rows if r[0] > done]
            if rows:
                _apply(conn, rows)
        total += len(rows)
    return total


def rebuild(conn: sqlite3.Connection) -> int:
    """Drop every projection and fold all events again."""
    try:
        with immediate(conn):
            _drop(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot drop the projections: {exc}") from exc
    return fold(conn)


# -- what the policy reads ------------------------------------------------------------------


def history(conn: sqlite3.Connection, app: str, now: _dt.datetime, window: float, *, url: str | None = None) -> History:
    """The app's history for the policy: automatic restarts counted since the window start or
    since the last lift of a suspension, whichever is later; whether `url` ever answered."""
    answered = url_answered(conn, app, url) if url is not None else None
    row = conn.execute(
        "SELECT state, since, paused_until, pause_reason, suspended_at, suspend_reason, lifted_at, open_incident,"
        " last_restart_at FROM app_state WHERE app = ?",
        (app,),
    ).fetchone()
    if row is None:
        return History(url_answered=answered)
    state, since, paused_until, pause_reason, suspended_at, suspend_reason, lifted_at, open_incident, last = row
    counting_since = restarts_count_since(now, window, lifted_at)
    if last and lifted_at and last <= lifted_at:
        last = None  # a lifted suspension starts afresh: no warm-up or backoff from before it
    paused_at = None
    if paused_until:
        # When the pause began, so that a clock stepped back cannot stretch it (policy.paused_now).
        began = conn.execute(
            "SELECT ts FROM events WHERE app = ? AND type = 'maintenance.started' ORDER BY seq DESC LIMIT 1", (app,)
        ).fetchone()
        paused_at = began[0] if began else None
    recent = conn.execute(
        "SELECT at, coalesce(code, '') FROM restarts WHERE app = ? AND source = 'recovery' AND by = 'check'"
        " AND at > ? ORDER BY at",
        (app, counting_since),
    ).fetchall()
    pm2_restarts = pm2_restarts_since(conn, app, format_ts(now - _dt.timedelta(seconds=window)))
    return History(
        state=state,
        since=since,
        paused_until=paused_until,
        pause_reason=pause_reason,
        paused_at=paused_at,
        suspended_at=suspended_at,
        suspend_reason=suspend_reason,
        last_restart_at=last,
        recent_restarts=tuple((r[0], r[1]) for r in recent),
        open_incident=open_incident,
        url_answered=answered,
        pm2_restarts=pm2_restarts,
    )


def pm2_restarts_since(conn: sqlite3.Connection, app: str, since: str) -> int:
    """How many times PM2 restarted `app` on its own since `since` (the crash-loop rule)."""
    row = conn.execute(
        "SELECT coalesce(sum(count), 0) FROM restarts WHERE app = ? AND source = 'pm2' AND at > ?", (app, since)
    ).fetchone()
    return int(row[0])


def worker_restarts(
    conn: sqlite3.Connection, app: str, start: str, end: str, *, inclusive: bool = True
) -> dict[str, dict[str, int]]:
    """Restarts of single workers of a cluster from `start` to `end`, by who made them, then by
    pm_id ({"pm2": {"2": 3}}): a row naming one worker counts its `count`, one naming several one each."""
    rows = conn.execute(
        "SELECT by, count, pm_ids FROM restarts WHERE app = ? AND pm_ids IS NOT NULL AND at >= ?"
        f" AND at {'<=' if inclusive else '<'} ? ORDER BY at, seq",
        (app, start, end),
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for who, count, pm_ids in rows:
        ids = json.loads(pm_ids)
        for pm_id in ids:
            per = out.setdefault(who, {})
            per[str(pm_id)] = per.get(str(pm_id), 0) + (int(count or 1) if len(ids) == 1 else 1)
    return out


def url_answered(conn: sqlite3.Connection, app: str, url: str) -> bool:
    """Whether `url` ever answered a probe of `app` (primary-key lookups): as it is recorded
    (`units.shown_url`, its secrets left out), or as stores before that recorded it."""
    row = conn.execute(
        "SELECT 1 FROM answered_urls WHERE app = ? AND url IN (?, ?)", (app, shown_url(url), url)
    ).fetchone()
    return row is not None


def answered_urls(conn: sqlite3.Connection, apps: Sequence[str]) -> list[tuple[int, str, str, str]]:
    """(first seq, first ts, app, url) of each URL of `apps` that ever answered, for `recovery replay`."""
    marks = ",".join("?" * len(apps))
    try:
        return conn.execute(
            f"SELECT first_seq, first_at, app, url FROM answered_urls WHERE app IN ({marks}) ORDER BY first_seq",
            tuple(apps),
        ).fetchall()
    except sqlite3.Error as exc:
        raise read_error(conn, exc) from exc


def pm2_restart_rows(conn: sqlite3.Connection, apps: Sequence[str], start: int, end: int) -> list[tuple[Any, ...]]:
    """(seq, at, app, count) of PM2's own restarts of `apps` in seq `start`..`end`, for `recovery replay`."""
    marks = ",".join("?" * len(apps))
    try:
        return conn.execute(
            f"SELECT seq, at, app, count FROM restarts WHERE source = 'pm2' AND app IN ({marks})"
            " AND seq >= ? AND seq <= ? ORDER BY seq",
            (*apps, start, end),
        ).fetchall()
    except sqlite3.Error as exc:
        raise read_error(conn, exc) from exc


# -- what the hints read ----------------------------------------------------------------------
# Imported here, not at the top, so that this section merges apart from changes to the fold.

from dataclasses import replace  # noqa: E402

from . import hints  # noqa: E402
from .logs.incidents import around_incidents  # noqa: E402
from .logs.storage import top_templates  # noqa: E402
from .store import _describe, first_seq_since  # noqa: E402
from .units import earlier  # noqa: E402

HINT_INCIDENTS = 500  # newest incidents of the period the hints read
# The newest process samples the hints read (for the memory rule), from the last HINT_SAMPLES_S at
# most, whatever the period: reading and decoding them was most of a long report's time (each one a
# random page of a big store with a cold cache). The rule fits a line within one process's uptime.
HINT_SAMPLES = 2000
HINT_SAMPLES_S = 3 * 86400.0

# The code of a decision recorded before decisions carried one, from the start of its reason.
_OLD_REASONS = (
    ("healthy", "healthy"),
    ("hung", "hung"),
    ("errored", "errored"),
    ("stopped", "stopped"),
    ("degraded", "degraded"),
    ("paused", "paused"),
    ("restart loop", "suspended"),
    ("warming up", "warming_up"),
    ("backoff", "backoff"),
)


def decision_code(data: dict[str, Any] | None, reason: str | None = None) -> str:
    """A decision's machine code: the one its data carries, or for older decisions one derived
    from its reason (the data's, else `reason`), so that nothing downstream reads reason text."""
    code = (data or {}).get("code")
    if isinstance(code, str) and code:
        return code
    text = str((data or {}).get("reason") or reason or "")
    for prefix, old in _OLD_REASONS:
        if text.startswith(prefix):
            return old
    if "PM2 could not be read" in text:
        return "pm2_unreadable"
    if "PM2 has no process named" in text:
        return "unknown_app"
    return "unknown"


def read_error(conn: sqlite3.Connection, exc: sqlite3.Error) -> StoreError:
    """`exc` as one line naming the store that `conn` reads."""
    try:
        path = conn.execute("PRAGMA database_list").fetchone()[2] or "(in memory)"
    except sqlite3.Error:
        path = "(unknown path)"
    return StoreError(f"cannot read the event store {path}: {_describe(exc)}")


def hint_input(conn: sqlite3.Connection, app: str, now: _dt.datetime, since: str | None = None) -> hints.HintInput:
    """The app's history from `since` (an event timestamp; default hints.LOOKBACK_S back) to `now`,
    as the hint rules read it. A store no check has folded yet has no history to give."""
    since = since or earlier(now, hints.LOOKBACK_S)
    try:
        return _hint_input(conn, app, now, since)
    except sqlite3.Error as exc:
        raise read_error(conn, exc) from exc


def _hint_input(conn: sqlite3.Connection, app: str, now: _dt.datetime, since: str) -> hints.HintInput:
    until = format_ts(now)
    try:
        incidents = _incidents_begun(conn, app, since, until)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return hints.HintInput(app, since, now)
    first = first_seq_since(conn, since)
    model = hints.HintInput(
        app,
        since,
        now,
        incidents=incidents,
        samples=_samples(conn, app, max(first, first_seq_since(conn, earlier(now, HINT_SAMPLES_S))), until),
        restarts=_restarts(conn, app, min(since, earlier(now, hints.WEEKS * hints.WEEK_S)), until),
        pm2_restarts=tuple(_pm2_restart(*e) for e in _events_of(conn, app, "process.restarted", first, until)),
        deploys=tuple(hints.Deploy(seq, ts) for seq, ts, _ in _events_of(conn, app, "maintenance.ended", first, until)),
        before_incidents=_errors_before_incidents(conn, app, since, until)
        if incidents
        else hints.ErrorsBeforeIncidents(),
    )
    start = hints.crash_errors_from(model)
    if start is None:
        return model
    tops = top_templates(conn, start, app=app, top=hints.CRASH_TEMPLATES, until=now, known_by=now)
    return replace(
        model, crash_errors=tuple(hints.TemplateCount(t["template_id"], t["template"], t["count"]) for t in tops)
    )


def _incidents_begun(conn: sqlite3.Connection, app: str, since: str, until: str) -> tuple[hints.Incident, ...]:
    """The newest HINT_INCIDENTS incidents begun in [since, until], oldest first, with the code and
    the process sample of the decision that opened each, and what that check saw of PM2's process."""
    rows = conn.execute(
        "SELECT i.id, i.started_at, i.started_seq, i.first_reason, d.data, d.run_id, i.ended_at FROM incidents i"
        " LEFT JOIN events d ON d.seq = i.started_seq WHERE i.app = ? AND i.started_at >= ?"
        " AND i.started_at <= ? AND coalesce(i.detected_at, i.started_at) <= ?"
        " ORDER BY i.started_at DESC, i.id DESC LIMIT ?",
        (app, since, until, until, HINT_INCIDENTS),
    ).fetchall()
    out = []
    for iid, started, seq, reason, data, run_id, ended in reversed(rows):
        d = json.loads(data) if data else None
        inputs = (d or {}).get("inputs") or {}
        worker = inputs.get("worker")
        pm_id = worker.get("pm_id") if isinstance(worker, dict) else None
        sample = _sample_before(conn, app, seq, run_id)
        out.append(
            hints.Incident(
                iid,
                started,
                decision_code(d, reason),
                sample,
                pm_id if isinstance(pm_id, int) else None,
                **_process_seen(inputs, sample),
                recovered=ended is not None and ended <= until,  # an end after `until` is not known then
            )
        )
    return tuple(out)


def _process_seen(inputs: dict[str, Any], sample: hints.Sample | None) -> dict[str, Any]:
    """What a deciding check saw of PM2's process: its decision's inputs, else its sample (one
    process; a cluster's sample names no single exit code or count)."""
    seen = sample.data if sample is not None else {}
    out: dict[str, Any] = {}
    for key, types, alias in (
        ("exit_code", int, None),
        ("restart_time", int, None),
        ("unstable_restarts", int, None),
        ("status", str, "pm2_status"),
        ("uptime_s", (int, float), None),
    ):
        value = inputs.get(alias or key, seen.get(key))
        if key == "uptime_s" and value is None:
            value = seen.get("since_start_s")  # an errored process: since PM2 marked it so
        if isinstance(value, types) and not isinstance(value, bool):
            out[key] = value
    return out


def _sample_before(conn: sqlite3.Connection, app: str, seq: int, run_id: str | None) -> hints.Sample | None:
    """The process sample the check run `run_id` took just before the event `seq`, if it read PM2."""
    row = conn.execute(
        "SELECT seq, ts, data, run_id FROM events WHERE app = ? AND type = 'process.sampled' AND seq < ?"
        " ORDER BY seq DESC LIMIT 1",
        (app, seq),
    ).fetchone()
    if row is None or run_id is None or row[3] != run_id:
        return None
    data = json.loads(row[2])
    return None if data.get("error") else hints.Sample(row[0], row[1], data)


def _samples(conn: sqlite3.Connection, app: str, first: int, until: str) -> tuple[hints.Sample, ...]:
    """The newest HINT_SAMPLES process samples from seq `first` to `until` that read PM2, oldest first."""
    rows = conn.execute(
        "SELECT seq, ts, data FROM events WHERE app = ? AND type = 'process.sampled' AND seq >= ? AND ts <= ?"
        " ORDER BY seq DESC LIMIT ?",
        (app, first, until, HINT_SAMPLES),
    ).fetchall()
    samples = (hints.Sample(seq, ts, json.loads(data)) for seq, ts, data in reversed(rows))
    return tuple(s for s in samples if not s.data.get("error"))


def _restarts(conn: sqlite3.Connection, app: str, since: str, until: str) -> tuple[hints.Restart, ...]:
    rows = conn.execute(
        "SELECT seq, at, by, count FROM restarts WHERE app = ? AND at >= ? AND at <= ? ORDER BY at, seq",
        (app, since, until),
    ).fetchall()
    return tuple(hints.Restart(seq, at, by, int(count)) for seq, at, by, count in rows)


def _pm2_restart(seq: int, ts: str, d: dict[str, Any]) -> hints.Pm2Restart:
    evidence = d.get("evidence") or {}
    count = int(d.get("count") or 1)
    named = [w for w in d.get("workers") or [] if isinstance(w, dict) and isinstance(w.get("pm_id"), int)]
    exit_code = evidence.get("exit_code")
    if exit_code is None and len(named) == 1:
        exit_code = named[0].get("exit_code")  # the one worker PM2 restarted said how it ended
    return hints.Pm2Restart(
        seq,
        ts,
        count,
        d.get("cause"),
        exit_code,
        evidence.get("template_id"),
        tuple(w["pm_id"] for w in named),
    )


def _errors_before_incidents(conn: sqlite3.Connection, app: str, since: str, until: str) -> hints.ErrorsBeforeIncidents:
    # As the store held the logs at `until`: a line without a timestamp is stored with a time
    # before the read that brought it in.
    around = around_incidents(conn, since, until, minutes=hints.BEFORE_INCIDENT_MIN, app=app, known_by=until)
    templates = tuple(
        hints.TemplateBeforeIncidents(
            t["template_id"],
            t["template"],
            t["example"],
            t["before_incidents"],
            t["expected"],
            t["lift"],
            tuple(t["incident_ids"]),
        )
        for t in around["templates"]
    )
    return hints.ErrorsBeforeIncidents(tuple(i["id"] for i in around["incidents"]), templates)


def _events_of(
    conn: sqlite3.Connection, app: str, type_: str, first: int, until: str
) -> list[tuple[int, str, dict[str, Any]]]:
    rows = conn.execute(
        "SELECT seq, ts, data FROM events WHERE app = ? AND type = ? AND seq >= ? AND ts <= ? ORDER BY seq",
        (app, type_, first, until),
    ).fetchall()
    return [(seq, ts, json.loads(d)) for seq, ts, d in rows]


# -- what `recovery replay` reads ---------------------------------------------------------------------


def folded_for_replay(conn: sqlite3.Connection) -> int | None:
    """The last seq the projections folded, or None when they are of another version than this
    recovery's (a read-only store an older version wrote) or missing."""
    try:
        row = conn.execute("SELECT last_seq, version FROM projection_meta WHERE name = 'events'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise read_error(conn, exc) from exc
    except sqlite3.Error as exc:
        raise read_error(conn, exc) from exc
    return int(row[0]) if row is not None and row[1] == VERSION else None


_POINT_COLUMNS = (
    "d.run_id, d.action, d.code, d.state, d.dry_run, d.probes, d.sample, d.restarted_at, d.verified,"
    " d.probes_n, d.failed, d.first_latency_ms, d.first_status"
)


def decision_points(
    conn: sqlite3.Connection,
    app: str,
    start: int,
    end: int,
    *,
    limit_ms: float,
    slow_ms: float | None,
    expect_status: Sequence[tuple[int, int]],
) -> list[tuple[Any, ...]]:
    """The app's decision_points from seq `start` to `end`, oldest first, for `recovery replay`.

    A row is (0, seq, ts, None, 1, *_POINT_COLUMNS) for a decision to take again, or
    (1, first seq, first ts, last ts, count, None...) for a run of healthy checks whose single
    answer was in `limit_ms`, not slower than `slow_ms` and had an expected status: under those
    settings each would be healthy again, so the replay takes them as one.
    """
    statuses = " OR ".join("first_status BETWEEN ? AND ?" for _ in expect_status) or "0"
    plain = (
        "code = 'healthy' AND probes_n = 1 AND failed = 0 AND coalesce(first_latency_ms, 0) <= ?"
        " AND (? IS NULL OR coalesce(first_latency_ms, 0) <= ?)"
        f" AND first_status IS NOT NULL AND ({statuses})"
    )
    nulls = ", ".join(["NULL"] * 13)
    # The window runs over narrow rows; only the decisions to take again are read whole.
    sql = (
        f"WITH p AS (SELECT seq, ts, ({plain}) AS plain FROM decision_points WHERE app = ? AND seq >= ? AND seq <= ?),"
        " g AS (SELECT seq, ts, plain, sum(NOT plain) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS grp FROM p)"
        f" SELECT 0, d.seq, d.ts, NULL, 1, {_POINT_COLUMNS} FROM g JOIN decision_points d ON d.seq = g.seq"
        " WHERE NOT g.plain"
        f" UNION ALL SELECT 1, min(seq), min(ts), max(ts), count(*), {nulls} FROM g WHERE plain GROUP BY grp"
        " ORDER BY 2"
    )
    params: list[Any] = [limit_ms, slow_ms, slow_ms]
    for low, high in expect_status:
        params += [low, high]
    try:
        return conn.execute(sql, (*params, app, start, end)).fetchall()
    except sqlite3.Error as exc:
        raise read_error(conn, exc) from exc


def batched_rows(conn: sqlite3.Connection, apps: Sequence[str], start: int, end: int) -> list[tuple[int, str, str]]:
    """(seq, app, data JSON) of the `probe.batched` events of `apps` in seq `start`..`end`, for `recovery replay`."""
    marks = ",".join("?" * len(apps))
    try:
        return conn.execute(
            f"SELECT seq, app, data FROM events WHERE app IN ({marks}) AND type = 'probe.batched'"
            " AND seq >= ? AND seq <= ? ORDER BY seq",
            (*apps, start, end),
        ).fetchall()
    except sqlite3.Error as exc:
        raise read_error(conn, exc) from exc


def operator_verifications(
    conn: sqlite3.Connection, apps: Sequence[str], start: int, end: int
) -> list[tuple[Any, ...]]:
    """(seq, ts, app) of the verifications of restarts no check decided (an operator's), in `start`..`end`."""
    marks = ",".join("?" * len(apps))
    try:
        return conn.execute(
            "SELECT seq, ts, app FROM events e WHERE type = 'verification.passed'"
            f" AND app IN ({marks}) AND seq >= ? AND seq <= ? AND NOT EXISTS"
            " (SELECT 1 FROM decision_points d WHERE d.run_id IS e.run_id AND d.app = e.app) ORDER BY seq",
            (*apps, start, end),
        ).fetchall()
    except sqlite3.Error as exc:
        raise read_error(conn, exc) from exc
