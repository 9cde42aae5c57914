"""Whose restart was it, and PM2 caught moving an app (issue 13, case 6).

Our restarts (by a check, a schedule) and an operator's (`recovery restart`, from another
process) are never counted as PM2 restarting the app on its own (`process.restarted`), even
when a sample of another run falls between the request and PM2's doing it. `stopping` and
`launching` are moves to wait out, not an operator's stop. Fast: fake PM2, fake clock, real SQLite.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx

from recovery import policy
from recovery.check import CheckRun, HttpProber
from recovery.config import AppConfig
from recovery.model import History
from recovery.observations import Attempt, Instance, Observations, ProcessView
from recovery.pm2 import CommandResult
from recovery.store import Recorder, Store

from .test_check_flow import FakeApp, FakePm2, World

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
FAILED = (Attempt(False, 1, "u", 2000.0, error="refused"), Attempt(False, 2, "u", 2000.0, error="refused"))


class SlowPm2(FakePm2):
    """PM2 whose restart lets `during` run before it takes effect (`pm2 restart` takes a while),
    and whose status reads can be scripted (`statuses`, read in turn, the last one kept)."""

    def __init__(self, app: FakeApp, status: str = "online") -> None:
        super().__init__(app, status)
        self.during: Callable[[], Any] | None = None
        self.statuses: list[str] = []

    def restart(self, name: str, command: str = "restart") -> CommandResult:
        if self.during is not None:
            during, self.during = self.during, None
            during()
        return super().restart(name, command)

    def view(self, name: str) -> ProcessView:
        if self.statuses:
            self.status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return super().view(name)


def world(tmp_path, state: str = "healthy", **settings: str) -> World:
    w = World(tmp_path, state, **settings)
    w.pm2 = SlowPm2(w.app)
    return w


def run(w: World, handler: Any = None) -> CheckRun:
    return CheckRun(
        w.config,
        pm2=w.pm2,
        prober=HttpProber(httpx.MockTransport(handler or w.app)),
        recorder=Recorder(w.config.store.path, busy_timeout=1.0, now=w.clock.now),
        clock=w.clock,
        trigger="watch",
    )


def pm2_restarts_seen(w: World) -> list[tuple]:
    with Store.open(w.config.store.path) as store:
        return store.conn.execute("SELECT by, count FROM restarts WHERE source = 'pm2'").fetchall()


def test_an_operator_restart_is_not_pm2_restarting_on_its_own(tmp_path):
    """`recovery restart web` (another process) asks for the restart and PM2 makes it while a watch
    step probes: the step folded the record before the request and samples PM2 after the restart."""
    w = world(tmp_path, retry_delay='"0s"')
    w.check()
    w.clock.advance(5)
    operator = Recorder(w.config.store.path, busy_timeout=1.0, now=w.clock.now)

    def refused_while_the_operator_restarts(request: httpx.Request) -> httpx.Response:
        if w.pm2.restart_time == 0:
            command = ["pm2", "restart", "web"]
            operator.emit(
                "restart.requested",
                "web",
                "operator-run",
                by="operator",
                code="operator",
                reason="deploy",
                command=command,
            )
            w.pm2.restart("web")
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, text="ok")

    step = run(w, refused_while_the_operator_restarts).run()
    operator.close()
    assert step.apps[0].state == "OK" and w.pm2.restart_time == 1
    assert w.pm2.jlists == 2  # the new pid made the watch step take a full sample
    assert w.events("process.restarted") == []
    assert pm2_restarts_seen(w) == []


def test_a_sample_taken_while_a_restart_is_under_way_leaves_it_ours(tmp_path):
    """A watch step samples PM2 after `recovery restart` recorded its request but before PM2 did it:
    the next step, which sees the counter grown, still knows the restart was the operator's."""
    w = world(tmp_path)
    w.check()
    w.clock.advance(61)  # a full sample is due at every step from here

    def a_watch_step_meanwhile() -> None:
        run(w).run()

    w.pm2.during = a_watch_step_meanwhile
    run(w).restart_now("web", by="operator", reason="deploy")
    w.clock.advance(61)
    run(w).run()
    assert w.pm2.restart_time == 1
    assert w.events("process.restarted") == []
    assert pm2_restarts_seen(w) == []


def test_pm2_restarting_the_app_on_its_own_is_still_seen(tmp_path):
    w = world(tmp_path)
    w.check()
    w.clock.advance(61)
    w.pm2.pid, w.pm2.restart_time = 5000, 1  # PM2 restarted it: no request of ours
    w.check()
    (seen,) = w.events("process.restarted")
    assert seen.data["count"] == 1 and (seen.data["old_pid"], seen.data["new_pid"]) == (4242, 5000)
    assert pm2_restarts_seen(w) == [("pm2", 1)]


# -- stopping, launching: moves to wait out ----------------------------------------------------------


def app_config(tmp_path) -> AppConfig:
    return World(tmp_path).config.apps[0]


def view(status: str) -> ProcessView:
    return ProcessView("web", "jlist", (Instance("web", 0, 4242, status),))


def test_stopping_and_launching_are_waited_out_not_an_operator_stop(tmp_path):
    app = app_config(tmp_path)
    for status in ("stopping", "launching"):
        d = policy.decide(Observations(FAILED, view(status)), History(state="down"), app, NOW)
        assert (d.action, d.code, d.state) == ("wait", "pm2_transition", "recovering"), status
        assert not policy.needs_lock(d)


def test_a_transient_stopping_keeps_the_incident_open_until_the_app_answers(tmp_path):
    w = world(tmp_path, "hung", verify_timeout='"10s"')
    w.pm2.heals = False
    w.check()  # restarted, not back: an incident is open
    w.clock.advance(120)
    w.app.state = "refused"
    w.pm2.statuses = ["stopping"]  # PM2 stays in the move longer than the check re-reads it
    result = w.check()
    assert w.decisions()[-1] == ("wait", "pm2_transition")
    assert result.apps[0].state == "RECOVERING"
    assert w.pm2.jlists == 2 + 6  # the sample, then read again every 0.5 s for 3 s
    w.clock.advance(5)
    w.pm2.statuses = ["online"]
    w.app.state = "healthy"
    w.check()
    with Store.open(w.config.store.path) as store:
        incidents = store.conn.execute("SELECT outcome FROM incidents").fetchall()
    assert incidents == [("recovered without restart",)]


def test_a_move_that_settles_is_decided_on_where_it_went(tmp_path):
    w = world(tmp_path, "refused")
    w.pm2.statuses = ["stopping", "stopping", "stopped"]
    w.check()
    assert w.decisions() == [("none", "stopped")]
    assert w.pm2.jlists == 3
    assert [e.data["status"] for e in w.events("process.sampled")] == ["stopping", "stopping", "stopped"]
