"""The append-only event store: one SQLite file, a hash chain, triggers against edits.

Plain `sqlite3` on purpose: this module is on the path of every cron run, and importing
sqlite-utils costs ~100 ms there.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import glob
import hashlib
import heapq
import json
import os
import sqlite3
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from .clock import Clock, SystemClock
from .errors import StoreError
from .events import Event, format_ts
from .events import new as new_event

T = TypeVar("T")

GENESIS = "0" * 64


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One IMMEDIATE transaction: writers are serialised across processes from its start."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


# Each entry moves the schema from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        ts TEXT NOT NULL,
        host TEXT NOT NULL,
        app TEXT,
        type TEXT NOT NULL,
        run_id TEXT,
        data TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX events_app_type ON events (app, type, seq);
    CREATE INDEX events_ts ON events (ts);
    CREATE INDEX events_run ON events (run_id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are immutable: UPDATE refused'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are immutable: DELETE refused'); END;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def chain_hash(prev_hash: str, seq: int, e: Event, data_json: str) -> str:
    """The SHA-256 link of one event: covers its predecessor's hash and every column."""
    payload = json.dumps(
        [prev_hash, seq, e.id, e.ts, e.host, e.app, e.type, e.run_id, data_json],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None
    last_hash: str | None = None  # where a sound chain ends: the next file's (or event's) prev_hash
    last_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


IMMUTABLE_NOTE = (
    "read as an immutable snapshot (SQLite cannot create its -shm file: a read-only folder or filesystem);"
    " changes still in its -wal file, if any, are not seen"
)


def _uri(path: Path, **params: str) -> str:
    """A SQLite URI for `path` (quoted: a `?` or `#` in a folder name is part of the path)."""
    from urllib.parse import quote

    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quote(str(path))}" + (f"?{query}" if query else "")


