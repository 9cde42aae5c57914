"""Opening the store for commands that only read it (status, report, why, serve), also where it is read-only.

A store this process can write is folded in place, as always. A store on a read-only folder or
filesystem is opened read-only (an immutable snapshot when SQLite cannot create its SHM file
there); when its projections are behind its events they are folded into a temporary copy, and
the answer comes from that copy: nothing is written beside the store. `Store.note` says which.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from . import projections, segments
from .errors import StoreError
from .store import IMMUTABLE_NOTE, Store, _describe

COPY_NOTE = (
    "its projections were behind its events: they were folded into a temporary copy for this answer"
    " (nothing was written beside the store)"
)


def writable(path: Path) -> bool:
    """Whether this process may write the store and create files beside it (a read-only
    filesystem says no here, as does a folder or file this user may not write)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def open_folded(path: str | Path, busy_timeout: float = 5.0) -> Store:
    """An existing store with its projections up to date; read-only when it cannot be written."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no event store at {path} (a `recovery check` run creates it)")
    if writable(path):
        store = Store.open(path, busy_timeout=busy_timeout)
        try:
            projections.fold(store.conn)
        except BaseException:
            store.close()
            raise
        return store
    store = Store.open(path, busy_timeout=busy_timeout, readonly=True)
    notes = [IMMUTABLE_NOTE] if store.immutable else []
    try:
        behind = stale(store.conn)
        if behind:
            copy = folded_copy(store)
            store.close()
            store = copy
            notes.append(COPY_NOTE)
    except BaseException:
        store.close()
        raise
    store.note = "; ".join(notes) or None
    return store


def stale(conn: sqlite3.Connection) -> bool:
    """Whether the projections miss events, or come from another fold version."""
    try:
        row = conn.execute("SELECT last_seq, version FROM projection_meta WHERE name = 'events'").fetchone()
    except sqlite3.OperationalError:
        return True  # no projections at all
    try:
        last = conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the event store: {_describe(exc)}") from exc
    return row is None or row[1] != projections.VERSION or row[0] < last


class CopyStore(Store):
    """A folded temporary copy of a read-only store; closing it removes the copy."""

    folder: Path

    def conn_path(self) -> Path:
        """The temporary copy's file."""
        return self.folder / self.path.name

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.folder, ignore_errors=True)


def folded_copy(store: Store) -> Store:
    """Copy `store` into a temporary folder (with links to its segments) and fold the copy."""
    folder = Path(tempfile.mkdtemp(prefix="recovery-readonly-"))
    target = folder / store.path.name
    try:
        dst = sqlite3.connect(target)
        try:
            store.conn.backup(dst)
        finally:
            dst.close()
        for seg in segments.files(store.path):
            (folder / seg.name).symlink_to(seg.resolve())
        conn = Store.open(target).conn
    except (OSError, sqlite3.Error, StoreError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise StoreError(
            f"{store.path} is read-only here, and a temporary copy to fold it could not be made: {why}"
        ) from exc
    copy = CopyStore(store.path, conn)
    copy.folder = folder
    try:
        projections.fold(conn)
    except BaseException:
        copy.close()
        raise
    return copy
