"""Reading the record: time filters, event lines, `recovery report` and `recovery why`."""

from __future__ import annotations

import datetime as _dt
import json
import math
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import projections
from .config import parse_duration
from .errors import RecoveryError, StoreError
from .events import Event, format_ts
from .hints import evaluate
from .stats import clustered_hours
from .store import Store
from .units import span

# Shown first, in this order, when an event is printed as text; the rest follow sorted.
_LEADING = (
    "action",
    "reason",
    "attempt",
    "phase",
    "error",
    "status",
    "latency_ms",
    "pid",
    "memory",
    "by",
    "command",
    "exit_code",
    "duration_ms",
    "attempts",
    "seconds",
    "outcome",
    "code",
)


def since_to_ts(text: str, now: _dt.datetime | None = None) -> str:
    """`1h`, `7d` (ago) or an ISO time, as an event timestamp bound."""
    now = now or _dt.datetime.now(_dt.UTC)
    try:
        seconds = parse_duration(text)
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


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    if isinstance(v, dict):
        return "{" + " ".join(f"{k}={_value(x)}" for k, x in v.items()) + "}"
    text = str(v)
    return f'"{text}"' if (" " in text or not text) else text


def _field(key: str, v: Any) -> str:
    if key == "command" and isinstance(v, list):
        return _value(" ".join(str(x) for x in v))
    if key == "memory" and isinstance(v, int):
        return f"{v / 1048576:.1f}MB"
    return _value(v)


def format_event(e: Event) -> str:
    """One line: time, seq, app, type, then the data as key=value."""
    keys = [k for k in _LEADING if k in e.data] + sorted(k for k in e.data if k not in _LEADING)
    fields = " ".join(
        f"{k}={_field(k, e.data[k])}" for k in keys if e.data[k] not in (None, "", [], {}) and k != "inputs"
    )
    ts = e.ts.replace("T", " ").rstrip("Z")
    return f"{ts}  #{e.seq:<6} {(e.app or '-'):<12} {e.type:<20} {fields}".rstrip()


# -- `recovery report`: availability, incidents, restarts, MTTR / MTBF, latency, what stands out -------
#
# Read from the projections only (never a scan of `events`), so a year of ten apps takes well
# under a second. Definitions, also in the command's help:
#   availability  up_s / (up_s + down_s) from probe_hourly: time between two checks counts for the
#                 state the app was in; gaps longer than projections.MAX_GAP_S count for neither.
#                 Hours are whole: the hour that --since falls in is counted entirely.
#   MTTR          mean duration of the incidents that ended in the period with a recovery
#                 (restarted and verified, or answering again without a restart).
#   MTBF          up time in the period divided by the number of incidents that began in it
#                 (null when none began, or nothing was observed).

RECOVERED = ("restarted", "recovered without restart")
WHO = ("check", "schedule", "operator", "pm2")
AVAILABILITY_TARGET = 99.9
SHOWN_INCIDENTS = 20  # per app in text and Markdown; --json lists every one


class IncidentNotFound(RecoveryError):
    "No incident with that id for that app."


@dataclass
class IncidentRow:
    id: int
    started_at: str
    ended_at: str | None  # None while open
    duration_s: float  # for an open incident: up to now
    restarts: int
    outcome: str  # restarted, recovered without restart, stopped by an operator, open
    reason: str | None = None  # the first decision's reason; text only, not in the JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "restarts": self.restarts,
            "outcome": self.outcome,
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
class _Window:
    """Sums over one stretch of time for one app, from probe_hourly and restarts."""

    probes: int = 0
    failures: int = 0
    up_s: float = 0.0
    down_s: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)
    restarts_by: dict[str, int] = field(default_factory=dict)
    unrecovered_restarts: int = 0  # ours whose restart failed or was not verified

    @property
    def restarts(self) -> int:
        return sum(self.restarts_by.values())

    def percentile(self, q: float) -> float | None:
        return projections.percentile(self.hist, q)


