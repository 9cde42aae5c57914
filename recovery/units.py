"""Units: times, durations, ages, counts, sizes and short text, read and written one way everywhere.

Pure: the pure core (policy, hints) formats with these, so this module imports nothing that does I/O.
"""

from __future__ import annotations

import datetime as _dt
import math
import re

MB = 1048576

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)\s*")
# One number and unit, or several from the largest unit down as every duration is printed
# (`1h30m`, `4m51s`, `1d02h`), so any duration the tool prints can be given back to it.
_DURATION = re.compile(rf"[+-]?\s*(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+")
_ORDER = ("d", "h", "m", "s", "ms")
_DURATION_HINT = "use 500ms, 30s, 5m, 1h, 7d, 1h30m"
# The longest duration accepted anywhere (100 years): every duration is added to or taken from a
# date, and a datetime ends at year 9999; `3000000d` used to pass validation and then crash every run.
MAX_DURATION_S = 36500 * 86400.0


class DurationTooLong(ValueError):
    """A well-formed duration longer than MAX_DURATION_S."""


def parse_duration(value: str | int | float) -> float:
    "Seconds in `value`: '500ms', '30s', '5m', '1h', '7d', '1.5s', or a bare number of seconds."
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
    if isinstance(value, str):
        text = value.strip()
        if _DURATION.fullmatch(text) is None:
            raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
        parts = _PART.findall(text.lstrip("+-").strip())
        ranks = [_ORDER.index(unit) for _, unit in parts]
        if any(b <= a for a, b in zip(ranks, ranks[1:])):
            raise ValueError(f"bad duration {value!r}: units from the largest down, each once, as in 1h30m or 4m51s")
        seconds = sum(float(n) * _UNITS[unit] for n, unit in parts) * (-1 if text.startswith("-") else 1)
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
    if seconds < 0:
        raise ValueError(f"bad duration {value!r}: must not be negative")
    if seconds > MAX_DURATION_S:
        raise DurationTooLong(f"duration {value!r} is too long: at most 36500d (100 years)")
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
    if decimals and round(seconds, 1) < 60:
        return f"{round(seconds, 1):.1f}s"
    s = round(seconds)  # to the nearest second, then cut to the units shown: 479.6 is 8m00s, never 7m60s
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def period_label(seconds: float) -> str:
    """'7 days', '24 hours', '3d04h': how long a period is, for 'vs the previous …'."""
    s = round(seconds)
    if s >= 2 * 86400 and s % 86400 == 0:
        return f"{s // 86400} days"
    if s % 3600 == 0 and s:
        return "hour" if s == 3600 else f"{s // 3600} hours"
    return span(s)


# -- timestamps ----------------------------------------------------------------------------------
# The one stored form of a time; recovery.events re-exports it.


def format_ts(when: _dt.datetime) -> str:
    """The one stored form of a time: ISO 8601 UTC with milliseconds, e.g. 2026-11-28T14:42:15.123Z."""
    when = when.astimezone(_dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def shown_ts(ts: str | None, *, ms: bool = False) -> str:
    """The one way a time is shown to people: ISO 8601 in UTC to the second,
    '2026-12-02T10:03:09Z' ('.011' kept with `ms`, for events close together); '-' for None."""
    if not ts:
        return "-"
    if len(ts) < 19:  # not a stored timestamp: as it is
        return ts
    if ms and len(ts) > 19 and ts[19] == ".":
        return ts[:23] + "Z"
    return ts[:19] + "Z"


def parse_ts(text: str) -> _dt.datetime:
    """A stored timestamp as an aware datetime."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def next_hour(ts: str) -> str:
    """The UTC hour after the one `ts` (a timestamp, or an hour 2026-11-28T14) falls in: '2026-11-28T15'."""
    start = _dt.datetime.strptime(ts[:13], "%Y-%m-%dT%H").replace(tzinfo=_dt.UTC)
    return (start + _dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H")


def earlier(now: _dt.datetime, seconds: float) -> str:
    """The timestamp `seconds` before `now`: the lower bound of a 'since' query."""
    return format_ts(now - _dt.timedelta(seconds=seconds))


def age(now: _dt.datetime, ts: str) -> float:
    """Seconds from the timestamp `ts` to `now` (negative when `ts` lies ahead)."""
    return (now - parse_ts(ts)).total_seconds()


def ago(now: _dt.datetime, ts: str | None) -> str:
    """'7m59s ago', or '-' without a timestamp."""
    return f"{span(age(now, ts))} ago" if ts else "-"


# -- counts, sizes, shares, text -------------------------------------------------------------------


def times(n: int) -> str:
    """'once', 'twice', '3 times'."""
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def mb(n_bytes: float, decimals: int = 0) -> str:
    """Bytes in MiB, written '60MB' (or '60.5MB' with `decimals`)."""
    return f"{n_bytes / MB:.{decimals}f}MB"


def percent(p: float | None) -> str:
    """Rounded down to two decimals, so 99.899 never reads as 99.9; '-' for None."""
    if p is None:
        return "-"
    return f"{math.floor(p * 100) / 100:.2f}".rstrip("0").rstrip(".")


def one_line(text: str | None, width: int = 160) -> str:
    """`text` on one line, whitespace runs collapsed, cut to `width` with an ellipsis."""
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"
