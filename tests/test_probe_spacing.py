"""A slow but alive app is not restarted: one CPU burst shorter than the timeout cannot fail
every attempt of a check, and failures in the warm-up grace open no new incident.

The fast tests script a burst on the fake clock; the last one runs `recovery watch` with its
defaults against the demo server under a real PM2, answering at 80 % of the timeout with bursts
of 90 % of the timeout.
"""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recovery import config as cfg
from recovery.check import CheckRun
from recovery.clock import FakeClock
from recovery.config import AppConfig, WatchConfig
from recovery.observations import Attempt
from recovery.replay import replay_store
from recovery.store import Recorder, Store

from .conftest import wait_until
from .test_check_flow import URL, FakeApp, FakePm2, World


class BurstyApp:
    """An app that needs `answer` seconds of CPU for an answer, on a fake clock; its CPU is
    pinned from `burst_at` for `burst` seconds. An attempt takes the fake clock's time."""

    def __init__(self, clock: FakeClock, answer: float, burst_at: float, burst: float) -> None:
        self.clock, self.answer, self.burst_at, self.burst = clock, answer, burst_at, burst
        self.starts: list[float] = []

    def attempt(self, app: AppConfig, n: int, timeout: float | None = None) -> Attempt:
        limit = timeout or app.timeout
        start = self.clock.monotonic()
        self.starts.append(start)
        done = start + self.answer
        begin, end = self.burst_at, self.burst_at + self.burst
        if begin < done and end > start:  # the burst takes its CPU time away from the answer
            done += end - max(begin, start)
        if done - start < limit:
            self.clock.advance(done - start)
            return Attempt(True, n, app.url, (done - start) * 1000, status=200)
        self.clock.advance(limit)
        return Attempt(False, n, app.url, limit * 1000, error="timeout", detail="timed out")

    def close(self) -> None:
        pass


class Probing:
    """A check run's probes of one app against a BurstyApp, run again and again on one clock."""

    def __init__(self, tmp_path: Path, app: AppConfig) -> None:
        self.app, self.clock = app, FakeClock()
        self.prober = BurstyApp(self.clock, answer=0.8 * app.timeout, burst_at=0.0, burst=0.0)
        config = cfg.load(write_config(tmp_path))
        self.run = CheckRun(
            dataclasses.replace(config, apps=(app,)),
            pm2=FakePm2(FakeApp()),
            prober=self.prober,
            recorder=Recorder(config.store.path, busy_timeout=1.0, now=self.clock.now),
            clock=self.clock,
        )

    def around(self, burst_at: float, burst: float) -> list[Attempt]:
        """The attempts of one check whose probes start `burst_at` seconds before a burst."""
        self.clock.advance(1000)
        self.prober.starts.clear()
        self.prober.burst_at, self.prober.burst = self.clock.monotonic() + burst_at, burst
        return self.run.probe(self.app)

    def close(self) -> None:
        self.run.rec.close()


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "recovery.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[[apps]]\nname = "web"\nurl = "{URL}"\n')
    return path


WATCH_DEFAULTS = AppConfig("web", URL).for_watch(WatchConfig())
CHECK_DEFAULTS = AppConfig("web", URL)


@pytest.mark.parametrize("app", [WATCH_DEFAULTS, CHECK_DEFAULTS], ids=["watch defaults", "check defaults"])
@pytest.mark.parametrize("share", [0.5, 0.9, 0.99])
def test_one_burst_shorter_than_the_timeout_never_fails_every_attempt(tmp_path, app, share):
    """Wherever the burst falls, from before the first attempt to after the last, one answers."""
    burst = share * app.timeout
    span = app.timeout * (app.retries + 1) + app.retry_delay * app.retries
    offsets = [span * i / 200 - burst for i in range(201)]
    probing = Probing(tmp_path, app)
    try:
        failed_all = [at for at in offsets if not any(a.ok for a in probing.around(at, burst))]
    finally:
        probing.close()
    assert failed_all == []


def test_a_burst_does_fail_the_attempt_it_covers(tmp_path):
    """The scripted burst is real: an attempt that starts as it starts times out, and the next
    one starts 2 x timeout / (retries - 1) after the first."""
    probing = Probing(tmp_path, WATCH_DEFAULTS)
    attempts = probing.around(0.0, 0.9)
    probing.close()
    assert [a.ok for a in attempts] == [False, True]
    assert [round(s - probing.prober.starts[0], 6) for s in probing.prober.starts] == [0.0, 2.0]


