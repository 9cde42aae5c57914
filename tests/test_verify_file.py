"""`recovery verify` checks the store's file with SQLite, not only the hash chain."""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import pytest
from recovery_cli.main import app
from typer.testing import CliRunner

from recovery import projections
from recovery.store import Store
from tests.test_projections import Timeline

runner = CliRunner()
T0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def config(tmp_path: Path) -> Path:
    p = tmp_path / "recovery.toml"
    p.write_text('[store]\npath = "recovery.db"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n')
    return p


def verify(tmp_path: Path, *args: str):
    return runner.invoke(app, ["verify", "--config", str(config(tmp_path)), *args], env={"RECOVERY_CONFIG": ""})


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A store with a few weeks of checks and its projections, closed (WAL checkpointed into the file)."""
    path = tmp_path / "recovery.db"
    with Store.open(path) as store:
        timeline = Timeline(store, T0)
        for n in range(300):
            timeline.healthy(n * 3600.0)
            if n % 50 == 0:
                timeline.hang_recovered(n * 3600.0 + 60)
        projections.fold(store.conn)
    assert not Path(f"{path}-wal").exists()
    return path


def scribble(path: Path, first_page: int, last_page: int, seed: int = 15) -> None:
    """Random bytes over pages `first_page`..`last_page` (1-based), as a failing disk would leave."""
    with Store.open(path, readonly=True) as store:
        size = store.conn.execute("PRAGMA page_size").fetchone()[0]
    rnd = random.Random(seed)
    with open(path, "r+b") as f:
        f.seek((first_page - 1) * size)
        f.write(bytes(rnd.randrange(256) for _ in range((last_page - first_page + 1) * size)))
        f.flush()
        os.fsync(f.fileno())


def test_a_sound_store_is_reported_sound_and_intact(tmp_path, store_path):
    result = verify(tmp_path)
    assert result.exit_code == 0, result.output
    assert "file sound (quick_check)" in result.output
    assert "hash chain intact" in result.output


def test_random_bytes_over_pages_4_to_7_make_verify_fail_with_one_line_per_problem(tmp_path, store_path):
    scribble(store_path, 4, 7)
    result = verify(tmp_path)
    assert result.exit_code == 2, result.output
    assert "intact" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines, result.output
    assert all(line.startswith("recovery: ") and str(store_path) in line for line in lines), lines
    assert "Traceback" not in result.output


def test_full_runs_integrity_check_and_finds_the_damage_too(tmp_path, store_path):
    sound = verify(tmp_path, "--full")
    assert sound.exit_code == 0, sound.output
    assert "file sound (integrity_check)" in sound.output
    scribble(store_path, 4, 6)
    result = verify(tmp_path, "--full")
    assert result.exit_code == 2, result.output
    assert "integrity_check" in result.stderr or "Page 4" in result.stderr


def test_an_edited_event_and_damaged_pages_are_each_named(tmp_path, store_path):
    import sqlite3

    conn = sqlite3.connect(store_path)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET data = '{\"latency_ms\": 1}' WHERE seq = 7")
    conn.commit()
    conn.close()
    scribble(store_path, 4, 6)
    result = verify(tmp_path)
    assert result.exit_code == 2
    assert "chain broken at seq 7" in result.stderr
    assert "Page 4" in result.stderr


def test_damaged_index_pages_that_the_chain_walk_never_reads_are_found(tmp_path, store_path):
    # Pages 4-6 hold the roots of the events indexes: walking the chain in seq order reads none of
    # them, so a chain-only verify called this store intact while every check failed on it.
    scribble(store_path, 4, 6)
    result = verify(tmp_path)
    assert result.exit_code == 2, result.output
    assert "intact" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 3, lines  # one per damaged page
    assert all(line.startswith(f"recovery: {store_path}: ") for line in lines), lines
