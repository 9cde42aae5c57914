"""Alerts delivered to real receivers on loopback (HTTP for apprise's json:// and form://, SMTP for
mailto://), once per incident, retried when owed, with every secret kept out of the record."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from recovery import alerts, projections
from recovery.config import load
from recovery.demo import free_port
from recovery.store import Store

from .test_check import recovery, stored, write_config
from .test_projections import Timeline

SECRET = "xoxb-SeCrEt-T0ken-4242"
PASSWORD = "Sekr3t-Pa55word"


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request; the first `fail_first` get a 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[dict] = []
        self.fail_first = fail_first
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "type": self.headers.get("Content-Type"),
                        "body": body.decode("utf-8", "replace"),
                    }
                )
                code = 500 if len(outer.requests) <= outer.fail_first else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, scheme: str = "json", path: str = f"hooks/{SECRET}") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    def messages(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests if r["type"] == "application/json"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class Mailbox:
    """aiosmtpd on 127.0.0.1 that accepts AUTH LOGIN/PLAIN for bob / PASSWORD without TLS."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.mails: list[bytes] = []
        self.logins: list[str] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.mails.append(envelope.content)
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == b"bob" and auth_data.password == PASSWORD.encode()
            outer.logins.append(f"{auth_data.login.decode()}:{'ok' if ok else 'refused'}")
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate, auth_require_tls=False
        )
        self.controller.start()

    def url(self) -> str:
        return (
            f"mailto://bob:{PASSWORD}@127.0.0.1:{self.port}?mode=insecure&from=recovery@example.com&to=ops@example.com"
        )

    def subjects(self) -> list[str]:
        import email

        return [email.message_from_bytes(m)["Subject"] for m in self.mails]


@pytest.fixture
def mailbox():
    m = Mailbox()
    yield m
    m.controller.stop()


def alerts_toml(*urls: str, **settings: str) -> str:
    text = "\n[alerts]\nurls = [" + ", ".join(json.dumps(u) for u in urls) + ']\nhost = "web-1"\n'
    return text + "".join(f"{k} = {v}\n" for k, v in settings.items())


def store_bytes(config: Path) -> bytes:
    """Everything the store keeps on disk: the database, its WAL and the spool."""
    db = config.parent / "data" / "recovery.db"
    return b"".join(p.read_bytes() for p in db.parent.glob("recovery.db*") if p.is_file())


def check_a_hang(pm2, tmp_path: Path, *urls: str) -> tuple[Path, subprocess.CompletedProcess]:
    """An app under PM2 made to hang, then one `recovery check` with alerts to `urls`; it recovers."""
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, timeout='"1s"', retry_delay='"0s"')
    config.write_text(config.read_text() + alerts_toml(*urls))
    app.control("hang")
    app.wait_until(lambda: not app.answers(timeout=0.5), message="the app to hang")
    result = recovery(pm2, "check", "--config", str(config))
    assert result.returncode == 1 and "RECOVERED" in result.stdout, (result.stdout, result.stderr)
    return config, result


# -- the done-when: a hang, one "down" and one "recovered", no secret anywhere ----------------------


@pytest.mark.pm2
def test_a_recovered_hang_sends_one_down_and_one_recovered_alert_and_keeps_the_secret_out(pm2, tmp_path, receiver):
    config, result = check_a_hang(pm2, tmp_path, receiver.url())
    titles = [m["title"] for m in receiver.messages()]
    assert titles == ["web DOWN on web-1", "web RECOVERED on web-1"]
    down, recovered = receiver.messages()
    assert "stopped answering at" in down["message"] and "Restarted with `pm2 restart web`" in down["message"]
    assert "recovery why web" in down["message"] and "PM2 said online" in down["message"]
    assert "Likely cause: event loop blocked: 1 of 1 hangs had the CPU pinned" in down["message"]  # a busy loop
    assert "answers again since" in recovered["message"] and "down (from" in recovered["message"]
    sent = [e for e in stored(config) if e.type == "alert.sent"]
    assert [e.data["kind"] for e in sent] == ["down", "recovered"] and all(e.data["incident"] == 1 for e in sent)
    assert not [e for e in stored(config) if e.type == "alert.failed"]
    # Alerts go out after the recovery: the restart was verified before the first message.
    kinds = [e.type for e in stored(config)]
    assert kinds.index("verification.passed") < kinds.index("alert.sent")

    again = recovery(pm2, "check", "--config", str(config))  # healthy: nothing more is owed
    assert again.returncode == 0 and len(receiver.messages()) == 2
    assert SECRET.encode() not in store_bytes(config)
    assert SECRET not in result.stdout + result.stderr + again.stdout + again.stderr
    assert sent[0].data["channel"] == f"json://127.0.0.1:{receiver.port}/*** ({alerts.channel_id(receiver.url())})"


