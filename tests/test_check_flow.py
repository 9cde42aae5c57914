"""The check flow in milliseconds: a fake PM2, `httpx.MockTransport` for the app, a fake clock.

The store is a real SQLite file; nothing else is real. tests/test_check.py runs the same flow
against a real PM2 and a real Node server, for what only they show.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from recovery import config as cfg
from recovery.check import CRITICAL, OK, UNKNOWN, WARNING, CheckRun, HttpProber, MissingPm2
from recovery.clock import FakeClock
from recovery.errors import Pm2Error
from recovery.observations import Instance, ProcessView
from recovery.pm2 import CommandResult
from recovery.store import Recorder, Store, spool_path

URL = "http://127.0.0.1:3000/"


class FakeApp:
    """The app behind the URL: 'healthy', 'hung' (the connection times out), 'stalled' (it
    accepts, never answers), 'refused' (nothing listens) or 'slow'."""

    def __init__(self, state: str = "healthy") -> None:
        self.state = state
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.state == "hung":
            raise httpx.ConnectTimeout("timed out", request=request)
        if self.state == "stalled":
            raise httpx.ReadTimeout("timed out", request=request)
        if self.state == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, text="ok")


class FakePm2:
    """PM2 as the check sees it: a status, a pid, a restart that brings the app back."""

    def __init__(self, app: FakeApp, status: str = "online", *, heals: bool = True) -> None:
        self.app, self.status, self.heals = app, status, heals
        self.pid, self.restart_time = 4242, 0
        self.restarts: list[tuple[str, str]] = []
        self.jlists = 0
        self.unreadable: str | None = None

    def _view(self, name: str, source: str) -> ProcessView:
        inst = Instance(name, 0, self.pid, self.status, memory=50 << 20, restart_time=self.restart_time)
        return ProcessView(name, source, (inst,))

    def view(self, name: str) -> ProcessView:
        self.jlists += 1
        if self.unreadable:
            raise Pm2Error(self.unreadable)
        return self._view(name, "jlist")

    def quick_view(self, name: str) -> ProcessView | None:
        return self._view(name, "pidfile")

    def restart(self, name: str, command: str = "restart") -> CommandResult:
        self.restarts.append((name, command))
        self.pid += 1
        self.restart_time += 1
        if self.heals:
            self.app.state = "healthy"
        return CommandResult(["pm2", command, name], 0, "", "", 12.0)

    def cpu_mark(self, name: str) -> Any:
        return None

    def cpu_window(self, mark: Any) -> dict[str, Any]:
        return {}


def write_config(tmp_path: Path, **app: str) -> cfg.Config:
    settings = {"timeout": '"2s"', "retries": "3", "retry_delay": '"1s"', "verify_timeout": '"30s"', **app}
    text = f'[store]\npath = "{tmp_path / "recovery.db"}"\nbusy_timeout = "1s"\n\n[logs]\nin_check = false\n'
    text += f'\n[[apps]]\nname = "web"\nurl = "{URL}"\n' + "".join(f"{k} = {v}\n" for k, v in settings.items())
    path = tmp_path / "recovery.toml"
    path.write_text(text)
    return cfg.load(path)


class World:
    """One app, its PM2 and a clock, checked as often as a test likes."""

    def __init__(self, tmp_path: Path, state: str = "healthy", status: str = "online", **settings: str) -> None:
        self.config = write_config(tmp_path, **settings)
        self.app = FakeApp(state)
        self.pm2 = FakePm2(self.app, status)
        self.clock = FakeClock()

    def check(self, *, dry_run: bool = False, pm2: Any = None, problem: str | None = None):
        run = CheckRun(
            self.config,
            pm2=pm2 or self.pm2,
            prober=HttpProber(httpx.MockTransport(self.app)),
            recorder=Recorder(self.config.store.path, busy_timeout=1.0, now=self.clock.now),
            clock=self.clock,
            trigger="manual",
            dry_run=dry_run,
            pm2_problem=problem,
        )
        return run.run()

    def events(self, *types: str) -> list[Any]:
        with Store.open(self.config.store.path) as store:
            return store.query(app="web", types=types or None)

    def decisions(self) -> list[tuple[str, str]]:
        return [(e.data["action"], e.data["code"]) for e in self.events("decision.made")]


def test_a_healthy_app_is_left_alone_and_recorded(tmp_path):
    w = World(tmp_path)
    result = w.check()
    assert result.code == OK and result.lines()[1].startswith("web OK ")
    assert w.decisions() == [("none", "healthy")]
    assert [e.type for e in w.events()] == ["probe.succeeded", "process.sampled", "decision.made"]
    assert w.pm2.restarts == []


def test_a_hung_app_is_restarted_once_and_verified(tmp_path):
    w = World(tmp_path, "hung")
    result = w.check()
    assert (result.code, result.apps[0].state) == (WARNING, "RECOVERED")
    assert result.apps[0].summary.startswith("restarted after 3 failed probes (timeout), healthy again in")
    assert w.pm2.restarts == [("web", "restart")]
    types = [e.type for e in w.events()]
    assert types[:5] == ["probe.failed"] * 3 + ["process.sampled", "decision.made"]
    assert types[5:8] == ["restart.requested", "restart.succeeded", "probe.succeeded"]
    assert "verification.passed" in types
    (requested,) = w.events("restart.requested")
    assert requested.data["code"] == "hung"
    # Between the three attempts: retry_delay (1s), but at least 2 x timeout / (retries - 1) from
    # the start of an attempt that timed out; the fake's timeouts take no time on the fake clock.
    assert w.clock.slept[:2] == [2.0, 2.0]


def test_a_stalled_app_is_a_hang_too(tmp_path):
    w = World(tmp_path, "stalled")
    assert w.check().code == WARNING
    assert w.decisions()[0] == ("restart", "hung")


def test_refused_while_pm2_says_online_is_restarted(tmp_path):
    w = World(tmp_path)
    assert w.check().code == OK  # the URL answered once: a refusal now is a real failure (issue 13)
    w.app.state = "refused"
    w.clock.advance(60)
    result = w.check()
    assert result.code == WARNING and "(refused)" in result.apps[0].summary
    assert w.pm2.restarts == [("web", "restart")]


def test_a_failure_in_the_warm_up_grace_is_not_restarted_again(tmp_path):
    w = World(tmp_path, "hung", restart_grace='"60s"')
    w.pm2.heals = False
    assert w.check().code == CRITICAL  # restarted, did not come back within verify_timeout
    w.clock.advance(10)
    result = w.check()
    assert result.apps[0].state == "RECOVERING"
    assert w.decisions()[-1] == ("wait", "warming_up")
    assert len(w.pm2.restarts) == 1


def test_past_max_restarts_the_app_is_suspended_and_not_restarted(tmp_path):
    w = World(tmp_path, "hung", max_restarts="2", restart_grace='"10s"', window='"1h"')
    w.pm2.heals = False
    for _ in range(3):
        w.check()
        w.clock.advance(600)
    result = w.check()
    assert result.apps[0].state == "SUSPENDED" and result.code == CRITICAL
    assert len(w.pm2.restarts) == 2
    assert ("suppress", "restart_loop") in w.decisions()


def test_a_dry_run_records_the_decision_and_restarts_nothing(tmp_path):
    w = World(tmp_path, "hung")
    result = w.check(dry_run=True)
    assert (result.code, result.apps[0].state) == (CRITICAL, "DOWN")
    assert result.apps[0].summary.endswith("would restart (dry run, nothing done)")
    assert w.pm2.restarts == []
    (decision,) = w.events("decision.made")
    assert decision.data["dry_run"] is True and decision.data["code"] == "hung"


def test_a_lock_held_by_another_run_escalates_instead_of_restarting(tmp_path):
    w = World(tmp_path, "hung")
    lock = os.open(str(w.config.store.path) + ".web.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        result = w.check()
    finally:
        os.close(lock)
    assert (result.code, result.apps[0].state) == (CRITICAL, "CRITICAL")
    assert "another recovery run held the lock" in result.apps[0].summary
    assert w.pm2.restarts == []
    assert w.decisions() == [("escalate", "lock_timeout")]


def test_an_unusable_store_still_restarts_the_hung_app_and_spools_every_event(tmp_path):
    w = World(tmp_path, "hung")
    w.config.store.path.write_bytes(b"not a database" * 100)
    result = w.check()
    assert result.code == UNKNOWN
    assert w.pm2.restarts == [("web", "restart")]
    assert result.apps[0].state == "RECOVERED"
    assert any("event store unusable" in p and "spooled to" in p for p in result.problems)
    spooled = spool_path(w.config.store.path).read_text().splitlines()
    assert any('"type": "restart.requested"' in line for line in spooled)
    assert any('"type": "verification.passed"' in line for line in spooled)


def test_pm2_unreadable_on_a_failure_escalates_without_a_restart(tmp_path):
    w = World(tmp_path, "hung")
    w.pm2.unreadable = "pm2 jlist exited 1: daemon not answering"
    result = w.check()
    assert result.code == CRITICAL and "daemon not answering" in result.apps[0].summary
    assert w.decisions() == [("escalate", "pm2_unreadable")]


def test_pm2_missing_is_unknown_and_the_app_is_still_probed(tmp_path):
    # Issue 13 case 5: it used to skip the probes (requests == 0); tests/test_pm2_missing.py has the rest.
    w = World(tmp_path, "hung")
    result = w.check(pm2=MissingPm2("pm2 not found on PATH"), problem="pm2 not found on PATH")
    assert result.code == UNKNOWN and result.problems == ["pm2 not found on PATH"]
    assert w.app.requests == 3
    assert w.decisions() == [("escalate", "pm2_unreadable")]


@pytest.mark.parametrize("status", ["stopped", "errored"])
def test_pm2_status_decides_between_leaving_alone_and_restarting(tmp_path, status):
    w = World(tmp_path, "refused", status=status)
    w.check()
    expected = {"stopped": [("none", "stopped")], "errored": [("restart", "errored")]}[status]
    assert w.decisions() == expected
