"""The labelled corpus (issue 16 point 8): stores of real runs under a real PM2, each with the top
hint it should be diagnosed with and the hints that must not appear (bench/record_corpus.py
records them; bench/diagnosis.py scores them). Fast: no PM2 here, only the recorded stores.

Also: `projections.hint_input(conn, app, now)` reads nothing recorded after `now`, so a store
can be diagnosed as it stood at any moment (the corpus checkpoints and the forecast scoring rely
on it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.diagnosis import Checkpoint, Diagnosis, Fixture, Result, diagnose, evaluate_at, load_corpus, opened
from recovery import hints, projections
from recovery.logs.ingestion import ingest
from recovery.reading import open_folded
from recovery.store import Store
from recovery.units import format_ts, parse_ts
from tests.test_projections import Timeline

FIXTURES = load_corpus()
BY_SHAPE = {f.shape: f for f in FIXTURES}

# Checkpoints main's rules (at fe8a220) get wrong, by (shape, checkpoint index): the point of
# issue 16 that fixes each. The integrator removes these marks once the points are merged.
XFAIL: dict[tuple[str, int], str] = {}  # (shape, checkpoint) -> the issue point its rules still miss


def _cases() -> list[object]:
    out = []
    for f in FIXTURES:
        for i in range(len(f.checkpoints)):
            marks = [pytest.mark.xfail(strict=True, reason=XFAIL[(f.shape, i)])] if (f.shape, i) in XFAIL else []
            out.append(pytest.param(f.shape, i, id=f"{f.shape}-{i}", marks=marks))
    return out


@pytest.fixture(scope="module")
def stores() -> Iterator[dict[str, sqlite3.Connection]]:
    """Each fixture's store, gunzipped and folded once for the module."""
    with contextlib.ExitStack() as stack:
        yield {f.shape: stack.enter_context(opened(f)) for f in FIXTURES}


def test_the_corpus_has_every_shape_of_the_issue():
    wanted = {
        "leak_to_limit", "leak_then_stall", "busy_loop", "idle_stall", "db_errors_then_stall",
        "db_errors_then_busy_loop", "crash_loop", "pm2_memory_restarts", "nightly_cluster", "same_day_bursts",
        "healthy_hour", "slow_alive_bursts", "nextjs_prisma",
    }  # fmt: skip
    assert wanted <= set(BY_SHAPE)
    for f in FIXTURES:
        assert f.checkpoints and f.db_gz.stat().st_size < 1 << 20, f.shape  # each store stays small


@pytest.mark.parametrize(("shape", "index"), _cases())
def test_checkpoint_gives_the_expected_top_hint_and_none_of_the_absent(stores, shape, index):
    f = BY_SHAPE[shape]
    cp = f.checkpoints[index]
    got = evaluate_at(stores[shape], f.app, cp.now)
    assert (got[0].kind if got else None) == cp.top, f"{cp.note}: got {[(h.kind, h.confidence) for h in got]}"
    assert not [h.kind for h in got if h.kind in cp.absent], cp.note


def test_the_diagnosis_bench_computes_precision_and_recall_per_kind_on_the_corpus():
    d = diagnose(FIXTURES)
    assert len(d.results) == sum(len(f.checkpoints) for f in FIXTURES)
    assert sum(d.confusion().values()) == len(d.results)
    expected = {cp.top for f in FIXTURES for cp in f.checkpoints if cp.top}
    for kind in expected:
        recall = d.recall(kind)
        assert recall is not None and 0.0 <= recall <= 1.0
    for kind in d.kinds():
        precision = d.precision(kind)
        assert precision is None or 0.0 <= precision <= 1.0
    assert any(d.forecast_errors.values()), "the leak fixture's forecasts are scored"


def test_the_corpus_passes_the_diagnosis_gate():
    """The issue's "done when": precision >= 0.9 for every hint kind, no hint on the healthy and slow fixtures."""
    assert diagnose(FIXTURES).gate(FIXTURES) == []


def test_precision_recall_and_the_gate_count_what_they_say():
    cp = {k: Checkpoint("2026-11-01T00:00:00.000Z", k) for k in ("stalled_on_io", "schedule")}
    quiet = Checkpoint("2026-11-01T00:00:00.000Z", None)

    def hint(kind: str) -> hints.Hint:
        return hints.Hint(kind, "", 0.5)

    d = Diagnosis(
        [
            Result("a", cp["stalled_on_io"], [hint("stalled_on_io")]),
            Result("b", cp["stalled_on_io"], [hint("schedule"), hint("stalled_on_io")]),
            Result("c", cp["schedule"], [hint("schedule")]),
            Result("q", quiet, [hint("memory_leak")]),
        ]
    )
    assert d.precision("stalled_on_io") == 1.0 and d.recall("stalled_on_io") == 0.5
    assert d.precision("schedule") == 0.5 and d.recall("schedule") == 1.0
    assert d.confusion()[("stalled_on_io", "schedule")] == 1 and d.confusion()[("none", "memory_leak")] == 1
    fixtures = [Fixture("q", Path("."), "web", (quiet,))]
    why = d.gate(fixtures)
    assert any("schedule" in w for w in why) and any("memory_leak on a fixture" in w for w in why)


