"""Alert delivery that never holds up recovery (issue 13, case 12).

`recovery watch` delivers from a thread of its own, so a channel that accepts connections and
never answers delays no probe and no restart; one deliverer at a time; a channel that keeps
failing rests longer and longer; a channel gets nothing about incidents that ended before it
first appeared; the fail heartbeat is pinged when the state changes, not every run. Receivers are
real loopback servers; the checks use the fakes of tests/test_check_flow.py, and one test runs
the real `recovery watch` against a real PM2.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from recovery import alerts, projections
from recovery.check import CRITICAL, OK, UNKNOWN, CheckRun, HttpProber
from recovery.clock import FakeClock, SystemClock
from recovery.config import Config, load
from recovery.demo import free_port
from recovery.events import Event, format_ts
from recovery.store import Recorder, Store
from recovery.watch import AlertWorker, run_watch

from .conftest import wait_until
from .test_alerts import SECRET, Receiver, alerts_toml
from .test_check_flow import URL, FakeApp, FakePm2
from .test_projections import Timeline


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts every connection, reads whatever comes and never
    answers, until `release()` closes the connections. Counts connections and those still open."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[dict[str, Any]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            entry = {"sock": conn, "open": True}
            self.conns.append(entry)
            threading.Thread(target=self._drain, args=(entry,), daemon=True).start()

    def _drain(self, entry: dict[str, Any]) -> None:
        try:
            while entry["sock"].recv(65536):
                pass
        except OSError:
            pass
        entry["open"] = False  # the client gave up, or we released it

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hooks/{SECRET}"

    def accepted(self) -> int:
        return len(self.conns)

    def pending(self) -> int:
        return sum(1 for c in self.conns if c["open"])

    def release(self) -> None:
        for c in list(self.conns):
            try:
                c["sock"].shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c["sock"].close()

    def close(self) -> None:
        self.server.close()
        self.release()


@pytest.fixture
def hole():
    h = Blackhole()
    yield h
    h.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def write_config(tmp_path: Path, *urls: str, **settings: str) -> Config:
    """One app "web" at the fakes' URL, quick to probe and restart, with alerts to `urls`."""
    path = tmp_path / "recovery.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\nbusy_timeout = "1s"\n\n[logs]\nin_check = false\n'
        f'\n[[apps]]\nname = "web"\nurl = "{URL}"\ntimeout = "1s"\nretries = 2\nretry_delay = "0s"\n'
        'verify_timeout = "5s"\nrestart_grace = "0s"\n' + alerts_toml(*urls, **settings)
    )
    return load(path)


def events(conf: Config, *types: str) -> list[Event]:
    with Store.open(conf.store.path) as store:
        return store.query(types=types or None)


class Site:
    """The fakes' app and PM2 behind a config, checked by real `CheckRun`s on a real store."""

    def __init__(self, conf: Config, state: str = "healthy", clock: Any = None) -> None:
        self.conf = conf
        self.app = FakeApp(state)
        self.pm2 = FakePm2(self.app)
        self.clock = clock or FakeClock()

    def run(self, *, trigger: str = "manual", deliver: bool = True, problem: str | None = None) -> CheckRun:
        return CheckRun(
            self.conf,
            pm2=self.pm2,
            prober=HttpProber(httpx.MockTransport(self.app)),
            recorder=Recorder(self.conf.store.path, busy_timeout=1.0, now=self.clock.now),
            clock=self.clock,
            trigger=trigger,
            pm2_problem=problem,
            **({} if deliver else {"deliver": False}),
        )

    def check(self, **kw: Any) -> Any:
        return self.run(**kw).run()


# -- watch: delivery from a thread of its own ---------------------------------------------------


