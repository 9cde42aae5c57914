"""Issue 16 point 2 under a real PM2: with PM2's default logs (no timestamps), the database errors
written before a stall are read before the restart, so their bounded time puts them before the
incident, where `errors --around-incidents` and the database_trouble hint look for them."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from recovery import hints, projections
from recovery.logs.storage import entries
from recovery.store import Store
from tests.test_check import recovery, stored, types, write_config

pytestmark = pytest.mark.pm2

QUICK = {"timeout": '"1s"', "retries": "1", "retry_delay": '"0s"', "verify_timeout": '"20s"'}
DB_ERROR = "connect ECONNREFUSED 127.0.0.1:5432"


def test_database_errors_before_a_stall_are_read_before_the_restart_and_come_before_the_incident(pm2, tmp_path):
    app = pm2.start_app("web")  # PM2's default logs: no `--time`, no timestamps in the lines
    config = write_config(tmp_path, pm2, app, logs_in_check=True, **QUICK)  # [logs] check_every: 1m
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0  # reads the empty logs

    app.control("error", n=5, message=DB_ERROR)
    err_log = app.processes()[0]["pm2_env"]["pm_err_log_path"]
    app.wait_until(lambda: open(err_log).read().count("ECONNREFUSED") >= 5, message="5 errors in the error log")
    app.control("stall")
    app.wait_until(lambda: not app.answers(timeout=0.3), message="the app to stop answering")

    # Seconds after the last read: `check_every` would not let the check read the logs again.
    result = recovery(pm2, "check", "--config", str(config))
    assert result.returncode == 1 and "RECOVERED" in result.stdout, (result.stdout, result.stderr)

    run = [e for e in stored(config, "web") if e.run_id == stored(config)[-1].run_id]
    read = [e for e in run if e.type == "log.ingested"]
    assert read and read[0].data.get("before_restart") is True
    assert types(run).index("log.ingested") < types(run).index("restart.requested")

    with Store.open(config.parent / "data" / "recovery.db", readonly=True) as store:
        db_errors = [e for e in entries(store.conn, "web") if e["code"] == "ECONNREFUSED"]
        first_read = store.conn.execute("SELECT min(ts) FROM log_ingests").fetchone()[0]
        (started,) = [r[0] for r in store.conn.execute("SELECT started_at FROM incidents")]
    print("entries:", [(e["ts_from"], e["ts"], e["ts_bounded"]) for e in db_errors], "incident", started)
    assert len(db_errors) == 5
    for e in db_errors:  # bounded: after the first read reached the end of the log, before the stall
        assert e["ts_bounded"] and e["ts_from"] == first_read and e["ts_from"] < e["ts"] < started, (e, started)

    around = recovery(pm2, "errors", "--around-incidents", "--since", "1h", "--json", "--config", str(config))
    assert around.returncode == 0, around.stderr
    found = json.loads(around.stdout)
    assert [i["started_at"] for i in found["incidents"]] == [started]
    (before,) = [t for t in found["templates"] if "ECONNREFUSED" in (t["template"] or "")]
    assert before["incidents_preceded"] == 1 and before["before_incidents"] == 5
    text = recovery(pm2, "errors", "--around-incidents", "--since", "1h", "--config", str(config)).stdout
    print(text)
    assert "ECONNREFUSED" in text and "no error entries" not in text, text

    with Store.open(config.parent / "data" / "recovery.db") as store:
        found_hints = hints.evaluate(projections.hint_input(store.conn, "web", dt.datetime.now(dt.UTC)))
    print("db errors, then a stall:", found_hints[0])
    assert found_hints[0].kind == "database_trouble", found_hints


def test_setup_says_how_to_turn_on_pm2_timestamps_and_turns_them_on_with_pm2_time(pm2, tmp_path):
    from tests.test_deploy import install, output

    app = pm2.start_app("web")  # started without --time
    proc, _ = install(pm2, tmp_path)
    assert proc.returncode == 0, output(proc)
    assert "note: web's log lines carry no timestamps" in proc.stdout and "pm2 restart web --time" in proc.stdout
    assert not app.processes()[0]["pm2_env"].get("time")  # the running app is left as it is

    proc, _ = install(pm2, tmp_path, "--pm2-time")
    assert proc.returncode == 0, output(proc)
    assert app.processes()[0]["pm2_env"].get("time") is True
    assert "✓ PM2 timestamps web's log lines (time: true)" in proc.stdout and "note: web's" not in proc.stdout
    app.control("error", n=1)
    err_log = app.processes()[0]["pm2_env"]["pm_err_log_path"]
    app.wait_until(lambda: "ECONNREFUSED" in open(err_log).read(), message="the error in the log")
    assert open(err_log).read().startswith(str(dt.datetime.now().year))  # each line starts with its time
