"""PM2's daemon down or frozen (issue 13, case 4), and pm2 calls that time out (case 10).

The decision logic with fakes (a fake PM2 port, httpx.MockTransport, a fake clock, a real SQLite
store); the daemon's detection and the adapter's process handling on real files and processes
(a fake PM2_HOME, small shell scripts as `pm2`); then the whole thing against a real PM2.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from recovery import config as cfg
from recovery import policy
from recovery.check import CRITICAL, WARNING, CheckRun, HttpProber
from recovery.clock import FakeClock
from recovery.errors import Pm2DaemonUnavailable
from recovery.model import History
from recovery.observations import Attempt, Instance, Observations, Pm2Daemon, ProcessView
from recovery.pm2 import CommandResult, Pm2, daemon_state
from recovery.replay import parse_settings, replay_store
from recovery.store import Recorder, Store

from .conftest import _alive, wait_until
from .test_check import recovery, start, stored, types, write_config

NOW = _dt.datetime(2026, 12, 1, 12, 0, tzinfo=_dt.UTC)
HOME = "/tmp/pm2home"


def failed(n: int = 2, error: str = "refused") -> tuple[Attempt, ...]:
    return tuple(Attempt(False, i, "http://127.0.0.1:3000/", 1.0, error=error) for i in range(1, n + 1))


def answered() -> tuple[Attempt, ...]:
    return (Attempt(True, 1, "http://127.0.0.1:3000/", 5.0, status=200),)


def app_config() -> cfg.AppConfig:
    return cfg.AppConfig(name="web", url="http://127.0.0.1:3000/")


def decide(attempts: tuple[Attempt, ...], daemon: Pm2Daemon, view: ProcessView | None = None) -> policy.Decision:
    return policy.decide(Observations(attempts, view, "down", daemon=daemon), History(), app_config(), NOW)


# -- the pure policy -------------------------------------------------------------------------


def test_a_down_daemon_with_a_saved_list_is_resurrected():
    d = decide(failed(), Pm2Daemon("down", HOME, None, "no pm2.pid", dump=True))
    assert (d.action, d.code, d.state) == ("restart", "pm2_down", "recovering")
    assert d.inputs["pm2_daemon"]["state"] == "down"


def test_a_down_daemon_without_a_saved_list_escalates_and_says_so():
    d = decide(failed(), Pm2Daemon("down", HOME, None, "no pm2.pid", dump=False))
    assert (d.action, d.code) == ("escalate", "pm2_down")
    assert f"{HOME}/dump.pm2" in d.reason and "pm2 save" in d.reason


def test_a_frozen_daemon_escalates_and_restarts_nothing():
    d = decide(failed(error="timeout"), Pm2Daemon("frozen", HOME, 4242, "pm2 jlist did not answer within 10s"))
    assert (d.action, d.code, d.state) == ("escalate", "pm2_frozen", "down")


def test_processes_that_outlived_the_daemon_are_not_resurrected_beside():
    orphan = ProcessView("web", "pidfile", (Instance("web", 0, 777, "online"),))
    d = decide(failed(error="timeout"), Pm2Daemon("down", HOME, None, "pid 12 is not running", dump=True), orphan)
    assert (d.action, d.code) == ("escalate", "pm2_down") and "777" in d.reason


@pytest.mark.parametrize(("state", "code"), [("down", "pm2_down"), ("frozen", "pm2_frozen")])
def test_an_app_that_answers_while_the_daemon_is_gone_is_reported_not_restarted(state, code):
    d = decide(answered(), Pm2Daemon(state, HOME, None, "why", dump=True))
    assert (d.action, d.code, d.state) == ("escalate", code, "healthy")


def test_a_paused_app_is_not_resurrected():
    history = History(paused_until="2026-12-01T13:00:00.000Z", pause_reason="deploy")
    daemon = Pm2Daemon("down", HOME, None, "no pm2.pid", dump=True)
    d = policy.decide(Observations(failed(), None, "down", daemon=daemon), history, app_config(), NOW)
    assert (d.action, d.code) == ("none", "paused")


# -- the check flow with a fake PM2 ----------------------------------------------------------


class Apps:
    """Every app behind its URL: each answers once `up` holds its port and it has refused the
    number of requests `starting` gives it (an app still starting); refuses otherwise."""

    def __init__(self, *ports: int) -> None:
        self.up = set(ports)
        self.starting: dict[int, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port or 80
        if port not in self.up or self.starting.get(port, 0) > 0:
            self.starting[port] = self.starting.get(port, 0) - 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, text="ok")


class DaemonPm2:
    """A PM2 whose daemon was killed with its apps: every call but resurrect fails as the real
    adapter does; resurrect brings the daemon and every saved app back."""

    def __init__(self, apps: Apps, ports: dict[str, int], *, dump: bool = True) -> None:
        self.apps, self.ports = apps, ports
        self.state = Pm2Daemon("down", HOME, None, f"no {HOME}/pm2.pid", dump)
        self.calls: list[str] = []
        self.pid_base = 5000  # each daemon start gives the apps new pids

    def pid(self, name: str) -> int:
        return self.pid_base + self.ports[name]

    def kill(self) -> None:
        """`pm2 kill`: the daemon and its apps are gone."""
        self.state = Pm2Daemon("down", HOME, None, f"no {HOME}/pm2.pid", self.state.dump)
        self.apps.up.clear()

    def _require(self) -> None:
        if self.state.state != "up":
            raise Pm2DaemonUnavailable(f"PM2's daemon is not running ({self.state.detail})", self.state)

    def view(self, name: str) -> ProcessView:
        self.calls.append("jlist")
        self._require()
        return ProcessView(name, "jlist", (Instance(name, 0, self.pid(name), "online"),))

    def quick_view(self, name: str) -> ProcessView | None:
        if self.state.state != "up":
            return None
        return ProcessView(name, "pidfile", (Instance(name, 0, self.pid(name), "online"),))

    def restart(self, name: str, command: str = "restart") -> CommandResult:
        self.calls.append(command)
        self._require()
        return CommandResult(["pm2", command, name], 0, "", "", 10.0)

    def resurrect(self) -> CommandResult:
        self.calls.append("resurrect")
        self.state = Pm2Daemon("up", HOME, 4242, "", True)
        self.pid_base += 1000
        self.apps.up.update(self.ports.values())
        # Each app takes a moment to listen again: the second still refuses when its check probes it.
        self.apps.starting = {port: 2 * n + 1 for n, port in enumerate(self.ports.values())}
        return CommandResult(["pm2", "resurrect"], 0, "", "", 800.0)

    def daemon(self) -> Pm2Daemon:
        return self.state

    def cpu_mark(self, name: str) -> Any:
        return None

    def cpu_window(self, mark: Any) -> dict[str, Any]:
        return {}


class Fleet:
    """Two apps under one PM2 whose daemon is down, checked on a fake clock."""

    PORTS = {"web": 3001, "api": 3002}

    def __init__(self, tmp_path: Path, *, dump: bool = True) -> None:
        text = f'[store]\npath = "{tmp_path / "recovery.db"}"\nbusy_timeout = "1s"\n\n[logs]\nin_check = false\n'
        for name, port in self.PORTS.items():
            text += f'\n[[apps]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/"\nretries = 2\n'
        (tmp_path / "recovery.toml").write_text(text)
        self.config = cfg.load(tmp_path / "recovery.toml")
        self.apps = Apps()
        self.pm2 = DaemonPm2(self.apps, self.PORTS, dump=dump)
        self.clock = FakeClock()

    def check(self, *, dry_run: bool = False):
        return CheckRun(
            self.config,
            pm2=self.pm2,
            prober=HttpProber(httpx.MockTransport(self.apps)),
            recorder=Recorder(self.config.store.path, busy_timeout=1.0, now=self.clock.now),
            clock=self.clock,
            dry_run=dry_run,
        ).run()

    def events(self, *types: str) -> list[Any]:
        with Store.open(self.config.store.path) as store:
            return store.query(types=types or None)

    def answered_before(self) -> None:
        """Each app's URL answered in an earlier run: a refusal now is a failure, not a wrong URL."""
        rec = Recorder(self.config.store.path, busy_timeout=1.0, now=self.clock.now)
        for app in self.config.apps:
            rec.emit(
                "probe.succeeded",
                app.name,
                "earlier",
                url=app.url,
                attempt=1,
                latency_ms=3.0,
                status=200,
                phase="check",
            )
        rec.close()


