"""A wrong URL is not a hung app (issue 13, case 1).

A URL that has never answered in the record and is refused while PM2 says `online` is escalated
(`never_answered`, CRITICAL), naming the addresses the app really listens on; it is not restarted.
A URL that answered before and now refuses is a real failure and is restarted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recovery import config as cfg
from recovery import projections
from recovery.check import CRITICAL, OK, WARNING, CheckRun, HttpProber
from recovery.model import History
from recovery.observations import Attempt, Instance, Observations, ProcessView
from recovery.policy import decide
from recovery.replay import replay_store
from recovery.store import Recorder, Store
from tests.test_check_flow import URL, World
from tests.test_policy import APP, NOW

REFUSED = tuple(Attempt(False, n, URL, 1.0, error="refused") for n in (1, 2))
ONLINE = ProcessView("web", "jlist", (Instance("web", 0, 4242, "online", uptime_s=3600.0),))


def decided(history: History, listening: tuple[str, ...] | None = ("127.0.0.1:3001",), attempts=REFUSED):
    return decide(Observations(attempts, ONLINE, listening=listening), history, APP, NOW)


# -- the policy ---------------------------------------------------------------------------------


def test_a_refused_url_that_never_answered_is_escalated_with_the_real_port():
    d = decided(History(url_answered=False))
    assert (d.action, d.code, d.exit_code, d.label) == ("escalate", "never_answered", CRITICAL, "CRITICAL")
    assert "web listens on 127.0.0.1:3001, not 3000" in d.reason
    assert d.inputs["listening"] == ["127.0.0.1:3001"]


def test_an_app_listening_on_no_port_is_said_so():
    d = decided(History(url_answered=False), listening=())
    assert d.code == "never_answered" and "web listens on no TCP port" in d.reason


def test_the_right_port_on_another_address_names_the_address():
    d = decided(History(url_answered=False), listening=("10.0.0.5:3000",))
    assert "web listens on 10.0.0.5:3000, not 127.0.0.1:3000" in d.reason


def test_unreadable_listening_addresses_still_escalate():
    d = decided(History(url_answered=False), listening=None)
    assert d.code == "never_answered" and "could not be read" in d.reason


def test_a_refused_url_that_answered_before_is_restarted():
    d = decided(History(url_answered=True))
    assert (d.action, d.code) == ("restart", "hung")


def test_an_unknown_record_keeps_restarting_a_refused_url():
    """With no readable store the policy does not know; it restarts as before rather than not at all."""
    assert decided(History(url_answered=None)).code == "hung"


def test_a_timeout_on_a_url_that_never_answered_is_still_a_hang():
    """Something accepts the connections: not a wrong port."""
    timeouts = tuple(Attempt(False, n, URL, 2000, error="timeout") for n in (1, 2))
    assert decided(History(url_answered=False), attempts=timeouts).code == "hung"


# -- the check flow, with fakes -----------------------------------------------------------------


class Listening:
    """Stands in for procnet.listening: records the pids asked about."""

    def __init__(self, found: list[tuple[str, int]] | None = None) -> None:
        self.found = found if found is not None else [("127.0.0.1", 3001)]
        self.asked: list[list[int]] = []

    def __call__(self, pids: list[int]) -> list[tuple[str, int]]:
        self.asked.append(pids)
        return self.found


def check(w: World, listening: Listening, config: cfg.Config | None = None):
    run = CheckRun(
        config or w.config,
        pm2=w.pm2,
        prober=HttpProber(httpx.MockTransport(w.app)),
        recorder=Recorder(w.config.store.path, busy_timeout=1.0, now=w.clock.now),
        clock=w.clock,
        listening=listening,
    )
    result = run.run()
    w.clock.advance(60)
    return result


def test_a_check_of_a_wrong_url_restarts_nothing_and_names_the_port(tmp_path):
    w = World(tmp_path, "refused")
    listening = Listening()
    result = check(w, listening)
    assert result.code == CRITICAL and w.pm2.restarts == []
    assert w.decisions() == [("escalate", "never_answered")]
    assert "web listens on 127.0.0.1:3001, not 3000" in result.apps[0].summary
    assert listening.asked == [[4242]]
    assert w.events("restart.requested") == []


def test_a_healthy_check_reads_no_listening_addresses(tmp_path):
    w = World(tmp_path)
    listening = Listening()
    assert check(w, listening).code == OK
    assert listening.asked == []


def test_once_the_url_answered_a_refusal_is_restarted(tmp_path):
    w = World(tmp_path)
    listening = Listening()
    assert check(w, listening).code == OK
    w.app.state = "refused"
    result = check(w, listening)
    assert result.code == WARNING and w.pm2.restarts == [("web", "restart")]
    assert w.decisions()[-1] == ("restart", "hung")
    assert listening.asked == []


def test_a_changed_url_is_judged_on_the_new_url(tmp_path):
    """The old URL answered for months; the new one never did: a wrong URL, not a hang."""
    w = World(tmp_path)
    assert check(w, Listening()).code == OK
    moved = dataclasses.replace(w.config, apps=(dataclasses.replace(w.config.apps[0], url="http://127.0.0.1:3002/"),))
    w.app.state = "refused"
    result = check(w, Listening([("127.0.0.1", 3000)]), moved)
    assert w.decisions()[-1] == ("escalate", "never_answered") and w.pm2.restarts == []
    assert "web listens on 127.0.0.1:3000, not 3002" in result.apps[0].summary


def test_the_answered_urls_survive_a_rebuild_of_the_projections(tmp_path):
    w = World(tmp_path)
    check(w, Listening())
    with Store.open(w.config.store.path) as store:
        projections.rebuild(store.conn)
        now = dt.datetime.now(dt.UTC)
        assert projections.history(store.conn, "web", now, 1800, url=URL).url_answered is True
        assert projections.history(store.conn, "web", now, 1800, url="http://127.0.0.1:1/").url_answered is False
        assert projections.history(store.conn, "other", now, 1800, url=URL).url_answered is False


def test_replay_keeps_never_answered_and_the_restart_after_the_first_answer(tmp_path):
    w = World(tmp_path, "refused")
    listening = Listening()
    check(w, listening)  # never answered: escalated
    w.app.state = "healthy"
    check(w, listening)
    w.app.state = "refused"
    check(w, listening)  # answered before: restarted
    assert [code for _, code in w.decisions()] == ["never_answered", "healthy", "hung"]
    with Store.open(w.config.store.path) as store:
        (app,) = replay_store(store, list(w.config.apps), {}, None).apps
    assert app.changed == [] and app.decisions == 3


def test_replay_from_the_raw_events_agrees(tmp_path):
    from recovery import replay as rp

    w = World(tmp_path, "refused")
    check(w, Listening())
    w.app.state = "healthy"
    check(w, Listening())
    w.app.state = "refused"
    check(w, Listening())
    apps = list(w.config.apps)
    with Store.open(w.config.store.path) as store:
        from_events = rp.steps_from(store.query(types=rp._TYPES))
    (app,) = rp.replay(from_events, apps, {}, None).apps
    assert app.changed == [] and app.decisions == 3


# -- config validate --probe ----------------------------------------------------------------------


@pytest.fixture
def answering() -> Iterator[int]:
    """A real loopback HTTP server that answers 200; yields its port."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def refused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def validate(tmp_path: Path, *urls: str, probe: bool = True) -> subprocess.CompletedProcess:
    text = f'[store]\npath = "{tmp_path / "r.db"}"\n'
    for n, url in enumerate(urls):
        text += f'\n[[apps]]\nname = "app{n}"\nurl = "{url}"\n'
    path = tmp_path / "recovery.toml"
    path.write_text(text)
    args = [sys.executable, "-m", "recovery_cli.main", "config", "validate", str(path)]
    if probe:
        args.append("--probe")
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})


