"""Sealed monthly segment files: old raw events that `recovery archive` moved out of the store.

A segment sits beside the store (`recovery.db` -> `recovery.2026-08.segment.db`), read-only once
sealed, with its own `events` table (the same columns, the same triggers) and one `segment` row:
its month, first and last seq, entry hash (the prev_hash of its first event) and exit hash (the
hash of its last). The hash chain runs on from one segment to the next and into the store.
Plain `sqlite3`, like the store.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StoreError
from .events import Event
from .store import GENESIS, Store, _uri, file_problems, verify_chain

SUFFIX = ".segment.db"

SCHEMA = """
CREATE TABLE {db}events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    host TEXT NOT NULL,
    app TEXT,
    type TEXT NOT NULL,
    run_id TEXT,
    data TEXT NOT NULL DEFAULT '{{}}',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX {db}events_ts ON events (ts);
CREATE TRIGGER {db}events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: UPDATE refused'); END;
CREATE TRIGGER {db}events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: DELETE refused'); END;
CREATE TABLE {db}segment (
    store TEXT NOT NULL,
    months TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    events INTEGER NOT NULL,
    entry_hash TEXT NOT NULL,
    exit_hash TEXT NOT NULL,
    first_ts TEXT NOT NULL,
    last_ts TEXT NOT NULL,
    sealed_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Segment:
    path: Path
    months: str  # "2026-08", or "2026-08,2026-09" when a stepped clock mixed them
    first_seq: int
    last_seq: int
    events: int
    entry_hash: str
    exit_hash: str
    first_ts: str
    last_ts: str


def base_name(store_path: Path) -> str:
    return store_path.stem if store_path.suffix == ".db" else store_path.name


def segment_path(store_path: Path, month: str) -> Path:
    """Where the segment of `month` goes; a later part of a month already sealed gets `.2`, `.3`…"""
    base = base_name(store_path)
    path = store_path.with_name(f"{base}.{month}{SUFFIX}")
    n = 2
    while path.exists():
        path = store_path.with_name(f"{base}.{month}.{n}{SUFFIX}")
        n += 1
    return path


def connect(path: Path) -> sqlite3.Connection:
    """A segment, read-only: sealed files never change, so immutable (no SHM file needed)."""
    return sqlite3.connect(_uri(path, mode="ro", immutable="1"), uri=True, isolation_level=None)


def read(path: Path) -> Segment:
    try:
        conn = connect(path)
        try:
            row = conn.execute(
                "SELECT months, first_seq, last_seq, events, entry_hash, exit_hash, first_ts, last_ts FROM segment"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"segment {path}: cannot be read ({exc})") from exc
    if row is None:
        raise StoreError(f"segment {path}: has no segment row (not sealed)")
    return Segment(path, *row)


def files(store_path: Path) -> list[Path]:
    """The segment files beside the store (sealed ones; a temp file of an archive under way is not):
    `<base>.<YYYY-MM>[.<n>].segment.db`, so another store's segments in the same folder are not."""
    base = base_name(store_path)
    pattern = re.compile(re.escape(base) + r"\.\d{4}-\d{2}(\.\d+)?" + re.escape(SUFFIX))
    return sorted(p for p in store_path.parent.glob(f"{base}.*{SUFFIX}") if pattern.fullmatch(p.name))


def segments(store_path: Path) -> list[Segment]:
    """The store's segments, oldest events first."""
    return sorted((read(p) for p in files(store_path)), key=lambda s: s.first_seq)


def rows_after(store_path: Path, after: int, batch: int) -> Iterator[list[tuple]]:
    """The segments' events after seq `after`, oldest first, in batches of fold rows
    (seq, ts, app, type, run_id, data)."""
    for seg in segments(store_path):
        if seg.last_seq <= after:
            continue
        conn = connect(seg.path)
        try:
            start = after
            while True:
                rows = conn.execute(
                    "SELECT seq, ts, app, type, run_id, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (start, batch),
                ).fetchall()
                if not rows:
                    break
                yield rows
                start = rows[-1][0]
        finally:
            conn.close()


def main_path(conn: sqlite3.Connection) -> Path | None:
    """The file of a connection's main database (None in memory)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return Path(file) if file else None
    return None


def check(store_path: Path, *, full: bool = False) -> tuple[list[Segment], list[str]]:
    """Every segment's file and chain, and the links between them: the segments, and one line per problem.

    The first segment must start the chain (genesis, seq 1); each next one must start where the one
    before ended."""
    problems: list[str] = []
    found: list[Segment] = []
    for p in files(store_path):
        try:
            found.append(read(p))
        except StoreError as exc:
            problems.append(str(exc))
    found.sort(key=lambda s: s.first_seq)
    prev_hash, next_seq = GENESIS, 1
    for seg in found:
        name = seg.path.name
        if seg.first_seq != next_seq:
            problems.append(
                f"{name}: starts at seq {seg.first_seq}, but the segment before it ends at seq {next_seq - 1}"
                " (a segment is missing)"
            )
        elif seg.entry_hash != prev_hash:
            problems.append(f"{name}: its entry hash does not match the exit hash of the segment before it")
        conn = connect(seg.path)
        try:
            pragma = "integrity_check" if full else "quick_check"
            bad = file_problems(r[0] for r in conn.execute(f"PRAGMA {pragma}(100)"))
            problems.extend(f"{name}: {b}" for b in bad)
            result = verify_chain(conn, seg.entry_hash, seg.first_seq)
        except sqlite3.Error as exc:
            problems.append(f"{name}: cannot be read ({exc})")
            prev_hash, next_seq = seg.exit_hash, seg.last_seq + 1
            continue
        finally:
            conn.close()
        if not result.ok:
            problems.append(f"{name}: chain broken at seq {result.first_bad_seq}: {result.reason}")
        elif (result.last_seq, result.last_hash, result.count) != (seg.last_seq, seg.exit_hash, seg.events):
            problems.append(
                f"{name}: holds seq {seg.first_seq}..{result.last_seq} ({result.count} events), but was sealed"
                f" with {seg.first_seq}..{seg.last_seq} ({seg.events} events)"
            )
        prev_hash, next_seq = seg.exit_hash, seg.last_seq + 1
    return found, problems


@dataclass
class RecordCheck:
    """What `recovery verify` found: the events it walked, and one line per problem."""

    path: Path
    events: int = 0
    segments: list[Segment] | None = None  # checked with --all; None when not
    unchecked: int = 0  # segments beside the store left unchecked (no --all)
    immutable: bool = False
    problems: list[str] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_record(
    store_path: Path, *, full: bool = False, all_segments: bool = False, busy_timeout: float = 5.0
) -> RecordCheck:
    """The store's file (SQLite's quick_check, or integrity_check when `full`) and hash chain; with
    `all_segments`, every segment too, the links between them and into the store, and each
    `store.archived` event's segment present and matching."""
    with Store.open(store_path, busy_timeout=busy_timeout, readonly=True) as store:
        out = RecordCheck(store_path, immutable=store.immutable)
        problems = store.check_file(full=full)
        try:
            chain = store.verify()
            out.events = chain.count
            if not chain.ok:
                problems.append(f"{store_path}: chain broken at seq {chain.first_bad_seq}: {chain.reason}")
            archived = _archived(store.conn) if all_segments else []
            first = store.conn.execute("SELECT seq, prev_hash FROM events ORDER BY seq LIMIT 1").fetchone()
        except (StoreError, sqlite3.Error) as exc:
            problems.append(str(exc))
            archived, first = [], None
    if not all_segments:
        out.unchecked = len(files(store_path))
        out.problems = problems
        return out
    found, seg_problems = check(store_path, full=full)
    problems += seg_problems
    out.segments = found
    out.events += sum(s.events for s in found)
    by_name = {s.path.name: s for s in found}
    for one in found:  # the store.archived events of earlier archives may have been archived since
        conn = connect(one.path)
        try:
            archived += _archived(conn)
        except sqlite3.Error:
            pass  # reported by check() already
        finally:
            conn.close()
    for d in archived:
        named = by_name.get(str(d.get("segment")))
        if named is None:
            problems.append(
                f"{store_path.parent / str(d.get('segment'))}: missing (store.archived recorded seq"
                f" {d.get('first_seq')}..{d.get('last_seq')} there)"
            )
        elif (named.first_seq, named.last_seq, named.exit_hash) != (
            d.get("first_seq"),
            d.get("last_seq"),
            d.get("last_hash"),
        ):
            problems.append(f"{named.path.name}: does not match its store.archived event (seq range or last hash)")
    if found and first is not None:
        last = found[-1]
        if first[0] != last.last_seq + 1 or first[1] != last.exit_hash:
            problems.append(
                f"{store_path}: its first event (seq {first[0]}) does not link to the last segment"
                f" {last.path.name} (seq ..{last.last_seq})"
            )
    out.problems = problems
    return out


def _archived(conn: sqlite3.Connection) -> list[dict]:
    import json

    return [
        json.loads(t) for (t,) in conn.execute("SELECT data FROM events WHERE type = 'store.archived' ORDER BY seq")
    ]


def query_all(store: Store, *, since: str | None = None, limit: int | None = None, **filters: Any) -> list[Event]:
    """`store.query`, and when `since` reaches back before the store's first event, the matching
    archived events of the segments first (oldest first; `limit` keeps the newest of all)."""
    older: list[Event] = []
    if since is not None:
        first = store.conn.execute("SELECT ts FROM events ORDER BY seq LIMIT 1").fetchone()
        if first is None or since < first[0]:
            for seg in segments(store.path):
                if seg.last_ts >= since:
                    with Store(seg.path, connect(seg.path)) as archived:
                        older += archived.query(since=since, **filters)
    rows = store.query(since=since, limit=limit, **filters)
    if not older:
        return rows
    rows = older + rows
    return rows[-limit:] if limit else rows