def test_watch_steps_and_a_restart_go_on_while_a_channel_holds_a_delivery(tmp_path, hole):
    conf = write_config(tmp_path, hole.url(), timeout='"120s"', retries="1")
    site = Site(conf, "hung", clock=SystemClock())
    stop = threading.Event()
    watch = threading.Thread(
        target=run_watch,
        kwargs={
            "config": conf,
            "interval": 0.1,
            "stop": stop,
            "on_result": lambda r: None,
            "make_check": lambda c: site.run(trigger="watch", deliver=False),
            "deliverer": AlertWorker(conf),
        },
    )
    watch.start()
    try:
        # The first step restarts the hung app; its "down" alert goes to the channel, which holds it.
        wait_until(lambda: hole.accepted() == 1, message="the worker to reach the channel")
        n0 = len(events(conf, "check.started"))
        wait_until(lambda: len(events(conf, "check.started")) >= n0 + 3, message="three steps during the delivery")
        assert hole.pending() == 1 and hole.accepted() == 1  # the same attempt, still waiting for an answer
        site.app.state = "hung"  # hangs again: restarted and verified while the alert is still pending
        wait_until(lambda: len(events(conf, "verification.passed")) == 2, message="the second restart verified")
        assert hole.pending() == 1 and hole.accepted() == 1
        assert events(conf, "alert.sent", "alert.failed") == []  # no attempt has ended
        assert len(site.pm2.restarts) == 2
        stop.set()
        watch.join(60)
        assert not watch.is_alive()  # the stop did not wait for the channel
        assert hole.pending() == 1
    finally:
        stop.set()
        hole.release()
    # Released: the attempt in flight is recorded as failed; no new attempt starts after the stop.
    (failed,) = wait_until(lambda: events(conf, "alert.failed"), message="the failed attempt recorded")
    assert failed.data["kind"] == "down" and failed.run_id not in {e.run_id for e in events(conf, "check.started")}
    assert hole.accepted() == 1
    assert SECRET not in json.dumps(failed.data)


def test_a_stopped_worker_lets_go_within_its_grace_and_starts_no_new_attempt(tmp_path, hole):
    conf = write_config(tmp_path, hole.url(), timeout='"120s"', retries="3")
    worker = AlertWorker(conf)
    site = Site(conf, "hung", clock=SystemClock())
    site.check(deliver=False)  # a hang, restarted: "down" and "recovered" are owed
    worker.start()
    worker.nudge(OK)
    wait_until(lambda: hole.pending() == 1, message="an attempt held by the channel")
    assert worker.close(grace=0.2) is False  # still sending: the caller goes on without it
    hole.release()
    wait_until(lambda: not worker.thread.is_alive(), message="the worker to end once the attempt ends")
    assert [e.data["kind"] for e in events(conf, "alert.failed")] == ["down"]
    assert hole.accepted() == 1  # no retry and no "recovered" after the stop


class Drip(Blackhole):
    """A server that starts an HTTP answer and then sends one byte every half second, so that no
    read ever times out, until released (or 60 bytes later)."""

    def _drain(self, entry: dict[str, Any]) -> None:
        conn = entry["sock"]
        try:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 40:
                if not entry["open"]:
                    break
                conn.sendall(bytes([byte]))
                threading.Event().wait(0.5)
        except OSError:
            pass
        entry["open"] = False

    def release(self) -> None:
        for c in self.conns:
            c["open"] = False
        super().release()


def test_a_channel_that_drips_its_answer_does_not_hold_a_check(tmp_path):
    drip = Drip()
    try:
        conf = write_config(tmp_path, drip.url(), timeout='"1s"', retries="1")
        result = Site(conf, "hung").check()  # cron's path: the alerts go out after the restart
        assert result.apps[0].restarted
        (failed,) = events(conf, "alert.failed")
        assert failed.data["kind"] == "down" and failed.data["error"] == "no complete answer within 1s"
        assert drip.pending() == 1  # given up on while the server was still dripping
    finally:
        drip.close()


def test_a_heartbeat_url_that_drips_its_answer_does_not_hold_a_check(tmp_path):
    drip = Drip()
    try:
        path = tmp_path / "recovery.toml"
        write_config(tmp_path, timeout='"1s"')
        beat = f"http://127.0.0.1:{drip.port}/ping"
        path.write_text(path.read_text().replace("urls = []\n", f'heartbeat_url = "{beat}"\n'))
        site = Site(load(path))
        assert site.check().code == OK
        (failed,) = events(site.conf, "heartbeat.failed")
        assert failed.data["error"] == "no complete answer within 1s" and drip.pending() == 1
    finally:
        drip.close()


# -- one deliverer at a time ---------------------------------------------------------------------


