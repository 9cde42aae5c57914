"""SQL functions for `recovery serve`'s dashboard and canned queries, computed in Python at read time.

The Datasette plugin (data/datasette/plugins) registers them on every connection it opens on the
store (`register`), so the metadata's SQL can show what `recovery status` and `recovery why` show:

    recovery_hint(app)          the app's strongest likely cause now: '(0.85) event loop blocked: …'
    event_text(type, data)      one event in words: 'restart.requested by check: pm2 restart web'
    memory_hours(app, since, until)  the highest PM2 memory sample per app and UTC hour in [since, until),
                                as a JSON array of [app, 'YYYY-MM-DDTHH:00:00Z', MB] (app empty: every app)
    html_text(text)             text escaped for the table chart, which shows cells as HTML
    incident_timeline(id)       the incident's events folded as `recovery why` folds them, as a JSON
                                array of [ts, offset, app, events, what] (read it with json_each)

The functions read the store through the connection that runs the query (SQLite allows a query
inside a function of another; the connection is query_only). Hints cost ~25 ms per app on a week
of dense history (the memory rule reads up to 2000 samples), so a HintKeeper computes them in a
thread of its own when a check has been folded, and the panel reads what it kept. Memory per hour
reads every PM2 sample of the window (97,000 in a dense week of 10 apps: ~0.4 s), so finished hours
are kept (MemoryHours): a chart then reads only the hours not seen yet, and the last one.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import sqlite3
import threading
import time
from typing import Any

from . import projections, render
from .errors import RecoveryError
from .events import format_ts, parse_ts
from .hints import strongest
from .report import Step, _why
from .store import first_seq_since

HINT_TTL_S = 60.0  # a kept hint is recomputed at least this often (its look-back window slides with time)
REFRESH_S = 2.0  # how often the keeper looks for a newly folded check
REFRESH_MIN_S = 10.0  # and recomputes at most this often (`recovery watch` appends every few seconds)
FIRST_WAIT_S = 10.0  # how long the first panel waits for the keeper's first reading


def _state_key(conn: sqlite3.Connection) -> Any:
    """What the hints depend on besides the time: the last folded event."""
    try:
        row = conn.execute("SELECT last_seq FROM projection_meta WHERE name = 'events'").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def top_hint(conn: sqlite3.Connection, app: str, now: _dt.datetime | None = None) -> str | None:
    """The app's strongest hint as one line, as `recovery status` shows it; None without one."""
    now = now or _dt.datetime.now(_dt.UTC)
    found = strongest(projections.hint_input(conn, app, now))
    return render.hint_line(found.to_dict()) if found else None


HOUR_DONE_S = 120.0  # an hour is kept once it ended this long ago (a sample may be recorded late)
CHUNK_HOURS = 24  # hours read per query: a long window times out part-read, and the next view resumes


def _hour(ts: str) -> str:
    return ts[:13]


def _hours(since: str, until: str) -> list[str]:
    """Each UTC hour ('YYYY-MM-DDTHH') that overlaps [since, until)."""
    start = parse_ts(since).replace(minute=0, second=0, microsecond=0)
    end = parse_ts(until)
    out = []
    while start < end:
        out.append(format_ts(start)[:13])
        start += _dt.timedelta(hours=1)
    return out


