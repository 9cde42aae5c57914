"""A crash loop is not a hang (issue 13, case 3).

While PM2 cycles an app through crashes, a check can catch it `online` (or `launching`, or
`stopped` for a moment) between two of them. That is `crash_loop` from the first decision, and
no restart of ours is piled on top of PM2's own; once PM2 gives up it is `errored`.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from recovery.check import CRITICAL
from recovery.model import History
from recovery.observations import Attempt, Instance, Observations, ProcessView
from recovery.policy import decide
from recovery.replay import replay_store
from recovery.store import Store
from tests.test_check_flow import URL, FakePm2, World
from tests.test_policy import APP, NOW

REFUSED = tuple(Attempt(False, n, URL, 1.0, error="refused") for n in (1, 2))
TIMEOUTS = tuple(Attempt(False, n, URL, 2000.0, error="timeout") for n in (1, 2))


def one(status: str = "online", **facts: Any) -> ProcessView:
    return ProcessView("web", "jlist", (Instance("web", 0, 4242 if status == "online" else None, status, **facts),))


def decided(view: ProcessView, history: History = History(), attempts=REFUSED, pm2_restarts: int = 0):
    return decide(Observations(attempts, view, pm2_restarts=pm2_restarts), history, APP, NOW)


# -- the policy ---------------------------------------------------------------------------------


def test_online_between_two_crashes_is_a_crash_loop_not_a_hang():
    d = decided(one(uptime_s=0.1, restart_time=6, unstable_restarts=6, exit_code=1))
    assert (d.action, d.code, d.state, d.exit_code) == ("wait", "crash_loop", "down", CRITICAL)
    assert not d.verify
    assert d.reason.startswith("crash loop: PM2 restarted it 6 times (6 unstable), last exit code 1")
    assert d.inputs["unstable_restarts"] == 6 and d.inputs["exit_code"] == 1


@pytest.mark.parametrize("status", ["stopped", "launching"])
def test_caught_stopped_or_launching_between_two_crashes_is_a_crash_loop(status):
    """PM2 shows `stopped` for a moment after each crash: not an operator's stop."""
    d = decided(one(status, since_start_s=0.2, restart_time=2, unstable_restarts=2, exit_code=1))
    assert (d.action, d.code) == ("wait", "crash_loop")


def test_errored_is_still_restarted_under_loop_protection():
    d = decided(one("errored", since_start_s=0.3, restart_time=15, unstable_restarts=0, exit_code=1))
    assert (d.action, d.code) == ("restart", "errored")


@pytest.mark.parametrize(("since_start", "exit_code"), [(86400.0, 1), (5.0, 0), (5.0, None)])
def test_an_operator_stop_is_left_alone(since_start, exit_code):
    """Long after the last start, or a clean exit (SIGINT) or a kill: not a crash."""
    view = one("stopped", since_start_s=since_start, restart_time=3, unstable_restarts=3, exit_code=exit_code)
    d = decided(view)
    assert (d.action, d.code) == ("none", "stopped")


def test_an_old_process_with_old_unstable_restarts_that_stops_answering_is_a_hang():
    """unstable_restarts stays counted after an early loop that settled: only a young process counts."""
    d = decided(one(uptime_s=7200.0, restart_time=3, unstable_restarts=3, exit_code=1), attempts=TIMEOUTS)
    assert (d.action, d.code) == ("restart", "hung")


def test_slow_crashes_pm2_restarted_twice_in_the_window_are_a_crash_loop():
    """Crashes after min_uptime are not unstable for PM2; its restarts in the history tell."""
    view = one(uptime_s=5.0, restart_time=4, unstable_restarts=0, exit_code=1)
    assert decided(view, History(pm2_restarts=2)).code == "crash_loop"
    assert decided(view, History(pm2_restarts=1), pm2_restarts=1).code == "crash_loop"


def test_a_young_process_after_one_crash_is_waited_on_and_verified():
    d = decided(one(uptime_s=5.0, restart_time=1, unstable_restarts=0, exit_code=1), History(pm2_restarts=1))
    assert (d.action, d.code, d.verify) == ("wait", "pm2_restarting", True)


