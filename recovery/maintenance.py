"""Operator actions that are only events: pausing recovery for a deploy, and resuming it.

Both raise StoreError when the store cannot be read or written.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import sqlite3
import uuid
from dataclasses import dataclass

from . import projections
from .errors import StoreError
from .events import new as new_event
from .store import Store


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class Outcome:
    app: str
    message: str


def pause(store: Store, app: str, *, seconds: float, reason: str, now: _dt.datetime | None = None) -> Outcome:
    """Record `maintenance.started`: until it ends, probes are recorded but nothing is restarted."""
    now = now or _dt.datetime.now(_dt.UTC)
    until = projections.format_ts(now + _dt.timedelta(seconds=seconds))
    run_id = uuid.uuid4().hex
    store.append([new_event("maintenance.started", app, run_id, {"until": until, "reason": reason, "by": _who()})])
    projections.fold(store.conn)
    return Outcome(app, f"{app} paused until {until} ({reason}): probes go on, restarts do not")


def resume(store: Store, app: str, *, reason: str) -> Outcome:
    """End a pause and lift a restart-loop suspension, whichever is in force. Raises StoreError."""
    projections.fold(store.conn)
    try:
        row = store.conn.execute("SELECT paused_until, suspended_at FROM app_state WHERE app = ?", (app,)).fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the state of {app} in {store.path}: {exc}") from exc
    paused_until, suspended_at = row if row else (None, None)
    now = projections.format_ts(_dt.datetime.now(_dt.UTC))
    run_id = uuid.uuid4().hex
    events, done = [], []
    if paused_until and paused_until > now:
        events.append(new_event("maintenance.ended", app, run_id, {"reason": reason, "by": _who()}))
        done.append("pause ended")
    if suspended_at:
        events.append(
            new_event("suspension.lifted", app, run_id, {"reason": reason, "by": _who(), "since": suspended_at})
        )
        done.append("restart-loop suspension lifted")
    if not events:
        return Outcome(app, f"{app} was neither paused nor suspended; nothing to resume")
    store.append(events)
    projections.fold(store.conn)
    return Outcome(app, f"{app}: {' and '.join(done)}; restarts are allowed again")
