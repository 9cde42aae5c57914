"""`recovery watch`: the check in a loop; scheduling with a fake clock, then for real under PM2."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from recovery_cli.main import app as cli
from typer.testing import CliRunner

from recovery.check import CRITICAL, OK, WARNING, AppResult, CheckResult
from recovery.config import load
from recovery.store import Store
from recovery.watch import Journal, run_watch, stop_on_signals, watched

# --- scheduling, with a fake clock and a fake check -------------------------------------------


class FakeTime:
    """A clock that only moves when a step runs or the loop waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeStop(threading.Event):
    """An Event whose wait() moves the fake clock instead of blocking."""

    def __init__(self, clock: FakeTime) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None and timeout >= 0
        self.waits.append(round(timeout, 6))
        if not self.is_set():
            self.clock.now += timeout
        return self.is_set()


class FakeCheck:
    """Steps that take the given durations; the stop is set once they are used up."""

    def __init__(self, clock: FakeTime, stop: threading.Event, durations: list[float]) -> None:
        self.clock, self.stop, self.durations = clock, stop, list(durations)
        self.spans: list[tuple[float, float]] = []
        self.configs: list = []

    def __call__(self, config):
        self.configs.append(config)
        return self

    def run(self) -> CheckResult:
        start = self.clock.now
        self.clock.now += self.durations.pop(0)
        self.spans.append((start, self.clock.now))
        if not self.durations:
            self.stop.set()  # as a signal handler would, while the step is still running
        return CheckResult("run", [AppResult("web", OK, "OK", "3ms")])


def config_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "recovery.toml"
    path.write_text(text or '[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n')
    return path


def run_fake(tmp_path: Path, durations: list[float], interval: float = 2.0):
    clock = FakeTime()
    stop = FakeStop(clock)
    check = FakeCheck(clock, stop, durations)
    results: list[CheckResult] = []
    code = run_watch(
        load(config_file(tmp_path)),
        interval=interval,
        stop=stop,
        on_result=results.append,
        clock=clock,
        make_check=check,
    )
    return code, check, stop, results


def test_steps_start_one_interval_apart_measured_from_start_to_start(tmp_path):
    code, check, stop, results = run_fake(tmp_path, [0.5, 0.25, 1.0, 0.5])
    assert code == 0 and len(results) == 4
    assert [start for start, _ in check.spans] == [0.0, 2.0, 4.0, 6.0]
    assert stop.waits == [1.5, 1.75, 1.0, 1.5]


def test_a_step_longer_than_the_interval_is_followed_at_once_never_overlapped(tmp_path):
    code, check, stop, _ = run_fake(tmp_path, [0.5, 5.0, 0.5, 0.5])
    assert [start for start, _ in check.spans] == [0.0, 2.0, 7.0, 9.0]
    assert stop.waits[1] == 0.0
    assert all(end <= nxt for (_, end), (nxt, _) in zip(check.spans, check.spans[1:]))  # one step at a time


def test_a_stop_during_a_step_ends_the_watch_after_that_step(tmp_path):
    code, check, stop, results = run_fake(tmp_path, [0.5])
    assert code == 0 and len(check.spans) == 1 and len(results) == 1  # the step finished and was reported
    assert stop.waits == [1.5] and check.spans[0] == (0.0, 0.5)  # the wait returned at once: no second step


def test_a_stop_before_the_first_step_runs_nothing(tmp_path):
    clock = FakeTime()
    stop = FakeStop(clock)
    stop.set()
    check = FakeCheck(clock, stop, [1.0])
    assert run_watch(load(config_file(tmp_path)), interval=2, stop=stop, clock=clock, make_check=check) == 0
    assert check.spans == []


def test_a_step_that_raises_is_reported_as_unknown_and_the_watch_goes_on(tmp_path, capsys):
    clock = FakeTime()
    stop = FakeStop(clock)
    calls = []

    class Flaky:
        def run(self) -> CheckResult:
            calls.append(clock.now)
            if len(calls) == 1:
                raise OSError("no space left on device")
            stop.set()
            return CheckResult("run", [AppResult("web", OK, "OK", "3ms")])

    results: list[CheckResult] = []
    run_watch(
        load(config_file(tmp_path)),
        interval=2,
        stop=stop,
        on_result=results.append,
        clock=clock,
        make_check=lambda c: Flaky(),
    )
    assert len(calls) == 2
    assert results[0].app_lines() == ["UNKNOWN watch step failed: OSError: no space left on device"]
    assert "Traceback" in capsys.readouterr().err


