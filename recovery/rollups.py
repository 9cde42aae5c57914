"""Rollups: per app and UTC minute, hour and day, the check probes, failures, seconds up, down and
unobserved, and a latency sketch. Written by the fold (projections.Folder), read by `report`.

Minute rows are kept for MINUTE_KEEP_S behind the newest event folded (a report's edges within
that period are exact to the minute; older edges fall on whole hours); hour and day rows stay.
A report over a year reads ~365 day rows, the edge hours and minutes: its cost does not grow with
the raw history.
"""

from __future__ import annotations

import datetime as _dt
import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from .model import MAX_GAP_S
from .sketch import Sketch, key, merged
from .units import parse_ts

LEVELS = ("rollup_minute", "rollup_hour", "rollup_day")
PREFIX = {"rollup_minute": 16, "rollup_hour": 13, "rollup_day": 10}  # a row's `start` is a ts prefix
MINUTE_KEEP_S = 2 * 86400.0
UP, DOWN, UNOBSERVED = 2, 3, 4  # indexes in a row: [probes, failures, up_s, down_s, unobserved_s, counts]


def epoch(ts: str) -> float:
    return parse_ts(ts).timestamp()


class Rollups:
    """The rows a fold batch touches, loaded on first use and written by `save`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.rows: dict[tuple[str, str, str], list[Any]] = {}
        self.frontier: dict[tuple[str, str], str] = {}  # (level, app) -> the newest start stored
        self.names: dict[int, str] = {}  # minute index -> 'YYYY-MM-DDTHH:MM'
        self.latest = ""  # the newest ts folded, for pruning minute rows

    def minute_name(self, m: int) -> str:
        name = self.names.get(m)
        if name is None:
            name = _dt.datetime.fromtimestamp(m * 60, _dt.UTC).strftime("%Y-%m-%dT%H:%M")
            if len(self.names) > 4096:
                self.names.clear()
            self.names[m] = name
        return name

    def row(self, level: str, app: str, start: str) -> list[Any]:
        k = (level, app, start)
        r = self.rows.get(k)
        if r is not None:
            return r
        edge = self.frontier.get((level, app))
        if edge is None:
            got = self.conn.execute(f"SELECT max(start) FROM {level} WHERE app = ?", (app,)).fetchone()[0]
            edge = self.frontier[(level, app)] = got or ""
        found = None
        if start <= edge:
            found = self.conn.execute(
                f"SELECT probes, failures, up_s, down_s, unobserved_s, latency FROM {level} WHERE app = ? AND start = ?",
                (app, start),
            ).fetchone()
        if found:
            r = [*found[:5], Sketch.from_json(found[5]).counts]
        else:
            r = [0, 0, 0.0, 0.0, 0.0, {}]
        self.rows[k] = r
        return r

    def rows_of(self, app: str, minute: str) -> tuple[list[Any], list[Any], list[Any]]:
        return (
            self.row("rollup_minute", app, minute),
            self.row("rollup_hour", app, minute[:13]),
            self.row("rollup_day", app, minute[:10]),
        )

    def probe(self, app: str, ts: str, ok: bool, latency_ms: float | None) -> None:
        """One check probe, counted in the minute (hour, day) of `ts`."""
        k = key(float(latency_ms)) if ok and latency_ms is not None else None
        for r in self.rows_of(app, ts[:16]):
            r[0] += 1
            if not ok:
                r[1] += 1
            elif k is not None:
                r[5][k] = r[5].get(k, 0) + 1

    def probes(self, app: str, times: list[float], latencies: list[float]) -> None:
        """Successful check probes at epoch seconds `times` (a batch: at most a minute or two)."""
        groups: dict[int, list[float]] = {}
        for t, ms in zip(times, latencies, strict=False):
            groups.setdefault(int(t // 60), []).append(ms)
        for m, values in groups.items():
            keys: dict[Any, int] = {}
            for ms in values:
                kk = key(float(ms))
                keys[kk] = keys.get(kk, 0) + 1
            for r in self.rows_of(app, self.minute_name(m)):
                r[0] += len(values)
                counts = r[5]
                for kk, n in keys.items():
                    counts[kk] = counts.get(kk, 0) + n

    def span(self, app: str, t0: float, t1: float, index: int, *, observed: bool = False) -> None:
        """Seconds from t0 to t1 (epoch) as up, down or unobserved (`index`), split at minute bounds.
        An interval longer than MAX_GAP_S (nobody was looking; unless `observed`: a run of probes
        each close to the last) or not positive counts for nothing."""
        if not t1 - t0 > 0 or (t1 - t0 > MAX_GAP_S and not observed):
            return
        t = t0
        while t < t1:
            m = int(t // 60)
            end = min(t1, (m + 1) * 60.0)
            for r in self.rows_of(app, self.minute_name(m)):
                r[index] += end - t
            t = end

    def save(self) -> None:
        cutoff = minute_cutoff(self.latest) if self.latest else ""
        for level in LEVELS:
            rows = [(app, start, r) for (lv, app, start), r in self.rows.items() if lv == level]
            if level == "rollup_minute":
                rows = [x for x in rows if x[1] >= cutoff]
                self.conn.executemany(
                    "INSERT OR REPLACE INTO rollup_minute (app, start, probes, failures, up_s, down_s, unobserved_s,"
                    " latency) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(app, start, *_rounded(r), Sketch(r[5]).to_json()) for app, start, r in rows],
                )
                if cutoff:
                    apps = {app for (_, app, _) in self.rows}
                    self.conn.executemany(
                        "DELETE FROM rollup_minute WHERE app = ? AND start < ?", [(app, cutoff) for app in apps]
                    )
                continue
            out = []
            for app, start, r in rows:
                sk = Sketch(r[5])
                q = [_ms(sk.quantile(x)) for x in (0.5, 0.95, 0.99)]
                out.append((app, start, *_rounded(r), sk.to_json(), *q))
            self.conn.executemany(
                f"INSERT OR REPLACE INTO {level} (app, start, probes, failures, up_s, down_s, unobserved_s, latency,"
                " p50_ms, p95_ms, p99_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                out,
            )
        self.rows.clear()
        self.frontier.clear()


def _rounded(r: list[Any]) -> tuple[Any, ...]:
    return (r[0], r[1], round(r[2], 3), round(r[3], 3), round(r[4], 3))


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def minute_cutoff(latest: str) -> str:
    """The oldest minute kept: MINUTE_KEEP_S before the newest ts folded."""
    t = epoch(latest) - MINUTE_KEEP_S
    return _dt.datetime.fromtimestamp(math.floor(t / 60) * 60, _dt.UTC).strftime("%Y-%m-%dT%H:%M")


# -- reading ----------------------------------------------------------------------------------


@dataclass
class Sums:
    """One app's rollups added up over a period."""

    probes: int = 0
    failures: int = 0
    up_s: float = 0.0
    down_s: float = 0.0
    unobserved_s: float = 0.0
    latency: Sketch = field(default_factory=Sketch)