# -- hint_input reads nothing after `now` -----------------------------------------------------------


def as_it_stood(src: Path, dst: Path, now: str) -> Store:
    """A copy of the store at `src` with everything recorded after `now` taken out (events, log
    ingestion runs and what they wrote), its projections rebuilt: the store as it stood at `now`."""
    shutil.copyfile(src, dst)
    conn = sqlite3.connect(dst, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("DELETE FROM events WHERE ts > ?", (now,))
        with contextlib.suppress(sqlite3.OperationalError):  # a store no log was ever read into
            later = "(SELECT id FROM log_ingests WHERE ts > ?)"
            for table in ("log_entries", "log_counts", "log_files", "log_template_versions"):
                conn.execute(f"DELETE FROM {table} WHERE ingest_id IN {later}", (now,))
            conn.execute("DELETE FROM log_templates WHERE created_at > ?", (now,))
            conn.execute("DELETE FROM log_ingests WHERE ts > ?", (now,))
    finally:
        conn.close()
    store = Store.open(dst)
    projections.rebuild(store.conn)
    return store


def moments(conn: sqlite3.Connection, f: Fixture) -> list[str]:
    """The checkpoints, and the moments a reader could get wrong: just before each incident was
    detected (after it began) and just before each log ingestion run was recorded."""
    out = {cp.now for cp in f.checkpoints}
    before = "strftime('%Y-%m-%dT%H:%M:%fZ', {}, '-0.3 seconds')"
    out |= {r[0] for r in conn.execute(f"SELECT {before.format('detected_at')} FROM incidents")}
    with contextlib.suppress(sqlite3.OperationalError):
        out |= {r[0] for r in conn.execute(f"SELECT {before.format('ts')} FROM log_ingests WHERE entries > 0")}
    return sorted(out)


@pytest.mark.parametrize("shape", [f.shape for f in FIXTURES])
def test_hint_input_reads_nothing_recorded_after_now(tmp_path, shape):
    f = BY_SHAPE[shape]
    full = tmp_path / "full.db"
    with gzip.open(f.db_gz, "rb") as src, full.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    with contextlib.closing(open_folded(full)) as store:
        for i, now in enumerate(moments(store.conn, f)):
            with contextlib.closing(as_it_stood(full, tmp_path / f"stood{i}.db", now)) as stood:
                when = parse_ts(now)
                assert projections.hint_input(store.conn, f.app, when) == projections.hint_input(
                    stood.conn, f.app, when
                ), now


def test_a_log_line_read_after_now_is_not_known_at_now_even_when_timestamped_before(tmp_path):
    """PM2's `time` option stamps each line; a check reads it later. At a moment between the line's
    time and its reading, the hints must not see it before the incident."""
    store = Store.open(tmp_path / "recovery.db")
    try:
        tl = Timeline(store)
        tl.healthy(0)
        tl.hang_recovered(60)
        log = tmp_path / "web-error.log"
        stamp = (tl.t0 + dt.timedelta(seconds=50)).strftime("%Y-%m-%dT%H:%M:%S")
        log.write_text(
            "".join(f"{stamp}: Error: connect ECONNREFUSED 127.0.0.1:5432\n" for _ in range(5)), encoding="utf-8"
        )
        ingest(store, "web", [(log, "err")], now=tl.t0 + dt.timedelta(seconds=120))
        tl.healthy(130)
        projections.fold(store.conn)
        between = tl.t0 + dt.timedelta(seconds=90)  # the hang is known, the lines not yet read
        model = projections.hint_input(store.conn, "web", between)
        assert len(model.incidents) == 1
        assert model.before_incidents.templates == ()
        later = projections.hint_input(store.conn, "web", tl.t0 + dt.timedelta(seconds=140))
        assert [t.before_incidents for t in later.before_incidents.templates] == [5]
    finally:
        store.close()


def test_an_incident_is_not_known_before_the_check_that_detected_it(tmp_path):
    """An incident starts at its first failed probe, a few seconds before the decision that opens it."""
    store = Store.open(tmp_path / "recovery.db")
    try:
        tl = Timeline(store)
        tl.healthy(0)
        tl.hang_recovered(60)  # its failed probe was sent 2 s before it was recorded
        projections.fold(store.conn)
        started, detected = store.conn.execute("SELECT started_at, detected_at FROM incidents").fetchone()
        assert started < detected
        between = parse_ts(started) + (parse_ts(detected) - parse_ts(started)) / 2
        assert started < format_ts(between) < detected
        assert projections.hint_input(store.conn, "web", between).incidents == ()
        assert len(projections.hint_input(store.conn, "web", parse_ts(detected)).incidents) == 1
    finally:
        store.close()
