"""Small statistics the reports and the hints share: a fitted line, tail probabilities, times of day. Pure."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (a, b, r²)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    syy = sum((y - my) ** 2 for _, y in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    if sxx <= 0:
        return my, 0.0, 0.0
    b = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 0.0
    return my - b * mx, b, r2


def binomial_tail(n: int, k: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), in log space so that thousands of incidents do not overflow."""
    lp, lq, top = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(top - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
        total += term
        if i > n * p and term < 1e-12 * total:
            break  # past the mode the terms only shrink
    return min(1.0, total)


def unlikely_count(n: int, expected: float, alpha: float = 0.01) -> bool:
    """`n` events where `expected` were due: a spike, not chance, when a Poisson count that large
    has probability under `alpha`. Two at least."""
    if n < 2:
        return False
    term = total = math.exp(-expected)
    for k in range(1, n):
        term *= expected / k
        total += term
    return 1 - total < alpha


DAY_S = 86400


@dataclass(frozen=True)
class TimeOfDayCluster:
    """Incident starts that fall at the same time of day on several days."""

    first_s: int  # its earliest start, in seconds after midnight UTC (first_s > last_s: it spans midnight)
    last_s: int  # its latest start, the same way
    days: int  # how many different days it has starts on
    members: tuple[int, ...]  # indices into the starts given

    def clock(self) -> str:
        """'at 03:10 UTC' or 'between 02:56 and 03:04 UTC'."""
        first, last = _hhmm(self.first_s), _hhmm(self.last_s)
        return f"at {first} UTC" if first == last else f"between {first} and {last} UTC"

    def hours(self) -> list[int]:
        """The UTC hours of the day it touches, in order from its first start (wrapping at midnight)."""
        span = (self.last_s - self.first_s) % DAY_S
        first = self.first_s // 3600
        return [(first + k) % 24 for k in range((self.first_s % 3600 + span) // 3600 + 1)]


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def time_of_day_clusters(
    starts: list[str], *, window_s: int = 3600, min_days: int = 3, alpha: float = 0.01
) -> list[TimeOfDayCluster]:
    """Times of day at which incidents began on far more different days than chance would give.

    A window of `window_s` slides over the time of day (wrapping across midnight, so 23:50 and
    00:10 are 20 minutes apart). What counts is days, not incidents: a burst of incidents on one
    day is one day. A window stands out when it holds starts on at least `min_days` days and, were
    the days' starts spread evenly over the day, one of the day's 86400/`window_s` windows would
    hold that many with probability under `alpha`. The best window is taken, its starts set
    aside, and the rest searched again.
    """
    points = []
    for i, ts in enumerate(starts):
        t = _dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(_dt.UTC)
        points.append((t.hour * 3600 + t.minute * 60 + t.second, t.date().toordinal(), i))
    n_days = len({day for _, day, _ in points})
    if n_days < min_days:
        return []
    chance, windows = window_s / DAY_S, DAY_S / window_s
    left = sorted(points)
    found = []
    while left:
        best: tuple[int, int, int, list[tuple[int, int, int]]] | None = None  # (days, -span, first, members)
        for tod, _, _ in left:
            members = [q for q in left if (q[0] - tod) % DAY_S < window_s]
            days = len({q[1] for q in members})
            span = max((q[0] - tod) % DAY_S for q in members)
            if best is None or (days, -span) > best[:2]:
                best = (days, -span, tod, members)
        assert best is not None
        days, span, first, members = best
        if days < min_days or windows * binomial_tail(n_days, days, chance) >= alpha:
            break
        found.append(TimeOfDayCluster(first, (first - span) % DAY_S, days, tuple(sorted(q[2] for q in members))))
        left = [q for q in left if q not in members]
    return found