@pytest.mark.pm2
def test_email_alerts_reach_an_smtp_server_and_the_password_stays_out(pm2, tmp_path, mailbox):
    config, result = check_a_hang(pm2, tmp_path, mailbox.url())
    assert mailbox.subjects() == ["web DOWN on web-1", "web RECOVERED on web-1"]
    assert mailbox.logins == ["bob:ok", "bob:ok"]
    assert PASSWORD.encode() not in store_bytes(config) and PASSWORD not in result.stdout + result.stderr


# -- once per incident, owed until delivered ----------------------------------------------------------


def history(tmp_path: Path, *urls: str, **settings: str):
    """A config with `urls` and a store; returns (config, store, timeline starting an hour ago)."""
    path = tmp_path / "recovery.toml"
    path.write_text(
        '[store]\npath = "data/recovery.db"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n'
        + alerts_toml(*urls, **settings)
    )
    store = Store.open(tmp_path / "data" / "recovery.db")
    now = dt.datetime.now(dt.UTC)
    return load(path), store, Timeline(store, t0=now - dt.timedelta(hours=1)), now


def send_owed(conf, store: Store, now: dt.datetime, sleep=lambda s: None, **plan_args) -> list[alerts.Delivery]:
    """Plan at `now` and deliver, recording each attempt as of `now`."""
    from recovery.events import Event, format_ts

    projections.fold(store.conn)
    owed = alerts.plan(store.conn, conf.apps[0], conf.alerts, now, host="web-1", **plan_args)

    def emit(d: alerts.Delivery) -> None:
        store.append(
            [Event("alert.sent" if d.ok else "alert.failed", d.alert.app, "run", d.event_data(), ts=format_ts(now))]
        )

    return alerts.deliver(owed, retries=conf.alerts.retries, budget=conf.alerts.timeout, emit=emit, sleep=sleep)


def test_a_receiver_that_first_fails_gets_the_alert_on_a_retry_with_backoff(tmp_path):
    flaky = Receiver(fail_first=1)
    try:
        conf, store, tl, now = history(tmp_path, flaky.url())
        tl.hang_recovered(0)
        waits: list[float] = []
        done = send_owed(conf, store, now, sleep=waits.append)
        assert [(d.alert.kind, d.ok, d.attempt) for d in done] == [
            ("down", False, 1),
            ("down", True, 2),
            ("recovered", True, 1),
        ]
        assert waits == [0.5] and "500" in done[0].error
        assert send_owed(conf, store, now) == []  # delivered: owed no more
    finally:
        flaky.close()


def test_an_alert_owed_to_a_dead_channel_is_sent_on_the_next_run_and_only_there(tmp_path, receiver):
    dead = f"json://127.0.0.1:{free_port()}/hooks/{SECRET}"
    conf, store, tl, now = history(tmp_path, dead, receiver.url(), retries="2")
    tl.hang_recovered(0)
    first = send_owed(conf, store, now)
    assert [(d.url == dead, d.ok) for d in first] == [
        (True, False),
        (True, False),
        (False, True),
        (True, False),
        (True, False),
        (False, True),
    ]
    assert SECRET not in " ".join(d.error or "" for d in first)
    # The next run owes the two alerts to the dead channel only.
    owed = alerts.plan(store.conn, conf.apps[0], conf.alerts, now, host="web-1")
    assert [(a.kind, a.channels) for a in owed] == [("down", [dead]), ("recovered", [dead])]
    assert len(receiver.messages()) == 2


def test_alerts_older_than_an_hour_are_no_longer_owed(tmp_path, receiver):
    conf, store, tl, now = history(tmp_path, receiver.url())
    tl.hang_recovered(0)
    later = now + dt.timedelta(seconds=alerts.OWED_FOR + 60)
    projections.fold(store.conn)
    assert alerts.plan(store.conn, conf.apps[0], conf.alerts, later, host="web-1") == []