def create_private(path: Path, group: str | None = None) -> None:
    """Create the file `path` 0600 (0640, owned by `group`, when one is given) unless it exists;
    an existing file keeps its mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # SQLite's own open names the problem
    try:
        if group is not None:
            import grp

            try:
                os.fchown(fd, -1, grp.getgrnam(group).gr_gid)
            except (KeyError, OSError) as exc:
                os.close(fd)
                fd = -1
                path.unlink(missing_ok=True)
                why = "no such group" if isinstance(exc, KeyError) else (exc.strerror or str(exc))
                raise StoreError(f"cannot give the new store {path} to group {group!r}: {why}") from None
            os.fchmod(fd, 0o640)
        else:
            os.fchmod(fd, 0o600)  # exactly, whatever the umask
    finally:
        if fd >= 0:
            os.close(fd)


def _describe(exc: sqlite3.Error) -> str:
    text = str(exc) or type(exc).__name__
    if "file is not a database" in text:
        return "not a SQLite database (file is not a database)"
    if "database disk image is malformed" in text:
        return "corrupt SQLite database (database disk image is malformed)"
    return text


class Store:
    """An open event store. Use `Store.open()`; close it with `close()` or `with`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.immutable = False  # read as an immutable snapshot (a read-only folder or filesystem)
        self.note: str | None = None  # what a reader should know about the numbers (recovery.reading)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        busy_timeout: float = 5.0,
        readonly: bool = False,
        group: str | None = None,
    ) -> Store:
        """Open (and for writers create and migrate) the store at `path`.

        A new store file is created 0600 (0640 and owned by `group` when one is given) before
        SQLite opens it: SQLite gives its WAL and SHM files the database file's mode and owner.
        A reader that cannot open the store the usual way (a read-only folder or filesystem, where
        SQLite cannot create the SHM file) reads it as an immutable snapshot: `immutable` says so.
        """
        path = Path(path)
        if readonly:
            if not path.exists():
                raise StoreError(f"no event store at {path} (a `recovery check` run creates it)")
            uri = _uri(path, mode="ro")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store's folder {path.parent}: {exc.strerror or exc}") from exc
            if path.is_dir():
                raise StoreError(f"{path}: is a directory, not a SQLite database")
            create_private(path, group)
            uri = _uri(path)
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the event store {path}: {_describe(exc)}") from exc
        store = cls(path, conn)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if not readonly or "unable to open" not in str(exc):
                    raise
                conn.close()
                conn = sqlite3.connect(_uri(path, immutable="1"), uri=True, isolation_level=None)
                store.conn, store.immutable = conn, True
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            if not readonly:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                if version < SCHEMA_VERSION:
                    store._migrate(version)
            elif version < SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: schema version {version}, expected {SCHEMA_VERSION}; run `recovery check` once to migrate it"
                )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: schema version {version} is newer than this recovery ({SCHEMA_VERSION}); upgrade recovery"
                )
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"event store {path}: {_describe(exc)}") from exc
        except StoreError:
            conn.close()
            raise
        return store

    def _migrate(self, version: int) -> None:
        with self._write():
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, SCHEMA_VERSION):
                for statement in split_sql(MIGRATIONS[step]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {step + 1}")

    def _write(self) -> contextlib.AbstractContextManager[None]:
        return immediate(self.conn)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def append(self, events: Sequence[Event], *, skip_known: bool = False) -> list[Event]:
        """Append `events` in one transaction, linking each into the hash chain.

        With `skip_known`, events whose id is already stored are left out (spool replay).
        """
        if not events:
            return []
        try:
            with self._write():
                return self.link(events, skip_known=skip_known)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the event store {self.path}: {_describe(exc)}") from exc

    def link(self, events: Sequence[Event], *, skip_known: bool = False) -> list[Event]:
        """Insert `events` at the end of the hash chain, inside the caller's write transaction."""
        last = self.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0], last[1]) if last else (0, GENESIS)
        stored: list[Event] = []
        for e in events:
            if skip_known and self.conn.execute("SELECT 1 FROM events WHERE id = ?", (e.id,)).fetchone():
                continue
            seq += 1
            data_json = e.data_json()
            h = chain_hash(prev, seq, e, data_json)
            self.conn.execute(
                "INSERT INTO events (seq, id, ts, host, app, type, run_id, data, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, e.id, e.ts, e.host, e.app, e.type, e.run_id, data_json, prev, h),
            )
            stored.append(replace(e, seq=seq, prev_hash=prev, hash=h))
            prev = h
        return stored

    # -- reading -------------------------------------------------------------------------

    def query(
        self,
        *,
        app: str | None = None,
        types: Iterable[str] | None = None,
        since: str | None = None,
        after_seq: int | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events matching every filter given, oldest first; `limit` keeps the newest."""
        where: list[str] = []
        params: list[Any] = []
        if app is not None:
            where.append("app = ?")
            params.append(app)
        types = list(types or [])
        if types:
            where.append(f"type IN ({','.join('?' * len(types))})")
            params.extend(types)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if after_seq is not None:
            where.append("seq > ?")
            params.append(after_seq)
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        sql = "SELECT seq, id, ts, host, app, type, run_id, data, prev_hash, hash FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT {int(limit)})"
        sql += " ORDER BY seq"
        try:
            rows = self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the event store {self.path}: {_describe(exc)}") from exc
        return [_row_to_event(r) for r in rows]

    def first_seq_since(self, ts: str) -> int:
        """The seq of the first event at or after `ts` (beyond the last one when there is none)."""
        try:
            return first_seq_since(self.conn, ts)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the event store {self.path}: {_describe(exc)}") from exc

    def last_seq(self) -> int:
        try:
            row = self.conn.execute("SELECT max(seq) FROM events").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the event store {self.path}: {_describe(exc)}") from exc
        return row[0] or 0

    def verify(self) -> VerifyResult:
        """Walk the hash chain; name the first event that was edited, deleted or inserted out of band.

        After `recovery archive` the chain starts at the exit hash of the last segment moved out,
        as the store's own `store.archived` event records it (itself verified by the walk)."""
        try:
            first = self.conn.execute("SELECT seq, prev_hash FROM events ORDER BY seq LIMIT 1").fetchone()
            if first is None or first[0] == 1:
                return verify_chain(self.conn, GENESIS, 1)
            for (text,) in self.conn.execute("SELECT data FROM events WHERE type = 'store.archived' ORDER BY seq"):
                d = json.loads(text)
                if d.get("last_seq") == first[0] - 1:
                    return verify_chain(self.conn, str(d.get("last_hash")), first[0])
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"cannot read the event store {self.path}: {_describe_any(exc)}") from exc
        return VerifyResult(
            0,
            first[0],
            f"the first event is seq {first[0]} and no store.archived event accounts for the ones before it",
        )

    def check_file(self, *, full: bool = False) -> list[str]:
        """SQLite's own check of the file (`quick_check`, or `integrity_check` when `full`): one
        line per problem found, none when the file is sound."""
        pragma = "integrity_check" if full else "quick_check"
        try:
            rows = [r[0] for r in self.conn.execute(f"PRAGMA {pragma}(100)")]
        except sqlite3.Error as exc:
            return [f"{self.path}: {pragma} failed: {_describe(exc)}"]
        found = [f"{self.path}: {line}" for line in file_problems(rows)]
        if len(rows) >= 100:
            found.append(f"{self.path}: (SQLite stops at 100 problems; there may be more)")
        return found


