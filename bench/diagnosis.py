"""Diagnosis over the labelled corpus: the hint rules run on stores of real runs (issue 16 point 8).

Each fixture in tests/corpus/<shape>/ is the store of a real run under a real PM2
(`recovery.db.gz`, recorded by bench/record_corpus.py) and what it should be diagnosed as
(`expected.json`: at each checkpoint, the expected top hint and the hints that must not appear).
This bench gunzips each store into a temp folder, opens it as a reader does (projections of
another fold version are rebuilt), runs `hints.evaluate(projections.hint_input(conn, app, now))`
at each checkpoint and prints a confusion matrix (expected top against got top, "none" for no
hint), precision and recall per hint kind, the forbidden hints that appeared, and, for fixtures
with a `forecast`, the memory-leak forecast's error against when the limit was really hit.

Run: .venv/bin/python bench/diagnosis.py [--corpus tests/corpus] [--only SHAPE ...]
Exit 1 when a hint kind's precision is below 0.9, or any hint appears on a fixture expected to
have none (healthy, slow but alive), so it can gate.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recovery import hints, projections
from recovery.reading import open_folded
from recovery.units import parse_ts

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"
NONE = "none"
MIN_PRECISION = 0.9


@dataclass(frozen=True)
class Checkpoint:
    now: str
    top: str | None
    absent: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Fixture:
    """One shape of the corpus: where its store is and what it should be diagnosed as."""

    shape: str
    folder: Path
    app: str
    checkpoints: tuple[Checkpoint, ...]
    compressed: str | None = None
    recorded_with: str = ""
    forecast: dict[str, Any] | None = None

    @property
    def db_gz(self) -> Path:
        return self.folder / "recovery.db.gz"

    @property
    def quiet(self) -> bool:
        """Expected to give no hint at all at every checkpoint (healthy, slow but alive)."""
        return all(c.top is None for c in self.checkpoints)


@dataclass
class Result:
    shape: str
    checkpoint: Checkpoint
    got: list[hints.Hint]

    @property
    def top(self) -> str | None:
        return self.got[0].kind if self.got else None

    @property
    def forbidden(self) -> list[str]:
        return [h.kind for h in self.got if h.kind in self.checkpoint.absent]


@dataclass
class Diagnosis:
    results: list[Result] = field(default_factory=list)
    forecast_errors: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)  # (ts, forecast, real)

    def confusion(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for r in self.results:
            key = (r.checkpoint.top or NONE, r.top or NONE)
            out[key] = out.get(key, 0) + 1
        return out

    def kinds(self) -> list[str]:
        seen = {r.checkpoint.top for r in self.results} | {r.top for r in self.results}
        return sorted(k for k in seen if k is not None)

    def precision(self, kind: str) -> float | None:
        """Of the checkpoints whose top hint was `kind`, the share expected to be `kind` (None: never got)."""
        got = [r for r in self.results if r.top == kind]
        return sum(r.checkpoint.top == kind for r in got) / len(got) if got else None

    def recall(self, kind: str) -> float | None:
        """Of the checkpoints expected to have `kind` on top, the share that got it (None: never expected)."""
        wanted = [r for r in self.results if r.checkpoint.top == kind]
        return sum(r.top == kind for r in wanted) / len(wanted) if wanted else None

    def forbidden(self) -> list[tuple[str, str, str]]:
        return [(r.shape, r.checkpoint.now, k) for r in self.results for k in r.forbidden]

    def quiet_violations(self, fixtures: Sequence[Fixture]) -> list[tuple[str, str, str]]:
        quiet = {f.shape for f in fixtures if f.quiet}
        return [(r.shape, r.checkpoint.now, h.kind) for r in self.results if r.shape in quiet for h in r.got]

    def forecast_summary(self) -> dict[str, float] | None:
        """Median signed (forecast - real; > 0 is optimistic) and absolute error in seconds, over every sample."""
        errors = [f - real for rows in self.forecast_errors.values() for _, f, real in rows]
        if not errors:
            return None
        return {
            "n": float(len(errors)),
            "median_signed_s": statistics.median(errors),
            "median_abs_s": statistics.median(abs(e) for e in errors),
        }

    def gate(self, fixtures: Sequence[Fixture]) -> list[str]:
        """Why this diagnosis fails the gate (empty: it passes)."""
        why = [
            f"precision of {k} is {p:.2f} (< {MIN_PRECISION})"
            for k in self.kinds()
            if (p := self.precision(k)) is not None and p < MIN_PRECISION
        ]
        why += [
            f"{shape} at {now}: {kind} on a fixture that should have no hint"
            for shape, now, kind in self.quiet_violations(fixtures)
        ]
        return why


def load_corpus(corpus: Path = CORPUS, only: Sequence[str] = ()) -> list[Fixture]:
    """Every fixture under `corpus` (each folder with an expected.json), by shape name."""
    out = []
    for expected in sorted(Path(corpus).glob("*/expected.json")):
        spec = json.loads(expected.read_text(encoding="utf-8"))
        if only and spec["shape"] not in only:
            continue
        out.append(
            Fixture(
                shape=spec["shape"],
                folder=expected.parent,
                app=spec["app"],
                checkpoints=tuple(
                    Checkpoint(c["now"], c.get("top"), tuple(c.get("absent") or ()), c.get("note", ""))
                    for c in spec["checkpoints"]
                ),
                compressed=spec.get("compressed"),
                recorded_with=spec.get("recorded_with", ""),
                forecast=spec.get("forecast"),
            )
        )
    return out


@contextlib.contextmanager
def opened(fixture: Fixture) -> Iterator[Any]:
    """The fixture's store, gunzipped into a temp folder and folded; the folder goes afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="recovery-corpus-"))
    try:
        path = folder / "recovery.db"
        with gzip.open(fixture.db_gz, "rb") as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        store = open_folded(path)
        try:
            yield store.conn
        finally:
            store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def evaluate_at(conn: Any, app: str, now: str) -> list[hints.Hint]:
    """Every hint at the moment `now` (an event timestamp), strongest first."""
    return hints.evaluate(projections.hint_input(conn, app, parse_ts(now)))