def test_kinds_switched_off_are_not_sent(tmp_path, receiver):
    conf, store, tl, now = history(tmp_path, receiver.url(), off='["recovered"]')
    tl.hang_recovered(0)
    assert [d.alert.kind for d in send_owed(conf, store, now)] == ["down"]


def down_and_stuck(tl: Timeline, t: float) -> None:
    tl.run(
        t,
        ("probe.failed", "web", {"phase": "check", "error": "refused"}),
        ("process.sampled", "web", {"source": "jlist", "status": "errored", "known": True}),
        ("decision.made", "web", {"action": "restart", "reason": "errored", "state": "recovering"}),
        ("restart.requested", "web", {"by": "check", "reason": "errored", "command": ["pm2", "restart", "web"]}),
        ("restart.succeeded", "web", {"exit_code": 0}),
        ("verification.failed", "web", {"attempts": 9, "seconds": 60, "last_error": "refused"}),
    )


def test_a_failed_restart_alerts_once_and_an_open_incident_reminds_every_remind_every(tmp_path, receiver):
    conf, store, tl, now = history(tmp_path, receiver.url(), remind_every='"20m"')
    down_and_stuck(tl, 0)  # an hour ago, still down
    assert [d.alert.kind for d in send_owed(conf, store, now)] == ["down", "failed", "reminder"]
    failed = receiver.messages()[1]
    assert (
        failed["title"] == "web restart FAILED on web-1"
        and "still not answering after 60s (refused)" in failed["message"]
    )
    assert send_owed(conf, store, now) == []
    assert [d.alert.kind for d in send_owed(conf, store, now + dt.timedelta(minutes=20))] == ["reminder"]


def test_pm2_restarting_the_app_on_its_own_alerts_once_an_hour(tmp_path, receiver):
    conf, store, tl, now = history(tmp_path, receiver.url())
    for k in range(0, 4):
        tl._restarts["web"] = k  # PM2's restart_time: 0, then one more restart of its own each time
        tl.run(
            600 * k,
            (
                "process.sampled",
                "web",
                {"source": "jlist", "status": "online", "restart_time": tl.restarts("web"), "known": True},
            ),
            ("decision.made", "web", {"action": "none", "reason": "healthy", "state": "healthy"}),
        )
    assert [d.alert.kind for d in send_owed(conf, store, now)] == ["pm2_restarts"]
    assert "PM2 restarted web on web-1 3 times" in receiver.messages()[0]["message"]
    assert send_owed(conf, store, now) == []


def test_an_app_can_have_its_own_channels(tmp_path, receiver):
    other = Receiver()
    try:
        path = tmp_path / "recovery.toml"
        path.write_text(
            '[store]\npath = "data/recovery.db"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n'
            f'alerts = ["{other.url()}"]\n' + alerts_toml(receiver.url())
        )
        conf = load(path)
        assert conf.alerts.channels(conf.apps[0]) == (other.url(),)
        with Store.open(tmp_path / "data" / "recovery.db") as store:
            Timeline(store, t0=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).hang_recovered(0)
            send_owed(conf, store, dt.datetime.now(dt.UTC))
        assert len(other.messages()) == 2 and receiver.messages() == []
    finally:
        other.close()


# -- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, shown",
    [
        (f"json://127.0.0.1:8080/hooks/{SECRET}", "json://127.0.0.1:8080/***"),
        (f"slack://T1JJ3T3L2/A1BRTD4JD/{SECRET}", "slack:///***"),
        (f"discord://4174216298/{SECRET}", "discord:///***"),
        (f"mailtos://bob:{SECRET}@smtp.example.com?to=ops@example.com", "mailtos://smtp.example.com/***"),
        (f"tgram://{SECRET}/12345", "tgram:///***"),
    ],
)
def test_a_channel_is_shown_without_its_secrets(url, shown):
    assert alerts.redact(url).startswith(shown) and SECRET not in alerts.redact(url)
    assert SECRET not in alerts.scrub(f"failed to post to {url} (token {SECRET})", [url])


