"""Events: immutable, past-tense facts (`noun.verb-ed`) with a registry of known types."""

from __future__ import annotations

import datetime as _dt
import json
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

# type -> one-line meaning; `recovery events --type` and the docs read this.
TYPES: dict[str, str] = {
    "check.started": "a check run began (trigger, apps, dry_run)",
    "check.finished": "a check run ended (outcome, exit code, duration)",
    "probe.succeeded": "an HTTP attempt got an expected status (url, attempt, status, latency_ms)",
    "probe.failed": "an HTTP attempt failed (url, attempt, error kind, status, latency_ms)",
    "process.sampled": "PM2's view of the process (pid, status, memory, cpu, restart_time, heap, event-loop latency)",
    "process.restarted": "PM2 restarted the app on its own (count, cause: memory limit, crash or unknown, evidence)",
    "host.sampled": "the host's memory and load averages, at most once a minute (mem_total, mem_available, load1)",
    "decision.made": "what the policy chose (action, reason, inputs)",
    "restart.requested": "this tool asked PM2 to restart the app (by, reason, command)",
    "restart.succeeded": "the PM2 command exited 0 (exit_code, duration_ms)",
    "restart.failed": "the PM2 command failed (exit_code, stderr_tail, duration_ms)",
    "verification.passed": "the app answered after a restart (attempts, seconds)",
    "verification.failed": "the app did not answer within verify_timeout (attempts, last error)",
    "spool.replayed": "events written to the spool while the store was unusable were appended",
    "maintenance.started": "an operator paused recovery for the app (until, reason, by)",
    "maintenance.ended": "an operator resumed recovery for the app (reason, by)",
    "suspension.lifted": "an operator lifted a restart-loop suspension (reason, by)",
    "alert.sent": "an alert reached a channel (kind, key, incident, channel redacted, attempt)",
    "alert.failed": "an alert attempt failed (kind, key, incident, channel redacted, attempt, error); owed ones are retried next run",
    "heartbeat.sent": "the dead-man's-switch URL was pinged after a run (ok or fail, status)",
    "heartbeat.failed": "the heartbeat ping failed (error); the next run pings again",
    "log.ingested": "PM2 log lines were read into log_entries (files, offsets, entries, new templates)",
    "log.failed": "log ingestion during a check could not run (error); the check itself is unaffected",
    "log.pruned": "raw log entries older than a cut-off were deleted, by a recorded step (before, entries)",
}


def format_ts(when: _dt.datetime) -> str:
    """The one stored form of a time: ISO 8601 UTC with milliseconds, e.g. 2026-11-28T14:42:15.123Z.

    Strings in this form compare as the times they stand for, so SQL can range over them.
    """
    when = when.astimezone(_dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def utc_now() -> str:
    """The current time as an event timestamp."""
    return format_ts(_dt.datetime.now(_dt.UTC))


def parse_ts(text: str) -> _dt.datetime:
    """Parse an event timestamp back into an aware datetime."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


_HOST = socket.gethostname()


@dataclass(frozen=True)
class Event:
    """One fact. `seq`, `prev_hash` and `hash` are set by the store when it is appended."""

    type: str
    app: str | None
    run_id: str | None
    data: dict[str, Any] = field(default_factory=dict)
    ts: str = field(default_factory=utc_now)
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
