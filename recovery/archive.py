"""`recovery archive` and `[store] max_size`: move old raw events into sealed monthly segments.

Only whole months are moved (those that ended before the cut), oldest first, each into its own
segment file (recovery.segments). The projections are folded first, so rollups, incidents,
restarts and error templates stay as they are. In the store, one transaction records the move
(`store.archived`, chained like any event) and deletes the moved rows: the immutability trigger
is dropped and recreated inside that transaction, so no other writer ever sees it missing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import projections, segments
from .errors import StoreError
from .events import format_ts
from .events import new as new_event
from .store import GENESIS, Store, _describe, held_lock, immediate, split_sql, verify_chain

NO_DELETE_TRIGGER = (
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events\n"
    "BEGIN SELECT RAISE(ABORT, 'events are immutable: DELETE refused'); END"
)


@dataclass(frozen=True)
class Piece:
    """A run of events (contiguous seqs) that goes into one segment."""

    months: list[str]
    first_seq: int
    last_seq: int
    events: int
    first_ts: str
    last_ts: str


@dataclass
class ArchiveResult:
    cut: str  # events before this (the first day of a month) were archived
    pieces: list[Piece] = field(default_factory=list)
    segments: list[Path] = field(default_factory=list)
    dry_run: bool = False

    @property
    def events(self) -> int:
        return sum(p.events for p in self.pieces)

    def lines(self) -> list[str]:
        if not self.pieces:
            return [f"nothing to archive: no events before {self.cut[:10]} (only whole months are archived)"]
        verb = "would move" if self.dry_run else "moved"
        out = []
        for n, p in enumerate(self.pieces):
            where = f" -> {self.segments[n].name}" if n < len(self.segments) else ""
            out.append(f"{verb} {p.events} events of {','.join(p.months)} (seq {p.first_seq}..{p.last_seq}){where}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "cut": self.cut,
            "dry_run": self.dry_run,
            "events": self.events,
            "segments": [
                {
                    "months": p.months,
                    "first_seq": p.first_seq,
                    "last_seq": p.last_seq,
                    "events": p.events,
                    "file": str(self.segments[n]) if n < len(self.segments) else None,
                }
                for n, p in enumerate(self.pieces)
            ],
        }


def month_start(ts: str) -> str:
    """The first instant of the month `ts` falls in, as an event timestamp."""
    return f"{ts[:7]}-01T00:00:00.000Z"


def next_month(month: str) -> str:
    """The first instant of the month after `month` ("2026-12" -> "2027-01-01T00:00:00.000Z")."""
    year, mon = int(month[:4]), int(month[5:7])
    year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return f"{year:04d}-{mon:02d}-01T00:00:00.000Z"


def _first_at(conn: sqlite3.Connection, ts: str, after: int) -> int:
    """The seq of the first event (by ts, from the ts index) at or after `ts` with a seq above
    `after`; past the last seq when there is none."""
    row = conn.execute(
        "SELECT seq FROM events WHERE ts >= ? AND seq > ? ORDER BY ts, seq LIMIT 1", (ts, after)
    ).fetchone()
    if row:
        return int(row[0])
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]) + 1


def plan(conn: sqlite3.Connection, cut: str, *, months: int | None = None) -> list[Piece]:
    """The pieces to move, oldest first: the events before the first one at or after `cut` (seq
    order), split where the next month begins; at most `months` pieces when given. Each piece is
    found from the ts index and counted over its own seq range: no scan of the rest of the store.

    Seqs stay contiguous whatever the timestamps: a clock stepped back leaves its few events in
    the piece of the month around them."""
    end = _first_at(conn, cut, 0)
    pieces: list[Piece] = []
    row = conn.execute("SELECT seq, ts FROM events ORDER BY seq LIMIT 1").fetchone()
    while row is not None and row[0] < end and (months is None or len(pieces) < months):
        first, month = int(row[0]), str(row[1])[:7]
        boundary = min(_first_at(conn, next_month(month), first), end)
        count, lo, hi = conn.execute(
            "SELECT count(*), min(ts), max(ts) FROM events WHERE seq >= ? AND seq < ?", (first, boundary)
        ).fetchone()
        pieces.append(Piece([month], first, boundary - 1, count, lo, hi))
        row = conn.execute("SELECT seq, ts FROM events WHERE seq >= ? ORDER BY seq LIMIT 1", (boundary,)).fetchone()
    return pieces


def archive(
    store: Store,
    before: _dt.datetime,
    *,
    dry_run: bool = False,
    months: int | None = None,
    now: _dt.datetime | None = None,
    wait: bool = True,
) -> ArchiveResult:
    """Move the raw events of every whole month before `before` into sealed segments."""
    now = now or _dt.datetime.now(_dt.UTC)
    cut = month_start(format_ts(before))
    result = ArchiveResult(cut, dry_run=dry_run)
    if store.immutable:
        raise StoreError(f"{store.path}: read-only here; it cannot be archived")
    conn = store.conn
    with archive_lock(store.path, wait=wait) as held:
        if not held:
            return result  # another process is archiving this store right now
        try:
            projections.fold(conn)  # everything moved out has been folded: the read models stay whole
            result.pieces = plan(conn, cut, months=months)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the event store {store.path}: {_describe(exc)}") from exc
        if dry_run or not result.pieces:
            return result
        _drop_orphans(store)
        for piece in result.pieces:
            result.segments.append(_move(store, piece, now))
    return result


def archive_lock(store_path: Path, *, wait: bool) -> contextlib.AbstractContextManager[bool]:
    """One archiver per store (two checks over `max_size` at once must not both move a month):
    an exclusive flock beside the store; yields False when `wait` is off and it is taken."""
    return held_lock(store_path, "-archive.lock", wait=wait)  # app locks are "<store>.<app>.lock": no clash


def _drop_orphans(store: Store) -> None:
    """Remove segments left by an archive interrupted before its store transaction committed:
    the store still holds their events."""
    first = store.conn.execute("SELECT seq FROM events ORDER BY seq LIMIT 1").fetchone()
    for seg in segments.segments(store.path):
        if first is not None and seg.first_seq >= first[0]:
            seg.path.unlink(missing_ok=True)


def _move(store: Store, piece: Piece, now: _dt.datetime) -> Path:
    """Write one piece into a sealed segment, then, in one store transaction, record the move and
    delete the moved rows."""
    conn = store.conn
    final = segments.segment_path(store.path, piece.months[0])
    temp = final.with_name(final.name + f".tmp-{os.getpid()}")
    temp.unlink(missing_ok=True)
    try:
        entry, exit_ = _write_segment(conn, temp, piece, now)
        _check_piece(store, temp, piece, entry)
        mode = os.stat(store.path)
        os.chmod(temp, mode.st_mode & 0o444)  # sealed: read-only, readable by whom the store is
        if os.geteuid() == 0:
            os.chown(temp, mode.st_uid, mode.st_gid)
        os.replace(temp, final)
        _fsync_dir(final.parent)
    except StoreError:
        temp.unlink(missing_ok=True)
        raise
    except (OSError, sqlite3.Error) as exc:
        temp.unlink(missing_ok=True)
        raise StoreError(f"cannot write the segment {final}: {getattr(exc, 'strerror', None) or exc}") from exc
    event = new_event(
        "store.archived",
        None,
        None,
        {
            "segment": final.name,
            "months": piece.months,
            "events": piece.events,
            "first_seq": piece.first_seq,
            "last_seq": piece.last_seq,
            "first_ts": piece.first_ts,
            "last_ts": piece.last_ts,
            "entry_hash": entry,
            "last_hash": exit_,
        },
        ts=format_ts(now),
    )
    try:
        with immediate(conn):
            held = conn.execute(
                "SELECT count(*) FROM events WHERE seq BETWEEN ? AND ?", (piece.first_seq, piece.last_seq)
            ).fetchone()[0]
            if held != piece.events:
                raise sqlite3.OperationalError(f"seq {piece.first_seq}..{piece.last_seq} changed while it was copied")
            store.link([event])
            conn.execute("DROP TRIGGER events_no_delete")
            conn.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", (piece.first_seq, piece.last_seq))
            for statement in split_sql(NO_DELETE_TRIGGER):
                conn.execute(statement)
    except sqlite3.Error as exc:
        final.unlink(missing_ok=True)  # the store kept its events: the segment would only repeat them
        raise StoreError(f"cannot archive in the event store {store.path}: {_describe(exc)}") from exc
    return final


def _write_segment(conn: sqlite3.Connection, path: Path, piece: Piece, now: _dt.datetime) -> tuple[str, str]:
    """Copy the piece's rows into a new segment file at `path`; its entry and exit hashes."""
    conn.execute("ATTACH DATABASE ? AS seg", (str(path),))
    try:
        # Deferred: only the segment is written, so checks can go on writing the store meanwhile.
        conn.execute("BEGIN")
        try:
            for statement in split_sql(segments.SCHEMA.format(db="seg.")):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO seg.events SELECT seq, id, ts, host, app, type, run_id, data, prev_hash, hash"
                " FROM main.events WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (piece.first_seq, piece.last_seq),
            )
            entry = conn.execute("SELECT prev_hash FROM seg.events ORDER BY seq LIMIT 1").fetchone()[0]
            exit_ = conn.execute("SELECT hash FROM seg.events ORDER BY seq DESC LIMIT 1").fetchone()[0]
            conn.execute(
                "INSERT INTO seg.segment VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    store_name(conn),
                    ",".join(piece.months),
                    piece.first_seq,
                    piece.last_seq,
                    piece.events,
                    entry,
                    exit_,
                    piece.first_ts,
                    piece.last_ts,
                    format_ts(now),
                ),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.execute("DETACH DATABASE seg")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry, exit_


