"""A crash loop under a real PM2 is named in the first incident's alert (issue 16 point 5).

The real CLI (`recovery check`, as cron runs it) against a real PM2: the alert for the first
incident quotes the strongest hint, which must be the crash loop with the exit code, PM2's
restart count and the error line the app writes before each exit; once PM2 gives up, it says so.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from recovery import hints, projections
from recovery.demo import free_port
from recovery.store import Store
from recovery.units import parse_ts

from .test_alerts import Receiver, alerts_toml
from .test_check import recovery, stored, write_config

pytestmark = pytest.mark.pm2
# Exits 1 within a second of every start, before it listens, as an app with a bad environment does.
CRASHER_JS = "setTimeout(() => { console.error('error: missing DATABASE_URL'); process.exit(1); }, 400);\n"
QUICK = {"timeout": '"1s"', "retries": "2", "retry_delay": '"0s"', "verify_timeout": '"5s"'}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def configured(tmp_path: Path, pm2, app, receiver: Receiver) -> Path:
    config = write_config(tmp_path, pm2, app, logs_in_check=True, **QUICK)
    config.write_text(config.read_text() + alerts_toml(receiver.url()))
    return config


def check(pm2, config: Path) -> str:
    r = recovery(pm2, "check", "--config", str(config))
    assert r.returncode in (1, 2), r.stdout + r.stderr
    return r.stdout


def top_hint(config: Path, at: str) -> hints.Hint:
    """The strongest hint as the store stood at `at` (an event timestamp)."""
    with Store.open(config.parent / "data" / "recovery.db") as store:
        return hints.evaluate(projections.hint_input(store.conn, "web", parse_ts(at)))[0]


def down_alert(receiver: Receiver) -> str:
    return next(m["message"] for m in receiver.messages() if m["title"].startswith("web DOWN"))


def first_incident(config: Path) -> tuple[dict, str]:
    """The decision that opened the first incident (its data) and when its check run finished."""
    events = stored(config, None)
    decision = next(e for e in events if e.type == "decision.made" and e.data["code"] != "healthy")
    finished = next(e.ts for e in events if e.type == "check.finished" and e.run_id == decision.run_id)
    return decision.data, finished


def restart_count(config: Path, decision: dict) -> int:
    """PM2's restart count as the deciding check saw it (its inputs, else its newest sample)."""
    if "restart_time" in decision["inputs"]:
        return int(decision["inputs"]["restart_time"])
    samples = [e for e in stored(config, "web") if e.type == "process.sampled" and "restart_time" in e.data]
    return int(samples[-1].data["restart_time"])


def test_an_app_exiting_1_at_every_start_is_a_crash_loop_in_the_first_alert_until_pm2_gives_up(pm2, tmp_path, receiver):
    script = tmp_path / "crasher.js"
    script.write_text(CRASHER_JS)
    app = SimpleNamespace(name="web", url=f"http://127.0.0.1:{free_port()}/")
    pm2.run("start", str(script), "--name", "web")
    config = configured(tmp_path, pm2, app, receiver)
    check(pm2, config)

    decision, finished = first_incident(config)
    assert decision["code"] in ("crash_loop", "errored", "pm2_restarting"), decision
    top = top_hint(config, finished)  # as the alert sent at the end of that run read it
    count = restart_count(config, decision)
    print("first incident:", decision["code"], top)
    assert top.kind == "crash_loop", top
    assert "exit code 1" in top.message
    assert f"PM2 restarted it {count} time" in top.message or f"(restart count {count})" in top.message
    assert "“error: missing DATABASE_URL”" in top.message
    alert = down_alert(receiver)
    assert "Likely cause: crash loop: PM2 restarted it" in alert and "exit code 1" in alert, alert

    deadline = time.monotonic() + 60
    while pm2.jlist()[0]["pm2_env"]["status"] != "errored":  # PM2 gives up after 15 unstable restarts
        assert time.monotonic() < deadline, "PM2 never gave up"
        time.sleep(0.2)
    check(pm2, config)
    now = dt.datetime.now(dt.UTC)
    with Store.open(config.parent / "data" / "recovery.db") as store:
        top = hints.evaluate(projections.hint_input(store.conn, "web", now))[0]
    print("after PM2 gave up:", top)
    assert top.kind == "crash_loop" and "gave up (errored)" in top.message, top


def test_a_long_running_app_that_starts_crashing_names_the_error_in_the_first_alert(pm2, tmp_path, receiver):
    """Its logs were read by a healthy check a moment before: the crash loop's check reads them again."""
    app = pm2.start_app("web")
    config = configured(tmp_path, pm2, app, receiver)
    check_healthy = recovery(pm2, "check", "--config", str(config))
    assert check_healthy.returncode == 0, check_healthy.stdout + check_healthy.stderr
    app.marker("crash").touch()
    app.control("crash")
    app.wait_until(lambda: app.processes()[0]["pm2_env"]["restart_time"] >= 3, message="PM2 cycling the app")
    check(pm2, config)

    decision, finished = first_incident(config)
    top = top_hint(config, finished)
    print("first incident:", decision["code"], top)
    assert top.kind == "crash_loop" and "exit code 1" in top.message, top
    assert "error: crash on start" in top.message, top
    alert = down_alert(receiver)
    assert "Likely cause: crash loop" in alert and "error: crash on start" in alert, alert
