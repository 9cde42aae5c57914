"""A real PM2 cluster of 4 demo servers: PM2 restarting one worker on its own (its process killed)
is recorded as one restart of that worker, named by its pm_id, and `recovery status` shows it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recovery.store import Store

pytestmark = pytest.mark.pm2


def write_config(tmp_path: Path, pm2, app) -> Path:
    path = tmp_path / "recovery.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n'
        f'\n[[apps]]\nname = "{app.name}"\nurl = "{app.url}"\ntimeout = "2s"\nretries = 2\n'
        'retry_delay = "0s"\nverify_timeout = "10s"\n'
    )
    return path


def recovery(tmp_path: Path, pm2, config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**pm2.env, "NO_COLOR": "1"},
    )


def test_pm2_restarting_one_worker_is_recorded_as_that_workers_restart_and_shown_by_status(tmp_path, pm2):
    app = pm2.start_app("web", instances=4)
    config = write_config(tmp_path, pm2, app)
    first = recovery(tmp_path, pm2, config, "check")
    assert first.returncode == 0, first.stdout + first.stderr

    procs = app.processes()
    assert len(procs) == 4
    victim = procs[2]
    pm_id, old_pid = victim["pm_id"], victim["pid"]
    others = {p["pm_id"]: p["pid"] for p in procs if p["pm_id"] != pm_id}
    os.kill(old_pid, signal.SIGKILL)

    def restarted() -> bool:
        p = next(p for p in app.processes() if p["pm_id"] == pm_id)
        pidfile = pm2.home / "pids" / f"web-{pm_id}.pid"
        new_pid = p["pid"]
        return (
            p["pm2_env"]["status"] == "online"
            and new_pid not in (0, old_pid)
            and pidfile.exists()
            and pidfile.read_text().strip() == str(new_pid)
        )

    app.wait_until(restarted, message=f"PM2 to restart worker {pm_id}")
    app.wait_until(app.answers, message="the cluster to answer")
    new_pid = next(p["pid"] for p in app.processes() if p["pm_id"] == pm_id)
    assert {p["pm_id"]: p["pid"] for p in app.processes() if p["pm_id"] != pm_id} == others

    second = recovery(tmp_path, pm2, config, "check")
    assert second.returncode == 0, second.stdout + second.stderr
    with Store.open(tmp_path / "recovery.db") as store:
        (event,) = store.query(app="web", types=["process.restarted"])
        assert store.query(app="web", types=["restart.requested"]) == []
    assert event.data["count"] == 1
    assert event.data["pm_id"] == pm_id
    (worker,) = event.data["workers"]  # with its exit_code when PM2's full sample was read
    assert {k: worker[k] for k in ("pm_id", "old_pid", "new_pid", "count")} == {
        "pm_id": pm_id,
        "old_pid": old_pid,
        "new_pid": new_pid,
        "count": 1,
    }

    shown = recovery(tmp_path, pm2, config, "status", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    (row,) = json.loads(shown.stdout)["apps"]
    assert row["pm2_restarts_24h"] == 1 and row["restarts_24h"] == 0
    workers = row["workers"]
    assert (workers["total"], workers["healthy"], workers["failed"]) == (4, 4, [])
    by_id = {i["pm_id"]: i for i in workers["instances"]}
    assert by_id[pm_id]["pid"] == new_pid and by_id[pm_id]["pm2_restarts_24h"] == 1
    assert all(by_id[k]["pm2_restarts_24h"] == 0 for k in others)
    text = recovery(tmp_path, pm2, config, "status").stdout
    assert f"web: PM2 restarted worker #{pm_id} on its own in the last 24h (1x)" in text
    assert " 4/4 " in text.splitlines()[1]