def file_problems(rows: Iterable[str]) -> list[str]:
    """The lines of a quick_check/integrity_check answer that name a problem (one row may hold several)."""
    return [
        line.strip()
        for row in rows
        if row != "ok"
        for line in str(row).splitlines()
        if line.strip() and not line.startswith("*** in database")
    ]


def verify_chain(conn: sqlite3.Connection, prev: str, first_seq: int, table: str = "events") -> VerifyResult:
    """Walk the hash chain of `table` from `prev` (the hash before it) and `first_seq`; name the first
    event that was edited, deleted or inserted out of band."""
    expected_prev, expected_seq, count = prev, first_seq, 0
    cursor = conn.execute(
        f"SELECT seq, id, ts, host, app, type, run_id, data, prev_hash, hash FROM {table} ORDER BY seq"
    )
    for row in cursor:
        count += 1
        seq, data_json, prev_hash, stored_hash = row[0], row[7], row[8], row[9]
        if seq != expected_seq:
            return VerifyResult(count, seq, f"seq jumps from {expected_seq - 1} to {seq}: events were deleted")
        if prev_hash != expected_prev:
            return VerifyResult(
                count, seq, "prev_hash does not match the event before it: history before it was changed"
            )
        e = Event(type=row[5], app=row[4], run_id=row[6], ts=row[2], host=row[3], id=row[1])
        if chain_hash(prev_hash, seq, e, data_json) != stored_hash:
            return VerifyResult(count, seq, "its contents do not match its hash: the row was edited")
        expected_prev, expected_seq = stored_hash, seq + 1
    return VerifyResult(count, last_hash=expected_prev, last_seq=expected_seq - 1)


def _describe_any(exc: Exception) -> str:
    return _describe(exc) if isinstance(exc, sqlite3.Error) else str(exc)


def _row_to_event(r: tuple) -> Event:
    return Event(
        seq=r[0],
        id=r[1],
        ts=r[2],
        host=r[3],
        app=r[4],
        type=r[5],
        run_id=r[6],
        data=json.loads(r[7]) if r[7] else {},
        prev_hash=r[8],
        hash=r[9],
    )


