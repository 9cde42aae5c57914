"""Reading the record: time filters, and the data of `recovery report` and `recovery why`.

Computation only: `render` writes these results as text, Markdown or JSON.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import projections, rollups
from .errors import RecoveryError
from .events import format_ts
from .hints import LOOKBACK_S, evaluate
from .logs.storage import top_templates
from .stats import time_of_day_clusters
from .store import Store
from .units import DurationTooLong, age, earlier, parse_duration, percent, period_label, span, times
from .units import one_line as one_line  # re-exported: cli/errors.py imports it from here


def since_to_ts(text: str, now: _dt.datetime | None = None) -> str:
    """`1h`, `7d` (ago) or an ISO time, as an event timestamp bound."""
    now = now or _dt.datetime.now(_dt.UTC)
    try:
        seconds = parse_duration(text)
    except DurationTooLong:
        raise
    except ValueError:
        try:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("use a duration such as 30m, 1h, 7d, or an ISO time such as 2026-11-28T03:00") from None
        if when.tzinfo is None:
            when = when.astimezone()  # a naive time is the operator's local time
    else:
        when = now - _dt.timedelta(seconds=seconds)
    return format_ts(when)


# -- `recovery report`: availability, incidents, restarts, MTTR / MTBF, latency, what stands out -------
#
# Read from the projections only (never a scan of `events`), so a year of ten apps takes well
# under a second. Definitions, also in the command's help:
#   availability  up_s / (up_s + down_s) from the rollups: time between two checks counts for the
#                 state the app was in, down from an incident's first failed probe; gaps longer
#                 than model.MAX_GAP_S count for neither. Edges are exact to the minute within
#                 rollups.MINUTE_KEEP_S; an older --since counts its whole hour.
#   worst         up_s / (up_s + down_s + unobserved_s): the time from the last successful probe to
#                 the first failed one (nobody saw when the app stopped answering) counted as down.
#   MTTR          mean duration (from the first failed probe) of the incidents that ended in the
#                 period with a recovery (restarted and verified, or answering again without a restart).
#   latency       p50/p95/p99 of answered check probes, from the rollups' sketches (within 0.5 %).
#   MTBF          up time in the period divided by the number of incidents that began in it
#                 (null when none began, or nothing was observed).

RECOVERED = ("restarted", "recovered without restart")
WHO = ("check", "schedule", "operator", "pm2")
AVAILABILITY_TARGET = 99.9


class IncidentNotFound(RecoveryError):
    "No incident with that id for that app."


@dataclass
class IncidentRow:
    id: int
    started_at: str  # the first failed check probe (its sending)
    ended_at: str | None  # None while open
    duration_s: float  # for an open incident: up to now
    restarts: int
    outcome: str  # restarted, recovered without restart, stopped by an operator, open
    reason: str | None = None  # the first decision's reason; text only, not in the JSON
    # The workers of a cluster that decisions named as hung during it: [{pm_id, pid, evidence}]
    workers: list[dict[str, Any]] = field(default_factory=list)
    detected_at: str | None = None  # the decision that opened it
    unobserved_s: float | None = None  # from the last successful probe to the first failed one

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": self.started_at,
            "detected_at": self.detected_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "unobserved_s": self.unobserved_s,
            "restarts": self.restarts,
            "outcome": self.outcome,
            "workers": self.workers,
        }


@dataclass
class AppReport:
    app: str
    availability_percent: float | None
    probes: int
    failures: int
    incidents: list[IncidentRow]
    restarts: int
    restarts_by: dict[str, int]
    mttr_s: float | None
    mtbf_s: float | None
    latency_ms: dict[str, float | None]
    stands_out: list[str]
    top_errors: list[dict[str, Any]] = field(default_factory=list)  # from the log tables, if ingested
    hints: list[dict[str, Any]] = field(default_factory=list)  # likely causes (recovery.hints), strongest first
    # Restarts of one worker of a cluster, by who made them, then by pm_id: {"pm2": {"2": 3}}
    worker_restarts: dict[str, dict[str, int]] = field(default_factory=dict)
    # The unobserved gaps (last success to first failure) counted as down; and their seconds
    availability_worst_percent: float | None = None
    unobserved_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "app"}
        d["incidents"] = [i.to_dict() for i in self.incidents]
        return d


@dataclass
class Report:
    since: str
    until: str
    generated_at: str
    apps: list[AppReport]

    @property
    def seconds(self) -> float:
        return projections.seconds_between(self.since, self.until)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "generated_at": self.generated_at,
            "apps": {a.app: a.to_dict() for a in self.apps},
        }


@dataclass
class _Window(rollups.Sums):
    """Sums over one stretch of time for one app: the rollups', and its restarts."""

    restarts_by: dict[str, int] = field(default_factory=dict)
    unrecovered_restarts: int = 0  # ours whose restart failed or was not verified
    worker_restarts: dict[str, dict[str, int]] = field(default_factory=dict)  # by who, then pm_id

    @property
    def restarts(self) -> int:
        return sum(self.restarts_by.values())

    def percentile(self, q: float) -> float | None:
        value = self.latency.quantile(q)
        return None if value is None else round(value, 1)