def open_store(path: Path, busy_timeout: float) -> Store:
    """Open an existing store and bring its projections up to date (the fold writes, so not read-only)."""
    if not Path(path).exists():
        raise StoreError(f"no event store at {path} (a `recovery check` run creates it)")
    store = Store.open(path, busy_timeout=busy_timeout)
    try:
        projections.fold(store.conn)
    except BaseException:
        store.close()
        raise
    return store


def merge_histograms(joined: str | None) -> dict[int, int]:
    """Sum latency histograms given as probe_hourly.latency_hist texts joined with ', '.

    A year of one app is ~8,760 small JSON objects; parsing each costs ~1 s here, so the
    `"bucket": count` pairs are counted as strings (in C) and only the distinct ones parsed.
    The fold writes them with json.dumps' default separators; anything else is parsed as JSON.
    """
    if not joined:
        return {}
    hist: dict[int, int] = {}
    try:
        for item, n in Counter(joined.split(", ")).items():
            item = item.strip("{} ")
            if item:
                key, _, value = item.partition(": ")
                k = int(key.strip('"'))
                hist[k] = hist.get(k, 0) + int(value) * n
        return hist
    except ValueError:
        hist = {}
        for one in json.loads("[" + joined + "]"):
            for key, value in one.items():
                hist[int(key)] = hist.get(int(key), 0) + int(value)
        return hist


def _window(conn: sqlite3.Connection, app: str, start: str, end: str, *, inclusive: bool) -> _Window:
    """The app's sums for [start, end) (or [start, end] when inclusive); hours cover start's whole hour."""
    end_hour = end[:13] if not inclusive else _next_hour(end)
    row = conn.execute(
        "SELECT sum(probes), sum(failures), sum(up_s), sum(down_s), group_concat(latency_hist, ', ')"
        " FROM probe_hourly WHERE app = ? AND hour >= ? AND hour < ?",
        (app, start[:13], end_hour),
    ).fetchone()
    w = _Window(
        int(row[0] or 0), int(row[1] or 0), float(row[2] or 0.0), float(row[3] or 0.0), merge_histograms(row[4])
    )
    rows = conn.execute(
        "SELECT by, sum(count), sum(source = 'recovery' AND outcome IN ('failed', 'unverified')) FROM restarts"
        f" WHERE app = ? AND at >= ? AND at {'<=' if inclusive else '<'} ? GROUP BY by",
        (app, start, end),
    ).fetchall()
    w.restarts_by = {who: int(n or 0) for who, n, _ in rows}
    w.unrecovered_restarts = sum(int(u or 0) for _, _, u in rows)
    return w


def _next_hour(ts: str) -> str:
    when = projections.parse_ts(ts).replace(minute=0, second=0, microsecond=0) + _dt.timedelta(hours=1)
    return when.strftime("%Y-%m-%dT%H")


def _incidents(conn: sqlite3.Connection, app: str, since: str, until: str, now: _dt.datetime) -> list[IncidentRow]:
    """Incidents that overlap [since, until], oldest first; an open one lasts until now."""
    out = []
    for iid, started, ended, duration, restarts, outcome, reason in conn.execute(
        "SELECT id, started_at, ended_at, duration_s, restarts, outcome, first_reason FROM incidents"
        " WHERE app = ? AND started_at <= ? AND (ended_at IS NULL OR ended_at >= ?) ORDER BY started_at, id",
        (app, until, since),
    ):
        if ended is None:
            duration = round(max(0.0, (now - projections.parse_ts(started)).total_seconds()), 3)
        out.append(IncidentRow(iid, started, ended, duration or 0.0, restarts, outcome, reason))
    return out