def first_seq_since(conn: sqlite3.Connection, ts: str) -> int:
    """The seq of the first event at or after `ts`, from the ts index (one row read: `min(seq)`
    would scan every event since then); beyond the last seq when there is none."""
    row = conn.execute("SELECT seq FROM events WHERE ts >= ? ORDER BY ts, seq LIMIT 1", (ts,)).fetchone()
    return row[0] if row else 1 << 62


def recorded_since(conn: sqlite3.Connection, app: str | None, type_: str, ts: str, where: str = "") -> bool:
    """Whether an event of `type_` for `app` (None: not about one app) was recorded at or after
    `ts` and matches the SQL condition `where` on its row: the (app, type, seq) index from the
    first seq since `ts`, so a handful of rows however long the record."""
    return (
        conn.execute(
            f"SELECT 1 FROM events WHERE app IS ? AND type = ? AND seq >= ?{' AND ' + where if where else ''} LIMIT 1",
            (app, type_, first_seq_since(conn, ts)),
        ).fetchone()
        is not None
    )


def split_sql(script: str) -> list[str]:
    """Split a migration into statements; CREATE TRIGGER bodies keep their inner semicolons."""
    statements, buf = [], ""
    for line in script.strip().splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def lock_fd(store_path: Path, suffix: str) -> int:
    """An open lock file `<store><suffix>` beside the store, for flock; when the store's folder is
    unusable, one in the temp folder named after the store, so runs against the same store still meet."""
    try:
        return os.open(store_path.with_name(store_path.name + suffix), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        digest = hashlib.sha256(str(store_path.resolve()).encode()).hexdigest()[:16]
        return os.open(Path(tempfile.gettempdir()) / f"recovery-{digest}{suffix}", os.O_RDWR | os.O_CREAT, 0o644)


@contextlib.contextmanager
def held_lock(
    store_path: Path, suffix: str, *, wait: bool | float = False, clock: Clock | None = None
) -> Iterator[bool]:
    """The flock `<store><suffix>` (lock_fd) while the block runs: yields True when held. `wait`:
    False, not at all (False at once when another process holds it); True, as long as it takes;
    a number, up to that many seconds on `clock` (default the system's), trying every 0.1 s."""
    fd = lock_fd(store_path, suffix)
    try:
        if isinstance(wait, bool):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
        else:
            clock = clock or SystemClock()
            deadline = clock.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if clock.monotonic() >= deadline:
                        yield False
                        return
                    clock.sleep(0.1)
        yield True
    finally:
        os.close(fd)  # closing releases the flock


# -- the spool: where events go while the store is unusable -----------------------------
#
# A spool file is a sequence of records, each one event:
#
#     RS "recovery-spool/2 " <payload length> " " <CRC-32 of the payload, 8 hex digits> LF
#     <payload: the event as one JSON object> LF
#
# RS (0x1e) starts every record and never occurs inside one (json.dumps escapes every control
# character), so a reader finds the next record after a torn or short one. Files written before
# this format hold one JSON object a line; they are still read.

SPOOL_MAGIC = b"\x1erecovery-spool/2 "
_RS = b"\x1e"
# The last resort when neither the store's folder nor $XDG_STATE_HOME can be written: /var/tmp
# survives a reboot, unlike /tmp. A module attribute so tests can point it elsewhere.
SPOOL_TMP = Path("/var/tmp")


@dataclass(frozen=True)
class SpoolDamage:
    """A stretch of a spool file that is not a whole record: its events are lost."""

    file: Path
    offset: int
    bytes: int
    why: str
    head: str = ""  # the stretch's first bytes, for a person to look at

    def data(self) -> dict[str, Any]:
        return {"file": str(self.file), "offset": self.offset, "bytes": self.bytes, "why": self.why, "head": self.head}


@dataclass
class SpoolScan:
    events: list[Event] = field(default_factory=list)
    damaged: list[SpoolDamage] = field(default_factory=list)


def spool_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".spool")


