"""`recovery check` against a real PM2 managing a real Node server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from recovery.store import Store, spool_path

pytestmark = pytest.mark.pm2


def write_config(tmp_path: Path, sandbox, *apps, logs_in_check: bool = False, **overrides) -> Path:
    """A config for `apps` with the done-when timings: 2s timeout, 2 retries, 1s apart.

    Log ingestion inside `recovery check` is off unless asked for, so that these tests see
    exactly the check's own events; tests/test_logs_check.py covers it.
    """
    settings = {"timeout": '"2s"', "retries": "2", "retry_delay": '"1s"', "verify_timeout": '"30s"'}
    settings.update({k: v for k, v in overrides.items() if k != "store"})
    text = f'[store]\npath = "{overrides.get("store", "data/recovery.db")}"\nbusy_timeout = "1s"\n\n'
    text += f'[pm2]\nbin = "{sandbox.bin}"\n'
    if not logs_in_check:
        text += "\n[logs]\nin_check = false\n"
    for app in apps:
        name, url = (app, "http://127.0.0.1:9/") if isinstance(app, str) else (app.name, app.url)
        text += f'\n[[apps]]\nname = "{name}"\nurl = "{url}"\n'
        text += "".join(f"{k} = {v}\n" for k, v in settings.items())
    path = tmp_path / "recovery.toml"
    path.write_text(text)
    return path


def recovery(sandbox, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", *args],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start(sandbox, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", *args],
        env=sandbox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored(config: Path, app: str | None = None) -> list:
    with Store.open(config.parent / "data" / "recovery.db", readonly=True) as s:
        return [e for e in s.query() if app is None or e.app == app]


def types(events) -> list[str]:
    return [e.type for e in events]


def restart_time(app) -> int:
    return app.processes()[0]["pm2_env"]["restart_time"]


def test_a_healthy_app_exits_0_and_is_not_restarted(pm2, tmp_path):
    app = pm2.start_app("web")
    pid = app.pids()[0]
    config = write_config(tmp_path, pm2, app)
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("web OK ")
    # The first check of an app takes the full sample (pm2 jlist: nothing to compare with yet) and the host's.
    assert types(stored(config)) == [
        "check.started",
        "probe.succeeded",
        "process.sampled",
        "host.sampled",
        "decision.made",
        "check.finished",
    ]
    sample = stored(config, "web")[1]
    assert sample.data["pid"] == pid and sample.data["memory"] > 0 and sample.data["source"] == "jlist"
    assert app.pids() == [pid] and restart_time(app) == 0


def test_a_healthy_check_within_the_minute_reads_only_pid_files(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = [e for e in stored(config) if e.seq > 6]
    assert types(second) == ["check.started", "probe.succeeded", "process.sampled", "decision.made", "check.finished"]
    assert second[2].data["source"] == "pidfile"  # no pm2 CLI call (0.2 s of Node start-up) when healthy


def test_a_hung_app_is_restarted_once_verified_and_exits_1(pm2, tmp_path):
    app = pm2.start_app("web")
    old_pid = app.pids()[0]
    config = write_config(tmp_path, pm2, app)
    app.control("hang")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith(
        "web RECOVERED restarted after 2 failed probes (timeout), healthy again in "
    )
    assert app.answers()
    assert app.pids()[0] != old_pid and restart_time(app) == 1
    seen = types(stored(config, "web"))
    key = ["probe.failed", "decision.made", "restart.requested", "restart.succeeded", "verification.passed"]
    positions = [seen.index(t) for t in key]
    assert positions == sorted(positions), seen
    assert seen.count("restart.requested") == 1
    samples = [e for e in stored(config, "web") if e.type == "process.sampled"]
    assert samples[0].data["source"] == "jlist" and samples[0].data["pid"] == old_pid  # taken before the restart
    assert samples[-1].data["pid"] == app.pids()[0]  # and the process that came back


def test_a_stalled_app_with_an_idle_cpu_is_restarted_too(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    app.control("stall")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert app.answers()
    assert types(stored(config, "web")).count("restart.succeeded") == 1


def test_an_app_that_stays_dead_after_the_restart_is_critical(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, verify_timeout='"4s"')
    app.marker("hang").touch()  # every new start hangs as well
    app.control("hang")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "still not answering after 4s" in proc.stdout
    events = types(stored(config, "web"))
    assert [t for t in events if t != "process.sampled"][-1] == "verification.failed"
    assert events.count("restart.requested") == 1


def test_an_app_stopped_by_an_operator_is_left_alone_and_critical(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    pm2.run("stop", "web")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "stopped by an operator" in proc.stdout
    assert "restart.requested" not in types(stored(config))
    assert app.status() == ["stopped"]


def test_an_app_name_pm2_does_not_know_is_critical_with_a_clear_message(pm2, tmp_path):
    real = pm2.start_app("web")
    config = write_config(tmp_path, pm2, "shop")
    config.write_text(config.read_text().replace("http://127.0.0.1:9/", real.url))
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "PM2 has no process named 'shop'" in proc.stdout


def test_two_concurrent_checks_restart_a_hung_app_exactly_once(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    app.control("hang")
    runs = [start(pm2, "check", "--config", str(config)) for _ in range(2)]
    outputs = [r.communicate(timeout=180) for r in runs]
    codes = [r.returncode for r in runs]
    assert codes == [1, 1], outputs
    assert types(stored(config)).count("restart.requested") == 1
    assert restart_time(app) == 1 and app.answers()
    assert any("already restarted by run" in out for out, _ in outputs)


def test_an_errored_app_is_restarted_when_its_crash_is_gone(pm2, tmp_path):
    # PM2 marks an app errored after max_restarts unstable exits soon after a start or restart.
    app = pm2.start_app("web", extra_args=("--max-restarts", "3"))
    config = write_config(tmp_path, pm2, app)
    app.marker("crash").touch()
    pm2.run("restart", "web")
    app.wait_until(lambda: app.status() == ["errored"], timeout=60)
    app.marker("crash").unlink()
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    decision = next(e for e in stored(config, "web") if e.type == "decision.made")
    assert decision.data["action"] == "restart" and "crash loop" in decision.data["reason"]
    assert app.answers()


def test_dry_run_decides_but_restarts_nothing(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    app.control("hang")
    proc = recovery(pm2, "check", "--config", str(config), "--dry-run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "would restart (dry run" in proc.stdout
    decision = next(e for e in stored(config, "web") if e.type == "decision.made")
    assert decision.data["action"] == "restart" and decision.data["dry_run"] is True
    assert "restart.requested" not in types(stored(config)) and restart_time(app) == 0


def test_json_output_carries_the_same_result(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    proc = recovery(pm2, "check", "--config", str(config), "--json")
    result = json.loads(proc.stdout)
    assert result["code"] == 0 and result["apps"][0]["app"] == "web" and result["apps"][0]["state"] == "OK"


def test_a_store_that_is_not_a_database_does_not_stop_the_restart(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    db = tmp_path / "data" / "recovery.db"
    db.parent.mkdir()
    db.write_bytes(b"definitely not sqlite\n" * 200)
    app.control("hang")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("web RECOVERED")
    assert "not a SQLite database" in proc.stdout and "spooled" in proc.stdout
    assert app.answers() and restart_time(app) == 1
    lines = spool_path(db).read_text().splitlines()
    spooled = [json.loads(line)["type"] for line in lines if line.startswith("{")]  # the records' payloads
    assert "restart.succeeded" in spooled and "verification.passed" in spooled

    # The operator moves the broken file away: the next run appends the spool, in order, once.
    db.rename(tmp_path / "broken.db")
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    got = types(stored(config))
    assert got[: len(spooled)] == spooled
    assert got.count("restart.succeeded") == 1 and got.count("spool.replayed") == 1
    assert not spool_path(db).exists()
    assert recovery(pm2, "verify", "--config", str(config)).returncode == 0


def test_a_store_locked_beyond_its_timeout_spools_and_exits_3(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    holder = sqlite3.connect(tmp_path / "data" / "recovery.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        proc = recovery(pm2, "check", "--config", str(config))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("web OK") and "locked" in proc.stdout


def test_an_unwritable_store_path_is_unknown_but_the_app_is_still_checked(pm2, tmp_path):
    app = pm2.start_app("web")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    config = write_config(tmp_path, pm2, app, store="blocker/recovery.db")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("web OK")
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and "cannot create the store's folder" in lines[2]
    assert lines[0].startswith("RECOVERY UNKNOWN - event store unusable: cannot create the store's folder")


def test_verify_names_the_first_edited_event(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    for _ in range(2):
        recovery(pm2, "check", "--config", str(config))
    conn = sqlite3.connect(tmp_path / "data" / "recovery.db", isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET data = '{}' WHERE seq = 7")
    conn.close()
    proc = recovery(pm2, "verify", "--config", str(config))
    assert proc.returncode == 2
    assert "chain broken at seq 7" in proc.stderr


def test_events_filters_by_type_and_prints_json_lines(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    recovery(pm2, "check", "--config", str(config))
    proc = recovery(pm2, "events", "--config", str(config), "--type", "probe.*", "--json")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["type"] for r in rows] == ["probe.succeeded"] and rows[0]["app"] == "web"
    text = recovery(pm2, "events", "--config", str(config), "--since", "1h", "--app", "web").stdout
    assert "decision.made" in text and "check.started" not in text


def test_events_follow_prints_events_as_they_arrive(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    recovery(pm2, "check", "--config", str(config))
    follower = start(pm2, "events", "--config", str(config), "--follow", "--type", "check.finished")
    try:
        first = follower.stdout.readline()
        assert "check.finished" in first
        recovery(pm2, "check", "--config", str(config))
        second = follower.stdout.readline()  # blocks until the new event is printed
        assert "check.finished" in second and second != first
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_several_apps_are_checked_in_one_run_and_the_worst_sets_the_exit_code(pm2, tmp_path):
    web, api = pm2.start_app("web"), pm2.start_app("api")
    config = write_config(tmp_path, pm2, web, api)
    api.control("hang")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("RECOVERY WARNING - api RECOVERED restarted after")  # the worst app, not the first
    assert lines[1].startswith("web OK") and lines[2].startswith("api RECOVERED")
    assert [e.app for e in stored(config) if e.type == "restart.requested"] == ["api"]


def test_cluster_mode_is_one_app_reloaded_with_zero_downtime_restart(pm2, tmp_path):
    app = pm2.start_app("web", instances=2)
    old = set(app.pids())
    config = write_config(tmp_path, pm2, app, restart_command='"reload"')
    app.control("hang")
    app.control("hang")  # round robin: the second request reaches the other worker
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1].startswith("web RECOVERED reloaded after")
    requested = next(e for e in stored(config, "web") if e.type == "restart.requested")
    assert requested.data["command"] == ["pm2", "reload", "web"]
    assert not (set(app.pids()) & old) and app.answers()
