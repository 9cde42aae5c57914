"""One ingestion run: read what is new in an app's logs, group, mine, store, record an event."""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..units import format_ts, parse_ts
from . import reader as _reader
from .grouper import Entry, Grouper
from .miner import Miner
from .storage import BLOCK, _iso, ensure_schema, pack_block

DEFAULT_MAX_BYTES = 16 << 20  # per run (~3 s, ~100 MB of memory at most): a backlog is worked off over several runs


@dataclass
class FileReport:
    path: str
    stream: str
    from_offset: int
    to_offset: int
    ino: int
    bytes: int
    entries: int
    rotations: list[str] = field(default_factory=list)
    eof: bool = True


@dataclass
class IngestResult:
    app: str
    ingest_id: int | None = None
    entries: int = 0
    lines: int = 0
    skipped: int = 0  # stdout lines dropped as noise
    new_templates: list[str] = field(default_factory=list)
    changed_templates: list[str] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)
    warnings: list[_reader.ReadWarning] = field(default_factory=list)
    complete: bool = True  # False: the byte budget ran out, more is waiting

    def event_data(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "lines": self.lines,
            "skipped": self.skipped,
            "new_templates": self.new_templates,
            "changed_templates": self.changed_templates,
            "complete": self.complete,
            "files": [f.__dict__ for f in self.files],
            "warnings": [{"path": w.path, "kind": w.kind, "message": w.message} for w in self.warnings],
        }


def stream_of(path: str) -> str:
    """PM2 names its logs NAME-error.log / NAME-out.log (and NAME-err.log in older setups)."""
    base = os.path.basename(path).lower()
    return "err" if "-err" in base or "error" in base or base.startswith("err") else "out"


def pm2_log_paths(pm2_bin: str | None) -> dict[str, list[str]]:
    """Log paths per process name from `pm2 jlist` (every instance of a cluster, each path once)."""
    from ..pm2 import Pm2, find_pm2, log_paths

    by_name: dict[str, list[Any]] = {}
    for entry in Pm2(find_pm2(pm2_bin)).jlist():
        by_name.setdefault(str(entry.get("name")), []).append(entry)
    return {name: list(log_paths(entries)) for name, entries in by_name.items()}


def log_files(apps: Sequence[Any], pm2_bin: str | None) -> dict[str, list[str]]:
    """Each app's log files: its `logs = [...]` from the config, else what `pm2 jlist` gives (run
    only when an app needs it); an empty list when neither names one. Raises Pm2Error."""
    from_pm2 = pm2_log_paths(pm2_bin) if any(not a.logs for a in apps) else {}
    return {a.name: list(a.logs) if a.logs else from_pm2.get(a.name, []) for a in apps}


def _now_iso(now: Any) -> str:
    if now is None:
        now = _dt.datetime.now(_dt.UTC)
    return _iso(now)


def load_miner(conn: sqlite3.Connection) -> Miner:
    miner = Miner()
    rows = conn.execute(
        "SELECT t.id, v.text, v.version FROM log_templates t JOIN log_template_versions v ON v.template_id = t.id"
        " WHERE v.version = (SELECT max(version) FROM log_template_versions w WHERE w.template_id = t.id)"
        " ORDER BY t.rowid"
    )
    for tid, text, version in rows:
        miner.load(tid, text, version)
    return miner


def _last_states(conn: sqlite3.Connection, paths: Iterable[str]) -> dict[str, _reader.FileState]:
    states = {}
    for p in paths:
        row = conn.execute(
            "SELECT dev, ino, offset, fp, fp_len, skip FROM log_files WHERE path = ? ORDER BY id DESC LIMIT 1", (p,)
        ).fetchone()
        if row:
            states[p] = _reader.FileState(p, *row)
    return states


def _ends_reached(conn: sqlite3.Connection, paths: Iterable[str]) -> dict[str, str]:
    """Per path, when the newest read of it that reached the file's end began: what was written past
    that end came later."""
    out = {}
    for p in paths:
        row = conn.execute(
            "SELECT i.ts FROM log_files f JOIN log_ingests i ON i.id = f.ingest_id"
            " WHERE f.path = ? AND f.eof = 1 ORDER BY f.id DESC LIMIT 1",
            (p,),
        ).fetchone()
        if row:
            out[p] = row[0]
    return out