def spool_locations(store_path: Path) -> list[Path]:
    """Where the store's events are spooled, in the order tried: beside the store, then
    `$XDG_STATE_HOME/recovery/` (when set), then `/var/tmp/recovery-<uid>/`. A fallback's file is
    named after the store and a hash of its absolute path, so two stores never share one."""
    name = f"{store_path.name}-{hashlib.sha256(os.path.realpath(store_path).encode()).hexdigest()[:16]}.spool"
    paths = [spool_path(store_path)]
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):
        paths.append(Path(xdg) / "recovery" / name)
    paths.append(SPOOL_TMP / f"recovery-{os.getuid()}" / name)
    return paths


def private_folder(folder: Path, *, create: bool) -> None:
    """Check (or make, mode 0700) a fallback spool folder: a real folder of this user that no one
    else can open. Raises OSError saying why not, FileNotFoundError when it is missing."""
    if create:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"{folder} is not a folder")
    if st.st_uid != os.getuid():
        raise OSError(errno.EPERM, f"{folder} belongs to uid {st.st_uid}, not {os.getuid()}")
    if st.st_mode & 0o077:
        raise OSError(errno.EPERM, f"{folder} is open to other users (mode {stat.S_IMODE(st.st_mode):o})")


def _frame(e: Event) -> bytes:
    payload = json.dumps(e.to_dict(), sort_keys=True, default=str).encode("ascii")
    return SPOOL_MAGIC + f"{len(payload)} {zlib.crc32(payload):08x}\n".encode() + payload + b"\n"


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_write(path: Path, events: Sequence[Event]) -> None:
    """Append `events` as checksummed records, on disk (fsync; the folder too when the file is
    new) before returning. A write that fails part-way (EFBIG, ENOSPC, EIO) is cut back off and
    raises OSError, so the caller can put the same events elsewhere."""
    buf = b"".join(_frame(e) for e in events)
    while True:
        created = False
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                continue  # a replay claimed and emptied the file while we waited: open the new one
            start = os.fstat(fd).st_size
            try:
                view = memoryview(buf)
                while view:
                    view = view[os.write(fd, view) :]  # a short write (RLIMIT_FSIZE) raises on the next
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    if created:
                        os.unlink(path)  # a writer waiting for the lock sees it gone and opens anew
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                raise
        finally:
            os.close(fd)
        if created:
            _fsync_folder(path.parent)
        return


def _legacy_or_garbage(raw: bytes, pos: int) -> tuple[Event | None, int, str]:
    """A line of the old JSON-lines format at `pos` (or garbage up to the next line or record)."""
    rs = raw.find(_RS, pos)
    nl = raw.find(b"\n", pos)
    end = min(x for x in (rs, nl + 1 if nl >= 0 else -1, len(raw)) if x >= 0)
    line = raw[pos:end]
    if not line.startswith(b"{"):
        return None, end, "not a spool record"
    if not line.endswith(b"\n"):
        return None, end, "a JSON line without its end (torn write)"
    try:
        return Event.from_dict(json.loads(line)), end, ""
    except (ValueError, KeyError, TypeError):
        return None, end, "a JSON line that does not hold an event"


def _record(raw: bytes, pos: int) -> tuple[Event | None, int, str]:
    """The record at `pos` (which starts with SPOOL_MAGIC): the event, where the next one starts, why not."""
    limit = raw.find(_RS, pos + 1)
    limit = len(raw) if limit < 0 else limit
    head_end = raw.find(b"\n", pos, limit)
    if head_end < 0:
        return None, limit, "a record header cut short"
    try:
        length_text, crc_text = raw[pos + len(SPOOL_MAGIC) : head_end].split()
        length, crc = int(length_text), int(crc_text, 16)
    except ValueError:
        return None, limit, "an unreadable record header"
    start, stop = head_end + 1, head_end + 1 + length
    if stop + 1 > limit:
        return None, limit, f"a short record: {max(0, limit - start)} of {length + 1} bytes"
    payload = raw[start:stop]
    if raw[stop : stop + 1] != b"\n" or zlib.crc32(payload) != crc:
        return None, limit, "a record whose checksum does not match"
    try:
        return Event.from_dict(json.loads(payload)), stop + 1, ""
    except (ValueError, KeyError, TypeError):
        return None, limit, "a record that does not hold an event"