def build_report(store: Store, apps: list[str], since: str, now: _dt.datetime | None = None) -> Report:
    """The report for `apps` from `since` (an event timestamp) to now, beside the period before it."""
    now = now or _dt.datetime.now(_dt.UTC)
    until = projections.format_ts(now)
    length = max(0.0, projections.seconds_between(since, until))
    before = projections.format_ts(projections.parse_ts(since) - _dt.timedelta(seconds=length))
    conn = store.conn
    out = []
    for app in apps:
        cur = _window(conn, app, since, until, inclusive=True)
        prev = _window(conn, app, before, since, inclusive=False)
        incidents = _incidents(conn, app, since, until, now)
        began = [i for i in incidents if i.started_at >= since]
        recovered = [i.duration_s for i in incidents if i.outcome in RECOVERED and i.ended_at and i.ended_at >= since]
        observed = cur.up_s + cur.down_s
        availability = round(100.0 * cur.up_s / observed, 3) if observed > 0 else None
        out.append(
            AppReport(
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
                stands_out=stands_out(app, cur, prev, incidents, began, availability, period_label(length)),
                top_errors=top_errors(conn, app, since, before, now),
                hints=_hints(conn, app, now, since),
            )
        )
    return Report(since, until, until, out)


def _hints(conn: sqlite3.Connection, app: str, now: _dt.datetime, since: str) -> list[dict[str, Any]]:
    return [h.to_dict() for h in evaluate(projections.hint_input(conn, app, now, since))]


TOP_ERRORS = 5


def top_errors(conn: sqlite3.Connection, app: str, since: str, before: str, now: _dt.datetime) -> list[dict[str, Any]]:
    """The app's most frequent error templates in the period, with their count in the period before."""
    from .logs.storage import top_templates

    rows = top_templates(conn, since, app=app, top=TOP_ERRORS, until=now)
    if not rows:
        return []
    previous = {r["template_id"]: r["count"] for r in top_templates(conn, before, app=app, top=1 << 30, until=since)}
    keys = ("template_id", "template", "count", "first_seen", "last_seen", "example")
    return [{**{k: r[k] for k in keys}, "previous_count": previous.get(r["template_id"], 0)} for r in rows]


def _error_row(e: dict[str, Any]) -> list[str]:
    prev = e["previous_count"]
    change = "new" if prev == 0 else f"{e['count'] - prev:+d}"
    return [str(e["count"]), change, _when(e["last_seen"])[:16], e["template_id"], one_line(e["template"] or "", 90)]


