"""Small statistics the reports and the hints share: a fitted line, tail probabilities, busy hours. Pure."""

from __future__ import annotations

import math
from collections import Counter


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


def clustered_hours(starts: list[str], alpha: float = 0.01) -> list[tuple[int, int, int]]:
    """UTC hours of the day that hold far more incident starts than chance would, as (first, last, count).

    An hour stands out when at least 3 incidents began in it and, were starts spread evenly over
    the day, 24 hours would give that many in any one of them with probability under `alpha`.
    Neighbouring hours that stand out are joined (02:00 to 04:00).
    """
    n = len(starts)
    if n < 3:
        return []
    counts = Counter(int(ts[11:13]) for ts in starts)
    hot = sorted(h for h, c in counts.items() if c >= 3 and 24 * binomial_tail(n, c, 1 / 24) < alpha)
    runs: list[list[int]] = []
    for h in hot:
        if runs and runs[-1][-1] == h - 1:
            runs[-1].append(h)
        else:
            runs.append([h])
    return [(r[0], r[-1], sum(counts[h] for h in r)) for r in runs]
