"""Telemetry for `recovery check`: when a full PM2 sample is due, host memory and load, and PM2's own restarts with their likely cause.

Everything here is cheap (an indexed query or a few /proc reads) and never raises on a bad
store or an odd /proc: telemetry must not change a check's verdict.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from .events import format_ts
from .observations import ProcessView
from .store import recorded_since
from .units import earlier

FULL_EVERY_S = 3600.0  # a `pm2 jlist` sample of each app at least this often, even when nothing changed
HOST_EVERY_S = 60.0  # host.sampled at most this often
NEAR_LIMIT = 0.85  # memory at this share of max_memory_restart counts as "at the limit"
CRASH_LOOKBACK_S = 120.0  # error entries this long before a PM2 restart point at a crash


def full_sample_due(
    conn: sqlite3.Connection | None, app: str, view: ProcessView | None, now: _dt.datetime | None = None
) -> bool:
    """A `pm2 jlist` is due: the cheap view (pid files and /proc) is not enough, its pids differ
    from the last recorded sample's (PM2 restarted a worker: only jlist says how often and with
    which exit code; or a pid file came or went: the worker count changed), or no full sample
    of `app` in the last hour. Unchanged pids within the hour: no Node child on the healthy path."""
    if view is None:
        return True
    if conn is None:
        return False  # no store to remember with: the cheap sample, as before
    now = now or _dt.datetime.now(_dt.UTC)
    try:
        if last_pids(conn, app) != sorted(i.pid for i in view.instances if i.pid):
            return True
        return not recorded_since(
            conn,
            app,
            "process.sampled",
            earlier(now, FULL_EVERY_S),
            "json_extract(data, '$.source') = 'jlist' AND json_extract(data, '$.error') IS NULL",
        )
    except sqlite3.Error:
        return False


def last_pids(conn: sqlite3.Connection, app: str) -> list[int] | None:
    """The pids of `app`'s last recorded sample (either source), sorted; None when there is none or
    PM2 could not be read then. One row by the (app, type, seq) index."""
    row = conn.execute(
        "SELECT data FROM events WHERE app = ? AND type = 'process.sampled' ORDER BY seq DESC LIMIT 1", (app,)
    ).fetchone()
    if row is None:
        return None
    try:
        data = json.loads(row[0])
    except ValueError:
        return None
    if data.get("error"):
        return None
    pids = data.get("pids") if isinstance(data.get("pids"), list) else [data.get("pid")]
    return sorted(p for p in pids if isinstance(p, int) and p)


# -- the host -------------------------------------------------------------------------------


def host_due(conn: sqlite3.Connection | None, now: _dt.datetime | None = None) -> bool:
    if conn is None:
        return False
    now = now or _dt.datetime.now(_dt.UTC)
    try:
        return not recorded_since(conn, None, "host.sampled", earlier(now, HOST_EVERY_S))
    except sqlite3.Error:
        return False


def host_sample(proc: Path = Path("/proc")) -> dict[str, Any]:
    """Memory (bytes) and load averages, as `free` and `uptime` show them; {} when unreadable."""
    out: dict[str, Any] = {}
    keys = {
        "MemTotal": "mem_total",
        "MemAvailable": "mem_available",
        "SwapTotal": "swap_total",
        "SwapFree": "swap_free",
    }
    try:
        with open(proc / "meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in keys:
                    out[keys[name]] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        load = (proc / "loadavg").read_text().split()
        out.update(load1=float(load[0]), load5=float(load[1]), load15=float(load[2]))
    except (OSError, ValueError, IndexError):
        pass
    if out:
        out["cpus"] = os.cpu_count()
    return out


# -- PM2's own restarts ----------------------------------------------------------------------


def pm2_restarts(
    conn: sqlite3.Connection | None, app: str, data: dict[str, Any], now: _dt.datetime | None = None
) -> dict[str, Any] | None:
    """The `process.restarted` event data when `data` (a sample about to be recorded) shows that
    PM2 restarted the app on its own since the last sample; None otherwise.

    Uses the projections' own test (`projections.own_restarts`), so the event and the report's
    "restarts by pm2" agree. Only for a sample taken before this run acted on the app.
    """
    if conn is None or data.get("error"):
        return None
    from . import projections

    now = now or _dt.datetime.now(_dt.UTC)
    try:
        before = projections.app_before(conn, app)
        count, why = projections.own_restarts(before, data)
        if count:
            # Restarts requested since the projections were folded (by this run's start), by any
            # run: an operator's `recovery restart` from another process explains the change too.
            pending = projections.restarts_not_folded(conn, app)
            if pending:
                before.ours_since_sample += pending * max(1, before.instances or 1)
                before.ours_since_pid += pending
                count, why = projections.own_restarts(before, data)
        if not count:
            return None
        workers = projections.restarted_fields(before, data)  # a cluster: which workers, by pm_id
        cause, evidence = likely_cause(conn, app, {**worker_exit(workers), **data}, before.sampled_at, now)
    except (sqlite3.Error, ValueError):
        return None
    out: dict[str, Any] = {"count": count, "cause": cause, "seen": why, "evidence": evidence}
    if before.pid and data.get("pid") and before.pid != data.get("pid"):
        out.update(old_pid=before.pid, new_pid=data["pid"])
    out.update(workers)
    if data.get("restart_time") is not None:
        out["restart_time"] = data["restart_time"]
    return out


def worker_exit(workers: dict[str, Any]) -> dict[str, Any]:
    """{"exit_code": N} of the one worker of a cluster PM2 restarted, when it said how it ended."""
    named = workers.get("workers") or []
    return {"exit_code": named[0]["exit_code"]} if len(named) == 1 and "exit_code" in named[0] else {}


def likely_cause(
    conn: sqlite3.Connection, app: str, data: dict[str, Any], last_sampled: str | None, now: _dt.datetime
) -> tuple[str, dict[str, Any]]:
    """'memory limit', 'crash' or 'unknown', with what pointed there."""
    rows = conn.execute(
        "SELECT seq, data FROM events WHERE app = ? AND type = 'process.sampled' ORDER BY seq DESC LIMIT 5", (app,)
    ).fetchall()
    recent = [(seq, json.loads(d)) for seq, d in rows]
    limit = data.get("max_memory_restart") or next(
        (d["max_memory_restart"] for _, d in recent if d.get("max_memory_restart")), None
    )
    if limit:
        peak = max(((d["memory"], seq) for seq, d in recent if isinstance(d.get("memory"), int)), default=None)
        if peak is not None and peak[0] >= NEAR_LIMIT * limit:
            return "memory limit", {"memory": peak[0], "max_memory_restart": limit, "sample_seq": peak[1]}
    code = data.get("exit_code")
    if isinstance(code, int) and code != 0:
        return "crash", {"exit_code": code}
    since = min(last_sampled or format_ts(now), earlier(now, CRASH_LOOKBACK_S))
    try:
        row = conn.execute(
            "SELECT template_id, count(*) AS n FROM log_entries WHERE app = ? AND ts >= ? AND stream = 'err'"
            " GROUP BY template_id ORDER BY n DESC LIMIT 1",
            (app, since),
        ).fetchone()
    except sqlite3.OperationalError:  # no log tables: nothing ingested yet
        row = None
    if row is not None:
        return "crash", {"template_id": row[0], "errors": row[1]}
    return "unknown", {}