def one_line(text: str, width: int = 160) -> str:
    """`text` on one line, whitespace runs collapsed, cut to `width` with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


_ERRORS_HEAD = ["COUNT", "VS BEFORE", "LAST SEEN", "TEMPLATE", "TEXT"]


def period_label(seconds: float) -> str:
    """'7 days', '24 hours', '3d04h': how long the period is, for 'vs the previous …'."""
    s = round(seconds)
    if s >= 2 * 86400 and s % 86400 == 0:
        return f"{s // 86400} days"
    if s % 3600 == 0 and s:
        return "hour" if s == 3600 else f"{s // 3600} hours"
    return span(s)


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


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
        notes.append(f"PM2 restarted {app} {_times(theirs)} on its own (a crash or max_memory_restart?)")
    for first, last, n in clustered_hours([i.started_at for i in began]):
        notes.append(f"{n} of {len(began)} incidents between {first:02d}:00 and {(last + 1) % 24:02d}:00 UTC")
    p95, was = cur.percentile(0.95), prev.percentile(0.95)
    if p95 is not None and was is not None and p95 >= 2 * was and p95 - was >= 20:
        notes.append(f"p95 latency {p95:g}ms, was {was:g}ms in the previous {label}")
    return notes


# -- formatting ---------------------------------------------------------------------------


def percent(p: float | None) -> str:
    """Rounded down to two decimals, so 99.899 never reads as 99.9."""
    if p is None:
        return "-"
    return f"{math.floor(p * 100) / 100:.2f}".rstrip("0").rstrip(".")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:g}ms"


def _when(ts: str | None) -> str:
    return ts[:19].replace("T", " ") if ts else "-"


def _grid(head: list[str], body: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return [indent + "  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head, *body]]


_SUMMARY_HEAD = [
    "APP",
    "AVAILABILITY",
    "PROBES",
    "FAILURES",
    "INCIDENTS",
    "RESTARTS",
    "MTTR",
    "MTBF",
    "P50",
    "P95",
    "P99",
]
_INCIDENT_HEAD = ["#", "STARTED (UTC)", "DURATION", "RESTARTS", "OUTCOME", "FIRST REASON"]


def _summary_row(a: AppReport) -> list[str]:
    lat = a.latency_ms
    return [
        a.app,
        percent(a.availability_percent) + ("%" if a.availability_percent is not None else ""),
        str(a.probes),
        str(a.failures),
        str(len(a.incidents)),
        str(a.restarts),
        span(a.mttr_s, decimals=True),
        span(a.mtbf_s),
        _ms(lat["p50"]),
        _ms(lat["p95"]),
        _ms(lat["p99"]),
    ]


def _incident_row(i: IncidentRow) -> list[str]:
    duration = span(i.duration_s, decimals=True) + (" so far" if i.ended_at is None else "")
    return [f"#{i.id}", _when(i.started_at), duration, str(i.restarts), i.outcome, i.reason or "-"]


def _by_who(a: AppReport) -> str:
    return ", ".join(f"{who} {n}" for who, n in a.restarts_by.items())


def _heading(r: Report) -> str:
    return f"{_when(r.since)[:16]} to {_when(r.until)[:16]} UTC ({period_label(r.seconds)})"


def report_text(r: Report) -> str:
    """Readable tables: one summary row per app, then each app's incidents, restarts and notes."""
    lines = [f"recovery report: {_heading(r)}", ""]
    lines += _grid(_SUMMARY_HEAD, [_summary_row(a) for a in r.apps])
    for a in r.apps:
        lines += ["", a.app]
        shown = a.incidents[-SHOWN_INCIDENTS:]
        if shown:
            lines.append("  incidents:")
            lines += _grid(_INCIDENT_HEAD, [_incident_row(i) for i in shown], indent="    ")
            if len(a.incidents) > len(shown):
                lines.append(f"    ... and {len(a.incidents) - len(shown)} earlier (--json lists all)")
        else:
            lines.append("  incidents: none")
        lines.append(f"  restarts by: {_by_who(a)}")
        if a.top_errors:
            lines.append("  top errors (`recovery errors show TEMPLATE` for examples):")
            lines += _grid(_ERRORS_HEAD, [_error_row(e) for e in a.top_errors], indent="    ")
        if a.stands_out:
            lines.append("  stands out:")
            lines += [f"    - {note}" for note in a.stands_out]
        if a.hints:
            lines.append("  likely causes (confidence):")
            lines += [f"    - {hint_line(h)}" for h in a.hints]
    return "\n".join(lines)


def hint_line(h: dict[str, Any]) -> str:
    """'(0.85) memory leak: memory grows ...'."""
    return f"({h['confidence']:.2f}) {h['message']}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    return [_md_row(head), "| " + " | ".join("---" for _ in head) + " |", *(_md_row(r) for r in body)]