def test_slack_and_discord_accept_our_urls_and_messages_up_to_the_send(monkeypatch):
    """Channels that need the internet: apprise takes the URL and the message; the HTTP post is caught."""
    import requests

    posted: list[dict] = []

    class Answer:
        status_code, content, text, headers = 200, b"ok", "ok", {}

    def fake_request(method, url, data=None, **kw):
        posted.append({"url": url, "data": data if isinstance(data, str) else json.dumps(data)})
        return Answer()

    monkeypatch.setattr(requests, "request", fake_request)
    monkeypatch.setattr(requests, "post", lambda url, data=None, **kw: fake_request("POST", url, data))
    monkeypatch.setattr(
        requests.Session, "request", lambda self, method, url, data=None, **kw: fake_request(method, url, data)
    )
    for url in (
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
    ):
        assert alerts.known(url)
        ok, error = alerts.send_one(
            url, "web DOWN on web-1", "web on web-1 stopped answering.\nMore: recovery why web", 2
        )
        assert ok, error
    assert len(posted) == 2 and all("recovery why web" in p["data"] for p in posted)
    assert "hooks.slack.com" in posted[0]["url"] and "discord.com" in posted[1]["url"]


# -- the heartbeat -----------------------------------------------------------------------------


@pytest.mark.pm2
def test_the_heartbeat_is_pinged_after_a_run_and_fail_after_a_critical_one(pm2, tmp_path, receiver):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, "ghost", timeout='"1s"', retry_delay='"0s"')
    beat = f"http://127.0.0.1:{receiver.port}/ping/{SECRET}"
    config.write_text(config.read_text() + f'\n[alerts]\nheartbeat_url = "{beat}"\n')
    ok = recovery(pm2, "check", "--app", "web", "--config", str(config))
    assert ok.returncode == 0 and [r["path"] for r in receiver.requests] == [f"/ping/{SECRET}"]
    again = recovery(pm2, "check", "--app", "web", "--config", str(config))  # within a minute: no second OK ping
    assert again.returncode == 0 and len(receiver.requests) == 1
    critical = recovery(pm2, "check", "--config", str(config))  # ghost is not in PM2: CRITICAL
    assert critical.returncode == 2 and receiver.requests[-1]["path"] == f"/ping/{SECRET}/fail"
    beats = [e for e in stored(config) if e.type.startswith("heartbeat.")]
    assert [(e.type, e.data["outcome"]) for e in beats] == [("heartbeat.sent", "ok"), ("heartbeat.sent", "fail")]
    assert SECRET.encode() not in store_bytes(config)


# -- recovery alert test, config validate, and the hot path -----------------------------------------


def cli(*args: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_alert_test_sends_through_each_channel_and_says_what_happened(tmp_path, receiver, mailbox):
    dead = f"json://127.0.0.1:{free_port()}/hooks/{SECRET}"
    conf, store, _, _ = history(tmp_path, receiver.url(), mailbox.url(), dead)
    store.close()
    result = cli("alert", "test", config=conf.source)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"✓ #1 json://127.0.0.1:{receiver.port}/***") and lines[1].startswith("✓ #2 mailto://")
    assert lines[2].startswith("✗ #3 json://127.0.0.1") and "failed:" in lines[2]
    assert receiver.messages()[0]["title"] == "recovery test alert from web-1" and len(mailbox.mails) == 1
    assert SECRET not in result.stdout + result.stderr and PASSWORD not in result.stdout + result.stderr
    only = cli("alert", "test", "--channel", "1", config=conf.source)
    assert only.returncode == 0 and only.stdout.count("✓") == 1
    wrong = cli("alert", "test", "--channel", "7", config=conf.source)
    assert wrong.returncode == 3 and "there are 3 channel(s)" in wrong.stderr
    with Store.open(tmp_path / "data" / "recovery.db", readonly=True) as s:
        kinds = [(e.type, e.data["kind"]) for e in s.query() if e.type.startswith("alert.")]
    assert kinds.count(("alert.sent", "test")) == 3 and kinds.count(("alert.failed", "test")) == 1
    assert SECRET.encode() not in store_bytes(conf.source) and PASSWORD.encode() not in store_bytes(conf.source)


def test_send_test_records_one_attempt_per_channel_and_only_the_channel_asked_for(tmp_path):
    conf, store, _, _ = history(tmp_path, f"json://127.0.0.1:9/hooks/{SECRET}", "json://127.0.0.1:9/other")
    sent: list[str] = []

    def send(url: str, title: str, body: str, timeout: float) -> tuple[bool, str | None]:
        sent.append(title)
        return url.endswith("other"), None if url.endswith("other") else "refused"

    both = alerts.send_test(conf, store, send=send)
    assert [(d.ok, d.alert.kind) for d in both] == [(False, "test"), (True, "test")]
    assert sent == ["recovery test alert from web-1"] * 2
    (second,) = alerts.send_test(conf, store, 2, send=send)
    assert second.url.endswith("other")
    recorded = [(e.type, e.app, e.data["kind"]) for e in store.query() if e.type.startswith("alert.")]
    assert recorded == [("alert.failed", None, "test"), ("alert.sent", None, "test"), ("alert.sent", None, "test")]
    store.close()