def test_validate_probe_says_which_url_answers_and_which_does_not(tmp_path, answering):
    bad = refused_port()
    r = validate(tmp_path, f"http://127.0.0.1:{answering}/", f"http://user:secret@127.0.0.1:{bad}/health?token=x")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"app0 http://127.0.0.1:{answering}/ answered 200 in " in r.stdout
    assert f"app1 http://***@127.0.0.1:{bad}/health?… did not answer: refused" in r.stderr
    assert "secret" not in r.stdout + r.stderr and "token=x" not in r.stdout + r.stderr


def test_validate_probe_exits_0_when_every_url_answers(tmp_path, answering):
    r = validate(tmp_path, f"http://127.0.0.1:{answering}/")
    assert r.returncode == 0 and "answered 200" in r.stdout, r.stdout + r.stderr


def test_validate_without_probe_touches_no_url(tmp_path):
    r = validate(tmp_path, f"http://127.0.0.1:{refused_port()}/", probe=False)
    assert r.returncode == 0 and "did not answer" not in r.stdout + r.stderr


def test_validate_help_describes_probe():
    r = subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "config", "validate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert r.returncode == 0 and "--probe" in r.stdout and "try each app's URL once" in r.stdout


# -- a real PM2 ---------------------------------------------------------------------------------------