def test_a_down_daemon_is_resurrected_once_for_every_app_and_each_app_is_verified(tmp_path):
    f = Fleet(tmp_path)
    result = f.check()
    assert result.code == WARNING, result.lines()
    assert [(a.app, a.state) for a in result.apps] == [("web", "RECOVERED"), ("api", "RECOVERED")]
    assert f.pm2.calls.count("resurrect") == 1 and "restart" not in f.pm2.calls
    (requested,) = f.events("restart.requested")
    assert requested.app is None and requested.data["command"] == ["pm2", "resurrect"]
    assert requested.data["code"] == "pm2_down" and requested.data["apps"] == ["web", "api"]
    assert [e.app for e in f.events("restart.succeeded")] == [None]
    assert sorted(e.app for e in f.events("verification.passed")) == ["api", "web"]
    decisions = {e.app: (e.data["action"], e.data["code"]) for e in f.events("decision.made")}
    assert decisions["web"] == ("restart", "pm2_down")
    # api, still starting when its turn came, is verified, not restarted on top of the resurrect
    assert decisions["api"] == ("wait", "pm2_down")


def test_the_down_and_recovered_incident_comes_from_the_record(tmp_path):
    f = Fleet(tmp_path)
    f.check()
    with Store.open(f.config.store.path) as store:
        rows = store.conn.execute("SELECT app, outcome, first_reason FROM incidents ORDER BY app").fetchall()
    assert [(app, outcome) for app, outcome, _ in rows] == [("api", "restarted"), ("web", "restarted")]
    assert "PM2's daemon is not running" in dict((a, r) for a, _, r in rows)["web"]