def open_store(path: Path, busy_timeout: float) -> Store:
    """Open an existing store and bring its projections up to date (in a temporary copy when the
    store is read-only here: `store.note` says so)."""
    from .reading import open_folded

    return open_folded(path, busy_timeout)


def _window(conn: sqlite3.Connection, app: str, start: str, end: str, *, inclusive: bool) -> _Window:
    """The app's sums for [start, end) (or [start, end] when inclusive), from the rollups."""
    r = rollups.sums(conn, app, start, end, inclusive=inclusive)
    w = _Window(**vars(r))
    rows = conn.execute(
        "SELECT by, sum(count), sum(source = 'recovery' AND outcome IN ('failed', 'unverified')) FROM restarts"
        f" WHERE app = ? AND at >= ? AND at {'<=' if inclusive else '<'} ? GROUP BY by",
        (app, start, end),
    ).fetchall()
    w.restarts_by = {who: int(n or 0) for who, n, _ in rows}
    w.unrecovered_restarts = sum(int(u or 0) for _, _, u in rows)
    w.worker_restarts = projections.worker_restarts(conn, app, start, end, inclusive=inclusive)
    return w


def _open_for(now: _dt.datetime, started: str) -> float:
    """How long an incident still open has lasted by `now`."""
    return round(max(0.0, age(now, started)), 3)


def _incidents(conn: sqlite3.Connection, app: str, since: str, until: str, now: _dt.datetime) -> list[IncidentRow]:
    """Incidents that overlap [since, until], oldest first; an open one lasts until now."""
    out = []
    for iid, started, ended, duration, restarts, outcome, reason, workers, detected, unobserved in conn.execute(
        "SELECT id, started_at, ended_at, duration_s, restarts, outcome, first_reason, workers, detected_at,"
        " unobserved_s FROM incidents WHERE app = ? AND started_at <= ? AND (ended_at IS NULL OR ended_at >= ?)"
        " ORDER BY started_at, id",
        (app, until, since),
    ):
        if ended is None:
            duration = _open_for(now, started)
        out.append(
            IncidentRow(
                iid,
                started,
                ended,
                duration or 0.0,
                restarts,
                outcome,
                reason,
                json.loads(workers or "[]"),
                detected,
                unobserved,
            )
        )
    return out


def build_report(store: Store, apps: list[str], since: str, now: _dt.datetime | None = None) -> Report:
    """The report for `apps` from `since` (an event timestamp) to now, beside the period before it."""
    now = now or _dt.datetime.now(_dt.UTC)
    try:
        return _build_report(store.conn, apps, since, now)
    except sqlite3.Error as exc:
        raise projections.read_error(store.conn, exc) from exc


def _hints(conn: sqlite3.Connection, app: str, now: _dt.datetime, since: str) -> list[dict[str, Any]]:
    return [h.to_dict() for h in evaluate(projections.hint_input(conn, app, now, since))]


def _build_report(conn: sqlite3.Connection, apps: list[str], since: str, now: _dt.datetime) -> Report:
    until = projections.format_ts(now)
    length = max(0.0, projections.seconds_between(since, until))
    before = earlier(projections.parse_ts(since), length)
    out = []
    for app in apps:
        cur = _window(conn, app, since, until, inclusive=True)
        prev = _window(conn, app, before, since, inclusive=False)
        incidents = _incidents(conn, app, since, until, now)
        a = app_numbers(app, cur, prev, incidents, since, period_label(length))
        a.top_errors = top_errors(conn, app, since, before, now)
        a.hints = _hints(conn, app, now, since)
        out.append(a)
    return Report(since, until, until, out)