def test_our_own_recent_restart_is_warming_up_not_a_crash():
    ours = format_ts_ago(20)
    history = History(last_restart_at=ours, recent_restarts=((ours, "hung"),))
    d = decided(one(uptime_s=5.0, restart_time=1, unstable_restarts=0, exit_code=1), history)
    assert d.code == "warming_up"


def test_a_young_process_after_a_clean_exit_is_a_hang_as_before():
    d = decided(one(uptime_s=5.0, restart_time=1, unstable_restarts=0, exit_code=0), attempts=TIMEOUTS)
    assert (d.action, d.code) == ("restart", "hung")


def format_ts_ago(seconds: float) -> str:
    from recovery.events import format_ts

    return format_ts(NOW - dt.timedelta(seconds=seconds))


# -- the check flow, with fakes -----------------------------------------------------------------


class CyclingPm2(FakePm2):
    """PM2 cycling the app through crashes: every sample shows a fresh process and more restarts."""

    def __init__(self, world_app: Any, *, unstable: bool = True) -> None:
        super().__init__(world_app, "online", heals=False)
        self.unstable = unstable

    def _view(self, name: str, source: str) -> ProcessView:
        self.restart_time += 3
        self.pid += 3
        inst = Instance(
            name,
            0,
            self.pid,
            self.status,
            restart_time=self.restart_time,
            unstable_restarts=self.restart_time if self.unstable else 0,
            uptime_s=0.2 if self.unstable else 4.0,
            exit_code=1,
        )
        return ProcessView(name, source, (inst,))


def test_a_check_of_a_crash_loop_restarts_nothing(tmp_path):
    w = World(tmp_path, "refused")
    w.pm2 = CyclingPm2(w.app)
    result = w.check()
    assert result.code == CRITICAL and result.apps[0].state == "DOWN"
    assert w.decisions() == [("wait", "crash_loop")]
    assert w.pm2.restarts == [] and w.events("restart.requested") == []
    with Store.open(w.config.store.path) as store:  # an incident like any down app: alerts go out
        (incident,) = store.conn.execute("SELECT outcome, first_reason FROM incidents WHERE app = 'web'").fetchall()
    assert incident[0] == "open" and incident[1].startswith("crash loop: PM2 restarted it 3 times (3 unstable)")


class FirstLifePm2(FakePm2):
    """A crash loop caught in its first life: the first sample shows a fresh process with nothing
    counted yet; by the next one it has crashed and PM2 counts an unstable restart."""

    def _view(self, name: str, source: str) -> ProcessView:
        first = self.jlists <= 1
        inst = Instance(
            name,
            0,
            self.pid + (0 if first else 1),
            "online",
            restart_time=0 if first else 1,
            unstable_restarts=0 if first else 1,
            uptime_s=0.3 if first else 0.1,
            exit_code=None if first else 1,
        )
        return ProcessView(name, source, (inst,))


def test_a_crash_loop_caught_in_its_first_life_is_read_again_and_named(tmp_path):
    w = World(tmp_path, "refused")
    w.pm2 = FirstLifePm2(w.app)
    w.check()
    assert w.decisions() == [("wait", "crash_loop")] and w.pm2.restarts == []
    samples = w.events("process.sampled")
    assert [e.data.get("settling", False) for e in samples] == [False, True]
    assert w.pm2.jlists == 2 and 1.19 < w.clock.slept[-1] < 1.21  # read again once 1.5 s old


def test_a_failing_process_that_is_not_young_is_read_once(tmp_path):
    w = World(tmp_path, "hung")
    w.check()
    assert w.pm2.jlists == 1 and w.decisions()[0] == ("restart", "hung")


def test_a_slow_crash_loop_is_named_from_the_second_check_on(tmp_path):
    """No unstable restarts: the first check waits on PM2 (one crash), the next sees PM2's restarts."""
    w = World(tmp_path, "healthy")
    w.pm2 = CyclingPm2(w.app, unstable=False)
    w.check()  # a first full sample to compare with
    w.clock.advance(60)
    w.app.state = "refused"
    w.check()
    assert w.decisions()[-1] == ("wait", "crash_loop")
    assert w.pm2.restarts == []
    assert w.events("process.restarted")