def spool_scan(file: Path, *, name: Path | None = None) -> SpoolScan:
    """Every whole record of one spool file in the order written, and every stretch that is not
    one (named `name`, default `file`); the records after a damaged stretch are still read."""
    scan = SpoolScan()
    try:
        raw = file.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return scan
    pos = 0
    while pos < len(raw):
        if raw[pos : pos + 1] in (b"\n", b"\r", b" ", b"\t"):
            pos += 1
            continue
        read = _record if raw.startswith(SPOOL_MAGIC, pos) else _legacy_or_garbage
        e, end, why = read(raw, pos)
        if e is not None:
            scan.events.append(e)
        else:
            last = scan.damaged[-1] if scan.damaged else None
            if last is not None and last.offset + last.bytes == pos:  # one stretch, not one per line
                scan.damaged[-1] = replace(last, bytes=end - last.offset)
            else:
                head = raw[pos : min(end, pos + 80)].decode("utf-8", "replace")
                scan.damaged.append(SpoolDamage(name or file, pos, end - pos, why, head))
        pos = end
    return scan


def spool_read(file: Path) -> list[Event]:
    """The events of one spool file, in the order they were written (damaged stretches left out:
    `spool_scan` names them, and the replay records them as `spool.damaged`)."""
    return spool_scan(file).events


def _location_files(spool: Path, *, fallback: bool) -> list[Path]:
    """One location's files: those a replay claimed and did not finish, then the spool. A fallback
    folder costs one lstat when it does not exist (the usual case)."""
    if fallback:
        try:
            private_folder(spool.parent, create=False)
        except OSError:
            return []  # missing, or not ours: never read events someone else could have written
    files = sorted(spool.parent.glob(glob.escape(spool.name) + ".replaying-*"))
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(spool).st_mode):  # never a link: the writer does not follow one
            files.append(spool)
    return files


def spool_files(spool: Path, locations: Sequence[Path] | None = None) -> list[Path]:
    """Every file spooled for the store whose spool beside it is `spool`, location by location
    (beside the store, then the fallbacks; `locations` when already known): claimed by a replay
    that did not finish, then the spool."""
    if locations is None:
        locations = spool_locations(spool.with_name(spool.name.removesuffix(".spool")))
    return [f for i, loc in enumerate(locations) for f in _location_files(loc, fallback=i > 0)]


def spool_events(files: Sequence[Path]) -> list[Event]:
    """The events of `files`, each file in its own order, merged across files by time."""
    return list(heapq.merge(*(spool_read(f) for f in files), key=lambda e: e.ts))


@dataclass
class SpoolReplay:
    count: int = 0  # spooled events appended
    sources: dict[str, int] = field(default_factory=dict)  # spool file -> events read from it
    damaged: list[SpoolDamage] = field(default_factory=list)


def _claim_name(file: Path) -> Path:
    """The spool a claimed file was written as (`x.spool.replaying-123` -> `x.spool`)."""
    return file.with_name(file.name.split(".replaying-")[0])