def test_a_refused_attempt_is_retried_after_retry_delay_alone(tmp_path):
    """A burst does not refuse connections: only a timeout waits for the spacing."""
    w = World(tmp_path, "refused", timeout='"2s"', retries="3", retry_delay='"1s"')
    w.check()
    assert w.clock.slept[:2] == [1.0, 1.0]


# -- warm-up: no new incident -----------------------------------------------------------------


def incidents(w: World) -> list[tuple[Any, ...]]:
    with sqlite3.connect(w.config.store.path) as conn:
        return conn.execute("SELECT started_at, ended_at, outcome FROM incidents ORDER BY id").fetchall()


def test_failures_in_the_warm_up_grace_open_no_new_incident(tmp_path):
    w = World(tmp_path, "hung", restart_grace='"60s"')
    w.check()  # hung: restarted, verified healthy: the incident is closed
    assert [i[2] for i in incidents(w)] == ["restarted"]
    for _ in range(3):  # a hiccup, then an answer, three times within the grace
        w.clock.advance(10)
        w.app.state = "hung"
        w.check()
        w.clock.advance(5)
        w.app.state = "healthy"
        w.check()
    assert [code for _, code in w.decisions()].count("warming_up") == 3
    assert [i[2] for i in incidents(w)] == ["restarted"]
    assert len(w.pm2.restarts) == 1
    with Store.open(w.config.store.path) as store:
        replayed = replay_store(store, list(w.config.apps), {}, None).apps[0]
    assert (replayed.recorded.incidents, replayed.replayed.incidents) == (1, 1)


def test_a_failure_in_the_grace_joins_the_incident_still_open(tmp_path):
    w = World(tmp_path, "hung", restart_grace='"60s"', verify_timeout='"5s"')
    w.pm2.heals = False
    w.check()  # restarted, not verified: the incident stays open
    w.clock.advance(10)
    w.check()
    assert w.decisions()[-1] == ("wait", "warming_up")
    assert [i[2] for i in incidents(w)] == ["open"]


def test_a_failure_after_the_grace_opens_an_incident(tmp_path):
    w = World(tmp_path, "hung", restart_grace='"60s"')
    w.check()
    w.clock.advance(600)
    w.app.state = "hung"
    w.check()
    assert [i[2] for i in incidents(w)] == ["restarted", "restarted"]


# -- for real: PM2, the demo server, `recovery watch` with its defaults --------------------------


@pytest.mark.pm2
def test_watch_defaults_restart_nothing_for_an_app_slow_at_80_percent_with_bursts_of_90(pm2, tmp_path):
    """Answers in 0.8 s, the CPU pinned 0.9 s every 4.5 s, watch's 1 s timeout and 2 attempts:
    about 35 s of watching, bursts falling on every part of a check. Before the spacing, the
    attempts ran back to back and a burst between them failed both: a restart in ~20 s."""
    app = pm2.start_app("web")
    app.control("slow", ms=800)
    app.control("bursts", ms=900, every=4500)
    config = tmp_path / "recovery.toml"
    config.write_text(
        f'[store]\npath = "data/recovery.db"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n\n'
        f'[[apps]]\nname = "web"\nurl = "{app.url}"\n'
    )
    out = (tmp_path / "watch.out").open("w")
    before = app.get("__count").json()["answered"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "watch", "--config", str(config)],
        env=pm2.env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    db = tmp_path / "data" / "recovery.db"
    try:
        # Counted by the app's answers: the watch's steady steps are held in a batch, not written each.
        wait_until(lambda: app.get("__count").json()["answered"] >= before + 16, timeout=90, message="16 watch steps")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    decisions = events(db, "decision.made")
    assert events(db, "probe.failed"), "no burst fell on a probe: the test saw nothing"
    assert [e for e in decisions if e.data["code"] != "healthy"] == []
    assert events(db, "restart.requested") == []
    assert app.processes()[0]["pm2_env"]["restart_time"] == 0


def events(db: Path, type_: str) -> list[Any]:
    if not db.exists():
        return []
    with Store.open(db, readonly=True) as s:
        return s.query(types=[type_])