def test_apps_are_probed_with_the_watch_settings_unless_they_set_their_own(tmp_path):
    path = config_file(
        tmp_path,
        """
[watch]
timeout = "1s"
retries = 2
retry_delay = "0s"

[[apps]]
name = "web"
url = "http://127.0.0.1:9/"

[[apps]]
name = "api"
url = "http://127.0.0.1:9/api"
timeout = "4s"
""",
    )
    clock = FakeTime()
    stop = FakeStop(clock)
    check = FakeCheck(clock, stop, [0.1])
    run_watch(load(path), interval=2, stop=stop, on_result=lambda r: None, clock=clock, make_check=check)
    web, api = check.configs[0].apps
    assert (web.timeout, web.retries, web.retry_delay) == (1.0, 2, 0.0)
    assert (api.timeout, api.retries, api.retry_delay) == (4.0, 2, 0.0)
    assert watched(load(path)) == check.configs[0]


# --- what it prints ---------------------------------------------------------------------------


def result(*apps: tuple[str, int, str, str], problems: list[str] | None = None) -> CheckResult:
    return CheckResult(
        "run", [AppResult(name, code, state, summary) for name, code, state, summary in apps], problems or []
    )


def test_the_journal_prints_changes_and_trouble_not_every_healthy_step():
    out = io.StringIO()
    journal = Journal(out, now=lambda: "T")
    steps = [
        result(("web", OK, "OK", "3ms")),
        result(("web", OK, "OK", "5ms")),  # same state, other latency: quiet
        result(("web", WARNING, "RECOVERED", "restarted after 2 failed probes (timeout), healthy again in 0.5s")),
        result(("web", OK, "OK", "4ms")),
        result(("web", OK, "OK", "4ms")),
        result(("web", CRITICAL, "CRITICAL", "stopped by an operator")),
        result(("web", CRITICAL, "CRITICAL", "stopped by an operator")),  # not OK: printed every step
        result(("web", OK, "OK", "4ms"), problems=["event store unusable: disk full"]),
    ]
    for step in steps:
        journal(step)
    assert out.getvalue().splitlines() == [
        "T web OK 3ms",
        "T web RECOVERED restarted after 2 failed probes (timeout), healthy again in 0.5s",
        "T web OK 4ms",
        "T web CRITICAL stopped by an operator",
        "T web CRITICAL stopped by an operator",
        "T web OK 4ms",
        "T UNKNOWN event store unusable: disk full",
    ]


def test_sigterm_and_sigint_set_the_stop_event_instead_of_ending_the_process():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sig in saved:
            stop = threading.Event()
            stop_on_signals(stop)
            os.kill(os.getpid(), sig)
            assert stop.wait(10), f"signal {sig} did not set the event"
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# --- the command line -------------------------------------------------------------------------


def watch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "recovery_cli.main", "watch", *args]


@pytest.mark.parametrize("interval", ["3x", "-1s", "0s"])
def test_a_bad_interval_is_one_line_and_exit_3(tmp_path, interval):
    res = CliRunner().invoke(cli, ["watch", "--config", str(config_file(tmp_path)), "--interval", interval])
    assert res.exit_code == 3, res.output
    assert res.output.startswith("recovery: --interval") and len(res.output.strip().splitlines()) == 1


def test_an_unknown_app_is_one_line_and_exit_3(tmp_path):
    res = CliRunner().invoke(cli, ["watch", "--config", str(config_file(tmp_path)), "--app", "shop"])
    assert res.exit_code == 3 and "--app 'shop' is not in" in res.output


# --- for real: PM2, the demo server, signals ----------------------------------------------------


