"""The latency sketch: real percentiles within 1 %, mergeable, stored compactly."""

from __future__ import annotations

import datetime as dt
import json
import random

from recovery import projections
from recovery.events import Event, format_ts
from recovery.report import build_report
from recovery.sketch import RELATIVE_ERROR, Sketch, merged
from recovery.store import Store


def exact(values: list[float], q: float) -> float:
    """The value of rank q * (n - 1), as the sketch ranks."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def close(got: float | None, want: float, within: float = 0.01) -> bool:
    return got is not None and abs(got - want) <= within * want


def test_quantiles_are_within_one_percent_of_the_real_values():
    rng = random.Random(7)
    for values in (
        [rng.lognormvariate(3, 1) for _ in range(5000)],  # ~20 ms with a long tail
        [rng.uniform(0.2, 30000) for _ in range(3000)],
        [1604.0] * 500 + [rng.uniform(1604, 1616) for _ in range(500)],
    ):
        s = Sketch()
        s.extend(values)
        for q in (0.0, 0.5, 0.9, 0.95, 0.99, 1.0):
            assert close(s.quantile(q), exact(values, q), RELATIVE_ERROR * 1.001), (q, s.quantile(q))


def test_merged_sketches_equal_the_sketch_of_all_values():
    rng = random.Random(3)
    parts = [[rng.expovariate(1 / 50) for _ in range(400)] for _ in range(6)]
    whole = Sketch()
    whole.extend(v for part in parts for v in part)
    pieces = []
    for part in parts:
        s = Sketch()
        s.extend(part)
        pieces.append(s.to_json())
    assert merged(pieces) == whole
    assert Sketch.from_json(whole.to_json()) == whole
    one = Sketch.from_json(pieces[0])
    for text in pieces[1:]:
        one.merge(Sketch.from_json(text))
    assert one == whole and one.count == 2400


def test_zero_and_empty():
    s = Sketch()
    assert s.quantile(0.5) is None and s.to_json() == "[0]"
    s.extend([0.0, 0.0, 5.0])
    assert s.quantile(0.5) == 0.0 and close(s.quantile(1.0), 5.0)
    assert json.loads(s.to_json())[0] == 2


def test_the_encoding_is_compact():
    rng = random.Random(1)
    s = Sketch()
    s.extend(rng.lognormvariate(3, 0.5) for _ in range(1800))  # an hour of 2 s probes
    assert len(s.to_json()) < 2000  # not 1800 numbers (~9,000 characters)


def test_report_percentiles_are_real_values_not_bucket_bounds(tmp_path):
    """The shape the old 10-per-decade histogram got wrong: p50 = p95 = p99 = 1778 ms against real
    1604 / 1610 / 1615 ms."""
    store = Store.open(tmp_path / "recovery.db")
    t0 = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
    latencies = [1604.0] * 60 + [1607.0] * 30 + [1610.0] * 6 + [1615.0] * 4
    for k, ms in enumerate(latencies):
        at = t0 + dt.timedelta(seconds=30 * k)
        rid = f"r{k}"
        store.append(
            [
                Event(
                    "probe.succeeded", "web", rid, {"phase": "check", "attempt": 1, "latency_ms": ms}, ts=format_ts(at)
                ),
                Event(
                    "decision.made",
                    "web",
                    rid,
                    {"action": "none", "state": "healthy", "reason": "healthy"},
                    ts=format_ts(at),
                ),
            ]
        )
    projections.fold(store.conn)
    rep = build_report(store, ["web"], format_ts(t0), t0 + dt.timedelta(hours=1)).to_dict()
    lat = rep["apps"]["web"]["latency_ms"]
    assert close(lat["p50"], 1604) and close(lat["p95"], 1610) and close(lat["p99"], 1615), lat
    store.close()