class MemoryHours:
    """The highest PM2 memory sample per app and UTC hour, read from the events and kept for the
    hours that are over. Events are only appended, but one may carry an earlier time (a spooled
    check); hours from the earliest time of the events appended since are read again."""

    def __init__(self) -> None:
        self.hours: dict[str, dict[str, int]] = {}  # 'YYYY-MM-DDTHH' -> {app: bytes}
        self.seen = 0  # the last seq when hours were kept
        self.lock = threading.Lock()

    def _forget_late(self, conn: sqlite3.Connection) -> None:
        last = conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        with self.lock:
            seen, self.seen = self.seen, last
            if not self.hours or last <= seen:
                return
        earliest = conn.execute("SELECT min(ts) FROM events WHERE seq > ?", (seen,)).fetchone()[0]
        if earliest is not None:
            with self.lock:
                for h in [h for h in self.hours if h >= _hour(earliest)]:
                    del self.hours[h]

    def _read(self, conn: sqlite3.Connection, first: str, last: str) -> dict[str, dict[str, int]]:
        """Hours `first`..`last` (inclusive) from the events: the window's seq range through the ts
        index, then app by app on the (app, type, seq) index."""
        since = first + ":00:00.000Z"
        until = format_ts(parse_ts(last + ":00:00.000Z") + _dt.timedelta(hours=1))
        rows = conn.execute(
            "SELECT a.app, substr(e.ts, 1, 13) AS hour, max(json_extract(e.data, '$.memory'))"
            " FROM app_state a CROSS JOIN events e ON e.app = a.app AND e.type = 'process.sampled'"
            " AND e.seq >= ? AND e.seq < ? WHERE e.ts >= ? AND e.ts < ? GROUP BY a.app, hour",
            (first_seq_since(conn, since), first_seq_since(conn, until), since, until),
        ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for app, hour, memory in rows:
            if memory is not None:
                out.setdefault(hour, {})[app] = int(memory)
        return out

    def rows(self, conn: sqlite3.Connection, app: str | None, since: str, until: str) -> list[list[Any]]:
        """[[app, hour, MB], ...] oldest first, for `app` (None: every app) in [since, until)."""
        self._forget_late(conn)
        done = _hour(format_ts(_dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=HOUR_DONE_S + 3600)))
        wanted = _hours(since, until)
        with self.lock:
            missing = [h for h in wanted if h not in self.hours or h > done]
        got: dict[str, dict[str, int]] = {}
        for i in range(0, len(missing), CHUNK_HOURS):
            chunk = missing[i : i + CHUNK_HOURS]
            read = self._read(conn, chunk[0], chunk[-1])
            got.update(read)
            with self.lock:
                for h in chunk:
                    if h <= done:
                        self.hours[h] = read.get(h, {})
        out = []
        with self.lock:
            for h in wanted:
                per_app = self.hours.get(h) if h <= done else got.get(h)
                for name, memory in sorted((per_app or {}).items()):
                    if app is None or name == app:
                        out.append([name, h + ":00:00Z", round(memory / 1048576.0, 1)])
        return out


class HintKeeper:
    """Every app's top hint for one store, kept current by a thread of its own.

    A hint reads up to a week of the app's history (~25 ms per app on a dense week), too slow to
    compute for every app each time the dashboard's first panel is drawn. The keeper computes them on
    its own read-only connection when a check has been folded (or HINT_TTL_S passed); the panel reads
    what it kept (at most ~10 s behind). Before its first reading is done, the panel waits for it
    (a wait in Python, which Datasette's time limit does not count, rather than the same work twice
    at once); it computes an app's hint itself only for an app the keeper did not know."""

    def __init__(self, path: str, *, immutable: bool = False) -> None:
        self.uri = f"file:{path}?mode=ro" + ("&immutable=1" if immutable else "")
        self.hints: dict[str, str | None] = {}
        self.memory = MemoryHours()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ready = threading.Event()  # set once the first reading is done (or could not be)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="recovery-hints", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def get(self, conn: sqlite3.Connection, app: str) -> str | None:
        if self.thread is not None:
            self.ready.wait(FIRST_WAIT_S)
        with self.lock:
            if app in self.hints:
                return self.hints[app]
        hint = top_hint(conn, app)
        with self.lock:
            self.hints.setdefault(app, hint)
        return hint

    def refresh(self, conn: sqlite3.Connection) -> None:
        try:
            apps = [a for (a,) in conn.execute("SELECT app FROM app_state ORDER BY app")]
        except sqlite3.OperationalError:
            return  # no projections yet
        now = _dt.datetime.now(_dt.UTC)
        fresh = {app: top_hint(conn, app, now) for app in apps}
        with self.lock:
            self.hints = fresh
        self.ready.set()
        # The memory chart's default window (the last 7 days), so the dashboard finds it read.
        self.memory.rows(conn, None, format_ts(now - _dt.timedelta(days=7)), format_ts(now))

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.uri, uri=True, check_same_thread=False)
        except sqlite3.Error:
            self.ready.set()
            return
        key: Any = object()
        computed = 0.0
        try:
            conn.execute("PRAGMA query_only = 1")
            while not self.stop.is_set():
                current = _state_key(conn)
                since = time.monotonic() - computed
                if (current != key and since >= REFRESH_MIN_S) or since >= HINT_TTL_S:
                    try:
                        self.refresh(conn)
                    except (sqlite3.Error, RecoveryError):
                        pass  # the panel computes what it needs itself
                    key, computed = current, time.monotonic()
                    self.ready.set()
                self.stop.wait(REFRESH_S)
        finally:
            self.ready.set()
            conn.close()