def _next(prefix: str) -> str:
    """The minute, hour or day after `prefix` (same length)."""
    n = len(prefix)
    fmt = {16: "%Y-%m-%dT%H:%M", 13: "%Y-%m-%dT%H", 10: "%Y-%m-%d"}[n]
    step = {16: _dt.timedelta(minutes=1), 13: _dt.timedelta(hours=1), 10: _dt.timedelta(days=1)}[n]
    return (_dt.datetime.strptime(prefix, fmt) + step).strftime(fmt)


def sums(conn: sqlite3.Connection, app: str, start: str, end: str, *, inclusive: bool) -> Sums:
    """The app's rollups from `start` to `end` (timestamps; `end`'s minute counted when inclusive).

    Edges are exact to the minute where minute rows are kept; an older edge falls on its whole
    hour: the start's hour is counted whole, an inclusive end's hour too, an exclusive end's not.
    """
    kept = conn.execute("SELECT min(start) FROM rollup_minute WHERE app = ?", (app,)).fetchone()[0]
    lo = start[:16]
    hi = _next(end[:16]) if inclusive else end[:16]
    if kept is None or lo[:13] + ":00" < kept:
        lo = lo[:13] + ":00"
    if kept is None or hi[:13] + ":00" < kept:
        hi = _next(hi[:13]) + ":00" if inclusive and hi[14:] != "00" else hi[:13] + ":00"
    out = Sums()
    texts: list[str] = []
    if hi <= lo:
        return out
    parts: list[tuple[str, str, str]] = []  # (level, from, to) with `start` in [from, to)
    h1 = lo[:13] if lo.endswith(":00") else _next(lo[:13])
    h2 = hi[:13]
    if h1 >= h2:
        parts.append(("rollup_minute", lo, hi))
    else:
        if not lo.endswith(":00"):
            parts.append(("rollup_minute", lo, h1 + ":00"))
        if not hi.endswith(":00"):
            parts.append(("rollup_minute", h2 + ":00", hi))
        d1 = h1[:10] if h1.endswith("T00") else _next(h1[:10])
        d2 = h2[:10]
        if d1 >= d2:
            parts.append(("rollup_hour", h1, h2))
        else:
            if not h1.endswith("T00"):
                parts.append(("rollup_hour", h1, d1 + "T00"))
            if not h2.endswith("T00"):
                parts.append(("rollup_hour", d2 + "T00", h2))
            parts.append(("rollup_day", d1, d2))
    for level, a, b in parts:
        row = conn.execute(
            f"SELECT sum(probes), sum(failures), sum(up_s), sum(down_s), sum(unobserved_s), group_concat(latency, '\n')"
            f" FROM {level} WHERE app = ? AND start >= ? AND start < ?",
            (app, a, b),
        ).fetchone()
        out.probes += int(row[0] or 0)
        out.failures += int(row[1] or 0)
        out.up_s += float(row[2] or 0.0)
        out.down_s += float(row[3] or 0.0)
        out.unobserved_s += float(row[4] or 0.0)
        if row[5]:
            texts.extend(row[5].split("\n"))
    out.latency = merged(texts)
    return out