def recovery_check(pm2, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,
        env={**pm2.env, "NO_COLOR": "1"},
    )


def decisions(db: Path) -> list[dict]:
    with Store.open(db) as store:
        return [e.data for e in store.query(app="web", types=["decision.made"])]


@pytest.mark.pm2
def test_a_real_wrong_port_is_not_restarted_and_a_closed_listener_is(tmp_path, pm2):
    from recovery.demo import free_port

    app = pm2.start_app("web")
    wrong = free_port()
    db = tmp_path / "recovery.db"
    config = tmp_path / "recovery.toml"
    head = f'[store]\npath = "{db}"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n'
    body = 'name = "web"\ntimeout = "2s"\nretries = 2\nretry_delay = "0s"\nverify_timeout = "20s"\n'
    config.write_text(f'{head}\n[[apps]]\nurl = "http://127.0.0.1:{wrong}/"\n{body}')
    restarts_before = app.processes()[0]["pm2_env"]["restart_time"]

    r = recovery_check(pm2, config)
    assert r.returncode == CRITICAL, r.stdout + r.stderr
    (d,) = decisions(db)
    assert (d["action"], d["code"]) == ("escalate", "never_answered")
    assert f"web listens on 127.0.0.1:{app.port}, not {wrong}" in d["reason"]
    assert f"127.0.0.1:{app.port}" in r.stdout
    with Store.open(db) as store:
        assert store.query(app="web", types=["restart.requested"]) == []
    assert app.processes()[0]["pm2_env"]["restart_time"] == restarts_before

    # The right URL answers once; then the server closes its listener (the process lives on).
    config.write_text(f'{head}\n[[apps]]\nurl = "{app.url}"\n{body}')
    assert recovery_check(pm2, config).returncode == OK
    pid = app.pids()[0]
    app.control("close")
    app.wait_until(lambda: not app.answers(0.5), message="the listener closed")
    assert app.pids() == [pid] and app.status() == ["online"]  # still alive, still online
    restarts_before = app.processes()[0]["pm2_env"]["restart_time"]
    r = recovery_check(pm2, config)
    assert r.returncode == WARNING, r.stdout + r.stderr
    last = decisions(db)[-1]
    assert (last["action"], last["code"]) == ("restart", "hung")
    assert app.answers() and app.pids() != [pid]
    assert json.loads(pm2.run("jlist").stdout)[0]["pm2_env"]["restart_time"] == restarts_before + 1


@pytest.mark.pm2
def test_a_cluster_app_on_a_wrong_port_names_the_port_pm2_listens_on_for_it(tmp_path, pm2):
    """In cluster mode the workers hold no listening socket: PM2's daemon does."""
    from recovery.demo import free_port

    app = pm2.start_app("web", instances=2)
    wrong = free_port()
    db = tmp_path / "recovery.db"
    config = tmp_path / "recovery.toml"
    config.write_text(
        f'[store]\npath = "{db}"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n'
        f'\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:{wrong}/"\ntimeout = "2s"\nretries = 1\n'
    )
    r = recovery_check(pm2, config)
    assert r.returncode == CRITICAL, r.stdout + r.stderr
    (d,) = decisions(db)
    assert d["code"] == "never_answered" and f"web listens on 127.0.0.1:{app.port}, not {wrong}" in d["reason"]


def test_the_history_from_the_spool_keeps_what_the_store_said_and_adds_the_spooled_answers():
    """With the store unusable or locked, the spool's events are folded on top of the store's history."""
    from recovery.events import Event
    from recovery.replay import history_with

    now = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
    ts = "2026-12-01T02:59:00.000Z"
    answered = Event("probe.succeeded", "web", "r1", {"url": URL, "attempt": 1, "latency_ms": 3.0}, ts=ts, seq=10)
    crashed = Event("process.restarted", "web", "r1", {"count": 2, "cause": "crash"}, ts=ts, seq=11)
    base = History(url_answered=False, pm2_restarts=1)
    assert history_with(base, [crashed], now, 1800, URL).url_answered is False
    h = history_with(base, [answered, crashed], now, 1800, URL)
    assert (h.url_answered, h.pm2_restarts) == (True, 3)
    assert history_with(History(url_answered=True), [crashed], now, 1800, URL).url_answered is True
