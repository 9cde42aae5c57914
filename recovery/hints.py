"""Root-cause hints: why does the app keep needing restarts? Small rules over the projections,
the events and the error-log tables, each giving a kind, a one-line message, a confidence
(0..1) and its evidence (event seqs, incident ids, template ids, numbers).

    memory_leak             memory grows steadily within uptime windows and hangs or restarts come near one level
    event_loop_blocked      hangs with the CPU pinned: a busy loop, a catastrophic regex, synchronous work
    stalled_on_io           hangs with the CPU idle: waiting on a DB pool, a lock, an upstream
    database_trouble        database connection error templates spike before incidents
    crash_loop              PM2 restarts the app itself, again and again, with errors
    schedule                incidents cluster at an hour of the day, or right after deploys
    restarts_treat_symptom  restarts rise week over week: restarting is not fixing anything

`hints_for(conn, app, now)` is the one entry point (reports, `why`, `status`, alerts). Pure
reads: nothing is written. A rule that meets a store without some table simply gives nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .events import format_ts, parse_ts
from .store import first_seq_since

LOOKBACK_S = 7 * 86400.0  # hints read this far back unless told otherwise
MAX_SAMPLES = 5000  # newest process samples read for the memory rule
MB = 1048576

PINNED_CPU = 80.0  # % of one core at the hang: the event loop is blocked
IDLE_CPU = 15.0  # % at the hang: the loop is idle, waiting
LEAK_MIN_SAMPLES = 5
LEAK_MIN_R2 = 0.6  # how well a straight line fits memory over an uptime window
LEAK_MIN_GROWTH = 16 * MB  # and at least this much growth, and LEAK_MIN_SHARE of the window's start
LEAK_MIN_SHARE = 0.2
SAME_LEVEL = 0.25  # hangs "near the same level": end levels within 25 % of each other
AFTER_DEPLOY_S = 1800.0
BEFORE_INCIDENT_MIN = 10.0

DB_ERRORS = re.compile(
    r"(ECONNREFUSED|ETIMEDOUT|ECONNRESET|EHOSTUNREACH)\S*\s+\S*:(5432|5433|6432|3306|33060|27017|6379|1433|1521|26257|9042)\b"
    r"|too many (connections|clients)|remaining connection slots"
    r"|\bpool\b.*\b(timeout|timed out|exhausted)|(timeout|timed out)\b.*\b(pool|acquir\w*)\b|KnexTimeoutError"
    r"|\bP(1001|1017|2024)\b|Can't reach database server|Server has closed the connection"
    r"|Connection terminated|MongoNetworkError|MongoServerSelectionError|SequelizeConnection\w*Error"
    r"|PROTOCOL_CONNECTION_LOST|ER_CON_COUNT_ERROR|the database system is (starting up|shutting down)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Hint:
    kind: str
    message: str
    confidence: float  # 0..1
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "confidence": self.confidence, "evidence": self.evidence}


def hints_for(
    conn: sqlite3.Connection, app: str, now: _dt.datetime | None = None, since: str | None = None
) -> list[Hint]:
    """The hints for `app` from `since` (an event timestamp; default 7 days back) to `now`, strongest first."""
    now = now or _dt.datetime.now(_dt.UTC)
    ctx = Context(conn, app, since or format_ts(now - _dt.timedelta(seconds=LOOKBACK_S)), now)
    out: list[Hint] = []
    for rule in RULES:
        try:
            hint = rule(ctx)
        except sqlite3.OperationalError:  # a table this rule reads does not exist in this store
            continue
        if hint is not None:
            out.append(hint)
    out.sort(key=lambda h: (-h.confidence, h.kind))
    return out


def strongest(conn: sqlite3.Connection, app: str, now: _dt.datetime | None = None) -> Hint | None:
    """The strongest current hint, or None (for `recovery status` and alert messages)."""
    found = hints_for(conn, app, now)
    return found[0] if found else None


# -- what the rules read -----------------------------------------------------------------------


@dataclass
class Incident:
    id: int
    started_at: str
    started_seq: int
    reason: str
    hang_sample: tuple[int, dict[str, Any]] | None = None  # the check's sample just before it opened

    @property
    def hung(self) -> bool:
        return self.reason.startswith("hung")

    @property
    def cpu(self) -> float | None:
        """The CPU while the probes went unanswered (or PM2's figure when that was not measured)."""
        if self.hang_sample is None:
            return None
        d = self.hang_sample[1]
        v = d.get("cpu_demand", d.get("cpu_window", d.get("cpu")))
        return float(v) if isinstance(v, (int, float)) else None


class Context:
    """One app's history from `since` to `now`, read lazily and once."""

    def __init__(self, conn: sqlite3.Connection, app: str, since: str, now: _dt.datetime) -> None:
        self.conn, self.app, self.since, self.now = conn, app, since, now
        self.until = format_ts(now)
        self._incidents: list[Incident] | None = None
        self._samples: list[tuple[int, str, dict[str, Any]]] | None = None
        self._leak: tuple[Hint | None, set[int]] | None = None
        self._db: dict[str, Any] | None = None

    def first_seq(self, ts: str) -> int:
        return first_seq_since(self.conn, ts)

    @property
    def incidents(self) -> list[Incident]:
        if self._incidents is None:
            rows = self.conn.execute(
                "SELECT id, started_at, started_seq, coalesce(first_reason, '') FROM incidents"
                " WHERE app = ? AND started_at >= ? AND started_at <= ? ORDER BY started_at DESC LIMIT 500",
                (self.app, self.since, self.until),
            ).fetchall()
            self._incidents = [Incident(*r) for r in reversed(rows)]
            for inc in self._incidents:
                if inc.hung:
                    inc.hang_sample = self._sample_before(inc.started_seq)
        return self._incidents

    def _sample_before(self, seq: int) -> tuple[int, dict[str, Any]] | None:
        row = self.conn.execute(
            "SELECT s.seq, s.data, s.run_id = d.run_id FROM events s, events d WHERE d.seq = ? AND s.app = ?"
            " AND s.type = 'process.sampled' AND s.seq < ? ORDER BY s.seq DESC LIMIT 1",
            (seq, self.app, seq),
        ).fetchone()
        if row is None or not row[2]:
            return None
        data = json.loads(row[1])
        return None if data.get("error") else (row[0], data)

    @property
    def samples(self) -> list[tuple[int, str, dict[str, Any]]]:
        """(seq, ts, data) of the app's process samples, oldest first."""
        if self._samples is None:
            rows = self.conn.execute(
                "SELECT seq, ts, data FROM events WHERE app = ? AND type = 'process.sampled' AND seq >= ?"
                " AND ts <= ? ORDER BY seq DESC LIMIT ?",
                (self.app, self.first_seq(self.since), self.until, MAX_SAMPLES),
            ).fetchall()
            out = []
            for seq, ts, data in reversed(rows):
                d = json.loads(data)
                if not d.get("error"):
                    out.append((seq, ts, d))
            self._samples = out
        return self._samples

    def events(self, type_: str) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.conn.execute(
            "SELECT seq, ts, data FROM events WHERE app = ? AND type = ? AND seq >= ? AND ts <= ? ORDER BY seq",
            (self.app, type_, self.first_seq(self.since), self.until),
        ).fetchall()
        return [(seq, ts, json.loads(d)) for seq, ts, d in rows]

    def db_before_incidents(self) -> dict[str, Any]:
        """Database error templates seen in the minutes before incidents (see logs.incidents)."""
        if self._db is None:
            from .logs.incidents import around_incidents

            self._db = {"templates": [], "incidents": []}
            if self.incidents:
                around = around_incidents(self.conn, self.since, self.until, minutes=BEFORE_INCIDENT_MIN, app=self.app)
                db = [
                    t
                    for t in around["templates"]
                    if DB_ERRORS.search(f"{t.get('template') or ''}\n{t.get('example') or ''}")
                ]
                self._db = {"templates": db, "incidents": around["incidents"]}
        return self._db


# -- helpers -----------------------------------------------------------------------------------


def _fit(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (a, b, r²)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    syy = sum((y - my) ** 2 for _, y in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    if sxx <= 0:
        return my, 0.0, 0.0
    b = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 0.0
    return my - b * mx, b, r2


def _mb(v: float) -> str:
    return f"{v / MB:.0f}MB"


def _rate(bytes_per_s: float) -> str:
    per_min = bytes_per_s * 60 / MB
    if per_min >= 60:
        return f"{bytes_per_s / MB:.1f}MB/s"
    if per_min >= 1:
        return f"{per_min:.1f}MB/min"
    return f"{per_min * 60:.1f}MB/h"


def _times(n: int) -> str:
    from .report import _times as times

    return times(n)


def _span(seconds: float) -> str:
    from .report import span

    return span(seconds)


def _conf(x: float) -> float:
    return round(max(0.0, min(0.95, x)), 2)


# -- the rules ---------------------------------------------------------------------------------


@dataclass
class _Window:
    """One uptime window: the samples of one process (one pid) in a row."""

    key: Any
    points: list[tuple[int, float, int]] = field(default_factory=list)  # (seq, seconds, memory)
    ended: bool = False
    fit: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fitted: int = 0  # samples the line was fitted to

    @property
    def growth(self) -> float:
        return self.fit[1] * (self.points[-1][1] - self.points[0][1])

    @property
    def leaking(self) -> bool:
        if self.fitted < LEAK_MIN_SAMPLES or self.fit[1] <= 0 or self.fit[2] < LEAK_MIN_R2:
            return False
        start = self.fit[0] + self.fit[1] * self.points[0][1]
        return self.growth >= max(LEAK_MIN_GROWTH, LEAK_MIN_SHARE * max(start, 0.0))

    @property
    def end_level(self) -> int:
        return max(m for _, _, m in self.points[-2:])


def _windows(samples: list[tuple[int, str, dict[str, Any]]], hung: set[int] = frozenset()) -> list[_Window]:  # type: ignore[assignment]
    """Samples split by process; the line is fitted without the samples taken at a hang (`hung`
    seqs): a hung process serves nothing and stops allocating, which would bend the line."""
    t0 = parse_ts(samples[0][1]) if samples else None
    out: list[_Window] = []
    for seq, ts, d in samples:
        key = tuple(d["pids"]) if isinstance(d.get("pids"), list) else d.get("pid")
        mem = d.get("memory")
        if not key or not isinstance(mem, int) or d.get("after_restart"):
            continue
        if not out or out[-1].key != key:
            if out:
                out[-1].ended = True
            out.append(_Window(key))
        assert t0 is not None
        out[-1].points.append((seq, (parse_ts(ts) - t0).total_seconds(), mem))
    for w in out:
        fitted = [(t, float(m)) for seq, t, m in w.points if seq not in hung]
        if len(fitted) >= 2:
            w.fit = _fit(fitted)
            w.fitted = len(fitted)
    return out


def memory_leak(ctx: Context) -> Hint | None:
    return _leak(ctx)[0]


def _leak(ctx: Context) -> tuple[Hint | None, set[int]]:
    """The leak hint, and the incidents (ids) it explains: hangs at the end of a leaking window."""
    if ctx._leak is not None:
        return ctx._leak
    ctx._leak = (None, set())
    hang_at = {inc.hang_sample[0]: inc for inc in ctx.incidents if inc.hang_sample is not None}
    windows = _windows(ctx.samples, set(hang_at))
    leaking = [w for w in windows if w.leaking]
    if not leaking:
        return ctx._leak
    limits = [d["max_memory_restart"] for _, _, d in ctx.samples if d.get("max_memory_restart")]
    limit = limits[-1] if limits else None
    limit_restarts = [(seq, d) for seq, _, d in ctx.events("process.restarted") if d.get("cause") == "memory limit"]
    for w in leaking:  # a hang that we restarted ends its window too
        w.ended = w.ended or any(seq in hang_at for seq, _, _ in w.points[-2:])
    ended = [w for w in leaking if w.ended]
    explained: set[int] = set()
    hung_levels = []
    for w in ended:
        for seq, _, _ in w.points[-2:]:
            if seq in hang_at:
                explained.add(hang_at[seq].id)
                hung_levels.append(w.end_level)
    current = windows[-1] if windows[-1].leaking and not windows[-1].ended else None
    if not ended and current is None:
        return ctx._leak
    rate = max(w.fit[1] for w in leaking)
    conf = 0.45 if not ended else 0.7
    levels = [w.end_level for w in ended]
    same_level = len(levels) >= 2 and (max(levels) - min(levels)) <= SAME_LEVEL * max(levels)
    if len(ended) >= 2:
        conf += 0.1 if same_level else 0.05
    if explained or limit_restarts:
        conf += 0.1
    parts = [
        f"memory grows {_rate(rate)} within {len(leaking)} uptime window{'s' if len(leaking) > 1 else ''}"
        f" (steady: a fitted line, r² {min(w.fit[2] for w in leaking):.2f})"
    ]
    if explained:
        parts.append(
            f"it hung at ~{_mb(max(hung_levels))}" + (f" {len(explained)} times" if len(explained) > 1 else "")
        )
    elif limit_restarts:
        parts.append(f"PM2 restarted it at max_memory_restart {_mb(limit or 0)} {len(limit_restarts)} time(s)")
    elif ended:
        parts.append(f"it was restarted at ~{_mb(max(levels))}")
    target, target_name = None, ""
    if limit:
        target, target_name = limit, f"max_memory_restart {_mb(limit)}"
    elif hung_levels:
        target, target_name = min(hung_levels), f"the level where it hung ({_mb(min(hung_levels))})"
    forecast = None
    if current is not None and target is not None:
        a, b, _ = current.fit
        now_level = a + b * current.points[-1][1]
        if target > now_level:
            forecast = (target - now_level) / b
            parts.append(f"at this rate it reaches {target_name} in {_span(forecast)}")
    message = "memory leak: " + "; ".join(parts) + " (a heap snapshot, node --inspect, shows what is kept)"
    evidence: dict[str, Any] = {
        "growth_bytes_per_s": round(rate, 1),
        "windows": [
            {
                "pid": w.key,
                "samples": len(w.points),
                "first_seq": w.points[0][0],
                "last_seq": w.points[-1][0],
                "start_bytes": w.points[0][2],
                "end_bytes": w.end_level,
                "r2": round(w.fit[2], 3),
                "bytes_per_s": round(w.fit[1], 1),
                "ended": w.ended,
            }
            for w in leaking
        ],
        "incidents": sorted(explained),
        "memory_limit_restarts": [seq for seq, _ in limit_restarts],
    }
    if limit:
        evidence["max_memory_restart"] = limit
    if hung_levels:
        evidence["hang_level_bytes"] = min(hung_levels)
    if forecast is not None:
        evidence["forecast_s"] = round(forecast)
    ctx._leak = (Hint("memory_leak", message, _conf(conf), evidence), explained)
    return ctx._leak


def _hangs(ctx: Context) -> tuple[list[Incident], set[int]]:
    hung = [i for i in ctx.incidents if i.hung and i.cpu is not None]
    return hung, _leak(ctx)[1]


def event_loop_blocked(ctx: Context) -> Hint | None:
    hung, by_leak = _hangs(ctx)
    pinned = [i for i in hung if i.cpu is not None and i.cpu >= PINNED_CPU]
    if not pinned:
        return None
    own = [i for i in pinned if i.id not in by_leak]
    evidence = {
        "incidents": [i.id for i in pinned],
        "sample_seqs": [i.hang_sample[0] for i in pinned if i.hang_sample],
        "cpu": [i.cpu for i in pinned],
        "hangs": len(hung),
    }
    delays = [
        i.hang_sample[1]["loop_delay_ms"] for i in pinned if i.hang_sample and "loop_delay_ms" in i.hang_sample[1]
    ]
    if delays:
        evidence["loop_delay_ms"] = delays
    cpu = max(i.cpu or 0.0 for i in pinned)
    if not own:
        message = (
            f"event loop blocked at high memory: {len(pinned)} hang(s) with the CPU pinned ({cpu:.0f}%) came at"
            " the end of a memory climb: the garbage collector thrashing (see the memory leak hint)"
        )
        return Hint("event_loop_blocked", message, 0.3, evidence)
    share = len(own) / len(hung)
    message = (
        f"event loop blocked: {len(own)} of {len(hung)} hangs had the CPU pinned ({cpu:.0f}%): a busy loop,"
        " a catastrophic regex or synchronous work; a CPU profile (node --cpu-prof) shows where"
    )
    return Hint("event_loop_blocked", message, _conf(0.5 + 0.35 * share + (0.05 if len(own) >= 2 else 0)), evidence)


def stalled_on_io(ctx: Context) -> Hint | None:
    hung, by_leak = _hangs(ctx)
    idle = [i for i in hung if i.cpu is not None and i.cpu <= IDLE_CPU and i.id not in by_leak]
    if not idle:
        return None
    db = ctx.db_before_incidents()["templates"]
    with_db = sorted({iid for t in db for iid in t["incident_ids"] if iid in {i.id for i in idle}})
    share = len(idle) / len(hung)
    cpu = max(i.cpu or 0.0 for i in idle)
    message = (
        f"stalled on I/O: {len(idle)} of {len(hung)} hangs with the CPU idle ({cpu:.0f}%): the server accepts"
        " connections but never answers, waiting on something (an exhausted DB pool, a lock, an upstream,"
        " a promise that never resolves)"
    )
    if with_db:
        message += f"; database errors came before {len(with_db)} of them"
    evidence = {
        "incidents": [i.id for i in idle],
        "sample_seqs": [i.hang_sample[0] for i in idle if i.hang_sample],
        "cpu": [i.cpu for i in idle],
        "hangs": len(hung),
        "db_templates": [t["template_id"] for t in db],
    }
    return Hint("stalled_on_io", message, _conf(0.45 + 0.3 * share + (0.1 if with_db else 0)), evidence)


def database_trouble(ctx: Context) -> Hint | None:
    found = ctx.db_before_incidents()
    db = [t for t in found["templates"] if _unlikely(t["before_incidents"], t["expected"])]
    if not db:
        return None
    n = len(found["incidents"])
    preceded = sorted({iid for t in db for iid in t["incident_ids"]})
    top = db[0]
    lift = "never seen otherwise" if top["lift"] is None else f"{top['lift']:g}x its usual rate"
    message = (
        f"database trouble: connection errors before {len(preceded)} of {n} incidents, e.g."
        f" “{_short(top['template'] or top['example'])}” ({top['before_incidents']}x in the"
        f" {BEFORE_INCIDENT_MIN:g} min before, {lift}): check the database, its connection limit and the"
        " app's pool size and timeouts"
    )
    conf = 0.55 + 0.3 * len(preceded) / max(n, 1) + (0.1 if top["lift"] is None or top["lift"] >= 5 else 0)
    evidence = {
        "templates": [t["template_id"] for t in db],
        "incidents": preceded,
        "counts": {t["template_id"]: t["before_incidents"] for t in db},
        "lift": {t["template_id"]: t["lift"] for t in db},
    }
    return Hint("database_trouble", message, _conf(conf), evidence)


def _unlikely(n: int, expected: float, alpha: float = 0.01) -> bool:
    """`n` entries where `expected` were due (the template's rate elsewhere): a spike, not chance,
    when a Poisson count that large has probability under `alpha`. Two at least."""
    if n < 2:
        return False
    term = total = math.exp(-expected)
    for k in range(1, n):
        term *= expected / k
        total += term
    return 1 - total < alpha


def _short(text: str | None, width: int = 80) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def crash_loop(ctx: Context) -> Hint | None:
    theirs = ctx.conn.execute(
        "SELECT seq, at, count FROM restarts WHERE app = ? AND by = 'pm2' AND at >= ? AND at <= ? ORDER BY at",
        (ctx.app, ctx.since, ctx.until),
    ).fetchall()
    restarted = ctx.events("process.restarted")
    memory = sum(int(d.get("count") or 1) for _, _, d in restarted if d.get("cause") == "memory limit")
    n = sum(int(c) for _, _, c in theirs) - memory
    errored = [i for i in ctx.incidents if i.reason.startswith("errored")]
    if n < 3 and not errored:
        return None
    crashes = [(seq, d) for seq, _, d in restarted if d.get("cause") == "crash"]
    first = min([at for _, at, _ in theirs] + [i.started_at for i in errored])
    lo = format_ts(parse_ts(first) - _dt.timedelta(minutes=BEFORE_INCIDENT_MIN))
    from .logs.storage import top_templates

    named = [d["evidence"]["template_id"] for _, d in crashes if (d.get("evidence") or {}).get("template_id")]
    tops = top_templates(ctx.conn, lo, app=ctx.app, top=20, until=ctx.now)
    top = next((t for t in tops if t["template_id"] in named), tops[0] if tops else None)
    parts = [f"crash loop: PM2 restarted it {n} time{'s' if n != 1 else ''} on its own"]
    if errored:
        parts[0] += f" and gave up (errored) {_times(len(errored))}"
    codes = sorted({d["evidence"]["exit_code"] for _, d in crashes if "exit_code" in (d.get("evidence") or {})})
    if codes:
        parts.append(f"exit code {', '.join(map(str, codes))}")
    if top:
        parts.append(
            f"top error “{_short(top['template'])}” ({top['count']}x; `recovery errors show {top['template_id']}`)"
        )
    else:
        parts.append("no error logs ingested: `recovery ingest` and `pm2 logs` show why it exits")
    conf = 0.5 + (0.15 if errored else 0) + (0.1 if crashes else 0) + (0.15 if top else 0) + (0.05 if n >= 5 else 0)
    evidence = {
        "pm2_restarts": n,
        "restart_seqs": [s for s, _, _ in theirs],
        "errored_incidents": [i.id for i in errored],
        "process_restarted": [s for s, _ in crashes],
        "exit_codes": codes,
        "templates": [top["template_id"]] if top else [],
    }
    return Hint("crash_loop", "; ".join(parts), _conf(conf), evidence)


def schedule(ctx: Context) -> Hint | None:
    from .report import clustered_hours

    starts = [i.started_at for i in ctx.incidents]
    best: Hint | None = None
    for first, last, k in clustered_hours(starts):
        hours = f"{first:02d}:00" if first == last else f"{first:02d}:00 and {(last + 1) % 24:02d}:00"
        where = f"at {hours} UTC" if first == last else f"between {hours} UTC"
        message = (
            f"schedule: {k} of {len(starts)} incidents began {where}: look for what runs then"
            " (cron jobs, backups, log rotation, batch traffic)"
        )
        hint = Hint(
            "schedule",
            message,
            _conf(0.4 + 0.45 * k / len(starts)),
            {
                "hours_utc": list(range(first, last + 1)),
                "incidents": len(starts),
                "in_cluster": k,
                "incident_ids": [i.id for i in ctx.incidents if first <= int(i.started_at[11:13]) <= last],
            },
        )
        if best is None or hint.confidence > best.confidence:
            best = hint
    ends = [(seq, parse_ts(ts)) for seq, ts, _ in ctx.events("maintenance.ended")]
    if len(starts) >= 2 and ends:
        after = []
        for inc in ctx.incidents:
            t = parse_ts(inc.started_at)
            hit = [seq for seq, end in ends if 0 <= (t - end).total_seconds() <= AFTER_DEPLOY_S]
            if hit:
                after.append((inc.id, hit[-1]))
        if len(after) >= 2 and 2 * len(after) >= len(starts):
            message = (
                f"schedule: {len(after)} of {len(starts)} incidents began within {_span(AFTER_DEPLOY_S)} after"
                " a maintenance window ended (a deploy?): the new release, or its warm-up, is the suspect"
            )
            hint = Hint(
                "schedule",
                message,
                _conf(0.45 + 0.4 * len(after) / len(starts)),
                {
                    "incident_ids": [i for i, _ in after],
                    "maintenance_seqs": [s for _, s in after],
                    "incidents": len(starts),
                },
            )
            if best is None or hint.confidence > best.confidence:
                best = hint
    return best


def restarts_treat_symptom(ctx: Context) -> Hint | None:
    """Restarts per week over the last four weeks (whatever the period): rising means no fix."""
    week = _dt.timedelta(days=7)
    bounds = [format_ts(ctx.now - week * k) for k in range(4, -1, -1)]
    rows = ctx.conn.execute(
        "SELECT at, count FROM restarts WHERE app = ? AND at >= ? AND at <= ?", (ctx.app, bounds[0], bounds[-1])
    ).fetchall()
    weeks = [0, 0, 0, 0]
    for at, count in rows:
        for k in range(4):
            if bounds[k] <= at < bounds[k + 1] or (k == 3 and at == bounds[4]):
                weeks[k] += int(count)
                break
    w1, w2, w3 = weeks[1:]
    steady = w1 < w2 < w3 and w1 >= 1
    doubled = w2 >= 1 and w3 >= 2 * w2
    if w3 < 3 or not (steady or doubled):
        return None
    conf = 0.5 + (0.1 if steady else 0) + (0.1 if doubled and w3 >= 6 else 0)
    message = (
        f"restarts treat a symptom: restarts rise week over week ({', '.join(map(str, weeks))} in the last"
        " four weeks): restarting is not fixing the cause; see the other hints and"
        " `recovery errors --around-incidents`"
    )
    return Hint("restarts_treat_symptom", message, _conf(conf), {"restarts_per_week": weeks, "weeks_from": bounds[0]})


RULES: tuple[Callable[[Context], Hint | None], ...] = (
    memory_leak,
    event_loop_blocked,
    stalled_on_io,
    database_trouble,
    crash_loop,
    schedule,
    restarts_treat_symptom,
)