def test_alert_test_without_channels_and_validate_with_an_unknown_scheme_are_one_line_exit_3(tmp_path):
    path = tmp_path / "recovery.toml"
    path.write_text('[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n')
    none = cli("alert", "test", config=path)
    assert none.returncode == 3 and "no alert channels" in none.stderr and len(none.stderr.splitlines()) == 1
    path.write_text(path.read_text() + f'\n[alerts]\nurls = ["slakc://{SECRET}/x"]\n')
    bad = subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "config", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 3 and "apprise does not understand" in bad.stderr and SECRET not in bad.stderr


@pytest.mark.pm2
def test_a_healthy_check_with_alerts_configured_does_not_import_apprise(pm2, tmp_path, receiver):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    config.write_text(config.read_text() + alerts_toml(receiver.url()))
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "recovery_cli.main", "check", "--config", str(config)],
        env=pm2.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.splitlines()[1].startswith("web OK"), result.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "httpx" in imported and "apprise" not in imported and "requests" not in imported
    assert receiver.requests == []


def test_a_memory_leak_forecast_alerts_once_a_day_and_messages_carry_the_strongest_hint(tmp_path, receiver):
    from recovery.hints import Hint

    conf, store, tl, now = history(tmp_path, receiver.url())
    tl.hang_recovered(0)
    projections.fold(store.conn)
    leak = Hint(
        "memory_leak",
        "memory leak: memory grows 1.2MB/min; at this rate it reaches max_memory_restart 512MB in 3h10m",
        0.8,
        {"forecast_s": 11400},
    )
    owed = alerts.plan(store.conn, conf.apps[0], conf.alerts, now, host="web-1", hints=lambda: [leak], check_leak=True)
    assert [a.kind for a in owed] == ["down", "recovered", "leak"]
    assert all("Likely cause: memory leak: memory grows 1.2MB/min" in a.body for a in owed[:2])
    assert owed[2].title == "web memory leak on web-1: limit in 3h10m" and owed[2].key == f"leak:{now.date()}"
    # Not owed without a full sample this run, for a weak or far-off forecast, or when switched off.
    weak = Hint("memory_leak", "memory leak", 0.45, {"forecast_s": 600})
    far = Hint("memory_leak", "memory leak", 0.9, {"forecast_s": 3 * 86400})
    for hints, check in (([leak], False), ([weak], True), ([far], True)):
        kinds = [
            a.kind
            for a in alerts.plan(
                store.conn, conf.apps[0], conf.alerts, now, host="web-1", hints=lambda h=hints: h, check_leak=check
            )
        ]
        assert "leak" not in kinds
    assert all(
        "Likely cause" not in a.body
        for a in alerts.plan(store.conn, conf.apps[0], conf.alerts, now, host="web-1", hints=lambda: [])
    )


def test_a_leak_alert_is_sent_once_a_day(tmp_path, receiver):
    from recovery.hints import Hint

    conf, store, _, _ = history(tmp_path, receiver.url())
    morning = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
    Timeline(store, t0=morning).healthy(0)
    leak = Hint("memory_leak", "memory leak: memory grows 1.2MB/min", 0.8, {"forecast_s": 11400})
    sent = [d.alert.kind for d in send_owed(conf, store, morning, hints=lambda: [leak], check_leak=True)]
    assert sent == ["leak"]
    for hours, owed in ((0.5, False), (3, False), (15, False), (24, True)):  # 23:00 the same day; 08:00 the next
        later = morning + dt.timedelta(hours=hours)
        Timeline(store, t0=later).healthy(0)
        projections.fold(store.conn)
        kinds = [
            a.kind
            for a in alerts.plan(
                store.conn, conf.apps[0], conf.alerts, later, host="web-1", hints=lambda: [leak], check_leak=True
            )
        ]
        assert ("leak" in kinds) == owed, (hours, kinds)