def test_the_new_pids_after_a_resurrect_are_ours_not_pm2_restarting_the_apps(tmp_path):
    f = Fleet(tmp_path)
    f.pm2.resurrect()  # running before the night starts
    f.apps.starting.clear()
    f.check()
    f.pm2.kill()
    f.clock.advance(300)
    f.check()  # resurrected: every app has a new pid
    f.clock.advance(300)
    f.check()  # a full sample, which sees the new pids
    with Store.open(f.config.store.path) as store:
        by_pm2 = store.conn.execute("SELECT app, reason FROM restarts WHERE by = 'pm2'").fetchall()
    assert by_pm2 == []
    assert [e for e in f.events("process.restarted")] == []


def test_an_app_still_starting_after_a_resurrect_is_warming_up_not_hung(tmp_path):
    f = Fleet(tmp_path)
    f.check()  # resurrected
    f.apps.up.discard(f.PORTS["web"])  # web does not listen yet in the next run
    f.clock.advance(10)
    f.check()
    assert [e.data["code"] for e in f.events("decision.made") if e.app == "web"][-1] == "warming_up"
    assert "restart" not in f.pm2.calls


def test_without_a_saved_list_nothing_is_started_and_the_check_is_critical(tmp_path):
    f = Fleet(tmp_path, dump=False)
    result = f.check()
    assert result.code == CRITICAL
    assert "resurrect" not in f.pm2.calls
    assert all("dump.pm2" in a.summary for a in result.apps)
    assert {(e.data["action"], e.data["code"]) for e in f.events("decision.made")} == {("escalate", "pm2_down")}
    assert f.events("restart.requested") == []


def test_a_dry_run_resurrects_nothing(tmp_path):
    f = Fleet(tmp_path)
    result = f.check(dry_run=True)
    assert "resurrect" not in f.pm2.calls and result.code == CRITICAL


def test_a_failed_resurrect_is_recorded_once_and_not_waited_on_for_every_app(tmp_path):
    f = Fleet(tmp_path)
    f.pm2.resurrect = lambda: (  # type: ignore[method-assign]
        f.pm2.calls.append("resurrect"),
        CommandResult(["pm2", "resurrect"], 1, "", "[PM2][ERROR] cannot spawn the daemon", 50.0),
    )[1]
    result = f.check()
    assert result.code == CRITICAL and f.pm2.calls.count("resurrect") == 1
    assert all("pm2 resurrect exited 1: [PM2][ERROR] cannot spawn the daemon" in a.summary for a in result.apps)
    assert [(e.app, e.data["exit_code"]) for e in f.events("restart.failed")] == [(None, 1)]
    assert f.events("probe.failed") and not [e for e in f.events("probe.failed") if e.data["phase"] == "verify"]
    with Store.open(f.config.store.path) as store:
        replay = replay_store(store, list(f.config.apps), parse_settings([]), None)
    assert [a.changed for a in replay.apps] == [[], []]


