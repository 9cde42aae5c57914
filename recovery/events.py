"""Events: immutable, past-tense facts (`noun.verb-ed`) with a registry of known types."""

from __future__ import annotations

import datetime as _dt
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from .units import format_ts, parse_ts

__all__ = ["REGISTRY", "TYPES", "Event", "EventError", "EventType", "format_ts", "new", "now_ts", "parse_ts"]


class EventError(TypeError):
    """A programming error: an event of an unknown type, or without a field its type requires."""


@dataclass(frozen=True)
class EventType:
    """One kind of fact: its name (`noun.verb-ed`), what it means, and the data it must carry."""

    name: str
    meaning: str
    required: tuple[str, ...] = ()


def _types(*specs: tuple[str, str, tuple[str, ...]]) -> dict[str, EventType]:
    return {name: EventType(name, meaning, required) for name, meaning, required in specs}


# The registry: every event written is checked against it (`new`); `recovery events --type`,
# the README and the Datasette metadata describe the same types.
REGISTRY: dict[str, EventType] = _types(
    ("check.started", "a check run began (trigger, apps, dry_run)", ("trigger", "apps", "dry_run")),
    ("check.finished", "a check run ended (outcome, exit code, duration)", ("outcome", "code", "duration_ms")),
    (
        "probe.succeeded",
        "an HTTP attempt got an expected status (url, attempt, status, latency_ms)",
        ("url", "attempt", "latency_ms", "phase"),
    ),
    (
        "probe.failed",
        "an HTTP attempt failed (url, attempt, error kind, status, latency_ms)",
        ("url", "attempt", "latency_ms", "error", "phase"),
    ),
    (
        "probe.batched",
        "a steady healthy stretch under `recovery watch`: each check probe's time offset and latency,"
        " one event per app per minute (url, start, at_ms, latency_ms, status, pid)",
        ("url", "start", "at_ms", "latency_ms", "phase"),
    ),
    (
        "process.sampled",
        "PM2's view of the process (pid, status, memory, cpu, restart_time, heap, event-loop latency)",
        ("source",),
    ),
    (
        "process.restarted",
        "PM2 restarted the app on its own (count, cause: memory limit, crash or unknown, evidence)",
        ("count", "cause"),
    ),
    (
        "host.sampled",
        "the host's memory and load averages, at most once a minute (mem_total, mem_available, load1)",
        (),
    ),
    (
        "decision.made",
        "what the policy chose (action, machine code, reason, state, inputs)",
        ("action", "code", "reason", "state", "inputs"),
    ),
    (
        "restart.requested",
        "this tool asked PM2 to restart the app (by, code, reason, command)",
        ("by", "code", "reason", "command"),
    ),
    ("restart.succeeded", "the PM2 command exited 0 (exit_code, duration_ms)", ("command", "exit_code")),
    ("restart.failed", "the PM2 command failed (exit_code, stderr_tail, duration_ms)", ("command", "exit_code")),
    ("verification.passed", "the app answered after a restart (attempts, seconds)", ("attempts", "seconds")),
    (
        "verification.failed",
        "the app did not answer within verify_timeout (attempts, last error)",
        ("attempts", "seconds", "last_error"),
    ),
    (
        "spool.replayed",
        "events written to the spool while the store was unusable were appended",
        ("count", "spool"),
    ),
    (
        "spool.damaged",
        "a stretch of a spool file was not a whole record (torn or short write, bad checksum): its"
        " events are lost (file, offset, bytes, why, head)",
        ("file", "offset", "bytes", "why"),
    ),
    (
        "store.archived",
        "old raw events were moved into a sealed segment file by `recovery archive` (segment, months,"
        " events, first_seq, last_seq, last_hash)",
        ("segment", "months", "events", "first_seq", "last_seq", "last_hash"),
    ),
    ("maintenance.started", "an operator paused recovery for the app (until, reason, by)", ("until", "reason", "by")),
    ("maintenance.ended", "an operator resumed recovery for the app (reason, by)", ("reason", "by")),
    ("suspension.lifted", "an operator lifted a restart-loop suspension (reason, by)", ("reason", "by")),
    (
        "alert.sent",
        "an alert reached a channel (kind, key, incident, channel redacted, attempt)",
        ("kind", "channel", "attempt"),
    ),
    (
        "alert.failed",
        "an alert attempt failed (kind, key, incident, channel redacted, attempt, error); owed ones are retried next run",
        ("kind", "error"),
    ),
    (
        "channel.added",
        "an alert channel was seen for the first time; incidents that ended before `since` are not sent to it",
        ("channel", "channel_id", "since"),
    ),
    ("heartbeat.sent", "the dead-man's-switch URL was pinged after a run (ok or fail, status)", ("outcome", "url")),
    ("heartbeat.failed", "the heartbeat ping failed (error); the next run pings again", ("outcome", "url", "error")),
    (
        "log.ingested",
        "PM2 log lines were read into log_entries (files, offsets, entries, new templates)",
        ("entries", "files"),
    ),
    ("log.failed", "log ingestion during a check could not run (error); the check itself is unaffected", ("error",)),
    (
        "log.pruned",
        "raw log entries older than a cut-off were deleted, by a recorded step (before, entries)",
        ("before", "entries"),
    ),
)
# type -> one-line meaning, for `recovery events --type` and the docs.
TYPES: dict[str, str] = {name: t.meaning for name, t in REGISTRY.items()}


def now_ts() -> str:
    """The current time as an event timestamp."""
    return format_ts(_dt.datetime.now(_dt.UTC))


# The machine's name as `hostname` prints it (os.uname: no socket module on the pure path).
_HOST = os.uname().nodename


@dataclass(frozen=True)
class Event:
    """One fact. `seq`, `prev_hash` and `hash` are set by the store when it is appended."""

    type: str
    app: str | None
    run_id: str | None
    data: dict[str, Any] = field(default_factory=dict)
    ts: str = field(default_factory=now_ts)
    host: str = _HOST
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

    def data_json(self) -> str:
        return json.dumps(self.data, sort_keys=True, separators=(",", ":"), default=str)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "seq": self.seq,
            "id": self.id,
            "ts": self.ts,
            "host": self.host,
            "app": self.app,
            "type": self.type,
            "run_id": self.run_id,
            "data": self.data,
        }
        if self.hash is not None:
            d["prev_hash"] = self.prev_hash
            d["hash"] = self.hash
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        data = d.get("data") or {}
        if isinstance(data, str):
            data = json.loads(data)
        return cls(
            type=d["type"],
            app=d.get("app"),
            run_id=d.get("run_id"),
            data=data,
            ts=d["ts"],
            host=d.get("host") or _HOST,
            id=d["id"],
            seq=d.get("seq"),
            prev_hash=d.get("prev_hash"),
            hash=d.get("hash"),
        )


def new(
    type: str, app: str | None, run_id: str | None, data: dict[str, Any] | None = None, *, ts: str | None = None
) -> Event:
    """A new event of a registered type, checked: an unknown type or a missing field raises `EventError`."""
    spec = REGISTRY.get(type)
    if spec is None:
        raise EventError(f"unknown event type {type!r} (not in recovery.events.REGISTRY)")
    data = dict(data or {})
    missing = [k for k in spec.required if k not in data]
    if missing:
        raise EventError(f"event {type!r} lacks {', '.join(missing)}")
    return Event(type=type, app=app, run_id=run_id, data=data, ts=ts or now_ts())