def bounds(
    mtimes: dict[int, float], read_at: str, lower: str | None, clock: float
) -> tuple[dict[int, str], str | None]:
    """The time bounds of lines without a timestamp of their own, read just now.

    Upper, per inode: the earliest time they provably existed. The file's mtime after the read
    says it was last written `clock - mtime` seconds before (both on the system clock), so the
    lines existed that long before `read_at` (the read's time on the record's clock, which a
    test or a shifted clock may move). The age is rounded down to the millisecond, so the bound
    is never early; an age under a second counts as none (the file was being written as it was
    read: the read's time, as filesystems with coarse mtimes would give anyway). Lower: kept only
    while it is not after an upper bound (a clock or an mtime set back: the order is unknown).
    """
    at = parse_ts(read_at)
    upper = {}
    for ino, mtime in mtimes.items():
        age = clock - mtime
        upper[ino] = format_ts(at - _dt.timedelta(milliseconds=int(age * 1000) if age >= 1 else 0))
    if lower is not None and any(lower > u for u in upper.values()):
        lower = None
    return upper, lower


def ingest(
    store: Any,
    app: str,
    paths: Sequence[str | Path | tuple[str | Path, str]],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now: Any = None,
    run_id: str | None = None,
    keep_stdout: bool = False,
    start: str = "beginning",
    record: bool = True,
    before_restart: bool = False,
) -> IngestResult:
    """Ingest what is new in `paths` (a path, or (path, "err"|"out")) for `app` into `store`.

    Log rows are committed in one transaction; then a `log.ingested` event is appended with
    `store.append` (skipped with `record=False`, or when nothing was read and nothing is wrong),
    with `before_restart: true` when a check read the logs just before restarting the app.
    Raises StoreError when the database cannot be written; I/O trouble with the logs themselves
    comes back as `warnings`.
    """
    conn: sqlite3.Connection = store.conn
    now_s = _now_iso(now)
    files = [(str(p[0]), p[1]) if isinstance(p, tuple) else (str(p), stream_of(str(p))) for p in paths]
    try:
        ensure_schema(conn)
        for attempt in range(4):
            # Read, group and mine without holding the write lock (a check run may be appending
            # meanwhile); then write in one short transaction, unless another run ingested first.
            # After three such collisions, do it all under the lock: slower, but sure to finish.
            locked = attempt == 3
            if locked:
                conn.execute("BEGIN IMMEDIATE")
            try:
                mark = _mark(conn)
                result = IngestResult(app)
                plan = _plan(
                    conn,
                    app,
                    files,
                    result,
                    max_bytes=max_bytes,
                    now_s=now_s,
                    keep_stdout=keep_stdout,
                    start=start,
                    read_at=(lambda: now_s) if now is not None else (lambda: _now_iso(None)),
                )
                if not locked:
                    conn.execute("BEGIN IMMEDIATE")
                    if _mark(conn) != mark:
                        conn.execute("ROLLBACK")
                        continue
                _write(conn, plan, result, app=app, now_s=now_s, run_id=run_id)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            break
    except sqlite3.Error as exc:
        raise StoreError(f"cannot store log entries in {getattr(store, 'path', '?')}: {exc}") from exc
    if record and (result.lines or result.warnings or any(f.rotations for f in result.files)):
        from ..events import new as new_event

        data = {**result.event_data(), **({"before_restart": True} if before_restart else {})}
        store.append([new_event("log.ingested", app, run_id, data)])
    return result