def report_markdown(r: Report) -> str:
    """A Markdown document: a summary table, then a section per app."""
    lines = ["# recovery report", "", f"{_heading(r)}; generated {_when(r.generated_at)} UTC.", ""]
    lines += _md_table([h.lower() for h in _SUMMARY_HEAD], [_summary_row(a) for a in r.apps])
    for a in r.apps:
        lines += ["", f"## {a.app}", "", "### Incidents", ""]
        shown = a.incidents[-SHOWN_INCIDENTS:]
        if shown:
            lines += _md_table([h.lower() for h in _INCIDENT_HEAD], [_incident_row(i) for i in shown])
            if len(a.incidents) > len(shown):
                lines += ["", f"... and {len(a.incidents) - len(shown)} earlier (`--json` lists all)."]
        else:
            lines.append("None.")
        lines += ["", "### Restarts by who made them", ""]
        lines += _md_table(list(a.restarts_by), [[str(n) for n in a.restarts_by.values()]])
        if a.top_errors:
            lines += ["", "### Top errors", ""]
            lines += _md_table([h.lower() for h in _ERRORS_HEAD], [_error_row(e) for e in a.top_errors])
        lines += ["", "### What stands out", ""]
        lines += [f"- {note}" for note in a.stands_out] or ["Nothing."]
        if a.hints:
            lines += ["", "### Likely causes", ""]
            lines += [f"- {hint_line(h)}" for h in a.hints]
    return "\n".join(lines) + "\n"


# -- `recovery why`: the timeline of one incident ------------------------------------------------

TIMELINE_MAX = 200  # text shows the first and last half of a longer timeline; --json shows every event


@dataclass
class Step:
    seq: int
    ts: str
    offset_s: float  # from the incident's start (the decision that opened it); the run's probes come before
    type: str
    app: str | None
    facts: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Timeline:
    app: str
    incident: IncidentRow
    steps: list[Step]
    hints: list[dict[str, Any]] = field(default_factory=list)  # likely causes, from the app's history

    @property
    def ending(self) -> str:
        i = self.incident
        restarts = f"{i.restarts} restart{'' if i.restarts == 1 else 's'}"
        if i.ended_at is None:
            return f"still open, for {span(i.duration_s, decimals=True)} so far, {restarts}"
        return f"ended: {i.outcome} after {span(i.duration_s, decimals=True)}, {restarts}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "incident": {**self.incident.to_dict(), "reason": self.incident.reason},
            "events": [s.to_dict() for s in self.steps],
            "ending": self.ending,
            "hints": self.hints,
        }


def _incident(
    conn: sqlite3.Connection, app: str, incident_id: int | None
) -> tuple[IncidentRow, int, int | None] | None:
    sql = "SELECT id, app, started_at, ended_at, duration_s, restarts, outcome, first_reason, started_seq, ended_seq FROM incidents"
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
    iid, _, started, ended, duration, restarts, outcome, reason, started_seq, ended_seq = row
    return IncidentRow(iid, started, ended, duration or 0.0, restarts, outcome, reason), started_seq, ended_seq


# Above this many seqs, walking the (app, type, seq) index beats reading the seq range row by row.
_RANGE_SCAN_MAX = 200_000


def why(store: Store, app: str, incident_id: int | None = None, now: _dt.datetime | None = None) -> Timeline | None:
    """The app's last incident (or incident `incident_id`) as a timeline; None when it has none."""
    now = now or _dt.datetime.now(_dt.UTC)
    conn = store.conn
    found = _incident(conn, app, incident_id)
    if found is None:
        return None
    inc, started_seq, ended_seq = found
    if inc.ended_at is None:
        inc.duration_s = round(max(0.0, (now - projections.parse_ts(inc.started_at)).total_seconds()), 3)
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
        steps.append(Step(seq, ts, offset, type_, app_name, facts(type_, data), data))
    # The history up to the incident's end (or now), over the week before it began.
    until = projections.parse_ts(inc.ended_at) if inc.ended_at else now
    since = projections.format_ts(start - _dt.timedelta(days=7))
    return Timeline(app, inc, steps, _hints(conn, app, until, since))


def offset(seconds: float) -> str:
    """+0.0s, +2.1s, +1m03s, +2h03m, -4.2s."""
    seconds = round(seconds, 1)  # so that -0.04 reads +0.0s
    return ("-" if seconds < 0 else "+") + span(abs(seconds), decimals=True)