def test_a_daemon_another_run_brought_back_is_not_resurrected_twice(tmp_path):
    f = Fleet(tmp_path)
    original = f.pm2.daemon

    def back_by_now() -> Pm2Daemon:  # read under the daemon lock: another run resurrected it
        f.pm2.state = Pm2Daemon("up", HOME, 4243, "", True)
        f.apps.up.update(f.PORTS.values())
        return original()

    f.pm2.daemon = back_by_now  # type: ignore[method-assign]
    result = f.check()
    assert "resurrect" not in f.pm2.calls
    assert result.apps[0].state == "RECOVERED"
    assert f.events("restart.requested") == []


def test_an_app_another_run_just_resurrected_is_verified_not_restarted_on_top(tmp_path):
    f = Fleet(tmp_path)
    f.config = dataclasses.replace(f.config, apps=f.config.apps[:1])
    f.answered_before()
    f.pm2.state = Pm2Daemon("up", HOME, 4242, "", True)  # already back when this run reads PM2
    view = f.pm2.view

    def resurrected_meanwhile(name: str) -> ProcessView:
        # Another run resurrected PM2's saved list while this one probed: web is still starting.
        other = Recorder(f.config.store.path, busy_timeout=1.0, now=f.clock.now)
        command = ["pm2", "resurrect"]
        other.emit(
            "restart.requested", None, "other", by="check", code="pm2_down", reason="r", command=command, apps=["web"]
        )
        other.close()
        f.apps.up.add(f.PORTS["web"])
        return view(name)

    f.pm2.view = resurrected_meanwhile  # type: ignore[method-assign]
    result = f.check()
    assert "restart" not in f.pm2.calls and "resurrect" not in f.pm2.calls
    assert [(e.data["action"], e.data["code"]) for e in f.events("decision.made")] == [("wait", "pm2_down")]
    assert result.apps[0].state == "RECOVERED"


@pytest.mark.parametrize("dump", [True, False], ids=["resurrected", "no-saved-list"])
def test_the_replay_takes_the_same_daemon_decisions(tmp_path, dump):
    f = Fleet(tmp_path, dump=dump)
    f.answered_before()  # the apps served before the night PM2 died
    f.check()
    f.clock.advance(60)
    f.check()
    with Store.open(f.config.store.path) as store:
        replay = replay_store(store, list(f.config.apps), parse_settings([]), None)
    codes = {e.data["code"] for e in f.events("decision.made")}
    assert "pm2_down" in codes
    assert sorted((a.app, a.changed) for a in replay.apps) == [(name, []) for name in ("api", "web")]


# -- detecting the daemon, on real files and processes ------------------------------------------


