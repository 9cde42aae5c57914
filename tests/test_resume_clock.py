"""`recovery resume` and wall-clock steps, through the check flow (fake PM2, fake clock, real SQLite).

Resume (issue 13, case 7): an app still down gets a fresh attempt, one restart and its
verification, and a suspension's reason never quotes itself. Clock steps (case 8): a restart,
a sample or a pause recorded ahead of a clock that was stepped back never counts as recent.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
from recovery_cli.main import app as cli
from typer.testing import CliRunner

from recovery import maintenance
from recovery.check import CheckRun, HttpProber
from recovery.clock import FakeClock, utc_now
from recovery.store import Recorder, Store

from .test_check_flow import World

DAY = 86_400.0


def looping_world(tmp_path: Path) -> World:
    """An app that hangs again after every restart, suspended after its second one."""
    w = World(tmp_path, "hung", max_restarts="2", restart_grace='"5m"', window='"1h"', verify_timeout='"10s"')
    w.pm2.heals = False
    w.clock = FakeClock(utc_now() - dt.timedelta(hours=2))
    w.check()  # restart 1
    w.clock.advance(300)
    w.check()  # restart 2, after the backoff
    w.clock.advance(400)
    assert w.check().apps[0].state == "SUSPENDED"
    assert len(w.pm2.restarts) == 2
    return w


def step_to_real_time(w: World) -> None:
    """Move the fake wall clock to just after the real one (the operator commands use the real one)."""
    w.clock.start = utc_now() + dt.timedelta(seconds=1) - dt.timedelta(seconds=w.clock.elapsed)


def reasons(w: World) -> list[str]:
    return [e.data["reason"] for e in w.events("decision.made")]


# -- resume -------------------------------------------------------------------------------------


def resumed_while_probed(config_path: Path) -> Any:
    """The app still hangs; `recovery resume web` is typed while a check run probes it (as under
    `watch`, whose runs follow each other): the run read the suspension before the lift."""
    runner = CliRunner()
    resumed: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if not resumed:
            out = runner.invoke(cli, ["resume", "web", "--config", str(config_path)])
            assert out.exit_code == 0 and "suspension lifted" in out.output, out.output
            resumed.append(out)
        raise httpx.ConnectTimeout("timed out", request=request)

    return handler


def test_recovery_resume_during_a_check_gives_the_app_one_fresh_restart(tmp_path):
    w = looping_world(tmp_path)
    step_to_real_time(w)
    run = CheckRun(
        w.config,
        pm2=w.pm2,
        prober=HttpProber(httpx.MockTransport(resumed_while_probed(tmp_path / "recovery.toml"))),
        recorder=Recorder(w.config.store.path, busy_timeout=1.0, now=w.clock.now),
        clock=w.clock,
    )
    run.run()
    assert w.decisions()[-1] == ("suppress", "suspended")  # decided before the lift landed
    w.clock.advance(2)
    result = w.check()
    assert result.apps[0].restarted and w.decisions()[-1] == ("restart", "hung"), result.lines()
    assert len(w.pm2.restarts) == 3
    # Its verification failed; loop protection counts again from the resume: warm-up, then
    # one more restart, then the loop is suspended again, its reason quoting no other.
    for _ in range(4):
        w.clock.advance(400)
        w.check()
    assert len(w.pm2.restarts) == 4
    assert w.decisions()[-1] == ("suppress", "suspended")
    assert not [r for r in reasons(w) if r.count("restart loop") > 2]


# -- the wall clock stepped -----------------------------------------------------------------------


def step(w: World, seconds: float) -> None:
    """Step the wall clock (not the monotonic one), as NTP or an operator's `date -s` does."""
    w.clock.start += dt.timedelta(seconds=seconds)


def test_a_clock_stepped_back_a_day_does_not_hold_restarts_back(tmp_path):
    w = World(tmp_path, "hung", restart_grace='"60s"', verify_timeout='"10s"')
    w.pm2.heals = False
    w.check()
    assert len(w.pm2.restarts) == 1
    step(w, -DAY)
    w.clock.advance(120)
    result = w.check()
    assert w.decisions()[-1] == ("restart", "hung"), result.lines()
    assert len(w.pm2.restarts) == 2
    # A restart made after the step is timed on the new clock: its warm-up holds as usual.
    w.clock.advance(10)
    w.check()
    assert w.decisions()[-1] == ("wait", "warming_up")
    # And forward again (the clock corrected): the restarts "from the future" are past now.
    step(w, DAY)
    w.clock.advance(600)
    w.check()
    assert w.decisions()[-1] == ("restart", "hung")
    assert len(w.pm2.restarts) == 3


def test_loop_protection_counts_the_restarts_made_after_a_step_back(tmp_path):
    w = World(tmp_path, "hung", max_restarts="2", restart_grace='"10s"', window='"1h"', verify_timeout='"10s"')
    w.pm2.heals = False
    w.check()
    step(w, -DAY)
    for _ in range(3):
        w.clock.advance(600)
        w.check()
    assert len(w.pm2.restarts) == 3  # one before the step, two after: the ceiling on the new clock
    assert w.decisions()[-1] == ("suppress", "restart_loop")


def pause(w: World, seconds: float) -> None:
    """`recovery pause` (it stamps its event with the real clock), then the fake clock just after it."""
    with Store.open(w.config.store.path) as store:
        maintenance.pause(store, "web", seconds=seconds, reason="deploy")
    w.clock = FakeClock(utc_now() + dt.timedelta(seconds=1))


def test_a_pause_started_before_a_step_back_does_not_last_a_day(tmp_path):
    w = World(tmp_path, "hung", verify_timeout='"10s"')
    pause(w, 600)
    w.check()
    assert w.decisions()[-1] == ("none", "paused")
    step(w, -DAY)
    w.clock.advance(60)
    w.check()
    assert w.decisions()[-1] == ("restart", "hung")


def test_a_pause_survives_a_step_back_of_a_few_seconds(tmp_path):
    w = World(tmp_path, "hung", verify_timeout='"10s"')
    pause(w, 600)
    step(w, -3)
    w.check()
    assert w.decisions()[-1] == ("none", "paused")
    assert w.pm2.restarts == []
