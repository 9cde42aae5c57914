"""Loop protection and the one-restart guard with the store unusable, against a real PM2 (issue 13, case 11).

The store is garbage or held by another process's `BEGIN EXCLUSIVE`: every run spools, and the
policy reads the spool. Counted twice: PM2's own restart counter, and the spool's restart.requested.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from recovery.store import spool_path

from .test_check import recovery, restart_time, start, write_config

pytestmark = pytest.mark.pm2


def spooled(db: Path, type_: str) -> list[dict]:
    text = spool_path(db).read_text() if spool_path(db).exists() else ""
    lines = [line for line in text.splitlines() if line.startswith("{")]  # each record's JSON payload
    return [e for e in map(json.loads, lines) if e["type"] == type_]


def test_a_garbage_store_and_an_app_that_hangs_at_every_start_get_at_most_max_restarts(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(
        tmp_path,
        pm2,
        app,
        max_restarts="3",
        window='"1h"',
        restart_grace='"1s"',
        verify_timeout='"3s"',
    )
    db = tmp_path / "data" / "recovery.db"
    db.parent.mkdir()
    db.write_bytes(bytes(range(256)) * 64)
    app.marker("hang").touch()
    app.control("hang")
    outputs = []
    for _ in range(6):
        proc = recovery(pm2, "check", "--config", str(config))
        assert proc.returncode == 3, proc.stdout + proc.stderr
        outputs.append(proc.stdout)
    assert restart_time(app) == 3, outputs
    assert len(spooled(db, "restart.requested")) == 3
    codes = [e["data"]["code"] for e in spooled(db, "decision.made")]
    assert codes[3:] == ["restart_loop", "suspended", "suspended"], codes


def test_five_concurrent_checks_with_the_store_locked_restart_a_hung_app_once(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    db = tmp_path / "data" / "recovery.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        app.control("hang")
        runs = [start(pm2, "check", "--config", str(config)) for _ in range(5)]
        outputs = [r.communicate(timeout=180) for r in runs]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [r.returncode for r in runs] == [3] * 5, outputs
    assert restart_time(app) == 1 and app.answers(), outputs
    assert len(spooled(db, "restart.requested")) == 1