def god(home: Path, title: str = "PM2 v7.0.4: God Daemon") -> subprocess.Popen:
    """A stand-in daemon: a process whose command line reads like PM2's God daemon, its pid in
    `pm2.pid`, and the two sockets PM2 keeps beside it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", f"{title} ({home})"])
    (home / "pm2.pid").write_text(str(proc.pid))
    for name in ("rpc.sock", "pub.sock"):
        (home / name).touch()
    return proc


@pytest.fixture
def home(tmp_path: Path):
    h = tmp_path / "pm2home"
    h.mkdir()
    procs: list[subprocess.Popen] = []
    yield h, procs
    for p in procs:
        p.kill()
        p.wait()


def test_a_live_god_daemon_with_its_sockets_is_up(home):
    h, procs = home
    procs.append(god(h))
    assert daemon_state(h).state == "up"


def test_no_pid_file_means_down(home):
    h, _ = home
    d = daemon_state(h)
    assert (d.state, d.dump) == ("down", False) and "pm2.pid" in d.detail
    (h / "dump.pm2").write_text("[]")
    assert daemon_state(h).dump is True


def test_a_pid_file_naming_a_dead_process_means_down(home):
    h, _ = home
    p = subprocess.Popen(["true"])
    p.wait()
    (h / "pm2.pid").write_text(str(p.pid))
    d = daemon_state(h)
    assert d.state == "down" and "not running" in d.detail


def test_a_reused_pid_is_not_taken_for_the_daemon(home):
    h, procs = home
    procs.append(god(h, title="some other program"))
    d = daemon_state(h)
    assert d.state == "down" and "another process" in d.detail


def test_the_daemon_of_another_pm2_home_is_not_ours(home, tmp_path):
    h, procs = home
    proc = god(h)
    procs.append(proc)
    assert daemon_state(h).state == "up"
    other = tmp_path / "other"
    other.mkdir()
    (other / "pm2.pid").write_text(str(proc.pid))  # a reused pid that is another user's daemon
    d = daemon_state(other)
    assert d.state == "down" and str(h) in d.detail


def test_a_daemon_without_its_socket_is_frozen(home):
    h, procs = home
    procs.append(god(h))
    (h / "rpc.sock").unlink()
    d = daemon_state(h)
    assert d.state == "frozen" and "rpc.sock" in d.detail


def test_a_stopped_daemon_is_frozen(home):
    h, procs = home
    proc = god(h)
    procs.append(proc)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: daemon_state(h).state == "frozen", timeout=5, message="the stopped daemon seen frozen")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert daemon_state(h).state == "up"


# -- the adapter: no pm2 call may start a daemon, and a timed-out call ends with its children --


def fake_pm2(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bin" / "pm2"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n{body}\n')
    path.chmod(0o755)
    return path


def calls(tmp_path: Path) -> list[str]:
    f = tmp_path / "calls"
    return f.read_text().splitlines() if f.exists() else []


def test_no_pm2_call_is_made_while_the_daemon_is_down_except_resurrect(tmp_path, home):
    h, _ = home
    pm2 = Pm2(fake_pm2(tmp_path, "echo '[]'"), {"PM2_HOME": str(h), "PATH": os.defpath})
    with pytest.raises(Pm2DaemonUnavailable, match="PM2's daemon is not running") as caught:
        pm2.jlist()
    assert caught.value.daemon.state == "down"
    with pytest.raises(Pm2DaemonUnavailable):
        pm2.restart("web")
    assert calls(tmp_path) == []  # a real pm2 would have spawned an empty daemon
    assert pm2.resurrect().exit_code == 0
    assert calls(tmp_path) == ["resurrect"]


def test_a_daemon_still_opening_its_sockets_is_waited_for_not_taken_for_frozen(tmp_path, home):
    h, procs = home
    procs.append(god(h))
    for name in ("rpc.sock", "pub.sock"):
        (h / name).unlink()
    # Another run's `pm2 resurrect`: the daemon wrote its pid file and opens its sockets next.
    opening = threading.Timer(0.3, lambda: [(h / name).touch() for name in ("rpc.sock", "pub.sock")])
    opening.start()
    try:
        pm2 = Pm2(fake_pm2(tmp_path, "echo '[]'"), {"PM2_HOME": str(h), "PATH": os.defpath})
        assert pm2.jlist() == []
    finally:
        opening.join()


def test_a_jlist_that_times_out_means_a_frozen_daemon_and_is_not_waited_on_twice(tmp_path, home):
    h, procs = home
    procs.append(god(h))
    pm2 = Pm2(fake_pm2(tmp_path, "exec sleep 300"), {"PM2_HOME": str(h), "PATH": os.defpath}, read_timeout=0.5)
    with pytest.raises(Pm2DaemonUnavailable, match=r"did not answer within 0\.5s") as caught:
        pm2.jlist()
    assert caught.value.daemon.state == "frozen"
    with pytest.raises(Pm2DaemonUnavailable):
        pm2.jlist()
    assert calls(tmp_path) == ["jlist"]


def test_a_pm2_call_that_times_out_ends_with_every_process_it_started(tmp_path, home):
    h, procs = home
    procs.append(god(h))
    # pm2 starts a child that ignores SIGTERM, then hangs: the child must not outlive the call.
    body = f"(trap '' TERM; exec sleep 300) &\necho $! > {tmp_path}/child\nsleep 300"
    pm2 = Pm2(fake_pm2(tmp_path, body), {"PM2_HOME": str(h), "PATH": os.defpath}, timeout=1.0)
    result = pm2.restart("web")
    assert result.exit_code == -1 and result.timed_out and "timed out after 1s" in result.stderr
    child = int((tmp_path / "child").read_text())
    wait_until(lambda: not _alive(child), timeout=10, message=f"pm2's child {child} to end")


def test_a_jlist_that_times_out_leaves_no_child_behind(tmp_path, home):
    h, procs = home
    procs.append(god(h))
    body = f"sleep 300 &\necho $! > {tmp_path}/child\nwait"
    pm2 = Pm2(fake_pm2(tmp_path, body), {"PM2_HOME": str(h), "PATH": os.defpath}, read_timeout=0.5)
    with pytest.raises(Pm2DaemonUnavailable):
        pm2.jlist()
    child = int((tmp_path / "child").read_text())
    wait_until(lambda: not _alive(child), timeout=10, message=f"pm2's child {child} to end")


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("reads /proc")


# -- against a real PM2 ---------------------------------------------------------------------


def daemon_starts(sandbox) -> int:
    """How many times a PM2 daemon started in this PM2_HOME (PM2 logs each start)."""
    log = sandbox.home / "pm2.log"
    return log.read_text(errors="replace").count("New PM2 Daemon started") if log.exists() else 0


def decisions(config: Path, app: str) -> list[tuple[str, str]]:
    return [(e.data["action"], e.data["code"]) for e in stored(config, app) if e.type == "decision.made"]


@pytest.mark.pm2
def test_after_pm2_kill_a_check_resurrects_the_saved_apps(pm2, tmp_path):
    web, api = pm2.start_app("web"), pm2.start_app("api")
    config = write_config(tmp_path, pm2, web, api)
    pm2.run("save")
    pm2.run("kill")
    assert not web.answers() and not api.answers() and not (pm2.home / "pm2.pid").exists()
    before = daemon_starts(pm2)
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("RECOVERY WARNING - web RECOVERED resurrected by pm2 resurrect")  # the worst first
    assert lines[1].startswith("web RECOVERED resurrected by pm2 resurrect after 2 failed probes (refused)")
    assert lines[2].split()[:2] in (["api", "OK"], ["api", "RECOVERED"]), lines  # up by its turn, or verified
    assert web.answers() and api.answers()
    assert decisions(config, "web") == [("restart", "pm2_down")]
    (requested,) = [e for e in stored(config) if e.type == "restart.requested"]
    assert requested.app is None and requested.data["command"] == ["pm2", "resurrect"]
    assert requested.data["code"] == "pm2_down" and requested.data["apps"] == ["web", "api"]
    assert "verification.passed" in types(stored(config, "web"))
    # One daemon started since the kill, the one `pm2 resurrect` started: no empty one before it.
    assert daemon_starts(pm2) == before + 1
    assert web.status() == ["online"] and api.status() == ["online"]


@pytest.mark.pm2
def test_after_pm2_kill_without_a_saved_list_no_daemon_is_started(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    pm2.run("kill")
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "PM2's daemon is not running" in proc.stdout and "dump.pm2" in proc.stdout
    assert decisions(config, "web") == [("escalate", "pm2_down")]
    assert not (pm2.home / "pm2.pid").exists()  # no empty daemon was started
    assert not any(e.type == "restart.requested" for e in stored(config))


@pytest.mark.pm2
def test_a_stopped_daemon_is_reported_frozen_and_nothing_is_restarted(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    god_pid = int((pm2.home / "pm2.pid").read_text())
    app.control("hang")
    app.wait_until(lambda: not app.answers(0.5), message="the app to hang")
    os.kill(god_pid, signal.SIGSTOP)
    try:
        proc = recovery(pm2, "check", "--config", str(config))
    finally:
        os.kill(god_pid, signal.SIGCONT)  # before the fixture's `pm2 kill`
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "PM2's daemon does not answer" in proc.stdout
    assert decisions(config, "web") == [("escalate", "pm2_frozen")]
    events = stored(config, "web")
    assert types(events).count("probe.failed") == 2 and "restart.requested" not in types(events)
    assert app.processes()[0]["pm2_env"]["restart_time"] == 0


@pytest.mark.pm2
def test_concurrent_checks_after_pm2_kill_resurrect_once(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    pm2.run("save")
    pm2.run("kill")
    before = daemon_starts(pm2)
    runs = [start(pm2, "check", "--config", str(config)) for _ in range(3)]
    outputs = [(p.wait(timeout=180), p.stdout.read() if p.stdout else "") for p in runs]
    assert app.answers()
    assert sorted(code for code, _ in outputs) == [1, 1, 1], outputs
    resurrects = [e for e in stored(config) if e.type == "restart.requested"]
    assert len(resurrects) == 1 and resurrects[0].data["command"] == ["pm2", "resurrect"]
    assert daemon_starts(pm2) == before + 1
    assert len(app.processes()) == 1
