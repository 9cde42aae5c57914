"""Log tables schema 2 -> 3, with sqlite-utils: entries keep their rows, their texts move into blocks.

Run once per old store, inside `storage.ensure_schema`'s transaction (sqlite-utils nests its
own work in savepoints). sqlite-utils does the table work: `table.create` for the new tables,
`add_column`, and `transform` to rebuild `log_entries` without its text columns while keeping
its indexes. The triggers and the FTS index are plain SQL: sqlite-utils has no words for
`RAISE(ABORT)` triggers, and its `enable_fts` makes external-content indexes (a copy of the
text in a table), where schema 3 keeps the text only in compressed blocks.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..store import split_sql
from .storage import BLOCK, COMPACT, FTS, pack_block

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
    import sqlite_utils

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
