"""`recovery status`: one row per app from the projections (the old monitor.sh, with memory)."""

from __future__ import annotations

import datetime as _dt
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from . import projections
from .config import Config
from .hints import strongest
from .store import Store


@dataclass
class AppStatus:
    app: str
    state: str
    since: str | None
    reason: str | None
    last_check_at: str | None
    check_interval_s: float | None  # the usual gap between checks
    stale: bool  # no check for twice the usual interval: is cron (or watch) still running?
    latency_ms: float | None
    pm2_status: str | None
    pid: int | None
    uptime_s: float | None
    memory: int | None
    cpu: float | None
    restarts_24h: int  # ours
    pm2_restarts_24h: int  # PM2's own
    open_incident: int | None
    incident_since: str | None
    paused_until: str | None
    code: int
    hint: dict[str, Any] | None = None  # the strongest likely cause (recovery.hints), if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usual_interval(store: Store, app: str) -> float | None:
    """The median gap between the app's last 20 checks, None with fewer than 3."""
    rows = store.conn.execute(
        "SELECT ts FROM events WHERE app = ? AND type = 'decision.made' ORDER BY seq DESC LIMIT 21", (app,)
    ).fetchall()
    if len(rows) < 3:
        return None
    times = [projections.parse_ts(r[0]) for r in rows]
    gaps = [(a - b).total_seconds() for a, b in zip(times, times[1:]) if a > b]
    return statistics.median(gaps) if gaps else None


def status(store: Store, config: Config, now: _dt.datetime | None = None) -> list[AppStatus]:
    now = now or _dt.datetime.now(_dt.UTC)
    projections.fold(store.conn)
    now_ts = projections.format_ts(now)
    day_ago = projections.format_ts(now - _dt.timedelta(days=1))
    out = []
    for app in config.apps:
        row = store.conn.execute(
            "SELECT state, since, reason, last_check_at, last_latency_ms, pm2_status, pid, uptime_s, memory, cpu,"
            " open_incident, paused_until, sampled_at FROM app_state WHERE app = ?",
            (app.name,),
        ).fetchone()
        counts = dict(
            store.conn.execute(
                "SELECT source, sum(count) FROM restarts WHERE app = ? AND at > ? GROUP BY source", (app.name, day_ago)
            ).fetchall()
        )
        if row is None:
            out.append(
                AppStatus(
                    app.name,
                    "unknown",
                    None,
                    "never checked",
                    None,
                    None,
                    False,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    0,
                    0,
                    None,
                    None,
                    None,
                    3,
                )
            )
            continue
        state, since, reason, last_check, latency, pm2_status, pid, uptime, memory, cpu, incident, paused, sampled = row
        if paused and paused > now_ts:
            state = "paused"
        interval = usual_interval(store, app.name)
        stale = False
        if last_check and interval:
            stale = (now - projections.parse_ts(last_check)).total_seconds() > 2 * max(interval, 1.0)
        if uptime is not None and sampled:
            # The sample is as old as the last check; the process has been up that much longer.
            uptime = (
                uptime + max(0.0, (now - projections.parse_ts(sampled)).total_seconds())
                if pm2_status == "online"
                else uptime
            )
        incident_since = None
        if incident is not None:
            r = store.conn.execute("SELECT started_at FROM incidents WHERE id = ?", (incident,)).fetchone()
            incident_since = r[0] if r else None
        hint = strongest(projections.hint_input(store.conn, app.name, now))
        code = projections.STATE_CODES.get(state, 3)
        if stale:
            code = 3  # nobody is looking: the state above may be out of date
        out.append(
            AppStatus(
                app.name,
                state,
                since,
                reason,
                last_check,
                interval,
                stale,
                latency,
                pm2_status,
                pid,
                round(uptime, 1) if uptime is not None else None,
                memory,
                cpu,
                int(counts.get("recovery", 0) or 0),
                int(counts.get("pm2", 0) or 0),
                incident,
                incident_since,
                paused,
                code,
                hint.to_dict() if hint else None,
            )
        )
    return out


def _ago(now: _dt.datetime, ts: str | None) -> str:
    if not ts:
        return "-"
    return human_duration((now - projections.parse_ts(ts)).total_seconds()) + " ago"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{(seconds % 86400) // 3600:02.0f}h"


def table(rows: list[AppStatus], now: _dt.datetime | None = None) -> str:
    """A plain-text table, one row per app."""
    now = now or _dt.datetime.now(_dt.UTC)
    head = [
        "APP",
        "STATE",
        "SINCE",
        "LAST CHECK",
        "LATENCY",
        "PM2",
        "PID",
        "UPTIME",
        "MEMORY",
        "CPU",
        "RESTARTS 24H",
        "INCIDENT",
        "HINT",
    ]
    body = []
    for r in rows:
        check = _ago(now, r.last_check_at) + (" (STALE: is cron running?)" if r.stale else "")
        body.append(
            [
                r.app,
                r.state.upper(),
                _ago(now, r.since),
                check,
                f"{r.latency_ms:.0f}ms" if r.latency_ms is not None else "-",
                r.pm2_status or "-",
                str(r.pid or "-"),
                human_duration(r.uptime_s),
                f"{r.memory / 1048576:.0f}MB" if r.memory else "-",
                f"{r.cpu:.0f}%" if r.cpu is not None else "-",
                f"{r.restarts_24h} ours / {r.pm2_restarts_24h} pm2",
                f"#{r.open_incident} since {_ago(now, r.incident_since)}" if r.open_incident else "-",
                f"{r.hint['kind']} {r.hint['confidence']:.2f}" if r.hint else "-",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head, *body]]
    notes = [f"{r.app}: {r.reason}" for r in rows if r.reason and r.state not in ("healthy",)]
    notes += [f"{r.app}: likely cause ({r.hint['confidence']:.2f}): {r.hint['message']}" for r in rows if r.hint]
    return "\n".join(lines + notes)