def html_text(text: str | None) -> str | None:
    """A text shown as HTML by the dashboard's table chart, escaped (a reason may quote an app's answer)."""
    return None if text is None else html.escape(str(text), quote=False)


def event_text(type_: str | None, data: str | None) -> str | None:
    """One event in words: its type and its key facts (recovery.render.facts)."""
    if type_ is None:
        return None
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        return type_
    if not isinstance(parsed, dict):
        return type_
    return f"{type_} {render.facts(type_, parsed)}".rstrip()


def timeline_rows(conn: sqlite3.Connection, incident_id: int, now: _dt.datetime | None = None) -> list[list[Any]]:
    """The incident's events as `recovery why` shows them, repeats folded: [ts, offset, app, events, what].

    The last rows are how it ended and its likely causes (no ts). Empty when there is no such incident."""
    row = conn.execute("SELECT app FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        return []
    t = _why(conn, row[0], incident_id, now or _dt.datetime.now(_dt.UTC))
    if t is None:
        return []
    by_seq: dict[str, Step] = {f"#{s.seq}": s for s in t.steps}
    out: list[list[Any]] = []
    for offset, seqs, what, facts in render.collapsed_rows(t.steps):
        first = by_seq.get(seqs.split("..")[0])
        text = f"{what} {facts}".rstrip()
        out.append([first.ts if first else None, offset, first.app if first else t.app, seqs, text])
    out.append([None, None, t.app, None, render.ending(t)])
    out += [[None, None, t.app, None, "likely cause " + render.hint_line(h)] for h in t.hints]
    return out


def register(conn: sqlite3.Connection, keeper: HintKeeper | None = None) -> None:
    """Make the functions callable from SQL on `conn` (a connection Datasette opened on the store);
    `keeper`: where recovery_hint reads the hints kept for this store (else it computes them)."""

    def hint(app: str | None) -> str | None:
        try:
            if app is None:
                return None
            return keeper.get(conn, app) if keeper is not None else top_hint(conn, app)
        except (sqlite3.Error, RecoveryError):  # a store without history to read: no hint, not an error page
            return None

    def timeline(incident_id: int | str | None) -> str:
        try:
            iid = int(incident_id) if incident_id not in (None, "") else None  # type: ignore[arg-type]
        except ValueError:
            iid = None
        return json.dumps(timeline_rows(conn, iid) if iid is not None else [], ensure_ascii=False)

    memory = keeper.memory if keeper is not None else MemoryHours()

    def memory_hours(app: str | None, since: str | None, until: str | None) -> str:
        if not since or not until:
            return "[]"
        return json.dumps(memory.rows(conn, app or None, since, until))

    conn.create_function("recovery_hint", 1, hint)
    conn.create_function("memory_hours", 3, memory_hours)
    conn.create_function("html_text", 1, html_text, deterministic=True)
    conn.create_function("event_text", 2, event_text, deterministic=True)
    conn.create_function("incident_timeline", 1, timeline)
