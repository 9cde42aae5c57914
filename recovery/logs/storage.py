"""The log tables: append-only like `events`, in the same SQLite file, with their own schema version.

    log_meta               schema version of these tables (the only mutable rows)
    log_ingests            one row per ingestion run of one app
    log_files              reader state per path, one row per run that read it; the newest row wins
    log_templates          one row per template: stable id, the masked text that created it, an example
    log_template_versions  a template's text each time Drain generalised it; the newest version is current
    log_template_current   view: the current text of each template
    log_sources            one row per log file path an entry was read from (entries name it by id)
    log_entries            one row per entry (a message with its stack): time, app, template, code, where it
                           was read; its texts are in a block. Prunable, only by a recorded prune
    log_blocks             the entries' texts (message, first stack frame, template parameters, the rest of
                           the stack), BLOCK entries at a time, as zlib-compressed JSON: a stack repeats, so
                           a block is ~15x smaller than its text; deleted once every entry in it is pruned
    log_entries_fts        FTS5 index over message and first stack frame (contentless: the text is in the
                           blocks; derived, rebuildable)
    log_counts             entries per (ingest run, app, template, UTC hour), with first and last time:
                           kept for good, so counts and first/last seen outlive pruned entries
    log_prunes             each prune: entries with ts before `before_ts` may then be deleted

Templates change as Drain refines them; rather than a mutable template row, each refinement is
a new `log_template_versions` row (append-only, so a report can say what the text was then).
Reader state is append-only too: a row per file per run is small and tells when rotation happened.

Schema 3 (compact entries) is created with plain SQL below, because `recovery check` may create
it; stores with schema 1 or 2 are migrated once by `to_compact`, with sqlite-utils.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from ..events import format_ts
from ..store import split_sql
from ..units import next_hour

SCHEMA_VERSION = 4
COMPACT_VERSION = 3  # texts in compressed blocks (`to_compact`)
READABLE = (3, 4)  # schema 3 reads as 4 with every time exact (`bounds_sql`)
BLOCK = 256  # entries per text block: ~30 KB of compressed text is read to show one of them

_IMMUTABLE = ("log_ingests", "log_files", "log_templates", "log_template_versions", "log_counts", "log_prunes")

MIGRATIONS: list[str] = [
    """
    CREATE TABLE log_ingests (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        app TEXT NOT NULL,
        run_id TEXT,
        entries INTEGER NOT NULL DEFAULT 0,
        new_templates INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE log_files (
        id INTEGER PRIMARY KEY,
        ingest_id INTEGER NOT NULL,
        app TEXT NOT NULL,
        path TEXT NOT NULL,
        stream TEXT NOT NULL,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        fp TEXT NOT NULL,
        fp_len INTEGER NOT NULL,
        skip INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX log_files_path ON log_files (path, id);
    CREATE TABLE log_templates (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        first_text TEXT NOT NULL,
        example TEXT NOT NULL
    );
    CREATE TABLE log_template_versions (
        template_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        text TEXT NOT NULL,
        ts TEXT NOT NULL,
        ingest_id INTEGER NOT NULL,
        PRIMARY KEY (template_id, version)
    );
    CREATE VIEW log_template_current AS
        SELECT v.template_id, v.version, v.text, t.created_at, t.example
        FROM log_templates t JOIN log_template_versions v ON v.template_id = t.id
        WHERE v.version = (SELECT max(version) FROM log_template_versions w WHERE w.template_id = t.id);
    CREATE TABLE log_entries (
        id INTEGER PRIMARY KEY,
        ingest_id INTEGER NOT NULL,
        app TEXT NOT NULL,
        stream TEXT NOT NULL,
        ts TEXT NOT NULL,
        template_id TEXT NOT NULL,
        message TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '[]',
        stack_top TEXT,
        code TEXT,
        detail TEXT NOT NULL DEFAULT '',
        lines INTEGER NOT NULL DEFAULT 1,
        file TEXT NOT NULL,
        offset INTEGER NOT NULL
    );
    CREATE INDEX log_entries_template_ts ON log_entries (template_id, ts);
    CREATE INDEX log_entries_ts ON log_entries (ts);
    CREATE VIRTUAL TABLE log_entries_fts USING fts5(message, stack_top, content='log_entries', content_rowid='id');
    CREATE TABLE log_counts (
        ingest_id INTEGER NOT NULL,
        app TEXT NOT NULL,
        template_id TEXT NOT NULL,
        hour TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_ts TEXT NOT NULL,
        last_ts TEXT NOT NULL
    );
    CREATE INDEX log_counts_hour ON log_counts (hour, template_id);
    CREATE INDEX log_counts_template ON log_counts (template_id, hour);
    CREATE TABLE log_prunes (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        before_ts TEXT NOT NULL,
        entries INTEGER NOT NULL
    );
    CREATE TRIGGER log_entries_no_update BEFORE UPDATE ON log_entries
    BEGIN SELECT RAISE(ABORT, 'log entries are immutable: UPDATE refused'); END;
    CREATE TRIGGER log_entries_no_delete BEFORE DELETE ON log_entries
    WHEN OLD.ts >= coalesce((SELECT max(before_ts) FROM log_prunes), '')
    BEGIN SELECT RAISE(ABORT, 'log entries are deleted only by a recorded prune: DELETE refused'); END;
    """
    + "".join(
        f"""
    CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t}
    BEGIN SELECT RAISE(ABORT, '{t} is append-only: UPDATE refused'); END;
    CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t}
    BEGIN SELECT RAISE(ABORT, '{t} is append-only: DELETE refused'); END;
    """
        for t in _IMMUTABLE
    ),
    # 2: `recovery check` finds an app's log files from the files it read before.
    "CREATE INDEX log_files_app ON log_files (app, path);",
    # 3: compact entries (texts in compressed blocks): `to_compact` below, with sqlite-utils.
]

_ENTRIES_V1 = MIGRATIONS[0][
    MIGRATIONS[0].index("    CREATE TABLE log_entries (") : MIGRATIONS[0].index("    CREATE TABLE log_counts (")
]
# Schema 3's own tables, and its triggers: a source is kept for good; a block only goes once a
# recorded prune covers every entry in it (its newest `last_ts`).
COMPACT = """
    CREATE TABLE log_sources (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE
    );
    CREATE TABLE log_blocks (
        id INTEGER PRIMARY KEY,
        first_entry INTEGER NOT NULL,
        entries INTEGER NOT NULL,
        last_ts TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TRIGGER log_sources_no_update BEFORE UPDATE ON log_sources
    BEGIN SELECT RAISE(ABORT, 'log_sources is append-only: UPDATE refused'); END;
    CREATE TRIGGER log_sources_no_delete BEFORE DELETE ON log_sources
    BEGIN SELECT RAISE(ABORT, 'log_sources is append-only: DELETE refused'); END;
    CREATE TRIGGER log_blocks_no_update BEFORE UPDATE ON log_blocks
    BEGIN SELECT RAISE(ABORT, 'log blocks are immutable: UPDATE refused'); END;
    CREATE TRIGGER log_blocks_no_delete BEFORE DELETE ON log_blocks
    WHEN OLD.last_ts >= coalesce((SELECT max(before_ts) FROM log_prunes), '')
    BEGIN SELECT RAISE(ABORT, 'log blocks are deleted only by a recorded prune: DELETE refused'); END;
"""
ENTRIES = """
    CREATE TABLE log_entries (
        id INTEGER PRIMARY KEY,
        ingest_id INTEGER NOT NULL,
        app TEXT NOT NULL,
        stream TEXT NOT NULL,
        ts TEXT NOT NULL,
        template_id TEXT NOT NULL,
        code TEXT,
        lines INTEGER NOT NULL DEFAULT 1,
        source INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        block INTEGER NOT NULL
    );
    CREATE INDEX log_entries_template_ts ON log_entries (template_id, ts);
    CREATE INDEX log_entries_ts ON log_entries (ts);
"""
FTS = "CREATE VIRTUAL TABLE log_entries_fts USING fts5(message, stack_top, content='', columnsize=0);"
# A new store gets schema 3 at once, in plain SQL (no sqlite-utils on `recovery check`'s path).
CURRENT = MIGRATIONS[0].replace(_ENTRIES_V1, ENTRIES + "    " + FTS + "\n") + MIGRATIONS[1] + "\n" + COMPACT


def schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT value FROM log_meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def readable(conn: sqlite3.Connection) -> bool:
    """The log tables are there in a schema this code reads (3 or 4). Older ones read as none until a
    command that writes (check, ingest, errors prune, serve) upgrades them: see `queries` for the
    one-line error."""
    return schema_version(conn) in READABLE


def bounds_sql(conn: sqlite3.Connection, alias: str = "e") -> str:
    """The select list of an entry's time bound (`ts_from`, `ts_bounded`); constants on schema 3."""
    if schema_version(conn) >= 4:
        return f"{alias}.ts_from, {alias}.ts_bounded"
    return "NULL, 0"


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or migrate the log tables (in their own transaction)."""
    if schema_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise sqlite3.OperationalError(f"log tables have schema version {version}, newer than {SCHEMA_VERSION}")
        if version == 0:
            for statement in split_sql(CURRENT + BOUNDS):
                conn.execute(statement)
        elif version < SCHEMA_VERSION:  # (another run may have done it while this one waited for the lock)
            if version < COMPACT_VERSION:
                for step in range(version, COMPACT_VERSION - 1):
                    for statement in split_sql(MIGRATIONS[step]):
                        conn.execute(statement)
                to_compact(conn)  # once per old store: sqlite-utils is imported only there
            to_bounds(conn)
        conn.execute(
            "INSERT OR REPLACE INTO log_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# -- schema 3 -> 4: bounded times -------------------------------------------------------------
#
# A line without a timestamp of its own gets the earliest time it can be proven to exist: `ts` is
# then its upper bound (the read's time, or the file's mtime when read if earlier), `ts_from` its
# lower bound (when a previous read of the file reached its end; NULL when unknown), and
# `ts_bounded` says so. `log_files.eof` says whether a read reached the file's end (NULL: unknown).
BOUNDS = """
    ALTER TABLE log_entries ADD COLUMN ts_from TEXT;
    ALTER TABLE log_entries ADD COLUMN ts_bounded INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE log_files ADD COLUMN eof INTEGER;
"""


def to_bounds(conn: sqlite3.Connection) -> None:
    """Migrate schema-3 log tables to schema 4 on `conn`, which holds a write transaction.

    An old entry whose time is its ingestion's time was a line without a timestamp, stamped when it
    was read: it is marked bounded (that time is an upper bound), its lower bound unknown.
    """
    for statement in split_sql(BOUNDS):
        conn.execute(statement)
    conn.execute("DROP TRIGGER log_entries_no_update")
    conn.execute(
        "UPDATE log_entries SET ts_bounded = 1"
        " WHERE ts = (SELECT i.ts FROM log_ingests i WHERE i.id = log_entries.ingest_id)"
    )
    for statement in split_sql(_ENTRY_TRIGGERS):
        if "log_entries_no_update" in statement:
            conn.execute(statement)


# -- schema 2 -> 3 ----------------------------------------------------------------------
#
# Entries keep their rows; their texts move into blocks. Run inside `ensure_schema`'s
# transaction (sqlite-utils nests its own work in savepoints). sqlite-utils does the table
# work: `table.create` for the new tables, `add_column`, and `transform` to rebuild
# `log_entries` without its text columns while keeping its indexes. The triggers and the FTS
# index are plain SQL: sqlite-utils has no words for `RAISE(ABORT)` triggers, and its
# `enable_fts` makes external-content indexes (a copy of the text in a table), where schema 3
# keeps the text only in compressed blocks.

_TEXT_COLUMNS = ("message", "params", "stack_top", "detail", "file")
_ENTRY_TRIGGERS = """
    CREATE TRIGGER log_entries_no_update BEFORE UPDATE ON log_entries
    BEGIN SELECT RAISE(ABORT, 'log entries are immutable: UPDATE refused'); END;
    CREATE TRIGGER log_entries_no_delete BEFORE DELETE ON log_entries
    WHEN OLD.ts >= coalesce((SELECT max(before_ts) FROM log_prunes), '')
    BEGIN SELECT RAISE(ABORT, 'log entries are deleted only by a recorded prune: DELETE refused'); END;
"""


def _runs(rows: Any) -> Any:
    """Rows ordered by id, in runs of consecutive ids of at most BLOCK (a pruned gap starts a new run)."""
    run: list[tuple] = []
    for row in rows:
        if run and (len(run) == BLOCK or row[0] != run[-1][0] + 1):
            yield run
            run = []
        run.append(row)
    if run:
        yield run


def to_compact(conn: sqlite3.Connection) -> None:
    """Migrate schema-2 log tables to schema 3 on `conn`, which holds a write transaction."""
    import sqlite_utils  # ~90 ms: only here, never on a check's usual path

    db = sqlite_utils.Database(conn, recursive_triggers=False)
    conn.execute("DROP TRIGGER log_entries_no_update")
    conn.execute("DROP TRIGGER log_entries_no_delete")
    db.table("log_sources").create({"id": int, "path": str}, pk="id", not_null={"path"})
    db.table("log_sources").create_index(["path"], unique=True)
    db.table("log_blocks").create(
        {"id": int, "first_entry": int, "entries": int, "last_ts": str, "data": bytes},
        pk="id",
        not_null={"first_entry", "entries", "last_ts", "data"},
    )
    conn.execute("INSERT INTO log_sources (path) SELECT file FROM log_entries GROUP BY file ORDER BY min(id)")
    entries = db.table("log_entries")
    entries.add_column("source", int)
    entries.add_column("block", int)

    conn.execute("DROP TABLE log_entries_fts")  # external content over columns that are going
    conn.execute(FTS)
    cursor = conn.cursor()  # a cursor of its own: the walk reads while the blocks are written
    ranges = []
    cursor.execute("SELECT id, ts, message, stack_top, params, detail FROM log_entries ORDER BY id")
    for block_id, run in enumerate(_runs(cursor), start=1):
        texts = [(m, top, json.loads(p) if p and p != "[]" else None, d) for _, _, m, top, p, d in run]
        conn.execute(
            "INSERT INTO log_blocks (id, first_entry, entries, last_ts, data) VALUES (?, ?, ?, ?, ?)",
            (block_id, run[0][0], len(run), max(r[1] for r in run), pack_block(texts)),
        )
        conn.executemany(
            "INSERT INTO log_entries_fts (rowid, message, stack_top) VALUES (?, ?, ?)",
            [(r[0], r[2], r[3]) for r in run],
        )
        ranges.append((block_id, run[0][0], run[-1][0]))
    conn.executemany("UPDATE log_entries SET block = ? WHERE id BETWEEN ? AND ?", ranges)
    conn.execute("UPDATE log_entries SET source = (SELECT s.id FROM log_sources s WHERE s.path = log_entries.file)")
    entries.transform(
        drop=set(_TEXT_COLUMNS),
        not_null={"source", "block"},
        column_order=["id", "ingest_id", "app", "stream", "ts", "template_id", "code", "lines", "source", "offset"],
    )
    # log_sources and log_blocks exist now: only COMPACT's triggers are left to create.
    for statement in split_sql(_ENTRY_TRIGGERS + COMPACT):
        if statement.startswith("CREATE TRIGGER"):
            conn.execute(statement)


# -- text blocks ---------------------------------------------------------------------------

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
TEXT_KEYS = ("message", "stack_top", "params", "detail")


def pack_block(texts: Sequence[Sequence[Any]]) -> bytes:
    """Compress entries' texts, each (message, stack_top, params list or None, detail), in entry order."""
    return zlib.compress(_dumps([list(t) for t in texts]).encode("utf-8"), 6)


def unpack_block(data: bytes) -> list[list[Any]]:
    return json.loads(zlib.decompress(data).decode("utf-8"))


def entry_texts(conn: sqlite3.Connection, entries: Iterable[tuple[int, int]]) -> dict[int, dict[str, Any]]:
    """The texts of entries given as (id, block): message, stack_top, params (a list) and detail."""
    wanted: dict[int, list[int]] = {}
    for entry_id, block in entries:
        wanted.setdefault(block, []).append(entry_id)
    out: dict[int, dict[str, Any]] = {}
    for block, ids in wanted.items():
        row = conn.execute("SELECT first_entry, data FROM log_blocks WHERE id = ?", (block,)).fetchone()
        if row is None:
            continue
        texts = unpack_block(row[1])
        for entry_id in ids:
            slot = entry_id - row[0]
            if 0 <= slot < len(texts):
                message, stack_top, params, detail = texts[slot]
                out[entry_id] = {"message": message, "stack_top": stack_top, "params": params or [], "detail": detail}
    return out


def entries(conn: sqlite3.Connection, app: str | None = None) -> list[dict[str, Any]]:
    """Every stored entry (of `app`), oldest id first, with its texts: for tests and exports, not hot paths."""
    keys = ["id", "ingest_id", "app", "stream", "ts", "ts_from", "ts_bounded", "template_id", "code", "lines"]
    keys += ["file", "offset", "block"]
    rows = conn.execute(
        f"SELECT e.id, e.ingest_id, e.app, e.stream, e.ts, {bounds_sql(conn)}, e.template_id, e.code, e.lines,"
        " s.path, e.offset, e.block FROM log_entries e JOIN log_sources s ON s.id = e.source"
        + (" WHERE e.app = ?" if app is not None else "")
        + " ORDER BY e.id",
        [app] if app is not None else [],
    ).fetchall()
    return _with_texts(conn, [dict(zip(keys, r)) for r in rows], TEXT_KEYS)


def _with_texts(conn: sqlite3.Connection, rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows that carry `id` and `block`: the named texts added, `block` dropped."""
    texts = entry_texts(conn, [(r["id"], r["block"]) for r in rows])
    for r in rows:
        r.pop("block")
        t = texts.get(r["id"], {})
        for k in keys:
            r[k] = t.get(k)
    return rows


# -- queries -----------------------------------------------------------------------------


def _iso(when: Any) -> str:
    """UTC ISO 8601 with milliseconds, the one form stored (so strings compare as times)."""
    if isinstance(when, str):
        when = _dt.datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return format_ts(when)


def ingested_by(conn: sqlite3.Connection, known_by: Any) -> int:
    """The last ingestion run recorded by `known_by` (run ids grow with time), 0 when none: entries,
    counts and template versions of later runs were not known at `known_by`. An entry's `ts` alone
    does not say that: a line without a timestamp is stored with a time before the read that
    brought it in."""
    row = conn.execute("SELECT max(id) FROM log_ingests WHERE ts <= ?", (_iso(known_by),)).fetchone()
    return int(row[0] or 0)


def top_templates(
    conn: sqlite3.Connection,
    since: Any,
    app: str | None = None,
    top: int = 20,
    until: Any = None,
    *,
    known_by: Any = None,
) -> list[dict[str, Any]]:
    """Templates ranked by count in [since, until), newest counts included; one row per (template, app).

    Whole hours come from `log_counts` (kept for good); the partial hours at either edge of the
    window from `log_entries`, so the answer is exact while raw entries are kept. With `known_by`,
    only what ingestion runs had recorded by then counts (a line read later, even one timestamped
    earlier, was not known yet).
    """
    if not readable(conn):
        return []
    bound = ingested_by(conn, known_by) if known_by is not None else 1 << 62
    since_s = _iso(since)
    until_s = _iso(until) if until is not None else "9999"
    h0 = since_s[:13]
    h1 = until_s[:13] if until is not None else "9999"
    agg: dict[tuple[str, str], list[Any]] = {}

    def add(app_: str, tid: str, n: int, first: str, last: str) -> None:
        a = agg.get((app_, tid))
        if a is None:
            agg[(app_, tid)] = [n, first, last]
        else:
            a[0] += n
            a[1] = min(a[1], first)
            a[2] = max(a[2], last)

    app_sql, app_params = (" AND app = ?", [app]) if app is not None else ("", [])
    for row in conn.execute(
        "SELECT app, template_id, sum(count), min(first_ts), max(last_ts) FROM log_counts"
        f" WHERE hour > ? AND hour < ? AND ingest_id <= ?{app_sql} GROUP BY app, template_id",
        [h0, h1, bound, *app_params],
    ):
        add(*row)
    edges = [(since_s, min(next_hour(h0), until_s))]
    if until is not None and h1 > h0:
        edges.append((h1, until_s))
    for lo, hi in edges:
        for row in conn.execute(
            "SELECT app, template_id, count(*), min(ts), max(ts) FROM log_entries"
            f" WHERE ts >= ? AND ts < ? AND ingest_id <= ?{app_sql} GROUP BY app, template_id",
            [lo, hi, bound, *app_params],
        ):
            add(*row)
    ranked = sorted(agg.items(), key=lambda kv: (-kv[1][0], kv[0][1], kv[0][0]))[:top]
    newest = {}
    for (app_, tid), _ in ranked:
        row = conn.execute(
            "SELECT id, block FROM log_entries WHERE template_id = ? AND app = ? AND ingest_id <= ?"
            " ORDER BY ts DESC LIMIT 1",
            (tid, app_, bound),
        ).fetchone()
        if row is not None:
            newest[(app_, tid)] = row
    texts = entry_texts(conn, newest.values())  # the newest entries share a few blocks: each is read once
    out = []
    for (app_, tid), (n, first, last) in ranked:
        cur = conn.execute(
            "SELECT v.text, t.example FROM log_templates t JOIN log_template_versions v ON v.template_id = t.id"
            " WHERE t.id = ? AND v.ingest_id <= ? ORDER BY v.version DESC LIMIT 1",
            (tid, bound),
        ).fetchone()
        entry = newest.get((app_, tid))
        text = texts.get(entry[0]) if entry else None
        recent = (text["message"], text["stack_top"]) if text else None
        out.append(
            {
                "template_id": tid,
                "template": cur[0] if cur else None,
                "app": app_,
                "count": n,
                "first_seen": first,
                "last_seen": last,
                "example": recent[0] if recent else (cur[1] if cur else None),
                "stack_top": recent[1] if recent else None,
            }
        )
    return out


def search(conn: sqlite3.Connection, text: str, limit: int = 50, app: str | None = None) -> list[dict[str, Any]]:
    """Entries matching `text` (FTS5 query syntax; plain words are ANDed), newest first."""
    if not readable(conn):
        return []
    quoted = " ".join('"' + word.replace('"', '""') + '"' for word in text.split())
    query = text if any(op in text for op in ('"', " OR ", " NOT ", " AND ", "*")) else quoted
    sql = (
        f"SELECT e.id, e.ts, {bounds_sql(conn)}, e.app, e.stream, e.template_id, e.code, s.path, e.offset, e.block"
        " FROM log_entries_fts f JOIN log_entries e ON e.id = f.rowid JOIN log_sources s ON s.id = e.source"
        " WHERE log_entries_fts MATCH ?"
    )
    params: list[Any] = [query]
    if app is not None:
        sql += " AND e.app = ?"
        params.append(app)
    sql += " ORDER BY e.ts DESC, e.id DESC LIMIT ?"
    params.append(int(limit))
    keys = ("id", "ts", "ts_from", "ts_bounded", "app", "stream", "template_id", "code", "file", "offset", "block")
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        if query == quoted:
            raise
        rows = conn.execute(sql, [quoted, *params[1:]]).fetchall()  # not valid FTS5 syntax: plain words
    return [_ordered(r, SEARCH_KEYS) for r in _with_texts(conn, [dict(zip(keys, row)) for row in rows], TEXT_KEYS)]


# `ts_bounded`: the line had no timestamp of its own; `ts` is then the earliest time it provably existed
# (an upper bound) and `ts_from`, when known, the time it was written after (a lower bound).
SEARCH_KEYS: tuple[str, ...] = ("id", "ts", "ts_from", "ts_bounded", "app", "stream", "template_id", "message")
SEARCH_KEYS += ("stack_top", "code", "file", "offset")
EXAMPLE_KEYS: tuple[str, ...] = ("id", "ts", "ts_from", "ts_bounded", "app", "stream", "message", "stack_top")
EXAMPLE_KEYS += ("code", "file", "offset", "detail")


def _ordered(row: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    out = {k: row.get(k) for k in keys}
    if "ts_bounded" in out:
        out["ts_bounded"] = bool(out["ts_bounded"])
    return out


def template_detail(
    conn: sqlite3.Connection, template_id: str, app: str | None = None, examples: int = 5
) -> dict[str, Any] | None:
    """One template: its current text, versions, entries per UTC day and app, and the newest examples.

    Day counts come from `log_counts` (kept for good); `None` when there is no such template.
    """
    if not readable(conn):
        return None
    row = conn.execute(
        "SELECT t.id, t.created_at, t.first_text, t.example FROM log_templates t WHERE t.id = ?", (template_id,)
    ).fetchone()
    if row is None:
        return None
    versions = conn.execute(
        "SELECT version, text, ts FROM log_template_versions WHERE template_id = ? ORDER BY version", (template_id,)
    ).fetchall()
    app_sql, app_params = (" AND app = ?", [app]) if app is not None else ("", [])
    days = conn.execute(
        "SELECT substr(hour, 1, 10) AS day, app, sum(count), min(first_ts), max(last_ts) FROM log_counts"
        f" WHERE template_id = ?{app_sql} GROUP BY day, app ORDER BY day, app",
        [template_id, *app_params],
    ).fetchall()
    recent = conn.execute(
        f"SELECT e.id, e.ts, {bounds_sql(conn)}, e.app, e.stream, e.code, s.path, e.offset, e.block FROM log_entries e"
        f" JOIN log_sources s ON s.id = e.source WHERE e.template_id = ?{app_sql.replace('app', 'e.app')}"
        " ORDER BY e.ts DESC, e.id DESC LIMIT ?",
        [template_id, *app_params, int(examples)],
    ).fetchall()
    keys = ("id", "ts", "ts_from", "ts_bounded", "app", "stream", "code", "file", "offset", "block")
    found = _with_texts(conn, [dict(zip(keys, r)) for r in recent], TEXT_KEYS)
    return {
        "template_id": row[0],
        "template": versions[-1][1] if versions else row[2],
        "created_at": row[1],
        "first_text": row[2],
        "versions": [{"version": v, "text": t, "ts": ts} for v, t, ts in versions],
        "count": sum(d[2] for d in days),
        "first_seen": min((d[3] for d in days), default=None),
        "last_seen": max((d[4] for d in days), default=None),
        "days": [{"day": d, "app": a, "count": n, "first_seen": f, "last_seen": la} for d, a, n, f, la in days],
        "examples": [_ordered(r, EXAMPLE_KEYS) for r in found] or [{**dict.fromkeys(EXAMPLE_KEYS), "message": row[3]}],
    }