def spool_replay_all(
    store: Store, *, now: Callable[[], _dt.datetime] | None = None, locations: Sequence[Path] | None = None
) -> SpoolReplay:
    """Append every spooled event of every location to `store` once, ordered by time, and a
    `spool.damaged` event for each damaged stretch, in one transaction.

    Each spool is renamed before it is read, so two runs never replay the same file; a claimed
    file is read under its lock (a writer that opened it first finishes first); ids already
    stored are skipped, so a crash between commit and unlink replays nothing twice.
    """
    result = SpoolReplay()
    locations = locations or spool_locations(store.path)
    pending: list[Path] = []
    for i, spool in enumerate(locations):
        files = _location_files(spool, fallback=i > 0)
        pending += [f for f in files if f != spool]
        if spool in files:
            claimed = spool.with_name(f"{spool.name}.replaying-{os.getpid()}")
            try:
                os.rename(spool, claimed)
                pending.append(claimed)
            except FileNotFoundError:
                pass  # another run claimed it first
    if not pending:
        return result
    held: list[tuple[Path, int]] = []
    try:
        scans: list[list[Event]] = []
        damage_events: list[Event] = []
        for file in pending:
            try:
                fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            held.append((file, fd))
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            if st.st_nlink == 0:
                continue  # another run replayed it while we waited for its lock
            scan = spool_scan(file, name=_claim_name(file))
            scans.append(scan.events)
            result.sources[str(_claim_name(file))] = result.sources.get(str(_claim_name(file)), 0) + len(scan.events)
            for d in scan.damaged:
                result.damaged.append(d)
                key = f"{file}:{st.st_ino}:{d.offset}:{d.bytes}"
                e = new_event("spool.damaged", None, None, d.data(), ts=format_ts((now or _utcnow)()))
                damage_events.append(replace(e, id=hashlib.sha256(key.encode()).hexdigest()[:32]))
        events = list(heapq.merge(*scans, key=lambda e: e.ts))
        stored = store.append(events + damage_events, skip_known=True)
        damage_ids = {e.id for e in damage_events}
        result.count = sum(1 for e in stored if e.id not in damage_ids)
        for file, _fd in held:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
    finally:
        for _file, fd in held:
            os.close(fd)
    for spool in locations[1:]:
        with contextlib.suppress(OSError):
            spool.parent.rmdir()  # only when empty: the next healthy checks stat it and stop
    return result


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def spool_replay(store: Store) -> int:
    """Append every spooled event to `store` once, in order; return how many were new."""
    return spool_replay_all(store).count