def _source_ids(conn: sqlite3.Connection, paths: Iterable[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for path in paths:
        row = conn.execute("SELECT id FROM log_sources WHERE path = ?", (path,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO log_sources (path) VALUES (?)", (path,))
            row = conn.execute("SELECT id FROM log_sources WHERE path = ?", (path,)).fetchone()
        ids[path] = row[0]
    return ids


def _write_entries(
    conn: sqlite3.Connection, ingest_id: int, first_id: int, rows: list[tuple], texts: list[tuple]
) -> None:
    """Entries with ids from `first_id`, their texts in compressed blocks of BLOCK, and the FTS index."""
    sources = _source_ids(conn, sorted({r[6] for r in rows}))
    block_id = (conn.execute("SELECT max(id) FROM log_blocks").fetchone()[0] or 0) + 1
    entries = []
    for lo in range(0, len(rows), BLOCK):
        chunk = rows[lo : lo + BLOCK]
        conn.execute(
            "INSERT INTO log_blocks (id, first_entry, entries, last_ts, data) VALUES (?, ?, ?, ?, ?)",
            (block_id, first_id + lo, len(chunk), max(r[2] for r in chunk), pack_block(texts[lo : lo + BLOCK])),
        )
        entries += [
            (
                first_id + lo + i,
                ingest_id,
                a,
                stream,
                ts,
                tid,
                code,
                lines,
                sources[f],
                offset,
                block_id,
                ts_from,
                bounded,
            )
            for i, (a, stream, ts, tid, code, lines, f, offset, ts_from, bounded) in enumerate(chunk)
        ]
        block_id += 1
    conn.executemany(
        "INSERT INTO log_entries (id, ingest_id, app, stream, ts, template_id, code, lines, source, offset, block,"
        " ts_from, ts_bounded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        entries,
    )
    conn.executemany(
        "INSERT INTO log_entries_fts (rowid, message, stack_top) VALUES (?, ?, ?)",
        [(first_id + i, t[0], t[1]) for i, t in enumerate(texts)],
    )


def _mark(conn: sqlite3.Connection) -> tuple:
    """What another ingestion would have changed: reader states and templates."""
    return conn.execute(
        "SELECT (SELECT max(id) FROM log_files), (SELECT max(rowid) FROM log_template_versions)"
    ).fetchone()


@dataclass
class _Plan:
    # (app, stream, ts, template_id, code, lines, file, offset, ts_from, bounded): see `bounds`
    rows: list[tuple] = field(default_factory=list)
    texts: list[tuple] = field(default_factory=list)  # (message, stack_top, params, detail), one per row
    file_rows: list[tuple] = field(default_factory=list)  # log_files without ingest_id
    counts: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    miner: Miner | None = None


def _plan(
    conn: sqlite3.Connection,
    app: str,
    files: list[tuple[str, str]],
    result: IngestResult,
    *,
    max_bytes: int,
    now_s: str,
    keep_stdout: bool,
    start: str,
    read_at: Callable[[], str],
) -> _Plan:
    states = _last_states(conn, [p for p, _ in files])
    lower_bounds = _ends_reached(conn, [p for p, _ in files])
    miner = load_miner(conn)
    plan = _Plan(miner=miner)
    per_file = max(1, max_bytes // max(1, len(files)))
    rows, texts, counts, examples, changed = plan.rows, plan.texts, plan.counts, plan.examples, plan.changed

    bound: dict[int, str] = {}  # inode -> upper bound of the lines read from it now
    lower: str | None = None  # the lower bound for the file being read
    at = now_s  # and when it was read

    def store_entry(e: Entry) -> None:
        ts, ts_from, bounded = (e.ts, None, 0) if e.ts else (bound.get(e.ino, at), lower, 1)
        m = miner.add(e.message)
        tid = m.template.id
        if m.created:
            result.new_templates.append(tid)
            examples[tid] = e.message
        elif m.changed:
            changed.add(tid)
        rows.append((app, e.stream, ts, tid, e.code, e.lines, e.file, e.offset, ts_from, bounded))
        texts.append((e.message, e.stack_top, m.params or None, e.detail_text))
        key = (tid, ts[:13])
        c = counts.get(key)
        if c is None:
            counts[key] = [1, ts, ts]
        else:
            c[0] += 1
            if ts < c[1]:
                c[1] = ts
            if ts > c[2]:
                c[2] = ts

    for path, stream in files:
        before = states.get(path)
        read = _reader.read(path, before, max_bytes=per_file, start=start)
        clock = time.time()  # (before the read's time: a bound a few microseconds late, never early)
        at = read_at()
        bound, lower = bounds(read.mtimes, at, lower_bounds.get(path), clock)
        result.warnings.extend(read.warnings)
        state = read.state
        grouper = Grouper(stream, keep_stdout=keep_stdout)
        n_before = len(rows)
        lines = read.lines
        cuts = [i for i in range(1, len(lines)) if lines[i].ino != lines[i - 1].ino]
        for lo, hi in zip([0, *cuts], [*cuts, len(lines)]):
            if lo:
                for e in grouper.flush():  # a rotated-away file ended: its last error is complete
                    store_entry(e)
            for e in grouper.feed_all(lines[lo:hi]):
                store_entry(e)
        pending = grouper.pending
        again = again_lines = 0  # what the next run reads again: counted then, not twice
        if (
            not read.eof
            and pending is not None
            and state is not None
            and pending.ino == state.ino
            and pending.offset > (before.offset if before and before.ino == state.ino else 0)
        ):
            # Stopped by the budget inside an error: read it again, whole, next time.
            again = state.offset - pending.offset
            again_lines = sum(1 for ln in lines if ln.ino == pending.ino and ln.offset >= pending.offset)
            state = replace(state, offset=pending.offset, skip=0)
        else:
            for e in grouper.flush():
                store_entry(e)
        result.lines += len(read.lines) - again_lines
        result.skipped += grouper.skipped
        result.complete = result.complete and read.eof
        if state is not None and state != before:
            plan.file_rows.append(
                (
                    app,
                    path,
                    stream,
                    state.dev,
                    state.ino,
                    state.offset,
                    state.fp,
                    state.fp_len,
                    state.skip,
                    int(read.eof),
                )
            )
        if state is not None or read.rotations:
            from_offset = before.offset if before is not None and state is not None and before.ino == state.ino else 0
            result.files.append(
                FileReport(
                    path,
                    stream,
                    from_offset,
                    state.offset if state else 0,
                    state.ino if state else 0,
                    read.bytes_read - again,
                    len(rows) - n_before,
                    read.rotations,
                    read.eof,
                )
            )
    return plan


def _write(
    conn: sqlite3.Connection, plan: _Plan, result: IngestResult, *, app: str, now_s: str, run_id: str | None
) -> None:
    # The run's row goes in last, with its totals (rows are never updated); the write lock
    # held since BEGIN IMMEDIATE keeps this id ours meanwhile.
    ingest_id = (conn.execute("SELECT max(id) FROM log_ingests").fetchone()[0] or 0) + 1
    result.ingest_id = ingest_id
    first_id = (conn.execute("SELECT max(id) FROM log_entries").fetchone()[0] or 0) + 1
    miner = plan.miner
    assert miner is not None
    conn.executemany(
        "INSERT INTO log_files (ingest_id, app, path, stream, dev, ino, offset, fp, fp_len, skip, eof)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(ingest_id, *r) for r in plan.file_rows],
    )
    rows = plan.rows
    _write_entries(conn, ingest_id, first_id, rows, plan.texts)
    new = set(result.new_templates)
    for tid in result.new_templates:
        t = miner.by_id[tid]
        conn.execute(
            "INSERT INTO log_templates (id, created_at, first_text, example) VALUES (?, ?, ?, ?)",
            (tid, now_s, t.text, plan.examples[tid]),
        )
        conn.execute(
            "INSERT INTO log_template_versions (template_id, version, text, ts, ingest_id) VALUES (?, 1, ?, ?, ?)",
            (tid, t.text, now_s, ingest_id),
        )
        t.version = 1
    for tid in sorted(plan.changed - new):
        t = miner.by_id[tid]
        version = (
            conn.execute("SELECT max(version) FROM log_template_versions WHERE template_id = ?", (tid,)).fetchone()[0]
            + 1
        )
        conn.execute(
            "INSERT INTO log_template_versions (template_id, version, text, ts, ingest_id) VALUES (?, ?, ?, ?, ?)",
            (tid, version, t.text, now_s, ingest_id),
        )
        result.changed_templates.append(tid)
    conn.executemany(
        "INSERT INTO log_counts (ingest_id, app, template_id, hour, count, first_ts, last_ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(ingest_id, app, tid, hour, c[0], c[1], c[2]) for (tid, hour), c in plan.counts.items()],
    )
    result.entries = len(rows)
    conn.execute(
        "INSERT INTO log_ingests (id, ts, app, run_id, entries, new_templates) VALUES (?, ?, ?, ?, ?, ?)",
        (ingest_id, now_s, app, run_id, result.entries, len(result.new_templates)),
    )


def pending_bytes(store: Any, paths: Sequence[str | Path | tuple[str | Path, str]]) -> int:
    """About how many bytes `paths` hold past where reading stopped (a rotated-away rest not counted)."""
    conn: sqlite3.Connection = store.conn
    total = 0
    for p in paths:
        path = str(p[0]) if isinstance(p, tuple) else str(p)
        try:
            st = os.stat(path)
        except OSError:
            continue
        try:
            last = _last_states(conn, [path]).get(path)
        except sqlite3.OperationalError:  # no log tables yet
            last = None
        same_file = last is not None and (last.dev, last.ino) == (st.st_dev, st.st_ino)
        done = last.offset if last is not None and same_file and last.offset <= st.st_size else 0
        total += st.st_size - done
    return total


def ingest_all(
    store: Any,
    app: str,
    paths: Sequence[str | Path | tuple[str | Path, str]],
    *,
    chunk_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int], None] | None = None,
    keep_stdout: bool = False,
    start: str = "beginning",
) -> IngestResult:
    """Ingest every new byte of `paths`: `ingest` over and over, `chunk_bytes` at a time, each chunk
    committed with its reader offsets and its own `log.ingested` event, so an interrupted run loses
    at most the chunk it was in and the next run resumes there. `progress(bytes)` after each chunk.
    Returns the totals; `complete` is False only when a chunk read nothing yet did not reach the end.
    """
    total = IngestResult(app)
    seen: set[tuple[str, str, str]] = set()
    while True:
        r = ingest(store, app, paths, max_bytes=chunk_bytes, keep_stdout=keep_stdout, start=start)
        read = sum(f.bytes for f in r.files)
        total.ingest_id = r.ingest_id if r.ingest_id is not None else total.ingest_id
        total.entries += r.entries
        total.lines += r.lines
        total.skipped += r.skipped
        total.new_templates += r.new_templates
        total.changed_templates += [t for t in r.changed_templates if t not in total.changed_templates]
        total.files += r.files
        for w in r.warnings:  # a missing file is reported by every chunk: once is enough
            if (w.path, w.kind, w.message) not in seen:
                seen.add((w.path, w.kind, w.message))
                total.warnings.append(w)
        total.complete = r.complete
        if progress is not None:
            progress(read)
        if r.complete or (read == 0 and not r.lines):
            return total