def write_config(tmp_path: Path, sandbox, app) -> Path:
    path = tmp_path / "recovery.toml"
    path.write_text(
        f'[store]\npath = "data/recovery.db"\n\n[pm2]\nbin = "{sandbox.bin}"\n\n'
        f'[watch]\ntimeout = "1s"\nretries = 2\n\n'
        f'[[apps]]\nname = "{app.name}"\nurl = "{app.url}"\nverify_timeout = "30s"\n'
    )
    return path


def stored(config: Path, *types: str) -> list:
    db = config.parent / "data" / "recovery.db"
    if not db.exists():
        return []
    with Store.open(db, readonly=True) as s:
        return s.query(types=list(types))


def watch_process(pm2, config: Path, tmp_path: Path) -> subprocess.Popen:
    out = (tmp_path / "watch.out").open("w")
    return subprocess.Popen(
        watch_argv("--config", str(config), "--interval", "500ms"),
        env=pm2.env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def terminate(proc: subprocess.Popen, timeout: float = 60) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def assert_every_step_finished(config: Path) -> None:
    checks = stored(config, "check.started", "check.finished")
    assert checks[-1].type == "check.finished" and checks[-1].data["apps"], checks[-1]
    started = [e.run_id for e in checks if e.type == "check.started"]
    finished = [e.run_id for e in checks if e.type == "check.finished"]
    assert started == finished  # every step ran to its end, one after the other


def watch_restart_events(config: Path) -> list:
    watch_runs = {e.run_id for e in stored(config, "check.started") if e.data["trigger"] == "watch"}
    return [e.type for e in stored(config, "restart.succeeded", "verification.passed") if e.run_id in watch_runs]


@pytest.mark.pm2
def test_watch_recovers_a_hung_app_and_exits_cleanly_on_sigterm(pm2, tmp_path):
    app = pm2.start_app("web")
    old_pid = app.pids()[0]
    config = write_config(tmp_path, pm2, app)
    before = app.get("__count").json()["answered"]
    proc = watch_process(pm2, config, tmp_path)
    try:
        # Steady steps are held in a batch (written before the hang's events): count them by the app's answers.
        app.wait_until(lambda: app.get("__count").json()["answered"] >= before + 3, message="three healthy watch steps")
        app.control("hang")
        app.wait_until(
            lambda: app.answers() and app.pids()[0] != old_pid, timeout=60, message="a new process answering"
        )
        app.wait_until(
            lambda: watch_restart_events(config) == ["restart.succeeded", "verification.passed"],
            timeout=60,
            message="restart and verification by the watch",
        )
        app.wait_until(
            lambda: "web OK" in (tmp_path / "watch.out").read_text().split("RECOVERED")[-1],
            message="a healthy step after the recovery",
        )
        assert terminate(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_every_step_finished(config)
    lines = (tmp_path / "watch.out").read_text().splitlines()
    assert "watching web " in lines[0] and " every 500ms" in lines[0]
    body = [line.split(" ", 1)[1] for line in lines[1:]]
    assert body[0].startswith("web OK ")
    assert body[1].startswith("web RECOVERED restarted after 2 failed probes (timeout)")
    assert body[2].startswith("web OK ") and body[-1] == "stopped"
    assert len(body) == 4, lines  # three healthy steps before the hang, but one line: only changes are printed
    assert len(stored(config, "check.started")) >= 3  # the first step, the hang's, the first after it
    # The steady steps before the hang: one batch, written before the hang's first failed probe.
    first = stored(config, "probe.failed")[0]
    batched = stored(config, "probe.batched")
    assert batched[0].seq < first.seq and len(batched[0].data["at_ms"]) >= 2
    assert app.pids()[0] != old_pid and app.processes()[0]["pm2_env"]["restart_time"] == 1


@pytest.mark.pm2
def test_sigterm_during_a_restart_lets_the_restart_and_its_verification_finish(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    proc = watch_process(pm2, config, tmp_path)
    try:
        app.wait_until(lambda: stored(config, "check.finished"), message="a first watch step")
        app.control("hang")
        app.wait_until(
            lambda: stored(config, "restart.requested"),
            timeout=60,
            interval=0.02,
            message="the watch to request a restart",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert watch_restart_events(config) == ["restart.succeeded", "verification.passed"]
    assert_every_step_finished(config)
    assert app.answers()
