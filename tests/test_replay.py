"""`recovery replay`: the recorded history through the policy again, under other settings."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from recovery.check import CheckRun, HttpProber
from recovery.errors import ConfigError
from recovery.observations import Attempt
from recovery.replay import parse_settings, rejudge, replay_store
from recovery.store import Recorder, Store
from tests.test_check_flow import URL, World


class SlowProber(HttpProber):
    """The app answers every request, in `latency_ms`."""

    def __init__(self, app, latency_ms: float) -> None:
        super().__init__(httpx.MockTransport(app))
        self.latency_ms = latency_ms

    def attempt(self, app, n, timeout=None):
        a = super().attempt(app, n, timeout)
        return Attempt(a.ok, a.attempt, a.url, self.latency_ms, status=a.status, error=a.error)


def checked(w: World, times: int, *, every: float = 60, latency_ms: float | None = None) -> None:
    for _ in range(times):
        prober = SlowProber(w.app, latency_ms) if latency_ms is not None else HttpProber(httpx.MockTransport(w.app))
        CheckRun(
            w.config,
            pm2=w.pm2,
            prober=prober,
            recorder=Recorder(w.config.store.path, now=w.clock.now),
            clock=w.clock,
        ).run()
        w.clock.advance(every)


def replayed(w: World, **settings: str):
    with Store.open(w.config.store.path) as store:
        return replay_store(store, list(w.config.apps), parse_settings(f"{k}={v}" for k, v in settings.items()), None)


def test_replaying_with_the_recorded_settings_changes_no_decision(tmp_path):
    # healthy, hung and restarted, warming up, restarted again, suspended: every kind of history
    w = World(tmp_path, "healthy", max_restarts="2", restart_grace='"90s"', window='"1h"')
    checked(w, 2)
    w.app.state, w.pm2.heals = "hung", False
    checked(w, 6)
    w.app.state = "healthy"
    checked(w, 2)
    (app,) = replayed(w).apps
    assert app.decisions == 10
    assert app.changed == []
    assert app.replayed == app.recorded
    assert (app.recorded.restarts, app.recorded.incidents) == (2, 1)


def test_a_tightened_timeout_turns_slow_answers_into_failures_and_a_restart(tmp_path):
    w = World(tmp_path, "healthy", retries="3")
    checked(w, 3, every=300, latency_ms=300)
    (app,) = replayed(w, timeout="100ms").apps
    assert (app.recorded.failed_probes, app.recorded.restarts) == (0, 0)
    assert app.replayed.failed_probes >= 3 and app.replayed.restarts >= 1
    assert app.changed[0].recorded == ("none", "healthy") and app.changed[0].replayed == ("restart", "hung")
    assert app.assumed["extra_attempts"] > 0  # the recorded checks stopped at their first answer


def test_a_lower_ceiling_suspends_earlier(tmp_path):
    w = World(tmp_path, "hung", max_restarts="3", restart_grace='"10s"', window='"1h"')
    w.pm2.heals = False
    checked(w, 4, every=300)
    (app,) = replayed(w, max_restarts="1").apps
    assert app.recorded.restarts == 3 and app.replayed.restarts == 1
    assert ("suppress", "restart_loop") in [c.replayed for c in app.changed]


def test_a_recorded_answer_slower_than_a_new_timeout_is_a_timeout_at_that_timeout():
    from recovery.config.schema import AppConfig

    app = AppConfig(name="web", url=URL, timeout=0.1, retries=2)
    (a, b) = rejudge([Attempt(True, 1, URL, 300, status=200)], app, assumed := {})
    assert (a.ok, a.error, a.latency_ms) == (False, "timeout", 100.0) and b.attempt == 2
    assert assumed == {"extra_attempts": 1}


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("timeout", "use KEY=VALUE"),
        ("colour=red", "cannot be replayed"),
        ("retries=0", "at least 1"),
        ("timeout=x", "bad duration"),
    ],
)
def test_a_bad_setting_is_one_clear_error(pair, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings([pair])


# -- against a real PM2 and a real Node server ---------------------------------------------------------


@pytest.mark.pm2
def test_replay_of_a_real_history_with_a_tightened_timeout(tmp_path: Path, pm2):
    app = pm2.start_app("web")
    app.control("slow", ms=300)
    config = tmp_path / "recovery.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n\n'
        f'[[apps]]\nname = "web"\nurl = "{app.url}"\ntimeout = "2s"\nretries = 3\nretry_delay = "0s"\n'
    )

    def recovery(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "recovery_cli.main", *args, "--config", str(config)]
        return subprocess.run(cmd, env=pm2.env, capture_output=True, text=True, timeout=120)

    for _ in range(3):
        r = recovery("check")
        assert r.returncode == 0, r.stdout + r.stderr
    r = recovery("replay", "--set", "timeout=100ms", "--json")
    assert r.returncode == 0, r.stderr
    web = json.loads(r.stdout)["apps"]["web"]
    assert (web["recorded"]["failed_probes"], web["recorded"]["restarts"]) == (0, 0)
    assert web["replayed"]["failed_probes"] >= 3 and web["replayed"]["restarts"] >= 1
    assert web["changed"][0]["replayed"] == {"action": "restart", "code": "hung"}
    text = recovery("replay", "--set", "timeout=100ms")
    assert text.returncode == 0 and "decisions that differ" in text.stdout and "exact until" in text.stdout


@pytest.mark.parametrize("pairs", [["max_restarts=1"], ["timeout=0.01ms", "max_restarts=1"]])
def test_the_projection_and_the_raw_events_give_the_same_replay(tmp_path, pairs):
    # The replay reads the decision_points projection, where runs of checks that stay healthy
    # come as one step; a store without it (or with an older one) is read from the events
    # themselves, point by point. Both must tell the same story.
    from recovery import replay as rp

    w = World(tmp_path, "healthy", max_restarts="2", restart_grace='"90s"', window='"1h"')
    checked(w, 3)
    w.app.state, w.pm2.heals = "hung", False
    checked(w, 5)
    w.app.state = "healthy"
    checked(w, 3)
    settings = parse_settings(pairs)
    apps = list(w.config.apps)
    with Store.open(w.config.store.path) as store:
        from_projection = rp.load(store, [dataclasses.replace(a, **settings) for a in apps], None)
        from_events = rp.steps_from(store.query(types=rp._TYPES))
    islands = [s for s in from_projection["web"] if isinstance(s, rp.Healthy)]
    assert bool(islands) == ("max_restarts=1" in pairs and len(pairs) == 1)
    a = rp.replay(from_projection, apps, settings, None).to_dict()
    b = rp.replay(from_events, apps, settings, None).to_dict()
    assert a == b and a["apps"]["web"]["decisions"] == 11
