"""Units: durations, ages and sizes, read and written one way everywhere."""

from __future__ import annotations

import datetime as _dt
import math
import re

from .events import format_ts

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h|d)")
_DURATION_HINT = "use 500ms, 30s, 5m, 1h, 7d"


def parse_duration(value: str | int | float) -> float:
    "Seconds in `value`: '500ms', '30s', '5m', '1h', '7d', '1.5s', or a bare number of seconds."
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
    if seconds < 0:
        raise ValueError(f"bad duration {value!r}: must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    "The shortest way to write `seconds` that `parse_duration` reads back: 0.5 -> '500ms', 300 -> '5m'."
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNITS[unit]
        if count >= 1 and abs(count - round(count)) < 1e-9 * count:
            return f"{round(count)}{unit}"
    unit = "s" if seconds >= 1 else "ms"  # 1.5s, not 1500ms
    count = seconds / _UNITS[unit]
    text = f"{count:.3f}".rstrip("0").rstrip(".")
    return f"{text if text != '0' else f'{count:.3g}'}{unit}"


def span(seconds: float | None, *, decimals: bool = False) -> str:
    """45s, 1m03s, 2h03m, 1d02h; with `decimals`, 2.1s under a minute."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if decimals else f"{seconds:.0f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def ago(now: _dt.datetime, seconds: float) -> str:
    """The event timestamp `seconds` before `now` (a bound for queries over the record)."""
    return format_ts(now - _dt.timedelta(seconds=seconds))
