"""Shipping this host's new events, and the read models they changed, to the fleet's PostgreSQL.

`ship(config)` sends the events recorded since the local cursor, within `[fleet] budget` seconds,
in rounds of `[fleet] batch` events. One round is one PostgreSQL transaction: the events (COPY into
a temporary table, then INSERT ... ON CONFLICT DO NOTHING: idempotent on the event id), in the
last round the read models that changed (app_state, incidents, restarts, rollup hours and days),
and the host's row in fleet_hosts. The cursor is written in the SQLite store only after PostgreSQL
committed: a crash in between ships the same events again next time, and they add nothing.

The cursor lives in the store as `fleet_cursor` (one row per fleet target: a hash of the URL
without its password and of the fleet host name), created by the first ship, like the
projections: not a store migration, so a store never shipped is read by every recovery as before.
A failed ship writes no event (PostgreSQL may be down for hours, and one event per try would grow
the store every few minutes): its one-line error and since when it fails stay in the cursor row,
where `recovery status` shows them; the next ship that works clears them.

psycopg is imported only here, when a ship connects (`backlog` and `ShipWorker` do not import it).
Every message shows the URL as `shown_dsn` prints it (`postgresql://user:***@host:port/db`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from recovery import __version__, fleet, projections
from recovery.config import Config
from recovery.errors import FleetError, StoreError
from recovery.events import now_ts
from recovery.fleet import _reason
from recovery.store import Store, held_lock, immediate
from recovery.units import format_ts, parse_ts
from recovery.urls import shown_dsn
from recovery.workers import NudgedWorker

SCHEMA_VERSION = 1  # fleet_meta 'schema_version': what schema.sql creates
SCHEMA_LOCK = 0x7265636F76657279  # the advisory lock ensure_schema holds ('recovery')
CONFIGURED = -1.0  # ship(budget=CONFIGURED): [fleet] budget
MARGIN_S = 3600.0  # rollup hours re-sent before an app's last counted time: a batch may end a little before

_clock = time.monotonic  # the budget's clock (a test advances its own)

CURSOR_SQL = """
CREATE TABLE IF NOT EXISTS fleet_cursor (
    target TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    host TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    shipped_at TEXT,
    models_seq INTEGER NOT NULL DEFAULT 0,
    models_version INTEGER,
    watermarks TEXT NOT NULL DEFAULT '{}',
    tried_at TEXT,
    last_error TEXT,
    error_since TEXT
)"""

EVENT_COLUMNS = "seq, id, ts, event_host, app, type, run_id, data, prev_hash, hash"
APP_STATE_COLUMNS = (
    "app, state, since, reason, last_check_at, last_latency_ms, pm2_status, memory, cpu, uptime_s, restart_time,"
    " paused_until, suspended_at, open_incident, last_restart_at, last_ok_at, first_fail_at"
)
INCIDENT_COLUMNS = (
    "id, app, started_at, detected_at, unobserved_s, ended_at, duration_s, restarts, outcome, first_reason"
)
RESTART_COLUMNS = "seq, app, at, by, source, count, reason, outcome, incident_id, code"
ROLLUP_COLUMNS = "app, start, probes, failures, up_s, down_s, unobserved_s, latency"


def fleet_host(config: Config) -> str:
    "This host's name in the fleet: [fleet] host, else the hostname."
    return config.fleet.host or os.uname().nodename


def target_key(config: Config) -> str:
    "The cursor's key: the URL without its password, and the fleet host name."
    text = f"{shown_dsn(config.fleet.postgres or '')}\n{fleet_host(config)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ShipResult:
    host: str
    target: str  # the URL, redacted
    events: int = 0  # events PostgreSQL did not have yet
    sent: int = 0  # events sent (a re-sent one adds nothing)
    rounds: int = 0
    last_seq: int = 0  # the highest seq PostgreSQL confirmed
    backlog: int = 0  # events still to ship (the budget ran out first)
    models: dict[str, int] = field(default_factory=dict)  # read-model rows upserted, per table
    seconds: float = 0.0
    busy: bool = False  # another ship of this store was running: this one did nothing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Backlog:
    "What `recovery status` says of the fleet: events not shipped yet, the last ship, the last failure."

    target: str
    host: str
    events: int
    shipped_at: str | None
    error: str | None
    error_since: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the local cursor (SQLite) --------------------------------------------------------------


@dataclass
class Cursor:
    last_seq: int = 0
    models_seq: int = 0
    models_version: int | None = None
    watermarks: dict[str, Any] = field(default_factory=dict)


def _cursor(conn: sqlite3.Connection, key: str, url: str, host: str) -> Cursor:
    conn.execute(CURSOR_SQL)
    row = conn.execute(
        "SELECT last_seq, models_seq, models_version, watermarks FROM fleet_cursor WHERE target = ?", (key,)
    ).fetchone()
    if row is None:
        with immediate(conn):
            conn.execute("INSERT OR IGNORE INTO fleet_cursor (target, url, host) VALUES (?, ?, ?)", (key, url, host))
        return Cursor()
    return Cursor(row[0], row[1], row[2], json.loads(row[3] or "{}"))


def _note_failure(conn: sqlite3.Connection, key: str, error: str) -> None:
    "Keep a failed ship's error and since when ship fails, in the cursor row (never an event)."
    now = now_ts()
    with contextlib.suppress(sqlite3.Error), immediate(conn):
        conn.execute(
            "UPDATE fleet_cursor SET tried_at = ?, last_error = ?, error_since = coalesce(error_since, ?)"
            " WHERE target = ?",
            (now, error, now, key),
        )


def backlog(conn: sqlite3.Connection, config: Config) -> Backlog | None:
    """The fleet backlog of this store, by seq arithmetic (no psycopg, no PostgreSQL): None when
    no fleet is configured."""
    url = config.fleet.postgres
    if url is None:
        return None
    last = conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
    try:
        row = conn.execute(
            "SELECT last_seq, shipped_at, last_error, error_since FROM fleet_cursor WHERE target = ?",
            (target_key(config),),
        ).fetchone()
    except sqlite3.OperationalError:
        row = None  # never shipped: no cursor table yet
    shipped, at, error, since = row if row is not None else (0, None, None, None)
    return Backlog(shown_dsn(url), fleet_host(config), max(0, last - shipped), at, error, since)


# -- PostgreSQL -----------------------------------------------------------------------------


def connect(url: str, timeout: float | None) -> Any:
    """A psycopg connection (autocommit: each unit of work opens its own transaction) that gives up
    within `timeout` seconds (recovery.fleet.connect)."""
    return fleet.connect(url, timeout, autocommit=True, application_name="recovery ship")


def ensure_schema(pg: Any) -> None:
    """Create the fleet tables (schema.sql, IF NOT EXISTS) under an advisory lock, and record the
    schema version in fleet_meta; a schema newer than this code knows is a FleetError."""
    found = _schema_version(pg)
    if found == SCHEMA_VERSION:
        return  # every ship after the first: one read
    with pg.transaction():
        pg.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        found = _schema_version(pg)  # another host may have created it meanwhile
        if found is not None and found > SCHEMA_VERSION:
            raise FleetError(
                f"the fleet store's schema is version {found}, newer than this recovery knows ({SCHEMA_VERSION}):"
                " upgrade recovery on this host"
            )
        pg.execute(files("recovery.fleet").joinpath("schema.sql").read_text())
        pg.execute(
            "INSERT INTO fleet_meta (key, value) VALUES ('schema_version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (str(SCHEMA_VERSION),),
        )


def _schema_version(pg: Any) -> int | None:
    row = pg.execute("SELECT to_regclass('fleet_meta') IS NOT NULL").fetchone()
    if not row[0]:
        return None
    row = pg.execute("SELECT value FROM fleet_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else None


def _copy_events(pg: Any, host: str, rows: list[tuple[Any, ...]]) -> int:
    "COPY one batch into a temporary table, then into fleet_events; how many were new."
    pg.execute(
        "CREATE TEMP TABLE IF NOT EXISTS fleet_incoming (seq bigint, id text, ts text, event_host text, app text,"
        " type text, run_id text, data text, prev_hash text, hash text) ON COMMIT DELETE ROWS"
    )
    with pg.cursor() as cur:
        with cur.copy(f"COPY fleet_incoming ({EVENT_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO fleet_events (host, {EVENT_COLUMNS}) SELECT %s, {EVENT_COLUMNS} FROM fleet_incoming"
            " ON CONFLICT DO NOTHING",
            (host,),
        )
        return int(cur.rowcount)


def _upsert(pg: Any, table: str, columns: str, keys: str, host: str, rows: list[tuple[Any, ...]]) -> int:
    "Insert or update `rows` of `table` by its key: COPY into a temporary table, then one INSERT ... ON CONFLICT."
    if not rows:
        return 0
    names = [c.strip() for c in columns.split(",")]
    key_names = {k.strip() for k in keys.split(",")}
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in key_names)
    pg.execute(f"CREATE TEMP TABLE IF NOT EXISTS incoming_{table} (LIKE {table}) ON COMMIT DELETE ROWS")
    with pg.cursor() as cur:
        with cur.copy(f"COPY incoming_{table} (host, {columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((host, *row))
        cur.execute(
            f"INSERT INTO {table} (host, {columns}) SELECT host, {columns} FROM incoming_{table}"
            f" ON CONFLICT (host, {keys}) DO UPDATE SET {updates}"
        )
    return len(rows)


def _hour_before(ts: str) -> str:
    return format_ts(parse_ts(ts) - _dt.timedelta(seconds=MARGIN_S))


def _models(conn: sqlite3.Connection, cursor: Cursor) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, Any]]:
    """The read-model rows that changed since the models were last shipped, and the new watermarks.

    app_state: every row (one per app). incidents: begun or ended since, or still open. restarts:
    since, and the hour before (a restart's outcome is written when its verification ends). Rollup
    hours and days: from each app's last counted time at the last ship (less MARGIN_S) on: the fold
    adds time to an app's rows from there. After a fold version change, everything.
    """
    fresh = cursor.models_version != projections.VERSION
    since = 0 if fresh else cursor.models_seq
    marks: dict[str, str] = {} if fresh else dict(cursor.watermarks.get("apps", {}))
    since_ts = "" if fresh else str(cursor.watermarks.get("ts") or "")
    out: dict[str, list[tuple[Any, ...]]] = {}
    state = conn.execute(f"SELECT {APP_STATE_COLUMNS}, counted_at FROM app_state ORDER BY app").fetchall()
    out["fleet_app_state"] = [tuple(r[:-1]) for r in state]
    out["fleet_incidents"] = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE started_seq > ? OR ended_seq > ? OR ended_at IS NULL",
        (since, since),
    ).fetchall()
    out["fleet_restarts"] = conn.execute(
        f"SELECT {RESTART_COLUMNS} FROM restarts WHERE seq > ? OR at >= ?",
        (since, _hour_before(since_ts) if since_ts else ""),
    ).fetchall()
    apps = {r[0] for r in conn.execute("SELECT DISTINCT app FROM rollup_day")} | {r[0] for r in state}
    for level, prefix in (("hour", 13), ("day", 10)):
        rows: list[tuple[Any, ...]] = []
        for app in sorted(apps):
            mark = marks.get(app)
            start = _hour_before(mark)[:prefix] if mark else ""
            rows += conn.execute(
                f"SELECT {ROLLUP_COLUMNS} FROM rollup_{level} WHERE app = ? AND start >= ?", (app, start)
            ).fetchall()
        out[f"fleet_rollup_{level}"] = rows
    new_marks = {}
    for r in state:
        app, last_check, counted = r[0], r[4], r[-1]
        known = [t for t in (last_check, counted) if t]
        if known:
            new_marks[app] = min(known)
    last = conn.execute("SELECT ts FROM events WHERE seq = ?", (projections.last_folded(conn),)).fetchone()
    return out, {"apps": new_marks, "ts": last[0] if last else since_ts}


def _ship_models(pg: Any, host: str, models: dict[str, list[tuple[Any, ...]]]) -> dict[str, int]:
    keys = {
        "fleet_app_state": ("app", APP_STATE_COLUMNS),
        "fleet_incidents": ("id", INCIDENT_COLUMNS),
        "fleet_restarts": ("seq", RESTART_COLUMNS),
        "fleet_rollup_hour": ("app, start", ROLLUP_COLUMNS),
        "fleet_rollup_day": ("app, start", ROLLUP_COLUMNS),
    }
    return {t: _upsert(pg, t, keys[t][1], keys[t][0], host, rows) for t, rows in models.items()}


def _host_row(pg: Any, host: str, rows: list[tuple[Any, ...]], inserted: int, last_seq: int, last_check: Any) -> None:
    first = rows[0][0] if rows else None
    last_event = rows[-1][2] if rows else None
    pg.execute(
        "INSERT INTO fleet_hosts (host, first_seq, last_seq, last_event_at, last_check_at, events, version)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (host) DO UPDATE SET last_shipped_at = now(),"
        " first_seq = LEAST(fleet_hosts.first_seq, EXCLUDED.first_seq),"
        " last_seq = GREATEST(fleet_hosts.last_seq, EXCLUDED.last_seq),"
        " last_event_at = CASE WHEN EXCLUDED.last_seq >= fleet_hosts.last_seq"
        "   THEN coalesce(EXCLUDED.last_event_at, fleet_hosts.last_event_at) ELSE fleet_hosts.last_event_at END,"
        " last_check_at = GREATEST(fleet_hosts.last_check_at, EXCLUDED.last_check_at),"
        " events = fleet_hosts.events + EXCLUDED.events, version = EXCLUDED.version",
        (host, first, last_seq, last_event, last_check, inserted, __version__),
    )


EVENTS_AFTER = (
    "SELECT seq, id, ts, host, app, type, run_id, data, prev_hash, hash FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
)


def _event_rows(conn: sqlite3.Connection, store_path: Path, after: int, batch: int) -> list[tuple[Any, ...]]:
    """The next `batch` events after seq `after`. Events `recovery archive` moved into a segment
    after shipping began, before they shipped, come from that segment: the fleet's copy of the
    chain has no gap (those archived before the first ship are left out, as fleet verify expects)."""
    rows = conn.execute(EVENTS_AFTER, (after, batch)).fetchall()
    if after > 0 and rows and rows[0][0] > after + 1:
        from recovery import segments

        for seg in segments.segments(store_path):
            if seg.last_seq > after:
                sealed = segments.connect(seg.path)
                try:
                    found = sealed.execute(EVENTS_AFTER, (after, batch)).fetchall()
                finally:
                    sealed.close()
                if found:
                    return found
    return rows


# -- one ship ----------------------------------------------------------------------------------


def _ship_lock(config: Config, wait: bool) -> contextlib.AbstractContextManager[bool]:
    "The store's ship lock (`<store>-ship.lock`): True when held; without `wait`, False when another ship runs."
    return held_lock(config.store.path, "-ship.lock", wait=wait)


def ship(
    config: Config,
    *,
    budget: float | None = CONFIGURED,
    wait: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ShipResult:
    """Ship this store's new events (and the read models they changed) to config.fleet.postgres,
    within `budget` seconds (default [fleet] budget; None: no limit). Raises FleetError (or
    StoreError) with a message that never holds the password; the failure is kept in the cursor.

    Another ship of the same store running: returns at once (`busy`), or with `wait` waits for it.
    `progress(shipped, total)` is called after each round.
    """
    url = config.fleet.postgres
    if url is None:
        raise FleetError("no fleet store is configured: set [fleet] postgres in the config")
    if budget == CONFIGURED:
        budget = config.fleet.budget
    started = _clock()
    host = fleet_host(config)
    result = ShipResult(host=host, target=shown_dsn(url))
    with _ship_lock(config, wait) as held:
        if not held:
            result.busy = True
            return result
        if not config.store.path.exists():
            raise StoreError(f"no event store at {config.store.path} (a `recovery check` run creates it)")
        store = Store.open(config.store.path, busy_timeout=config.store.busy_timeout, group=config.store.group)
        try:
            conn = store.conn
            try:
                projections.fold(conn)
                key = target_key(config)
                cursor = _cursor(conn, key, shown_dsn(url), host)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the event store {store.path}: {exc}") from exc
            try:
                _run(config, conn, key, cursor, result, started, budget, progress)
            except FleetError as exc:
                _note_failure(conn, key, str(exc))
                raise
            except StoreError:
                raise
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the event store {store.path}: {exc}") from exc
            except Exception as exc:  # psycopg's errors, and any other: one line, no password
                text = f"fleet store {shown_dsn(url)}: {_reason(exc, url)}"
                _note_failure(conn, key, text)
                raise FleetError(text) from None
        finally:
            store.close()
    result.seconds = round(_clock() - started, 3)
    return result


def _run(
    config: Config,
    conn: sqlite3.Connection,
    key: str,
    cursor: Cursor,
    result: ShipResult,
    started: float,
    budget: float | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    def left() -> float | None:
        return None if budget is None else budget - (_clock() - started)

    url = config.fleet.postgres or ""
    host, batch = result.host, max(1, config.fleet.batch)
    store_last = conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
    folded = projections.last_folded(conn)
    total = max(0, store_last - cursor.last_seq)
    models_due = cursor.models_seq != folded or cursor.models_version != projections.VERSION
    pg = connect(url, left())
    try:
        ensure_schema(pg)
        round_s = 0.0
        while True:
            remaining = left()
            spent = remaining is not None and remaining <= 0
            if spent and not models_due:
                break
            # Once the budget is spent, one short round more with the read models alone: the fleet
            # views stay current while a long backlog ships over several runs.
            rows = [] if spent else _event_rows(conn, config.store.path, cursor.last_seq, batch)
            if not rows and not models_due:
                break
            began = _clock()
            # The read models go with the round that ends this ship: the last events, or the budget's end.
            final = len(rows) < batch or (remaining is not None and remaining < 2 * round_s + 0.5)
            models = _models(conn, cursor) if final and models_due else None
            counts: dict[str, int] = {}
            last_check = conn.execute("SELECT max(last_check_at) FROM app_state").fetchone()[0]
            with pg.transaction():
                if remaining is not None:
                    pg.execute(f"SET LOCAL statement_timeout = {max(2000, int(remaining * 1000))}")
                inserted = _copy_events(pg, host, rows) if rows else 0
                if models is not None:
                    counts = _ship_models(pg, host, models[0])
                last_seq = rows[-1][0] if rows else cursor.last_seq
                _host_row(pg, host, rows, inserted, last_seq, last_check)
            # PostgreSQL has committed: now the cursor (a crash here re-sends this round, which adds nothing).
            cursor.last_seq = last_seq
            if models is not None:
                cursor.models_seq, cursor.models_version, cursor.watermarks = folded, projections.VERSION, models[1]
                models_due = False
                for t, n in counts.items():
                    result.models[t] = result.models.get(t, 0) + n
            now = now_ts()
            with immediate(conn):
                conn.execute(
                    "UPDATE fleet_cursor SET last_seq = max(last_seq, ?), shipped_at = ?, tried_at = ?,"
                    " models_seq = ?, models_version = ?, watermarks = ?, last_error = NULL, error_since = NULL"
                    " WHERE target = ?",
                    (
                        cursor.last_seq,
                        now,
                        now,
                        cursor.models_seq,
                        cursor.models_version,
                        json.dumps(cursor.watermarks),
                        key,
                    ),
                )
            result.rounds += 1
            result.sent += len(rows)
            result.events += inserted
            result.last_seq = cursor.last_seq
            round_s = _clock() - began
            if progress is not None:
                progress(min(total, result.sent), total)
            if not rows:
                break
    finally:
        pg.close()
    result.last_seq = cursor.last_seq
    result.backlog = max(0, store_last - cursor.last_seq)
    if result.rounds == 0:
        with immediate(conn):  # nothing to send: PostgreSQL answered, so no failure stands
            conn.execute(
                "UPDATE fleet_cursor SET tried_at = ?, last_error = NULL, error_since = NULL WHERE target = ?",
                (now_ts(), key),
            )


# -- recovery watch: a ship after each step, on a thread of its own ------------------------------


class ShipWorker(NudgedWorker):
    """Ships after each `recovery watch` step on its own thread, one ship at a time (nudges that
    come while one runs make one more): a PostgreSQL down or slow never delays the loop. A failure
    is said once on stderr (and again only when it changes), and kept in the cursor for `status`."""

    thread_name = "recovery-ship"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.said: str | None = None
        self.ships = 0  # ships done (for tests and the journal)
        super().__init__()

    def work(self) -> None:
        try:
            ship(self.config)
            problem = None
        except Exception as exc:  # the watch goes on; the events stay local and ship later
            problem = f"fleet ship failed: {exc}"
        self.ships += 1
        if problem != self.said:
            text = problem or "fleet ship works again"
            if problem is not None or self.said is not None:
                sys.stderr.write(f"{now_ts()} {text}\n")
                sys.stderr.flush()
            self.said = problem