def _check_piece(store: Store, temp: Path, piece: Piece, entry: str) -> None:
    """Refuse to move a piece whose chain is broken, or does not start where the record before it ends."""
    before = [s for s in segments.segments(store.path) if s.last_seq < piece.first_seq]
    expected = before[-1].exit_hash if before else GENESIS
    seg = segments.connect(temp)
    try:
        result = verify_chain(seg, entry, piece.first_seq)
    finally:
        seg.close()
    problem = None
    if entry != expected:
        problem = f"seq {piece.first_seq} does not link to the record before it"
    elif not result.ok:
        problem = f"the hash chain is broken at seq {result.first_bad_seq} ({result.reason})"
    if problem:
        raise StoreError(f"{store.path}: not archived: {problem}; see `recovery verify --all`")


def store_name(conn: sqlite3.Connection) -> str:
    path = segments.main_path(conn)
    return path.name if path else ""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def over_budget(path: Path, max_size: int) -> bool:
    """Whether the store file (and its WAL) is larger than `max_size`: a stat or two, no scan."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return False
    if size <= max_size:
        return False
    try:
        size += os.stat(f"{path}-wal").st_size
    except OSError:
        pass
    return size > max_size


def used_bytes(conn: sqlite3.Connection) -> int:
    """The bytes the store's pages hold (free pages left by an archive are reused, not counted)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def keep_under(store: Store, max_size: int, now: _dt.datetime | None = None) -> ArchiveResult | None:
    """Archive the oldest whole months, one at a time, until the store's pages hold at most
    `max_size` (the current month is never archived); None when it is already under."""
    now = now or _dt.datetime.now(_dt.UTC)
    if not over_budget(store.path, max_size):
        return None
    total: ArchiveResult | None = None
    try:
        while used_bytes(store.conn) > max_size:
            step = archive(store, now, months=1, now=now, wait=False)
            if total is None:
                total = step
            else:
                total.pieces += step.pieces
                total.segments += step.segments
            if not step.pieces:
                break
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the event store {store.path}: {_describe(exc)}") from exc
    return total
