"""Log ingestion as the last step of `recovery check`: small, cheap when nothing changed, never fatal.

The probe work and any restart come first; this runs after them, reads at most
`[logs] check_budget` bytes per app (a backlog is worked off over the following runs, or at
once by `recovery ingest`), and at most every `[logs] check_every` (reads this run made before
a restart do not count).

Before a restart, `before_restart=True` reads the app's new lines first, whatever `check_every`
says, within the same budget but at most BEFORE_RESTART_BYTES, and without a `pm2 jlist`: a line
without a timestamp of its own is then bounded by the moment of failure, not by a read after the
restart.

Which files: the app's `logs = [...]` from the config; else the paths PM2 reported in a full
sample taken during this run; else the files ingested for the app before (so a healthy check
needs no `pm2 jlist`); else, the first time only, a `pm2 jlist` (the caller's `discover`).
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from .storage import SCHEMA_VERSION, _iso, ensure_schema, schema_version

# The read before a restart delays it: 2 MB of a backlog take ~0.3-0.6 s, 16 MB ~3-4 s on a busy
# 2-CPU machine (bench/log_read_before_restart.py). A larger check_budget applies to the end-of-run
# step only, after the restart.
BEFORE_RESTART_BYTES = 2 << 20


def remembered_paths(conn: sqlite3.Connection, app: str) -> list[str]:
    """The files ingested for `app` before, in the order first seen."""
    rows = conn.execute("SELECT path FROM log_files WHERE app = ? GROUP BY path ORDER BY min(id)", (app,))
    return [r[0] for r in rows]


def _due(conn: sqlite3.Connection, app: str, every: float, now: _dt.datetime, run_id: str | None) -> bool:
    if every <= 0:
        return True
    others = "" if run_id is None else " AND (run_id IS NULL OR run_id != ?)"  # this run's read before a restart
    params = (app,) if run_id is None else (app, run_id)
    row = conn.execute(f"SELECT ts FROM log_ingests WHERE app = ?{others} ORDER BY id DESC LIMIT 1", params).fetchone()
    return row is None or row[0] <= _iso(now - _dt.timedelta(seconds=every))


def _unchanged(conn: sqlite3.Connection, paths: Sequence[str]) -> bool:
    """True when every file is exactly where the last run left it (same inode, size = offset), or gone.

    A file that has vanished is left to `recovery ingest`, which reports it; a check stays quiet.
    """
    for path in paths:
        row = conn.execute(
            "SELECT dev, ino, offset FROM log_files WHERE path = ? ORDER BY id DESC LIMIT 1", (path,)
        ).fetchone()
        try:
            st = os.stat(path)
        except OSError:
            continue
        if row is None or (st.st_dev, st.st_ino, st.st_size) != tuple(row):
            return False
    return True


def ingest_in_check(
    store: Any,
    app: Any,
    logs_conf: Any,
    *,
    seen: Sequence[str] = (),
    discover: Callable[[], Sequence[str]] | None = None,
    run_id: str | None = None,
    now: _dt.datetime | None = None,
    before_restart: bool = False,
) -> Any:
    """Ingest what is new for one app within the check's budget: an IngestResult, or None when
    there was nothing to do.

    `seen`: log paths from a full PM2 sample of this run. `discover()`: a full sample's paths,
    called only when nothing else names a file. `before_restart`: due whatever `check_every` says,
    and recorded so in the `log.ingested` event. Raises StoreError (and OSError) like `ingest`.
    """
    now = now or _dt.datetime.now(_dt.UTC)
    conn = store.conn
    if before_restart and 0 < schema_version(conn) < SCHEMA_VERSION:
        return None  # an old store's migration waits for the end-of-run step, never delays a restart
    ensure_schema(conn)
    if not before_restart and not _due(conn, app.name, logs_conf.check_every, now, run_id):
        return None
    paths = list(app.logs) or list(seen) or remembered_paths(conn, app.name)
    if not paths and discover is not None:
        paths = list(discover())
    if not paths or _unchanged(conn, paths):
        return None
    from .ingestion import ingest  # the reader, grouper and miner: only when there is something to read

    return ingest(
        store,
        app.name,
        paths,
        max_bytes=min(logs_conf.check_budget, BEFORE_RESTART_BYTES) if before_restart else logs_conf.check_budget,
        now=now,
        run_id=run_id,
        keep_stdout=logs_conf.keep_stdout,
        start=logs_conf.first_read,
        before_restart=before_restart,
    )