def _forecast_errors(conn: Any, fixture: Fixture) -> list[tuple[str, float, float]]:
    """At each process sample before the limit was hit: (ts, forecast_s, real seconds left)."""
    assert fixture.forecast is not None
    hit = fixture.forecast["limit_hit_at"]
    since = fixture.forecast.get("since") or ""
    rows = conn.execute(
        "SELECT ts FROM events WHERE app = ? AND type = 'process.sampled' AND ts >= ? AND ts < ? ORDER BY seq",
        (fixture.app, since, hit),
    ).fetchall()
    out = []
    for (ts,) in rows:
        leak = next((h for h in evaluate_at(conn, fixture.app, ts) if h.kind == "memory_leak"), None)
        forecast = leak.evidence.get("forecast_s") if leak else None
        if isinstance(forecast, (int, float)):
            out.append((ts, float(forecast), (parse_ts(hit) - parse_ts(ts)).total_seconds()))
    return out


def diagnose(fixtures: Sequence[Fixture]) -> Diagnosis:
    """Run the rules at every checkpoint of every fixture (and score the forecasts)."""
    out = Diagnosis()
    for fixture in fixtures:
        with opened(fixture) as conn:
            for cp in fixture.checkpoints:
                out.results.append(Result(fixture.shape, cp, evaluate_at(conn, fixture.app, cp.now)))
            if fixture.forecast:
                out.forecast_errors[fixture.shape] = _forecast_errors(conn, fixture)
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def report(d: Diagnosis, fixtures: Sequence[Fixture]) -> list[str]:
    lines = ["## checkpoints"]
    for r in d.results:
        ok = r.top == r.checkpoint.top and not r.forbidden
        others = ", ".join(f"{h.kind} {h.confidence:.2f}" for h in r.got) or "no hint"
        lines.append(
            f"  {'ok ' if ok else 'NO '} {r.shape:26} {r.checkpoint.now}  expected {r.checkpoint.top or NONE:20}"
            f" got {others}" + (f"  FORBIDDEN {','.join(r.forbidden)}" if r.forbidden else "")
        )
    kinds = sorted(set(d.kinds()) | {NONE})
    lines += ["", "## confusion (rows: expected top, columns: got top)"]
    width = max(len(k) for k in kinds) + 1
    lines.append(" " * (width + 2) + "".join(f"{k:>{width}}" for k in kinds))
    matrix = d.confusion()
    for e in kinds:
        lines.append(f"  {e:{width}}" + "".join(f"{matrix.get((e, g), 0) or '.':>{width}}" for g in kinds))
    lines += ["", "## per hint kind"]
    for k in d.kinds():
        lines.append(f"  {k:24} precision {_pct(d.precision(k)):>5}   recall {_pct(d.recall(k)):>5}")
    lines += ["", "## forbidden hints that appeared"]
    lines += [f"  {shape} at {now}: {kind}" for shape, now, kind in d.forbidden()] or ["  none"]
    lines += ["", "## memory-leak forecast vs when the limit was hit (forecast - real; > 0: optimistic)"]
    for shape, rows in d.forecast_errors.items():
        for ts, f, real in rows:
            lines.append(f"  {shape} at {ts}: forecast {f:7.0f}s  real {real:7.0f}s  error {f - real:+7.0f}s")
        if rows:
            _, f, real = rows[0]
            lines.append(f"  {shape}: first forecast {f:.0f}s for {real:.0f}s, {100 * (f - real) / real:+.0f} %")
        else:
            lines.append(f"  {shape}: no memory_leak forecast at any sample before the limit")
    summary = d.forecast_summary()
    if summary:
        lines.append(
            f"  median signed error {summary['median_signed_s']:+.0f}s, median absolute error"
            f" {summary['median_abs_s']:.0f}s over {int(summary['n'])} forecasts"
        )
    failures = d.gate(fixtures)
    lines += ["", "## gate (precision >= 0.9 per kind, no hint on healthy / slow fixtures)"]
    lines += [f"  FAIL {w}" for w in failures] or ["  pass"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the corpus folder (default tests/corpus)")
    parser.add_argument("--only", action="append", default=[], help="only this shape (repeatable)")
    args = parser.parse_args(argv)
    fixtures = load_corpus(args.corpus, args.only)
    if not fixtures:
        print(f"diagnosis: no fixtures under {args.corpus}", file=sys.stderr)
        return 2
    d = diagnose(fixtures)
    print("\n".join(report(d, fixtures)))
    return 1 if d.gate(fixtures) else 0


if __name__ == "__main__":
    sys.exit(main())