def app_numbers(
    app: str, cur: _Window, prev: _Window, incidents: list[IncidentRow], since: str, label: str
) -> AppReport:
    """One app's report from its sums over the period (`cur`) and the one before (`prev`) and the
    incidents that overlap it; without top errors and hints. The fleet report uses it too."""
    began = [i for i in incidents if i.started_at >= since]
    recovered = [i.duration_s for i in incidents if i.outcome in RECOVERED and i.ended_at and i.ended_at >= since]
    observed = cur.up_s + cur.down_s
    availability = round(100.0 * cur.up_s / observed, 3) if observed > 0 else None
    seen = observed + cur.unobserved_s
    worst = round(100.0 * cur.up_s / seen, 3) if seen > 0 else None
    return AppReport(
        app=app,
        availability_percent=availability,
        probes=cur.probes,
        failures=cur.failures,
        incidents=incidents,
        restarts=cur.restarts,
        restarts_by={**{who: 0 for who in WHO}, **cur.restarts_by},
        mttr_s=round(sum(recovered) / len(recovered), 1) if recovered else None,
        mtbf_s=round(cur.up_s / len(began), 1) if began and observed > 0 else None,
        latency_ms={"p50": cur.percentile(0.50), "p95": cur.percentile(0.95), "p99": cur.percentile(0.99)},
        stands_out=stands_out(app, cur, prev, incidents, began, availability, label),
        worker_restarts=cur.worker_restarts,
        availability_worst_percent=worst,
        unobserved_s=round(cur.unobserved_s, 3),
    )


TOP_ERRORS = 5


def top_errors(conn: sqlite3.Connection, app: str, since: str, before: str, now: _dt.datetime) -> list[dict[str, Any]]:
    """The app's most frequent error templates in the period, with their count in the period before."""
    rows = top_templates(conn, since, app=app, top=TOP_ERRORS, until=now)
    if not rows:
        return []
    previous = {r["template_id"]: r["count"] for r in top_templates(conn, before, app=app, top=1 << 30, until=since)}
    keys = ("template_id", "template", "count", "first_seen", "last_seen", "example")
    return [{**{k: r[k] for k in keys}, "previous_count": previous.get(r["template_id"], 0)} for r in rows]


def _change(cur: int, prev: int) -> str | None:
    """'doubled', 'tripled', 'up 5x', 'halved', 'down 5x', 'fell to none' when the change is worth a line."""
    if prev and cur >= 2 * prev:
        ratio = cur / prev
        return "doubled" if ratio < 3 else "tripled" if ratio < 4 else f"up {ratio:.0f}x"
    if prev >= 4 and 2 * cur <= prev:
        return "fell to none" if cur == 0 else "halved" if 4 * cur > prev else f"down {prev / cur:.0f}x"
    return None


def stands_out(
    app: str,
    cur: _Window,
    prev: _Window,
    incidents: list[IncidentRow],
    began: list[IncidentRow],
    availability: float | None,
    label: str,
) -> list[str]:
    """A few sentences computed from the numbers; empty when nothing stands out."""
    notes: list[str] = []
    if cur.probes == 0:
        notes.append("no probes recorded in this period: is cron (or recovery watch) running?")
    if availability is not None and availability < AVAILABILITY_TARGET:
        notes.append(f"availability {percent(availability)}%, below {AVAILABILITY_TARGET:g}%")
    for i in incidents:
        if i.ended_at is None:
            notes.append(f"incident #{i.id} still open, for {span(i.duration_s)}")
    had_history = prev.probes > 0 or prev.restarts > 0
    change = _change(cur.restarts, prev.restarts)
    if change:
        notes.append(f"restarts {change} vs the previous {label} ({cur.restarts}, was {prev.restarts})")
    elif had_history and prev.restarts == 0 and cur.restarts >= 2:
        notes.append(f"{cur.restarts} restarts, none in the previous {label}")
    if cur.unrecovered_restarts:
        n = cur.unrecovered_restarts
        notes.append(f"{n} restart{'s' if n > 1 else ''} did not bring {app} back (restart failed or not verified)")
    theirs = cur.restarts_by.get("pm2", 0)
    if theirs:
        which = worker_counts(cur.worker_restarts.get("pm2", {}))
        notes.append(
            f"PM2 restarted {app} {times(theirs)} on its own (a crash or max_memory_restart?)"
            + (f": worker {which}" if which else "")
        )
    for cluster in time_of_day_clusters([i.started_at for i in began]):
        notes.append(
            f"{len(cluster.members)} of {len(began)} incidents, on {cluster.days} different days, {cluster.clock()}"
        )
    p95, was = cur.percentile(0.95), prev.percentile(0.95)
    if p95 is not None and was is not None and p95 >= 2 * was and p95 - was >= 20:
        notes.append(f"p95 latency {p95:g}ms, was {was:g}ms in the previous {label}")
    return notes


