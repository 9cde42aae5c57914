"""Decisions from history, against a real PM2: loop protection, pauses, operator restarts, status."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.test_check import recovery, stored, types, write_config

pytestmark = pytest.mark.pm2


def snapshot(db) -> dict:
    conn = sqlite3.connect(db)
    try:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("app_state", "incidents", "restarts", "rollup_minute", "rollup_hour", "rollup_day")
        }
    finally:
        conn.close()


def test_an_app_that_hangs_after_every_start_gets_max_restarts_then_is_suspended(pm2, tmp_path):
    app = pm2.start_app("web")
    # No warm-up grace, so each run may restart at once; the ceiling alone stops the loop.
    config = write_config(
        tmp_path,
        pm2,
        app,
        verify_timeout='"2s"',
        restart_grace='"0s"',
        max_restarts="3",
        timeout='"1s"',
        retry_delay='"0s"',
    )
    app.marker("hang").touch()
    app.control("hang")
    codes = [recovery(pm2, "check", "--config", str(config)).returncode for _ in range(3)]
    assert codes == [2, 2, 2]
    fourth = recovery(pm2, "check", "--config", str(config))
    assert fourth.returncode == 2, fourth.stdout + fourth.stderr
    assert fourth.stdout.splitlines()[1].startswith(
        "web SUSPENDED restart loop: 3 restarts in 30m, last causes: hung x3"
    )
    fifth = recovery(pm2, "check", "--config", str(config))
    assert "SUSPENDED" in fifth.stdout
    assert types(stored(config)).count("restart.requested") == 3

    # The operator fixes the cause and lifts the suspension: restarts are allowed again.
    app.marker("hang").unlink()
    resumed = recovery(pm2, "resume", "web", "--config", str(config))
    assert "suspension lifted" in resumed.stdout
    again = recovery(pm2, "check", "--config", str(config))
    assert again.returncode == 1 and again.stdout.splitlines()[1].startswith("web RECOVERED"), again.stdout
    assert app.answers()


def test_failures_during_the_warm_up_grace_do_not_restart_again(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, restart_grace='"10m"')
    app.control("hang")
    assert recovery(pm2, "check", "--config", str(config)).returncode == 1
    app.control("hang")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 1 and proc.stdout.splitlines()[1].startswith("web RECOVERING warming up: restarted"), (
        proc.stdout
    )
    assert types(stored(config)).count("restart.requested") == 1


def test_a_paused_app_is_probed_but_not_restarted_and_exits_0(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    paused = recovery(pm2, "pause", "web", "--for", "10m", "--reason", "deploy", "--config", str(config))
    assert paused.returncode == 0 and "paused until" in paused.stdout
    app.control("hang")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("web PAUSED paused until") and "deploy" in proc.stdout
    assert "restart.requested" not in types(stored(config))
    assert "probe.failed" in types(stored(config))
    status = json.loads(recovery(pm2, "status", "--json", "--config", str(config)).stdout)
    assert status["apps"][0]["state"] == "paused"


def test_an_operator_restart_is_recorded_with_who_and_why_and_verified(pm2, tmp_path):
    app = pm2.start_app("web")
    old = app.pids()
    config = write_config(tmp_path, pm2, app)
    proc = recovery(pm2, "restart", "web", "--by", "schedule", "--reason", "nightly", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("web RESTARTED restarted by schedule (nightly), healthy again in")
    requested = next(e for e in stored(config, "web") if e.type == "restart.requested")
    assert requested.data["by"] == "schedule" and requested.data["reason"] == "nightly"
    assert "verification.passed" in types(stored(config)) and app.pids() != old


def test_status_shows_state_restarts_and_pm2s_view(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    recovery(pm2, "check", "--config", str(config))
    app.control("hang")
    recovery(pm2, "check", "--config", str(config))
    recovery(pm2, "check", "--config", str(config))
    proc = recovery(pm2, "status", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = json.loads(proc.stdout)["apps"][0]
    assert row["state"] == "healthy" and row["restarts_24h"] == 1 and row["pm2_status"] == "online"
    assert row["pid"] == app.pids()[0] and row["open_incident"] is None and row["stale"] is False
    text = recovery(pm2, "status", "--config", str(config)).stdout
    assert "HEALTHY" in text and "1 ours / 0 pm2" in text


def test_status_of_a_down_app_is_critical_with_its_open_incident(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    pm2.run("stop", "web")
    recovery(pm2, "check", "--config", str(config))
    app.marker("hang").touch()
    pm2.run("start", "web")
    recovery(pm2, "check", "--config", str(config), "--dry-run")
    proc = recovery(pm2, "status", "--json", "--config", str(config))
    row = json.loads(proc.stdout)["apps"][0]
    assert proc.returncode == 2 and row["state"] == "down" and row["open_incident"] is not None


def test_projections_are_identical_after_recovery_rebuild(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    recovery(pm2, "check", "--config", str(config))
    app.control("hang")
    recovery(pm2, "check", "--config", str(config))
    recovery(pm2, "pause", "web", "--for", "1m", "--config", str(config))
    recovery(pm2, "restart", "web", "--config", str(config))
    recovery(pm2, "check", "--config", str(config))
    db = tmp_path / "data" / "recovery.db"
    before = snapshot(db)
    proc = recovery(pm2, "rebuild", "--config", str(config))
    assert proc.returncode == 0 and "rebuilt the projections" in proc.stdout
    assert snapshot(db) == before
    assert before["incidents"] and before["restarts"]


def test_a_slow_app_is_degraded_not_restarted(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, slow_threshold='"300ms"')
    app.control("slow", ms=700)
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("web DEGRADED degraded: answered in")
    assert "restart.requested" not in types(stored(config))
