"""A mergeable latency sketch with a bounded relative error (DDSketch-style log buckets). Pure.

A value x > 0 falls in bucket k = ceil(log(x) / log(gamma)), gamma = (1 + a) / (1 - a); the
bucket's value 2 * gamma**k / (gamma + 1) is within `a` (RELATIVE_ERROR) of every x in it. So a
quantile read from the sketch is within `a` of a value of that rank, and sketches of minutes,
hours or days merge by adding counts: a year of latencies costs a few hundred numbers, not
millions of probes.

Encoding (`to_json`): a flat JSON array [zero, k1, n1, d2, n2, d3, n3, ...]: the count of values
<= MIN_VALUE (0 ms), then the first bucket's key and count, then each next bucket as its distance
from the previous key and its count. An hour of 1,800 probes takes a few hundred bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from itertools import accumulate

RELATIVE_ERROR = 0.005  # half of the 1 % the report promises
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-3  # ms; at or below it a value counts as 0
ZERO = "z"


def key(value: float) -> int | str:
    """The bucket of `value`: an int, or ZERO for values at or below MIN_VALUE."""
    if not value > MIN_VALUE:  # also NaN
        return ZERO
    return math.ceil(math.log(value) / _LOG_GAMMA)


def value(k: int | str) -> float:
    """The representative value of bucket `k` (0 for ZERO)."""
    if k == ZERO:
        return 0.0
    return 2 * GAMMA ** int(k) / (GAMMA + 1)


class Sketch:
    """Counts per log bucket. `add`, `merge`, `quantile`; `to_json` / `from_json` to store it."""

    __slots__ = ("counts",)

    def __init__(self, counts: dict[int | str, int] | None = None) -> None:
        self.counts: dict[int | str, int] = counts if counts is not None else {}

    def add(self, x: float, n: int = 1) -> None:
        k = key(x)
        self.counts[k] = self.counts.get(k, 0) + n

    def extend(self, xs: Iterable[float]) -> None:
        counts = self.counts
        for x in xs:
            k = key(x)
            counts[k] = counts.get(k, 0) + 1

    def merge(self, other: Sketch) -> Sketch:
        counts = self.counts
        for k, n in other.counts.items():
            counts[k] = counts.get(k, 0) + n
        return self

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        """The value at quantile `q` (0..1), within RELATIVE_ERROR; None when empty."""
        total = self.count
        if not total:
            return None
        rank = max(0.0, min(1.0, q)) * (total - 1)
        seen = self.counts.get(ZERO, 0)
        if seen > rank:
            return 0.0
        ints = sorted(k for k in self.counts if k != ZERO)
        for k in ints:
            seen += self.counts[k]
            if seen > rank:
                return value(k)
        return value(ints[-1])

    def to_json(self) -> str:
        out = [self.counts.get(ZERO, 0)]
        prev = 0
        for k in sorted(k for k in self.counts if k != ZERO):
            n = self.counts[k]
            if n:
                out += (int(k) - prev, n)
                prev = int(k)
        return json.dumps(out, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Sketch:
        sk = cls()
        if text:
            _add(sk.counts, json.loads(text))
        return sk

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sketch) and {k: n for k, n in self.counts.items() if n} == {
            k: n for k, n in other.counts.items() if n
        }

    def __repr__(self) -> str:
        return f"Sketch({self.to_json()})"


def _add(counts: dict[int | str, int], items: list[int]) -> None:
    if items and items[0]:
        counts[ZERO] = counts.get(ZERO, 0) + items[0]
    get = counts.get
    for k, n in zip(accumulate(items[1::2]), items[2::2]):  # keys are running sums of the distances
        counts[k] = get(k, 0) + n


def merged(texts: Iterable[str | None]) -> Sketch:
    """One sketch from many stored ones (`to_json` texts)."""
    sk = Sketch()
    for text in texts:
        if text and text != "[0]":
            _add(sk.counts, json.loads(text))
    return sk