def worker_counts(per: dict[str, int]) -> str:
    """'#2 3x, #0 1x' (most first), from restarts by pm_id."""
    return ", ".join(f"#{k} {n}x" for k, n in sorted(per.items(), key=lambda kv: (-kv[1], int(kv[0]))))


# -- `recovery why`: the timeline of one incident ------------------------------------------------


@dataclass
class Step:
    seq: int
    ts: str
    offset_s: float  # from the incident's start (its first failed probe); the run's check.started may come before
    type: str
    app: str | None
    data: dict[str, Any]


@dataclass
class Timeline:
    app: str
    incident: IncidentRow
    steps: list[Step]
    hints: list[dict[str, Any]] = field(default_factory=list)  # likely causes, from the app's history


def _incident(
    conn: sqlite3.Connection, app: str, incident_id: int | None
) -> tuple[IncidentRow, int, int | None] | None:
    sql = (
        "SELECT id, app, started_at, ended_at, duration_s, restarts, outcome, first_reason, started_seq, ended_seq,"
        " workers, detected_at, unobserved_s FROM incidents"
    )
    if incident_id is None:
        row = conn.execute(sql + " WHERE app = ? ORDER BY id DESC LIMIT 1", (app,)).fetchone()
        if row is None:
            return None
    else:
        row = conn.execute(sql + " WHERE id = ?", (incident_id,)).fetchone()
        if row is None or row[1] != app:
            latest = conn.execute("SELECT max(id) FROM incidents WHERE app = ?", (app,)).fetchone()[0]
            whose = f" (it is {row[1]}'s)" if row is not None else ""
            known = f"; its latest is #{latest}" if latest is not None else f"; {app} has none"
            raise IncidentNotFound(f"no incident #{incident_id} for {app}{whose}{known}")
    iid, _, started, ended, duration, restarts, outcome, reason, started_seq, ended_seq, workers, detected, unobs = row
    inc = IncidentRow(
        iid, started, ended, duration or 0.0, restarts, outcome, reason, json.loads(workers or "[]"), detected, unobs
    )
    return inc, started_seq, ended_seq


# Above this many seqs, walking the (app, type, seq) index beats reading the seq range row by row.
_RANGE_SCAN_MAX = 200_000


def why(store: Store, app: str, incident_id: int | None = None, now: _dt.datetime | None = None) -> Timeline | None:
    """The app's last incident (or incident `incident_id`) as a timeline; None when it has none."""
    now = now or _dt.datetime.now(_dt.UTC)
    try:
        return _why(store.conn, app, incident_id, now)
    except sqlite3.Error as exc:
        raise projections.read_error(store.conn, exc) from exc


def _why(conn: sqlite3.Connection, app: str, incident_id: int | None, now: _dt.datetime) -> Timeline | None:
    found = _incident(conn, app, incident_id)
    if found is None:
        return None
    inc, started_seq, ended_seq = found
    if inc.ended_at is None:
        inc.duration_s = _open_for(now, inc.started_at)
    end = ended_seq if ended_seq is not None else (conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0)
    # The run that opened the incident: its check.started, and the app's probes before the decision.
    first = started_seq
    opener = conn.execute("SELECT run_id FROM events WHERE seq = ?", (started_seq,)).fetchone()
    head: list[tuple] = []
    if opener and opener[0]:
        head = conn.execute(
            "SELECT seq, ts, app, type, data FROM events WHERE run_id = ? AND type = 'check.started'"
            " AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (opener[0], started_seq),
        ).fetchall()
        if head:
            first = head[0][0]
    app_term = "+app = ?" if end - first <= _RANGE_SCAN_MAX else "app = ?"  # `+` keeps SQLite on the seq range
    rows = conn.execute(
        f"SELECT seq, ts, app, type, data FROM events WHERE {app_term} AND seq BETWEEN ? AND ? ORDER BY seq",
        (app, first, end),
    ).fetchall()
    start = projections.parse_ts(inc.started_at)
    steps = []
    for seq, ts, app_name, type_, data_json in [*head, *rows]:
        data = json.loads(data_json) if data_json else {}
        offset = round((projections.parse_ts(ts) - start).total_seconds(), 3)
        steps.append(Step(seq, ts, offset, type_, app_name, data))
    # The history up to the incident's end (or now), over the week before it began.
    until = projections.parse_ts(inc.ended_at) if inc.ended_at else now
    since = earlier(start, LOOKBACK_S)
    return Timeline(app, inc, steps, _hints(conn, app, until, since))