def test_replay_decides_the_crash_loop_again(tmp_path):
    w = World(tmp_path, "healthy")
    w.pm2 = CyclingPm2(w.app, unstable=False)
    for state in ("healthy", "refused", "refused"):
        w.app.state = state
        w.check()
        w.clock.advance(60)
    w.pm2 = CyclingPm2(w.app)
    w.check()
    codes = [code for _, code in w.decisions()]
    assert codes[1:] == ["crash_loop", "crash_loop", "crash_loop"]
    with Store.open(w.config.store.path) as store:
        (app,) = replay_store(store, list(w.config.apps), {}, None).apps
    assert app.changed == [] and app.decisions == 4


def test_replay_from_the_raw_events_agrees(tmp_path):
    from recovery import replay as rp

    w = World(tmp_path, "healthy")
    w.pm2 = CyclingPm2(w.app, unstable=False)
    for state in ("healthy", "refused", "refused"):
        w.app.state = state
        w.check()
        w.clock.advance(60)
    with Store.open(w.config.store.path) as store:
        steps = rp.steps_from(store.query(types=rp._TYPES))
    (app,) = rp.replay(steps, list(w.config.apps), {}, None).apps
    assert app.changed == [] and app.decisions == 3


# -- a real PM2 -----------------------------------------------------------------------------------


def write_config(tmp_path: Path, pm2, app) -> Path:
    text = (
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n'
        f'\n[[apps]]\nname = "{app.name}"\nurl = "{app.url}"\ntimeout = "2s"\nretries = 2\n'
        'retry_delay = "0s"\nverify_timeout = "10s"\n'
    )
    path = tmp_path / "recovery.toml"
    path.write_text(text)
    return path


def first_decision(tmp_path: Path, pm2, *, delay: float = 0.0, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Start a demo app that exits 1 at every start, run `recovery check` once, return what it decided."""
    from recovery.demo import free_port

    app = pm2.start_app("web", port=free_port(), wait=False, extra_args=extra)
    config = write_config(tmp_path, pm2, app)
    if delay:
        time.sleep(delay)  # where in PM2's cycle the check lands; a measurement knob, not a wait for a state
    r = subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**pm2.env, "NO_COLOR": "1"},
    )
    assert r.returncode in (1, 2), r.stdout + r.stderr
    with Store.open(tmp_path / "recovery.db") as store:
        (d,) = store.query(app="web", types=["decision.made"])
        sample = next(e.data for e in store.query(app="web", types=["process.sampled"]))
        requested = store.query(app="web", types=["restart.requested"])
    return {"code": d.data["code"], "status": sample.get("status"), "requested": len(requested), "reason": d.data}


@pytest.fixture
def crashing(pm2):
    """The marker that makes the demo server exit 1 within a second of every start (of app "web")."""
    marker = pm2.markers_dir / "web.crash"
    marker.touch()
    return marker


@pytest.mark.pm2
def test_a_real_crash_loop_is_never_called_hung_and_gets_no_restart_of_ours_while_pm2_cycles(tmp_path, pm2, crashing):
    d = first_decision(tmp_path, pm2)
    assert d["code"] in ("crash_loop", "errored"), d
    if d["code"] == "crash_loop":
        assert d["requested"] == 0, d


@pytest.mark.pm2
def test_a_real_crash_loop_with_a_restart_delay_is_a_crash_loop(tmp_path, pm2, crashing):
    """With --restart-delay PM2 cycles for ~10 s before it gives up: the check lands inside the loop."""
    d = first_decision(tmp_path, pm2, extra=("--restart-delay", "300"))
    assert d["code"] == "crash_loop" and d["requested"] == 0, d


@pytest.mark.pm2
def test_a_crash_loop_that_starts_in_a_long_running_app_is_a_crash_loop(tmp_path, pm2):
    """PM2 counts no unstable restarts for an app created longer than min_uptime x max_restarts
    ago (1 s here): it cycles it for ever. PM2's restarts since the last sample tell."""
    app = pm2.start_app("web", extra_args=("--max-restarts", "1"))
    config = write_config(tmp_path, pm2, app)

    def check() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "recovery_cli.main", "check", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**pm2.env, "NO_COLOR": "1"},
        )

    assert check().returncode == 0  # healthy, with a full sample to compare with
    env = lambda: app.processes()[0]["pm2_env"]  # noqa: E731
    app.wait_until(lambda: time.time() * 1000 - env()["created_at"] > 1500, message="past PM2's unstable window")
    app.marker("crash").touch()
    app.control("crash")
    app.wait_until(lambda: env()["restart_time"] >= 3, message="PM2 cycling the app")
    assert env()["unstable_restarts"] == 0 and env()["status"] != "errored"
    r = check()
    assert r.returncode == CRITICAL, r.stdout + r.stderr
    with Store.open(tmp_path / "recovery.db") as store:
        codes = [e.data["code"] for e in store.query(app="web", types=["decision.made"])]
        assert store.query(app="web", types=["restart.requested"]) == []
    assert codes == ["healthy", "crash_loop"]


