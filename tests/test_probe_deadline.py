"""An attempt is bounded as a whole: slow drips and endless bodies from real loopback servers.

httpx's timeouts bound each socket operation; these servers keep every operation short and the
whole answer endless. Each server gives up on its own after SERVER_LIMIT_S, so that without the
bound an attempt ends there (with another error kind, and a latency past it) instead of hanging.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recovery import config as cfg
from recovery.check import UNKNOWN, CheckRun, HttpProber
from recovery.clock import SystemClock
from recovery.probe import BODY_CAP, make_client, probe_once
from recovery.store import Recorder, Store

from .conftest import wait_until
from .test_check_flow import FakeApp, FakePm2

SERVER_LIMIT_S = 8.0
HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"


def ok_2xx(code: int) -> bool:
    return 200 <= code < 400


class LoopbackServer:
    """A socket server on 127.0.0.1 that runs `talk(conn, stop)` for each connection, in a thread."""

    def __init__(self, talk: Callable[[socket.socket, threading.Event], None]) -> None:
        self.talk = talk
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.sent = 0
        self.threads = [threading.Thread(target=self.serve, daemon=True)]
        self.threads[0].start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request
                self.talk(conn, self.stop)
            except OSError:
                pass  # the client went away: what a bounded attempt does

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=SERVER_LIMIT_S + 2)
        self.sock.close()


def drip(first: bytes, then: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """Send `first` at once, then `then` one byte every 0.1 s, until SERVER_LIMIT_S."""

    def talk(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(first)
        end = time.monotonic() + SERVER_LIMIT_S
        for byte in then:
            if stop.wait(0.1) or time.monotonic() > end:
                return
            conn.sendall(bytes([byte]))

    return talk


@pytest.fixture
def server() -> Iterator[Callable[..., LoopbackServer]]:
    started: list[LoopbackServer] = []

    def start(talk: Callable[[socket.socket, threading.Event], None]) -> LoopbackServer:
        started.append(LoopbackServer(talk))
        return started[-1]

    yield start
    for s in started:
        s.close()


def test_a_body_dripped_a_byte_at_a_time_is_a_timeout_within_the_attempts_timeout(server):
    url = server(drip(HEADERS, b"x" * 100000)).url
    with make_client(url, 0.5) as c:
        a = probe_once(c, url, 1, ok_2xx)
    assert (a.ok, a.error) == (False, "timeout")
    assert a.latency_ms < SERVER_LIMIT_S * 1000  # ended by the attempt's bound, not by the server giving up
    assert "within 0.5s" in (a.detail or "")


def test_headers_dripped_a_byte_at_a_time_are_a_timeout_too(server):
    url = server(drip(b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"y" * 1000 + b"\r\n\r\n")).url
    with make_client(url, 0.5) as c:
        a = probe_once(c, url, 1, ok_2xx)
    assert (a.ok, a.error) == (False, "timeout")
    assert a.latency_ms < SERVER_LIMIT_S * 1000


def test_a_verification_attempt_is_bounded_by_its_own_shorter_timeout(server):
    url = server(drip(HEADERS, b"x" * 100000)).url
    with make_client(url, 30) as c:
        a = probe_once(c, url, 1, ok_2xx, timeout=0.3)
    assert (a.ok, a.error) == (False, "timeout") and "within 0.3s" in (a.detail or "")


def test_an_endless_body_is_read_up_to_the_cap_and_no_further(server):
    total = 64 * BODY_CAP

    def endless(conn: socket.socket, stop: threading.Event) -> None:
        s = server_state
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        chunk = b"z" * 65536
        while s.sent < total and not stop.is_set():
            conn.sendall(chunk)
            s.sent += len(chunk)

    server_state = server(endless)
    url = server_state.url
    with make_client(url, 5) as c:
        a = probe_once(c, url, 1, ok_2xx)
    assert a.ok and a.status == 200
    assert a.body == b"z" * BODY_CAP
    # The client dropped the connection: the server could not send its 64 MB (socket buffers
    # take a few MB at most).
    wait_for(lambda: not server_state.threads[-1].is_alive())
    assert server_state.sent < total / 4


def test_a_small_body_is_kept_whole_on_the_attempt(server):
    def small(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world")

    url = server(small).url
    with make_client(url, 2) as c:
        a = probe_once(c, url, 1, ok_2xx)
    assert a.ok and a.body == b"hello world"
    assert "body" not in a.data()  # what the app sent is never recorded


def test_a_check_of_a_dripping_url_records_timeouts_and_returns(server, tmp_path: Path):
    """The whole check: every attempt (probes and verification) ends by its timeout; the run
    records timeouts, restarts and fails verification, and returns."""
    url = server(drip(HEADERS, b"x" * 100000)).url
    config = write_config(tmp_path, url, timeout='"0.3s"', retries="2", retry_delay='"0s"', verify_timeout='"0.5s"')
    pm2 = FakePm2(FakeApp(), heals=False)
    run = CheckRun(
        config,
        pm2=pm2,
        prober=HttpProber(),
        recorder=Recorder(config.store.path, busy_timeout=1.0),
        clock=SystemClock(),
    )
    result = run.run()
    with Store.open(config.store.path) as store:
        probes = store.query(app="web", types=["probe.failed"])
    assert result.code != UNKNOWN and pm2.restarts == [("web", "restart")]
    assert probes and {p.data["error"] for p in probes} == {"timeout"}
    assert max(p.data["latency_ms"] for p in probes) < SERVER_LIMIT_S * 1000


def write_config(tmp_path: Path, url: str, **settings: str) -> cfg.Config:
    text = f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[logs]\nin_check = false\n'
    text += f'\n[[apps]]\nname = "web"\nurl = "{url}"\n' + "".join(f"{k} = {v}\n" for k, v in settings.items())
    path = tmp_path / "recovery.toml"
    path.write_text(text)
    return cfg.load(path)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_stop_during_the_probes_ends_them_after_the_attempt_under_way_and_decides_nothing(server, tmp_path):
    """What `recovery watch` does on SIGTERM while a URL drips: the attempt under way ends by its
    timeout, no further attempt starts, nothing is restarted on half the evidence, the run ends."""
    url = server(drip(HEADERS, b"x" * 100000)).url
    config = write_config(tmp_path, url, timeout='"0.3s"', retries="3", retry_delay='"0s"')
    pm2 = FakePm2(FakeApp())
    asked = threading.Event()
    run = CheckRun(
        config,
        pm2=pm2,
        prober=HttpProber(),
        recorder=Recorder(config.store.path, busy_timeout=1.0),
        clock=SystemClock(),
        stop=lambda: asked.set() or True,  # SIGTERM arrived during the first attempt
    )
    result = run.run()
    with Store.open(config.store.path) as store:
        seen = [e.type for e in store.query()]
    assert asked.is_set() and pm2.restarts == []
    assert seen.count("probe.failed") == 1 and "decision.made" not in seen
    assert seen[-1] == "check.finished"
    assert (result.code, result.apps[0].state) == (UNKNOWN, "UNKNOWN")


# -- for real: PM2 says online, the URL drips -------------------------------------------------------


def pm2_config(tmp_path: Path, sandbox: Any, url: str, app: str, watch_timeout: str = "1s") -> Path:
    path = tmp_path / "recovery.toml"
    path.write_text(
        f'[store]\npath = "data/recovery.db"\n\n[pm2]\nbin = "{sandbox.bin}"\n\n[logs]\nin_check = false\n\n'
        f'[watch]\ntimeout = "{watch_timeout}"\n\n'
        f'[[apps]]\nname = "{app}"\nurl = "{url}"\nverify_timeout = "1s"\n'
    )
    return path


def stored(config: Path) -> list[Any]:
    db = config.parent / "data" / "recovery.db"
    if not db.exists():
        return []
    with Store.open(db, readonly=True) as s:
        return s.query()


@pytest.mark.pm2
def test_recovery_check_of_a_dripping_url_ends_with_every_attempt_a_timeout(pm2, server, tmp_path):
    app = pm2.start_app("web")
    url = server(drip(HEADERS, b"x" * 100000)).url
    config = pm2_config(tmp_path, pm2, url, app.name)
    text = config.read_text().replace('verify_timeout = "1s"', 'timeout = "1s"\nretries = 2\nverify_timeout = "1s"')
    config.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "check", "--config", str(config)],
        env=pm2.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    failed = [e for e in stored(config) if e.type == "probe.failed"]
    assert proc.returncode == 2, proc.stdout + proc.stderr  # restarted, still dripping after verify_timeout
    assert len(failed) >= 3 and {e.data["error"] for e in failed} == {"timeout"}
    assert max(e.data["latency_ms"] for e in failed) < SERVER_LIMIT_S * 1000


@pytest.mark.pm2
def test_watch_stops_on_sigterm_during_a_dripping_probe_and_decides_nothing(pm2, server, tmp_path):
    """A 3 s watch timeout, so that the SIGTERM sent once the step has started falls in its
    first attempt; that attempt ends by its timeout, then the watch ends, nothing restarted."""
    app = pm2.start_app("web")
    url = server(drip(HEADERS, b"x" * 100000)).url
    config = pm2_config(tmp_path, pm2, url, app.name, watch_timeout="3s")
    proc = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "watch", "--config", str(config)],
        env=pm2.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: any(e.type == "check.started" for e in stored(config)), message="a watch step")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seen = stored(config)
    assert [(e.type, e.data.get("error")) for e in seen if e.type.startswith("probe.")] == [("probe.failed", "timeout")]
    assert not [e for e in seen if e.type in ("decision.made", "restart.requested")]
    assert seen[-1].type == "check.finished"
    assert app.processes()[0]["pm2_env"]["restart_time"] == 0
