"""Reading the record: time filters and human formatting of events."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from .config import parse_duration
from .events import Event

# Shown first, in this order, when an event is printed as text; the rest follow sorted.
_LEADING = ("action", "reason", "attempt", "phase", "error", "status", "latency_ms", "pid", "memory", "by", "command",
            "exit_code", "duration_ms", "attempts", "seconds", "outcome", "code")  # fmt: skip


def since_to_ts(text: str, now: _dt.datetime | None = None) -> str:
    """`1h`, `7d` (ago) or an ISO time, as an event timestamp bound."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    try:
        seconds = parse_duration(text)
    except ValueError:
        try:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("use a duration such as 30m, 1h, 7d, or an ISO time such as 2026-11-28T03:00") from None
        if when.tzinfo is None:
            when = when.astimezone()  # a naive time is the operator's local time
    else:
        when = now - _dt.timedelta(seconds=seconds)
    when = when.astimezone(_dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    if isinstance(v, dict):
        return "{" + " ".join(f"{k}={_value(x)}" for k, x in v.items()) + "}"
    text = str(v)
    return f'"{text}"' if (" " in text or not text) else text


def _field(key: str, v: Any) -> str:
    if key == "command" and isinstance(v, list):
        return _value(" ".join(str(x) for x in v))
    if key == "memory" and isinstance(v, int):
        return f"{v / 1048576:.1f}MB"
    return _value(v)


def format_event(e: Event) -> str:
    """One line: time, seq, app, type, then the data as key=value."""
    keys = [k for k in _LEADING if k in e.data] + sorted(k for k in e.data if k not in _LEADING)
    fields = " ".join(
        f"{k}={_field(k, e.data[k])}" for k in keys if e.data[k] not in (None, "", [], {}) and k != "inputs"
    )
    ts = e.ts.replace("T", " ").rstrip("Z")
    return f"{ts}  #{e.seq:<6} {(e.app or '-'):<12} {e.type:<20} {fields}".rstrip()
