"""Pruning raw entries: an explicit, recorded step; templates and hourly counts stay for good.

A text block goes with the prune that covers its newest entry; until then it still holds the
texts of its entries already pruned (at most BLOCK of them per block).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..errors import StoreError
from .storage import _iso, ensure_schema, entry_texts


def count_before(store: Any, before: Any) -> int:
    """How many raw entries a prune at `before` would delete."""
    from .storage import schema_version

    conn: sqlite3.Connection = store.conn
    try:
        if not schema_version(conn):
            return 0
        return conn.execute("SELECT count(*) FROM log_entries WHERE ts < ?", (_iso(before),)).fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the error-log tables in {getattr(store, 'path', '?')}: {exc}") from exc


def prune(store: Any, before: Any, *, now: Any = None, run_id: str | None = None, record: bool = True) -> int:
    """Delete entries older than `before` (a datetime or ISO string); return how many.

    A `log_prunes` row is written first: the delete trigger refuses any entry not covered by
    one. A `log.pruned` event is appended afterwards.
    """
    import datetime as _dt

    conn: sqlite3.Connection = store.conn
    before_s = _iso(before)
    now_s = _iso(now or _dt.datetime.now(_dt.UTC))
    try:
        ensure_schema(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute("SELECT count(*) FROM log_entries WHERE ts < ?", (before_s,)).fetchone()[0]
            if n:
                conn.execute("INSERT INTO log_prunes (ts, before_ts, entries) VALUES (?, ?, ?)", (now_s, before_s, n))
                # The index is contentless: a row leaves it given the text it was indexed with.
                gone = conn.execute("SELECT id, block FROM log_entries WHERE ts < ?", (before_s,)).fetchall()
                texts = entry_texts(conn, gone)
                conn.executemany(
                    "INSERT INTO log_entries_fts (log_entries_fts, rowid, message, stack_top) VALUES ('delete', ?, ?, ?)",
                    [(i, t["message"], t["stack_top"]) for i, t in texts.items()],
                )
                conn.execute("DELETE FROM log_entries WHERE ts < ?", (before_s,))
                conn.execute("DELETE FROM log_blocks WHERE last_ts < ?", (before_s,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot prune log entries in {getattr(store, 'path', '?')}: {exc}") from exc
    if record and n:
        from ..events import new as new_event

        store.append([new_event("log.pruned", None, run_id, {"before": before_s, "entries": n})])
    return n
