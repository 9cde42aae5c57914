"""`recovery status`: one row per app from the projections (the old monitor.sh, with memory).

The rows only: `render.status_table` writes them for people.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from . import projections
from .batching import BATCH_SPAN_S, batch_probes
from .config import Config
from .hints import strongest
from .store import Store
from .units import age, earlier


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
    # A cluster's workers: total, healthy, failed [{pm_id, pid, why}], instances (pid, status, memory,
    # cpu, restart_time: PM2's counter, pm2_restarts_24h: PM2's own); None with one process.
    workers: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usual_interval(store: Store, app: str) -> float | None:
    """The median gap between the app's last 20 checks, None with fewer than 3."""
    return check_cadence(store, app)[0]


def check_cadence(store: Store, app: str) -> tuple[float | None, bool]:
    """The median gap between the app's last 20 checks (None with fewer than 3), and whether
    some of them were batched by `recovery watch`: its steady checks are written a minute late."""
    rows = store.conn.execute(
        "SELECT ts FROM events WHERE app = ? AND type = 'decision.made' ORDER BY seq DESC LIMIT 21", (app,)
    ).fetchall()
    checks = [(r[0], False) for r in rows]
    batches = store.conn.execute(
        "SELECT data FROM events WHERE app = ? AND type = 'probe.batched' ORDER BY seq DESC LIMIT 2", (app,)
    ).fetchall()
    checks += [(ts, True) for (data,) in batches for ts, _ in batch_probes(json.loads(data))]
    checks = sorted(checks, reverse=True)[:21]
    if len(checks) < 3:
        return None, False
    times = [projections.parse_ts(ts) for ts, _ in checks]
    gaps = [(a - b).total_seconds() for a, b in zip(times, times[1:]) if a > b]
    return (statistics.median(gaps) if gaps else None), any(batched for _, batched in checks)


def status(store: Store, config: Config, now: _dt.datetime | None = None) -> list[AppStatus]:
    """One row per configured app, in the config's order."""
    now = now or _dt.datetime.now(_dt.UTC)
    projections.fold(store.conn)
    try:
        return [_status(store, app.name, now, config) for app in config.apps]
    except sqlite3.Error as exc:
        raise projections.read_error(store.conn, exc) from exc


def _status(store: Store, name: str, now: _dt.datetime, config: Config) -> AppStatus:
    conn = store.conn
    day_ago = earlier(now, 86400)
    row = conn.execute(
        "SELECT state, since, reason, last_check_at, last_latency_ms, pm2_status, pid, uptime_s, memory, cpu,"
        " open_incident, paused_until, sampled_at, workers, failed_workers FROM app_state WHERE app = ?",
        (name,),
    ).fetchone()
    counts = dict(
        conn.execute(
            "SELECT source, sum(count) FROM restarts WHERE app = ? AND at > ? GROUP BY source", (name, day_ago)
        ).fetchall()
    )
    if row is None:
        return AppStatus(
            name,
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
    state, since, reason, last_check, latency, pm2_status, pid, uptime, memory, cpu, incident, paused, sampled = row[
        :13
    ]
    workers = worker_health(row[13], row[14])
    if workers is not None:
        if cpu is None:  # a cluster's sample has each worker's CPU, not the app's
            cpus = [i["cpu"] for i in workers["instances"] if isinstance(i.get("cpu"), (int, float))]
            cpu = round(sum(cpus), 1) if cpus else None
        theirs = projections.worker_restarts(conn, name, day_ago, projections.format_ts(now)).get("pm2", {})
        for i in workers["instances"]:
            i["pm2_restarts_24h"] = theirs.get(str(i["pm_id"]), 0)
    if paused and paused > projections.format_ts(now):
        state = "paused"
    interval, batched = check_cadence(store, name)
    stale = False
    if last_check and interval:
        # A watch writes its steady checks a minute at a time (at most two spans behind).
        late = 2 * max(config.watch.batch, BATCH_SPAN_S) if batched else 0.0
        stale = age(now, last_check) > 2 * max(interval, 1.0) + late
    if uptime is not None and sampled and pm2_status == "online":
        # The sample is as old as the last check; the process has been up that much longer.
        uptime += max(0.0, age(now, sampled))
    incident_since = None
    if incident is not None:
        r = conn.execute("SELECT started_at FROM incidents WHERE id = ?", (incident,)).fetchone()
        incident_since = r[0] if r else None
    hint = strongest(projections.hint_input(conn, name, now))
    code = projections.STATE_CODES.get(state, 3)
    if stale:
        code = 3  # nobody is looking: the state above may be out of date
    return AppStatus(
        name,
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
        workers,
    )


def worker_health(workers_json: str | None, failed_json: str | None) -> dict[str, Any] | None:
    """A cluster's workers as `recovery status` shows them: how many, how many are healthy, and the
    failed ones with why (hung: named by the last decision; else PM2's status when not online, or
    unknown for a worker the last sample did not show)."""
    if not workers_json:
        return None
    workers = json.loads(workers_json)
    hung = set(json.loads(failed_json)) if failed_json else set()
    failed = []
    for w in workers:
        why = "hung" if w["pm_id"] in hung else (w.get("status") or "unknown")
        if why != "online":
            failed.append({"pm_id": w["pm_id"], "pid": w.get("pid"), "why": why})
    return {
        "total": len(workers),
        "healthy": len(workers) - len(failed),
        "failed": failed,
        "instances": [
            {k: w.get(k) for k in ("pm_id", "pid", "status", "memory", "cpu", "restart_time")} for w in workers
        ],
    }
