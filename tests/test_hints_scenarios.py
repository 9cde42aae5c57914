"""Each failure mode driven end to end with a real PM2 and the Node test server: the top hint.

Checks run in this process (a `Checker` per run, as `recovery watch` steps do), many in a row:
the time axis is driven by the number of checks, never by waiting.
"""

from __future__ import annotations

import datetime as dt

import pytest

from recovery import config as cfg
from recovery import projections
from recovery.check import Checker
from recovery.hints import evaluate
from recovery.store import Store
from tests.test_check import stored, write_config

pytestmark = pytest.mark.pm2
MB = 1048576
QUICK = {"timeout": '"1s"', "retries": "1", "retry_delay": '"0s"', "verify_timeout": '"20s"'}


def check(pm2, config):
    return Checker(cfg.load(config), environ=pm2.env).run()


def hints(config) -> list:
    with Store.open(config.parent / "data" / "recovery.db") as store:
        return evaluate(projections.hint_input(store.conn, "web", dt.datetime.now(dt.UTC)))


def checks(pm2, config, n: int) -> None:
    for _ in range(n):
        assert check(pm2, config).code == 0


def gone_bad(app) -> None:
    """A control acts ~50 ms after answering: wait until the app stops answering."""
    app.wait_until(lambda: not app.answers(timeout=0.3), message="the app to stop answering")


def with_logs_every_run(config):
    config.write_text(config.read_text().replace("[logs]\n", "") + '\n[logs]\ncheck_every = "0s"\n')
    return config


def test_a_healthy_app_gives_no_hint(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, **QUICK)
    checks(pm2, config, 12)
    assert hints(config) == []


def test_a_slow_but_alive_app_gives_no_hint(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, **QUICK)
    app.control("slow", ms=300)
    checks(pm2, config, 12)
    assert hints(config) == []


def hung_by(pm2, tmp_path, control: str) -> list:
    """Two healthy checks, then `control` makes the app hang; one check restarts it: the hints."""
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, **QUICK)
    checks(pm2, config, 2)
    app.control(control)
    gone_bad(app)
    assert check(pm2, config).apps[0].state == "RECOVERED"
    return hints(config)


def test_a_busy_loop_hang_is_a_blocked_event_loop(pm2, tmp_path):
    found = hung_by(pm2, tmp_path, "hang")
    print("busy loop:", found[0])
    assert found[0].kind == "event_loop_blocked", found


def test_a_stalled_hang_is_stalled_on_io(pm2, tmp_path):
    found = hung_by(pm2, tmp_path, "stall")
    print("stall:", found[0])
    assert [h.kind for h in found] == ["stalled_on_io"], found


def test_database_errors_before_a_stall_are_database_trouble(pm2, tmp_path):
    app = pm2.start_app("web")
    config = with_logs_every_run(write_config(tmp_path, pm2, app, logs_in_check=True, **QUICK))
    checks(pm2, config, 1)
    app.control("error", n=20, message="connect ECONNREFUSED 127.0.0.1:5432")
    err_log = app.processes()[0]["pm2_env"]["pm_err_log_path"]
    app.wait_until(lambda: open(err_log).read().count("ECONNREFUSED") >= 20, message="20 errors in the error log")
    checks(pm2, config, 1)  # reads them into the store
    app.control("stall")
    gone_bad(app)
    assert check(pm2, config).apps[0].state == "RECOVERED"
    found = hints(config)
    print("db before stall:", found[0])
    assert [h.kind for h in found][:2] == ["database_trouble", "stalled_on_io"], found
    assert "ECONNREFUSED" in found[0].message


def test_a_crash_loop_names_the_top_error(pm2, tmp_path):
    app = pm2.start_app("web", extra_args=("--max-restarts", "3"))
    config = with_logs_every_run(write_config(tmp_path, pm2, app, logs_in_check=True, **QUICK))
    checks(pm2, config, 1)
    app.marker("crash").touch()
    pm2.run("restart", "web")
    app.wait_until(lambda: app.status() == ["errored"], timeout=60)
    app.marker("crash").unlink()
    assert check(pm2, config).apps[0].state == "RECOVERED"
    restarted = [e for e in stored(config, "web") if e.type == "process.restarted"]
    # PM2 gives up after 2 to 4 restarts of its own with --max-restarts 3, by how the crashes fall
    # against its min_uptime (seen: 2 on a loaded machine, 3 or 4 on a quiet one).
    assert restarted and restarted[0].data["cause"] == "crash" and restarted[0].data["count"] >= 2
    top = hints(config)[0]
    print("crash loop:", top)
    assert top.kind == "crash_loop" and "crash on start" in top.message, top


def test_memory_growing_until_the_app_hangs_near_its_memory_limit_is_a_leak(pm2, tmp_path):
    # A hang is the leak's doing only with a sign of it: here it comes near PM2's max_memory_restart
    # (a busy loop far below the limit is event_loop_blocked: tests/test_leak_rule.py).
    app = pm2.start_app("web", extra_args=("--max-memory-restart", "256M"))
    config = write_config(tmp_path, pm2, app, **QUICK)
    checks(pm2, config, 1)
    app.control("leak", mb=8, hang_at=236)  # each answered request keeps 8 MB more; hangs past 236 MB
    for _ in range(60):  # ~24 checks reach the level; the check after that finds it hung
        result = check(pm2, config).apps[0]
        if result.restarted:
            break
    assert result.state == "RECOVERED", result
    found = hints(config)
    print("leak:", found[0])
    assert found[0].kind == "memory_leak" and "it hung at" in found[0].message, found
    assert found[0].evidence["cause_evidence"] == "near max_memory_restart", found