@pytest.mark.pm2
def test_a_real_crash_loop_caught_in_its_first_life_is_a_crash_loop(tmp_path, pm2):
    """An app that exits 1 400 ms after every start, checked at once: the check may catch its first
    life, before any crash is counted; it reads PM2 again once that process is past min_uptime."""
    from recovery.demo import free_port

    script = tmp_path / "crasher.js"
    script.write_text("setTimeout(() => { console.error('error: missing DATABASE_URL'); process.exit(1); }, 400);\n")
    port = free_port()
    pm2.run("start", str(script), "--name", "web")
    config = tmp_path / "recovery.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n'
        f'\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:{port}/"\ntimeout = "1s"\nretries = 2\nretry_delay = "0s"\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**pm2.env, "NO_COLOR": "1"},
    )
    assert r.returncode == CRITICAL, r.stdout + r.stderr
    with Store.open(tmp_path / "recovery.db") as store:
        codes = [e.data["code"] for e in store.query(app="web", types=["decision.made"])]
        assert store.query(app="web", types=["restart.requested"]) == []
    assert codes == ["crash_loop"]


class StoppedBetweenLivesPm2(FakePm2):
    """A long-running app that starts crashing: the check's sample catches PM2 `stopped` for a
    moment between two lives (no exit code recorded yet), after PM2 restarted it on its own."""

    def _view(self, name: str, source: str) -> ProcessView:
        if source == "pidfile" or self.jlists <= 1:
            inst = Instance(name, 0, self.pid, "online", restart_time=0, uptime_s=100.0)
        elif self.jlists == 2:
            inst = Instance(name, 0, None, "stopped", restart_time=3, since_start_s=0.1)
        else:
            inst = Instance(name, 0, self.pid + 4, "online", restart_time=4, uptime_s=1.6, exit_code=1)
        return ProcessView(name, source, (inst,))


def test_stopped_right_after_pm2_restarted_it_on_its_own_is_read_again(tmp_path):
    w = World(tmp_path, "healthy")
    w.pm2 = StoppedBetweenLivesPm2(w.app)
    w.check()  # healthy, with a full sample to compare with
    w.clock.advance(60)
    w.app.state = "refused"
    w.check()
    assert w.decisions()[-1] == ("wait", "crash_loop")  # not ("none", "stopped"): no operator stopped it
    assert w.pm2.restarts == []
    assert [e.data["status"] for e in w.events("process.sampled")][-2:] == ["stopped", "online"]


def test_an_operator_stop_after_pm2_restarts_stays_stopped(tmp_path):
    w = World(tmp_path, "healthy")
    w.pm2 = StoppedBetweenLivesPm2(w.app)
    w.check()
    w.clock.advance(60)
    w.app.state = "refused"
    w.pm2._view = lambda name, source: ProcessView(  # type: ignore[method-assign]
        name, source, (Instance(name, 0, None, "stopped", restart_time=3, since_start_s=50.0),)
    )
    w.check()
    assert w.decisions()[-1] == ("none", "stopped") and w.pm2.restarts == []