class GatedReceiver(Receiver):
    """A Receiver whose answers wait until `gate` is set; `arrived` counts the requests it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.arrived = 0
        outer = self
        base = self.server.RequestHandlerClass

        class Gated(base):  # type: ignore[misc,valid-type]
            def _record(self) -> None:
                outer.arrived += 1
                outer.gate.wait(60)
                base._record(self)  # type: ignore[attr-defined]

            do_POST = do_GET = _record

        self.server.RequestHandlerClass = Gated


def test_two_deliverers_at_once_send_each_alert_once(tmp_path):
    receiver = GatedReceiver()
    try:
        conf = write_config(tmp_path, receiver.url())
        began = dt.datetime.now(dt.UTC)
        Site(conf, "hung", clock=SystemClock()).check(deliver=False)
        results: dict[str, Any] = {}

        def deliver(name: str) -> None:
            rec = Recorder(conf.store.path)
            results[name] = alerts.send_owed(rec, conf, conf.apps, dt.datetime.now(dt.UTC), run_id=name, seen_at=began)
            rec.close()

        first = threading.Thread(target=deliver, args=("first",))
        first.start()
        wait_until(lambda: receiver.arrived == 1, message="a delivery in flight")
        deliver("second")  # while the first holds the delivery lock
        assert results["second"] is None
        receiver.gate.set()
        first.join(60)
        assert [(d.alert.kind, d.ok) for d in results["first"]] == [("down", True), ("recovered", True)]
        deliver("third")
        assert results["third"] == []  # the record says both were delivered
        assert [m["title"] for m in receiver.messages()] == ["web DOWN on web-1", "web RECOVERED on web-1"]
    finally:
        receiver.gate.set()
        receiver.close()


# -- a failing channel rests ---------------------------------------------------------------------


def test_a_channel_that_keeps_failing_is_tried_less_and_less_often_for_the_hour(tmp_path):
    dead = f"json://127.0.0.1:{free_port()}/hooks/{SECRET}"  # nothing listens: refused at once
    conf = write_config(tmp_path, dead, retries="1")
    clock = FakeClock()
    with Store.open(conf.store.path) as store:
        Timeline(store, t0=clock.now()).run(
            0,
            ("probe.failed", "web", {"phase": "check", "error": "refused"}),
            ("decision.made", "web", {"action": "escalate", "reason": "down", "state": "down"}),
        )
        projections.fold(store.conn)
    tried: list[float] = []
    for step in range(0, 3600, 2):  # a watch step every 2 s for an hour
        clock.elapsed = float(step)
        rec = Recorder(conf.store.path, now=clock.now)
        done = alerts.send_owed(rec, conf, conf.apps, clock.now(), run_id=f"s{step}") or []
        rec.close()
        tried += [float(step)] * len(done)
    assert tried[:8] == [0, 10, 20, 40, 80, 160, 320, 620]  # rests as long as it has failed, 10 s to 5 min
    assert all(b - a == alerts.REST_MAX for a, b in zip(tried[7:], tried[8:]))
    assert len(tried) == 17 and tried[-1] > 3600 - alerts.REST_MAX  # still tried to the end of the hour


def test_a_delivery_ends_a_channels_rest(tmp_path):
    conf = write_config(tmp_path, "json://127.0.0.1:9/x")
    cid = alerts.channel_id("json://127.0.0.1:9/x")
    t0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    with Store.open(conf.store.path) as store:

        def attempt(seconds: float, ok: bool) -> None:
            data = {"kind": "down", "channel": "x", "channel_id": cid, "attempt": 1, "error": None if ok else "refused"}
            at = format_ts(t0 + dt.timedelta(seconds=seconds))
            store.append([Event("alert.sent" if ok else "alert.failed", "web", "r", data, ts=at)])

        attempt(0, False)
        attempt(30, False)
        rest = alerts.resting(store.conn, {cid}, ["web"], t0 + dt.timedelta(seconds=31))
        assert rest == {cid: format_ts(t0 + dt.timedelta(seconds=60))}
        attempt(60, True)
        assert alerts.resting(store.conn, {cid}, ["web"], t0 + dt.timedelta(seconds=61)) == {}
        attempt(70, False)
        assert cid in alerts.resting(store.conn, {cid}, ["web"], t0 + dt.timedelta(seconds=71))
        test = {"kind": "test", "channel": "x", "channel_id": cid, "attempt": 1}  # `recovery alert test`: ✓
        store.append([Event("alert.sent", None, "t", test, ts=format_ts(t0 + dt.timedelta(seconds=72)))])
        assert alerts.resting(store.conn, {cid}, ["web"], t0 + dt.timedelta(seconds=73)) == {}
        # A failure stamped in the future (the clock stepped back) does not make the channel rest.
        assert alerts.resting(store.conn, {cid}, ["web"], t0 - dt.timedelta(hours=2)) == {}


# -- no backlog for a new channel ----------------------------------------------------------------


def test_a_new_channel_gets_no_alert_about_incidents_that_ended_before_it_appeared(tmp_path, receiver):
    conf = write_config(tmp_path, receiver.url())
    site = Site(conf)
    with Store.open(conf.store.path) as store:  # an outage 10 minutes ago, before alerts were set up
        Timeline(store, t0=site.clock.now() - dt.timedelta(minutes=10)).hang_recovered(0)
    assert site.check().code == OK
    assert receiver.messages() == []
    (added,) = events(conf, "channel.added")
    assert added.data["since"] == format_ts(site.clock.now()) and SECRET not in json.dumps(added.data)
    site.clock.advance(60)
    site.app.state = "hung"  # a new incident: this one is told
    site.check()
    assert [m["title"] for m in receiver.messages()] == ["web DOWN on web-1", "web RECOVERED on web-1"]
    assert len(events(conf, "channel.added")) == 1


def test_an_incident_still_open_when_the_channel_appears_is_told(tmp_path, receiver):
    conf = write_config(tmp_path, receiver.url())
    site = Site(conf)
    with Store.open(conf.store.path) as store:
        Timeline(store, t0=site.clock.now() - dt.timedelta(minutes=10)).run(
            0,
            ("probe.failed", "web", {"phase": "check", "error": "refused"}),
            ("decision.made", "web", {"action": "escalate", "reason": "down", "state": "down"}),
        )
    site.check()  # it answers again: the incident ends after the channel appeared
    assert [m["title"] for m in receiver.messages()] == ["web DOWN on web-1", "web RECOVERED on web-1"]


def test_a_channel_in_use_before_keeps_what_it_is_owed(tmp_path, receiver):
    conf = write_config(tmp_path, receiver.url())
    site = Site(conf)
    ago = site.clock.now() - dt.timedelta(minutes=10)
    with Store.open(conf.store.path) as store:
        Timeline(store, t0=ago).hang_recovered(0)
        data = {"kind": "down", "key": "incident:1:down", "channel": "x", "attempt": 1, "error": "refused"}
        data["channel_id"] = alerts.channel_id(receiver.url())
        store.append([Event("alert.failed", "web", "old", data, ts=format_ts(ago + dt.timedelta(seconds=2)))])
    site.check()  # the store of a version without channel.added: its failed "down" is still owed
    assert [m["title"] for m in receiver.messages()] == ["web DOWN on web-1", "web RECOVERED on web-1"]
    (added,) = events(conf, "channel.added")
    assert added.data["since"] == format_ts(ago + dt.timedelta(seconds=2) - dt.timedelta(seconds=alerts.OWED_FOR))


def test_a_channel_added_later_does_not_get_what_the_first_one_was_told(tmp_path, receiver):
    other = Receiver()
    try:
        conf = write_config(tmp_path, receiver.url())
        site = Site(conf, "hung")
        site.check()
        assert len(receiver.messages()) == 2
        site.clock.advance(60)
        site.conf = write_config(tmp_path, receiver.url(), other.url())
        site.check()
        assert other.messages() == [] and len(receiver.messages()) == 2
    finally:
        other.close()


# -- the heartbeat: on changes -------------------------------------------------------------------


def heartbeat_site(tmp_path: Path, receiver: Receiver) -> Site:
    path = tmp_path / "recovery.toml"
    beat = f"http://127.0.0.1:{receiver.port}/ping/{SECRET}"
    write_config(tmp_path)
    path.write_text(path.read_text().replace("urls = []\n", f'heartbeat_url = "{beat}"\n'))
    return Site(load(path))


def test_the_fail_heartbeat_is_pinged_when_the_state_changes_not_every_run(tmp_path, receiver):
    site = heartbeat_site(tmp_path, receiver)
    for seconds in (0, 10, 120, 10):
        site.clock.advance(seconds)
        assert site.check(problem="pm2 not found on PATH").code == UNKNOWN
    site.clock.advance(10)
    assert site.check().code == OK  # back to OK: pinged at once
    site.clock.advance(10)
    site.check()  # OK again within the minute: no ping
    site.clock.advance(60)
    site.check()
    paths = [r["path"].removeprefix(f"/ping/{SECRET}") for r in receiver.requests]
    assert paths == ["/fail", "", ""]


def test_a_fail_ping_that_did_not_get_through_is_tried_again_after_a_minute(tmp_path):
    receiver = Receiver(fail_first=1)
    try:
        site = heartbeat_site(tmp_path, receiver)
        for seconds in (0, 10, 60):
            site.clock.advance(seconds)
            site.check(problem="pm2 not found on PATH")
        assert [r["path"].endswith("/fail") for r in receiver.requests] == [True, True]
        beats = [(e.type, e.data["outcome"]) for e in events(site.conf, "heartbeat.sent", "heartbeat.failed")]
        assert beats == [("heartbeat.failed", "fail"), ("heartbeat.sent", "fail")]
    finally:
        receiver.close()


def test_a_watch_step_leaves_alerts_and_the_heartbeat_to_the_worker(tmp_path, receiver):
    conf = write_config(tmp_path, receiver.url())
    worker = AlertWorker(conf)  # as `recovery watch` makes it, before its first step
    site = Site(conf, "hung", clock=SystemClock())
    assert site.check(trigger="watch", deliver=False).code != CRITICAL
    assert receiver.requests == [] and events(conf, "alert.sent", "channel.added") == []
    worker.start()
    worker.nudge(OK)
    wait_until(lambda: len(receiver.messages()) == 2, message="the worker's delivery")
    assert worker.close() is True


# -- for real: `recovery watch`, PM2, a channel that never answers ---------------------------------


@pytest.mark.pm2
def test_watch_restarts_a_hang_while_a_channel_holds_its_alert_and_stops_on_sigterm(pm2, tmp_path, hole):
    app = pm2.start_app("web")
    path = tmp_path / "recovery.toml"
    path.write_text(
        f'[store]\npath = "data/recovery.db"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n\n'
        '[watch]\ntimeout = "1s"\nretries = 2\n\n'
        f'[[apps]]\nname = "web"\nurl = "{app.url}"\nverify_timeout = "30s"\n\n'
        '[[apps]]\nname = "ghost"\nurl = "http://127.0.0.1:9/"\n'  # not in PM2: down at once, owes "down"
        + alerts_toml(hole.url(), timeout='"120s"', retries="1")
    )
    db = tmp_path / "data" / "recovery.db"

    def stored(*types: str) -> list[Event]:
        if not db.exists():
            return []
        with Store.open(db, readonly=True) as s:
            return s.query(types=list(types))

    def watch_verified() -> list[Event]:
        runs = {e.run_id for e in stored("check.started") if e.data["trigger"] == "watch"}
        return [e for e in stored("verification.passed") if e.run_id in runs]

    out = (tmp_path / "watch.out").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "watch", "--config", str(path), "--interval", "500ms"],
        env=pm2.env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        app.wait_until(lambda: hole.accepted() == 1, timeout=60, message="the ghost's alert held by the channel")
        n0 = len(stored("check.started"))
        app.wait_until(lambda: len(stored("check.started")) >= n0 + 3, timeout=60, message="steps during the delivery")
        assert hole.pending() == 1 and hole.accepted() == 1
        app.control("hang")
        app.wait_until(lambda: watch_verified(), timeout=60, message="the hang restarted and verified by the watch")
        assert app.answers()
        assert hole.pending() == 1 and hole.accepted() == 1  # the alert attempt has not ended
        assert stored("alert.sent", "alert.failed") == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert stored("alert.sent", "alert.failed") == []  # it left the attempt in flight, within its grace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    started = [e.run_id for e in stored("check.started")]
    assert started == [e.run_id for e in stored("check.finished")]  # every step ran to its end
    assert "stopped" in (tmp_path / "watch.out").read_text()