class Recorder:
    """Where one run's events go: the store when it works, else the spool beside it, else a
    fallback spool (`spool_locations`).

    Each event is written as it is emitted (its own short transaction), so a concurrent run sees
    it at once. The audit log never blocks recovery: a store that cannot be opened, written or
    read turns this recorder into a spool writer, and `problem` says why.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 5.0,
        now: Callable[[], _dt.datetime] | None = None,
        group: str | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.spools = spool_locations(path)
        self.spool = self.spools[0]
        self.now = now or _utcnow
        self.store: Store | None = None
        self.problem: str | None = None
        self.spooled = 0
        self.spooled_to: dict[Path, int] = {}  # spool file -> events this run wrote there
        self.spool_failed: list[tuple[Path, str]] = []  # spool files this run could not write, and why
        self.first_spooled: str | None = None  # the id of this run's first spooled event
        self.replayed = 0
        self.replayed_from: dict[str, int] = {}
        self.damaged: list[SpoolDamage] = []  # damaged stretches the replay found (recorded as spool.damaged)
        self.lost: list[Event] = []
        try:
            self.store = Store.open(path, busy_timeout=busy_timeout, group=group)
            replay = spool_replay_all(self.store, now=self.now, locations=self.spools)
            self.replayed, self.replayed_from, self.damaged = replay.count, replay.sources, replay.damaged
        except StoreError as exc:
            self._fail(str(exc))

    def _fail(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem
        if self.store is not None:
            self.store.close()
            self.store = None

    def emit(self, type: str, app: str | None, run_id: str | None, **data: Any) -> Event:
        """Record a new event (checked against the registry) at once."""
        e = new_event(type, app, run_id, data, ts=format_ts(self.now()))
        self._write([e])
        return e

    def _write(self, events: list[Event]) -> None:
        if self.store is not None:
            try:
                self.store.append(events)
                return
            except StoreError as exc:
                self._fail(str(exc))
        # Once a location failed, this run's later events go to the next one (kept together).
        while len(self.spool_failed) < len(self.spools):
            target = self.spools[len(self.spool_failed)]
            try:
                if target != self.spool:
                    private_folder(target.parent, create=True)
                spool_write(target, events)
            except OSError as exc:
                self.spool_failed.append((target, exc.strerror or str(exc)))
                continue
            self.spooled += len(events)
            self.spooled_to[target] = self.spooled_to.get(target, 0) + len(events)
            if self.first_spooled is None:
                self.first_spooled = events[0].id
            return
        self.lost.extend(events)

    def spool_summary(self) -> str:
        """Where this run's events went instead of the store: the spool, a fallback (and why the
        ones before it failed), or lost, naming every location tried and why it failed."""
        failed = dict(self.spool_failed)
        if self.lost:
            tried = ", ".join(f"{p} ({why})" for p, why in self.spool_failed)
            return f"{len(self.lost)} event(s) lost: every spool location failed: {tried}"
        parts = []
        for p in self.spools[: len(self.spool_failed) + 1]:
            n = self.spooled_to.get(p, 0)
            text = f"{n} event(s) spooled to {'the fallback ' if p != self.spool else ''}{p}" if n else f"{p}"
            if p in failed:
                text += f", which then failed ({failed[p]})" if n else f" failed ({failed[p]})"
            if n or p in failed:
                parts.append(text)
        return "; ".join(parts) or "nothing spooled"

    def read(
        self,
        query: Callable[[sqlite3.Connection], T],
        default: T,
        *,
        fatal: bool = True,
        on_error: Callable[[str], None] | None = None,
    ) -> T:
        """`query(conn)` on the store, or `default` when the store is unusable or the query fails.

        A failed query makes the store unusable for the rest of the run (`fatal`), or is only
        handed to `on_error` (a read that must not change the run's verdict).
        """
        if self.store is None:
            return default
        try:
            return query(self.store.conn)
        except (StoreError, sqlite3.Error) as exc:
            text = (
                str(exc)
                if isinstance(exc, StoreError)
                else f"cannot read the event store {self.path}: {_describe(exc)}"
            )
            if fatal:
                self._fail(text)
            elif on_error is not None:
                on_error(text)
        return default

    def read_back(self, query: Callable[[sqlite3.Connection], T], default: T) -> T:
        """`query(conn)` on the store, also when this run cannot write it: a store that another
        process holds locked for writing is still read (read-only, WAL), a garbage one gives `default`."""
        if self.store is not None:
            return self.read(query, default)
        try:
            with Store.open(self.path, busy_timeout=min(1.0, self.busy_timeout), readonly=True) as store:
                return query(store.conn)
        except (StoreError, sqlite3.Error):
            return default

    def since(self, seq: int, app: str | None = None) -> list[Event]:
        """Events after `seq` in the store, then the spooled ones from this run's first spooled
        event on (other runs spool too while the store is unusable: the one-restart guard reads them)."""
        store = self.store
        none: list[Event] = []
        stored = self.read(lambda _conn: store.query(after_seq=seq, app=app), none) if store is not None else none
        if self.first_spooled is None:
            return stored
        spooled = self.spooled_events()
        ids = [e.id for e in spooled]
        start = ids.index(self.first_spooled) if self.first_spooled in ids else len(ids)
        return stored + [e for e in spooled[start:] if app is None or e.app == app]

    def spooled_events(self, app: str | None = None) -> list[Event]:
        """The events in every spool location (not in the store yet), oldest first; of `app` only
        when given. Without a spool (the usual case, on every check) a listing of the store's
        folder and an lstat of each fallback folder."""
        events = spool_events(spool_files(self.spool, self.spools))
        return [e for e in events if app is None or e.app == app]

    def last_seq(self) -> int:
        store = self.store
        return self.read(lambda _conn: store.last_seq(), 0) if store is not None else 0

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
