"""An operator's `recovery restart` while `recovery watch` runs, against a real PM2 (issue 13, case 6)."""

from __future__ import annotations

import signal

import pytest

from recovery.store import Store

from .conftest import wait_until
from .test_check import recovery, restart_time, start, write_config

pytestmark = pytest.mark.pm2


def test_operator_restarts_during_watch_are_never_pm2_restarting_on_its_own(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    db = tmp_path / "data" / "recovery.db"
    before = int(app.get("__count").json()["answered"])
    watch = start(pm2, "watch", "--config", str(config), "--interval", "300ms")
    try:

        def watch_steps() -> int:
            # The probes the app answered: the watch's steady steps are held in a batch, not written each.
            return int(app.get("__count").json()["answered"])

        wait_until(lambda: watch_steps() >= before + 2, 60, 0.2, "watch to take two steps")
        for n in range(3):
            proc = recovery(pm2, "restart", "web", "--config", str(config), "--reason", f"deploy {n}")
            assert proc.returncode == 0, proc.stdout + proc.stderr
        # A new process counts from 0; the last restart's verification made one of its answers.
        wait_until(lambda: watch_steps() >= 1 + 3, 60, 0.2, "watch to take three steps after the restarts")
    finally:
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, out + err
    assert restart_time(app) == 3 and app.answers()
    with Store.open(db, readonly=True) as store:
        events = store.query(app="web")
        pm2_rows = store.conn.execute("SELECT count(*) FROM restarts WHERE source = 'pm2'").fetchone()[0]
    requested = [e for e in events if e.type == "restart.requested"]
    assert [e.data["by"] for e in requested] == ["operator"] * 3
    assert [e.data for e in events if e.type == "process.restarted"] == []
    assert pm2_rows == 0
    # A watch step that caught PM2 mid-restart never concluded "stopped by an operator".
    assert [e.data["code"] for e in events if e.type == "decision.made" and e.data["code"] == "stopped"] == []
