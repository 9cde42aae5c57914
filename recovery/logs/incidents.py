"""Which error templates come right before incidents, against their base rate.

For each app, the N minutes before each incident's start (windows that overlap are merged) are
compared with the rest of the period: a template that shows up in those windows far more often
than its rate elsewhere predicts trouble, and one first seen inside a window appeared with it.
This is what `recovery errors --around-incidents` prints and what root-cause hints read.

Window counts come from raw entries, so incidents older than the last prune are left out;
base counts come from the hourly counts, kept for good.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from typing import Any

from ..events import parse_ts
from .storage import _iso, ingested_by, readable, schema_version, top_templates


def _incidents(
    conn: sqlite3.Connection, since: str, until: str, app: str | None, known_by: str | None = None
) -> list[tuple]:
    try:
        return conn.execute(
            "SELECT id, app, started_at FROM incidents WHERE started_at >= ? AND started_at < ?"
            + (" AND app = ?" if app is not None else "")
            + (" AND coalesce(detected_at, started_at) <= ?" if known_by is not None else "")
            + " ORDER BY started_at",
            (since, until, *([app] if app is not None else []), *([known_by] if known_by is not None else [])),
        ).fetchall()
    except sqlite3.OperationalError:  # no projections yet: no check has run on this store
        return []


def _merge(windows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[list[str]] = []
    for lo, hi in sorted(windows):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def _hours(lo: str, hi: str) -> float:
    return max(0.0, (parse_ts(hi) - parse_ts(lo)).total_seconds() / 3600)


def around_incidents(
    conn: sqlite3.Connection,
    since: Any,
    until: Any,
    *,
    minutes: float = 10,
    app: str | None = None,
    known_by: Any = None,
) -> dict[str, Any]:
    """Templates seen in the `minutes` before incidents that started in [since, until).

    Returns {"incidents": [...], "minutes": ..., "templates": [...]}, templates ranked by how
    many incidents they preceded, then by lift (window rate over base rate; None when the
    template was never seen outside the windows), then by count. A line without a timestamp of
    its own counts by its upper bound (`ts`): before an incident only when it provably was;
    `bounded` says how many of a template's entries before incidents had such a time. With
    `known_by`, the answer as it stood then: incidents detected by then, log lines ingested by then.
    """
    since_s, until_s = _iso(since), _iso(until)
    known_s = _iso(known_by) if known_by is not None else None
    bound = ingested_by(conn, known_s) if known_s is not None and readable(conn) else 1 << 62
    pruned = None
    if readable(conn):
        pruned = conn.execute("SELECT max(before_ts) FROM log_prunes").fetchone()[0]
    start = max(since_s, pruned) if pruned else since_s
    incidents = _incidents(conn, start, until_s, app, known_s)
    out: dict[str, Any] = {
        "since": since_s,
        "until": until_s,
        "minutes": minutes,
        "pruned_before": pruned,
        "incidents": [{"id": i, "app": a, "started_at": s} for i, a, s in incidents],
        "templates": [],
    }
    if not incidents or not readable(conn):
        return out
    width = _dt.timedelta(minutes=minutes)
    bounded_sql = "sum(ts_bounded)" if schema_version(conn) >= 4 else "0"
    per_app: dict[str, list[tuple[int, str, str]]] = {}
    for iid, a, started in incidents:
        lo = _iso(parse_ts(started) - width)
        per_app.setdefault(a, []).append((iid, max(lo, since_s), started))

    rows = []
    for a, windows in per_app.items():
        merged = _merge([(lo, hi) for _, lo, hi in windows])
        window_hours = sum(_hours(lo, hi) for lo, hi in merged)
        base_hours = max(_hours(since_s, until_s) - window_hours, 1 / 60)
        totals = {
            r["template_id"]: r
            for r in top_templates(conn, since_s, app=a, top=1 << 30, until=until_s, known_by=known_s)
        }
        inside: dict[str, int] = {}
        bounded: dict[str, int] = {}  # of them, lines without a timestamp: `ts` is their upper bound
        for lo, hi in merged:
            for tid, n, nb in conn.execute(
                f"SELECT template_id, count(*), {bounded_sql} FROM log_entries WHERE app = ? AND ts >= ? AND ts < ?"
                " AND ingest_id <= ? GROUP BY template_id",
                (a, lo, hi, bound),
            ):
                inside[tid] = inside.get(tid, 0) + n
                bounded[tid] = bounded.get(tid, 0) + nb
        preceded: dict[str, list[int]] = {}
        for iid, lo, hi in windows:
            for (tid,) in conn.execute(
                "SELECT DISTINCT template_id FROM log_entries WHERE app = ? AND ts >= ? AND ts < ? AND ingest_id <= ?",
                (a, lo, hi, bound),
            ):
                preceded.setdefault(tid, []).append(iid)
        for tid, n in inside.items():
            total = totals.get(tid)
            base = max(0, (total["count"] if total else n) - n)
            first_seen = conn.execute(
                "SELECT min(first_ts) FROM log_counts WHERE app = ? AND template_id = ? AND ingest_id <= ?",
                (a, tid, bound),
            ).fetchone()[0]
            appeared = [iid for iid, lo, hi in windows if first_seen is not None and lo <= first_seen < hi]
            base_per_hour = base / base_hours
            expected = base_per_hour * window_hours
            rows.append(
                {
                    "template_id": tid,
                    "template": total["template"] if total else None,
                    "app": a,
                    "before_incidents": n,
                    "bounded": bounded.get(tid, 0),
                    "incidents_preceded": len(preceded.get(tid, [])),
                    "incidents": len(windows),
                    "incident_ids": preceded.get(tid, []),
                    "base_count": base,
                    "base_per_hour": round(base_per_hour, 3),
                    "expected": round(expected, 3),
                    "lift": round(n / expected, 1) if expected > 0 else None,
                    "first_seen": first_seen,
                    "appeared_before_incident": appeared[0] if appeared else None,
                    "example": total["example"] if total else None,
                }
            )
    rows.sort(
        key=lambda r: (
            -r["incidents_preceded"],
            -(r["lift"] if r["lift"] is not None else float("inf")),
            -r["before_incidents"],
            r["template_id"],
        )
    )
    out["templates"] = rows
    return out