def _cmd(v: Any) -> str:
    return " ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def facts(type_: str, d: dict[str, Any]) -> str:
    """The key facts of one event, as a short phrase."""
    if type_ == "decision.made":
        text = f"{d.get('action', '?')}: {d.get('reason') or '-'}"
        return text + (" (dry run, nothing done)" if d.get("dry_run") else "")
    if type_ in ("probe.succeeded", "probe.failed"):
        attempt = d.get("attempt")
        parts = [
            ("verify " if d.get("phase") == "verify" else "")
            + (f"attempt {attempt}" + (f"/{d['of']}" if d.get("of") else "") if attempt is not None else "probe")
        ]
        if d.get("error"):
            parts.append(str(d["error"]))
        if d.get("status") is not None:
            parts.append(f"HTTP {d['status']}")
        if d.get("latency_ms") is not None:
            parts.append(
                f"{d['latency_ms']:g}ms" if isinstance(d["latency_ms"], (int, float)) else str(d["latency_ms"])
            )
        return ", ".join(parts)
    if type_ == "process.sampled":
        if d.get("error"):
            return f"PM2 unreadable: {d['error']}"
        parts = [str(d.get("status") or "?")]
        if d.get("pid"):
            parts.append(f"pid {d['pid']}")
        if isinstance(d.get("memory"), int):
            parts.append(f"{d['memory'] / 1048576:.1f}MB")
        if d.get("cpu") is not None:
            parts.append(f"cpu {d['cpu']:g}%")
        if d.get("restart_time") is not None:
            parts.append(f"restart_time {d['restart_time']}")
        return ", ".join(parts)
    if type_ == "restart.requested":
        text = f"by {d.get('by', 'check')}: {_cmd(d.get('command') or 'restart')}"
        return text + (f" ({d['reason']})" if d.get("by", "check") != "check" and d.get("reason") else "")
    if type_ in ("restart.succeeded", "restart.failed"):
        parts = [_cmd(d.get("command") or "restart")]
        if "exit_code" in d:
            parts.append(f"exit {d['exit_code']}")
        if d.get("duration_ms") is not None:
            parts.append(f"{d['duration_ms']:g}ms")
        problem = d.get("error") or (str(d.get("stderr_tail") or "").strip().splitlines() or [""])[-1]
        if type_ == "restart.failed" and problem:
            parts.append(problem)
        return ", ".join(parts)
    if type_ in ("verification.passed", "verification.failed"):
        parts = [
            f"{d.get('attempts', '?')} attempt{'' if d.get('attempts') == 1 else 's'}",
            f"{d.get('seconds', '?')}s",
        ]
        if d.get("last_error"):
            parts.append(f"last error {d['last_error']}")
        return ", ".join(parts)
    if type_ == "check.started":
        return f"trigger {d.get('trigger', '?')}" + (", dry run" if d.get("dry_run") else "")
    return " ".join(f"{k}={_field(k, v)}" for k, v in d.items() if v not in (None, "", [], {}) and k != "inputs")


def timeline_text(t: Timeline) -> str:
    """The incident's header, one line per event, and how it ended."""
    i = t.incident
    lines = [f"{t.app} incident #{i.id}: started {_when(i.started_at)} UTC" + (f", {i.reason}" if i.reason else "")]
    rows = [[offset(s.offset_s), f"#{s.seq}", s.type, s.facts] for s in t.steps]
    if len(rows) > TIMELINE_MAX:
        half = TIMELINE_MAX // 2
        skipped = len(rows) - 2 * half
        rows = [
            *rows[:half],
            ["...", "", f"{skipped} more events", f"(recovery why {t.app} --incident {i.id} --json lists all)"],
            *rows[-half:],
        ]
    widths = [max(len(r[c]) for r in rows) for c in range(3)] if rows else [0, 0, 0]
    lines += [f"  {r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
    if t.hints:
        lines.append("likely causes (confidence):")
        lines += [f"  - {hint_line(h)}" for h in t.hints]
    lines.append(t.ending)
    return "\n".join(lines)
