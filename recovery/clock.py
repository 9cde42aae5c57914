"""One clock: wall time for records, a monotonic clock for durations, and sleep.

A check run takes its clock as an argument, so the tests of the check flow use `FakeClock`
(sleeping advances it) and run in milliseconds with no real waits.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> _dt.datetime:
        """The wall time, UTC, for timestamps and for the policy's `now`."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, for durations and deadlines."""
        ...

    def sleep(self, seconds: float) -> None: ...


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class SystemClock:
    """The real clock."""

    def now(self) -> _dt.datetime:
        return utc_now()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to, or when something sleeps on it."""

    def __init__(self, start: _dt.datetime | None = None) -> None:
        self.start = start or _dt.datetime(2026, 12, 1, 12, 0, tzinfo=_dt.UTC)
        self.elapsed = 0.0
        self.slept: list[float] = []

    def now(self) -> _dt.datetime:
        return self.start + _dt.timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.elapsed += max(0.0, seconds)
