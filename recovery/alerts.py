"""Alerts people can trust: what is owed, computed from the record; delivered through apprise; recorded.

What is owed comes from the projections and the `alert.sent` events, not from the run that
noticed: an incident owes one `down` alert, one `recovered` (or `failed`, `suspended`) alert, a
`reminder` every `remind_every` while it stays open; PM2 restarting the app on its own three
times within an hour owes one `pm2_restarts` alert per hour. Each is owed once per channel, so a
channel that failed is retried on the next run, and one that got it never gets it again.
Alerts older than `OWED_FOR` are no longer owed: a stale "down" helps nobody.

apprise is imported only when something is to be sent (it costs ~0.5 s to import); planning is
a few indexed queries. Channel URLs hold secrets: events, output and errors carry `redact(url)`
and a short hash to tell channels apart, never the URL.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .events import Event, format_ts, parse_ts
from .events import new as new_event
from .store import first_seq_since, recorded_since
from .units import earlier, span

if TYPE_CHECKING:
    from .store import Store

OWED_FOR = 3600.0  # an alert not delivered within an hour of its cause is dropped
PM2_RESTARTS = 3  # PM2's own restarts within PM2_WINDOW that owe a `pm2_restarts` alert
PM2_WINDOW = 3600.0
HEARTBEAT_EVERY = 60.0  # an OK heartbeat at most this often (watch steps are seconds apart)
_SHOW_HOST = {"json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos", "ntfy", "ntfys", "http", "https"}

# -- redaction ---------------------------------------------------------------------------------


def channel_id(url: str) -> str:
    """A short, stable name for a channel that reveals nothing of its URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def redact(url: str) -> str:
    """What may be shown of a channel URL: its scheme, and its host where that is not a token."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    shown = f"{scheme}://{host}{port}" if scheme in _SHOW_HOST and host else f"{scheme}://"
    return f"{shown}/*** ({channel_id(url)})"


def secrets_of(url: str) -> list[str]:
    """The pieces of a URL that may be secret (user, password, host tokens, path, query values)."""
    out: list[str] = []
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        out += [parts.username or "", parts.password or ""]
        if scheme not in _SHOW_HOST:
            out.append(parts.hostname or "")
            out.append(parts.netloc)
        out += [seg for seg in parts.path.split("/") if seg]
        out += [v for _, v in parse_qsl(parts.query)]
    except ValueError:
        pass
    pieces = {p for p in out if len(p) >= 4} | {unquote(p) for p in out if len(p) >= 4}
    return sorted(pieces, key=len, reverse=True)


def scrub(text: str, urls: Iterable[str]) -> str:
    """`text` with every secret piece of `urls` (and the URLs themselves) replaced by ***."""
    for url in urls:
        text = text.replace(url, redact(url))
        for piece in secrets_of(url):
            text = text.replace(piece, "***")
    return text


# -- what is owed ------------------------------------------------------------------------------


@dataclass
class Alert:
    app: str | None  # None: not about one app (a test message)
    kind: str  # down, recovered, failed, suspended, pm2_restarts, leak, reminder, test
    key: str  # what makes it once-only: e.g. "incident:7:down"
    title: str
    body: str
    incident: int | None = None
    channels: list[str] = field(default_factory=list)  # URLs still owed this alert


def _clock(ts: str | None) -> str:
    return f"{ts[11:19]} UTC" if ts else "?"


def _sent(conn: sqlite3.Connection, app: str, after_seq: int) -> dict[str, set[str]]:
    """key -> channel ids that already got it."""
    out: dict[str, set[str]] = {}
    for (data,) in conn.execute(
        "SELECT data FROM events WHERE app = ? AND type = 'alert.sent' AND seq > ?", (app, after_seq)
    ):
        d = json.loads(data)
        out.setdefault(d.get("key", ""), set()).add(d.get("channel_id", ""))
    return out


def _facts(conn: sqlite3.Connection, app: str, lo: int, hi: int | None) -> dict[str, Any]:
    """What happened in an incident, for its messages (from its events and the run before)."""
    f: dict[str, Any] = {"restarts": [], "failures": []}
    rows = conn.execute(
        "SELECT seq, type, data FROM events WHERE app = ? AND seq >= ? AND seq <= ? AND type IN"
        " ('process.sampled', 'decision.made', 'restart.requested', 'restart.succeeded', 'restart.failed',"
        " 'verification.passed', 'verification.failed') ORDER BY seq",
        (app, max(0, lo - 40), hi if hi is not None else 1 << 62),
    )
    for seq, type_, data in rows:
        d = json.loads(data)
        if type_ == "process.sampled" and seq < lo and d.get("source") == "jlist":
            f["sample"] = d  # the process as it was when it stopped answering
        elif type_ == "decision.made" and seq >= lo:
            f.setdefault("first_decision", d)
            f["last_decision"] = d
            if d.get("state") == "suspended":
                f.setdefault("suspended", d)
        elif type_ == "restart.requested" and seq >= lo:
            f["restarts"].append(d)
        elif type_ == "verification.passed" and seq >= lo:
            f["verified"] = d
        elif type_ in ("restart.failed", "verification.failed") and seq >= lo:
            f["failures"].append((type_, d))
    return f


def _sample_text(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    bits = [f"PM2 said {d.get('status', '?')}"]
    if d.get("pid"):
        bits.append(f"pid {d['pid']}")
    if isinstance(d.get("cpu"), (int, float)):
        bits.append(f"CPU {d['cpu']:.0f}%")
    if isinstance(d.get("memory"), (int, float)):
        bits.append(f"memory {d['memory'] / 1e6:.0f} MB")
    return ", ".join(bits) + "."


def _did(f: dict[str, Any]) -> str:
    if f["restarts"]:
        r = f["restarts"][-1]
        command = " ".join(r.get("command") or []) or "pm2 restart"
        done = f"Restarted with `{command}` (by {r.get('by', 'check')})"
        if f.get("verified"):
            done += f"; it answered again {span(f['verified'].get('seconds'), decimals=True)} later."
        elif f["failures"]:
            done += f"; {_failure_text(f['failures'][-1])}."
        else:
            done += "."
        return done
    last = f.get("last_decision") or {}
    return f"Not restarted: {last.get('reason', 'no restart was needed')}."


def _failure_text(failure: tuple[str, dict[str, Any]]) -> str:
    type_, d = failure
    if type_ == "restart.failed":
        return f"the restart failed ({d.get('error') or d.get('stderr_tail') or 'exit ' + str(d.get('exit_code'))})"
    return f"still not answering after {d.get('seconds', '?')}s ({d.get('last_error', 'no answer')})"


LEAK_WITHIN = 24 * 3600.0  # a leak forecast to reach its limit within a day owes a `leak` alert (once a day)
LEAK_CONFIDENCE = 0.6


def plan(
    conn: sqlite3.Connection,
    app: Any,
    conf: Any,
    now: _dt.datetime,
    *,
    host: str,
    hints: Callable[[], list[Any]] | None = None,
    check_leak: bool = False,
) -> list[Alert]:
    """The alerts owed for `app`, each with the channels that have not had it yet.

    `hints()` gives the app's root-cause hints, strongest first (recovery.hints); it is called
    only when an alert is owed (for its "Likely cause" line) or when `check_leak` asks whether a
    memory-leak forecast owes a `leak` alert.
    """
    channels = list(conf.channels(app))
    if not channels:
        return []
    ids = {channel_id(u): u for u in channels}
    cutoff = earlier(now, OWED_FOR)
    try:
        incidents = conn.execute(
            "SELECT id, started_at, started_seq, ended_at, ended_seq, duration_s, outcome, first_reason FROM incidents"
            " WHERE app = ? AND (ended_at IS NULL OR ended_at >= ?) ORDER BY id",
            (app.name, cutoff),
        ).fetchall()
    except sqlite3.OperationalError:  # no projections yet
        return []
    name = app.name
    more = f"More: recovery why {name}"
    alerts: list[Alert] = []
    first_seq = min((i[2] for i in incidents), default=None)
    likely = "{likely}"  # filled in below, once, when something is owed
    for iid, started, sseq, ended, eseq, duration, outcome, first_reason in incidents:
        f = _facts(conn, name, sseq, eseq)
        opened = [
            f"{name} on {host} stopped answering at {_clock(started)}: {first_reason or 'down'}.",
            _sample_text(f.get("sample")),
        ]
        if ended is None or started >= cutoff:
            alerts.append(
                Alert(
                    name,
                    "down",
                    f"incident:{iid}:down",
                    f"{name} DOWN on {host}",
                    _lines(*opened, _did(f), likely, more),
                    iid,
                )
            )
        if f.get("suspended"):
            reason = f["suspended"].get("reason", "restart loop")
            alerts.append(
                Alert(
                    name,
                    "suspended",
                    f"incident:{iid}:suspended",
                    f"{name} restarts SUSPENDED on {host}",
                    _lines(
                        f"{name} on {host}: no more automatic restarts: {reason}.",
                        f"Restarting again will not help; find the cause, then `recovery resume {name}`.",
                        likely,
                        more,
                    ),
                    iid,
                )
            )
        if f["failures"]:
            alerts.append(
                Alert(
                    name,
                    "failed",
                    f"incident:{iid}:failed",
                    f"{name} restart FAILED on {host}",
                    _lines(f"{name} on {host}: {_failure_text(f['failures'][0])}.", *opened[1:], likely, more),
                    iid,
                )
            )
        if ended is not None and outcome in ("restarted", "recovered without restart"):
            alerts.append(
                Alert(
                    name,
                    "recovered",
                    f"incident:{iid}:recovered",
                    f"{name} RECOVERED on {host}",
                    _lines(
                        f"{name} on {host} answers again since {_clock(ended)}, after {span(duration, decimals=True)}"
                        f" down (from {_clock(started)}).",
                        _did(f),
                        likely,
                        more,
                    ),
                    iid,
                )
            )
        if ended is None and conf.remind_every > 0:
            n = int((now - parse_ts(started)).total_seconds() // conf.remind_every)
            if n >= 1:
                alerts.append(
                    Alert(
                        name,
                        "reminder",
                        f"incident:{iid}:reminder:{n}",
                        f"{name} still DOWN on {host}",
                        _lines(
                            f"{name} on {host} has not answered since {_clock(started)}"
                            f" ({span((now - parse_ts(started)).total_seconds(), decimals=True)}).",
                            _did(f),
                            likely,
                            more,
                        ),
                        iid,
                    )
                )
    alerts += _pm2_restarts(conn, name, now, host, more)
    found: list[Any] | None = None
    if check_leak and hints is not None and "leak" not in conf.off:
        found = hints()
        alerts += _leak(found, name, host, now, more)
    alerts = [a for a in alerts if a.kind not in conf.off]
    if not alerts:
        return []
    # What was sent since the oldest cause still owed: the incidents', the last hour, and for
    # a leak alert (once per UTC day) the day so far.
    since = cutoff
    if any(a.kind == "leak" for a in alerts):
        since = min(since, format_ts(now.replace(hour=0, minute=0, second=0, microsecond=0)))
    sent = _sent(conn, name, min(first_seq_since(conn, since), first_seq or 1 << 62) - 1)
    for a in alerts:
        a.channels = [u for cid, u in ids.items() if cid not in sent.get(a.key, set())]
    owed = [a for a in alerts if a.channels]
    if any(likely in a.body for a in owed):
        if found is None and hints is not None:
            found = hints()
        cause = f"Likely cause: {found[0].message} (confidence {found[0].confidence:.2f})" if found else ""
        for a in owed:
            a.body = _lines(*(cause if line == likely else line for line in a.body.split("\n")))
    return owed


def _leak(found: list[Any], app: str, host: str, now: _dt.datetime, more: str) -> list[Alert]:
    leak = next((h for h in found if h.kind == "memory_leak"), None)
    if leak is None or leak.confidence < LEAK_CONFIDENCE:
        return []
    eta = leak.evidence.get("forecast_s")
    if eta is None or eta > LEAK_WITHIN:
        return []
    return [
        Alert(
            app,
            "leak",
            f"leak:{now.date().isoformat()}",
            f"{app} memory leak on {host}: limit in {span(eta, decimals=True)}",
            _lines(f"{app} on {host}: {leak.message}.", f"More: recovery report --app {app}; {more}"),
        )
    ]


def _pm2_restarts(conn: sqlite3.Connection, app: str, now: _dt.datetime, host: str, more: str) -> list[Alert]:
    since = earlier(now, PM2_WINDOW)
    try:
        rows = conn.execute(
            "SELECT seq, at, count FROM restarts WHERE app = ? AND by = 'pm2' AND at >= ? ORDER BY seq", (app, since)
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    if sum(r[2] for r in rows) < PM2_RESTARTS:
        return []
    # Once per hour: the key is the hour of the newest restart; an alert sent in the last hour also counts.
    if recorded_since(conn, app, "alert.sent", since, "json_extract(data, '$.kind') = 'pm2_restarts'"):
        return []
    n = sum(r[2] for r in rows)
    return [
        Alert(
            app,
            "pm2_restarts",
            f"pm2_restarts:{rows[0][0]}",
            f"{app} restarted by PM2 {n}x on {host}",
            _lines(
                f"PM2 restarted {app} on {host} {n} times since {_clock(rows[0][1])} on its own (a crash,"
                " or max_memory_restart).",
                f"More: recovery errors --app {app} --since 1h; {more}",
            ),
        )
    ]


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


# -- delivery ----------------------------------------------------------------------------------


@dataclass
class Delivery:
    alert: Alert
    url: str
    ok: bool
    attempt: int
    error: str | None = None
    seconds: float = 0.0

    def event_data(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.alert.kind,
            "key": self.alert.key,
            "incident": self.alert.incident,
            "channel": redact(self.url),
            "channel_id": channel_id(self.url),
            "attempt": self.attempt,
            "title": self.alert.title,
            "seconds": round(self.seconds, 2),
        }
        if self.error:
            d["error"] = self.error
        return d


def _apprise() -> Any:
    import logging

    import apprise

    logging.getLogger("apprise").addHandler(logging.NullHandler())  # never apprise's lines on our stderr
    return apprise


def send_one(url: str, title: str, body: str, timeout: float) -> tuple[bool, str | None]:
    """One attempt through one channel; (sent, error with secrets scrubbed)."""
    import logging

    apprise = _apprise()
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return False, "apprise does not understand this URL (see `recovery config validate`)"
    plugin.socket_connect_timeout = plugin.socket_read_timeout = max(0.5, timeout)
    try:
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            ok = bool(plugin.notify(body=body, title=title))
        log = captured.getvalue().strip().splitlines()
    except Exception as exc:
        ok, log = False, [f"{type(exc).__name__}: {exc}"]
    if ok:
        return True, None
    return False, scrub(log[-1] if log else "not delivered (no reason given)", [url])


def known(url: str) -> bool:
    """Whether apprise understands `url` (imports apprise)."""
    return _apprise().Apprise.instantiate(url) is not None


def deliver(
    alerts: list[Alert],
    *,
    retries: int,
    budget: float,
    emit: Callable[[Delivery], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    send: Callable[[str, str, str, float], tuple[bool, str | None]] = send_one,
) -> list[Delivery]:
    """Send each alert through each of its channels: up to `retries` attempts with backoff, all
    within `budget` seconds. Every attempt is passed to `emit`; what is left is owed to the next run."""
    deadline = clock() + budget
    out: list[Delivery] = []
    for alert in alerts:
        for url in alert.channels:
            delay = 0.5
            for attempt in range(1, retries + 1):
                left = deadline - clock()
                if left < 0.2:
                    return out
                t0 = clock()
                ok, error = send(url, alert.title, alert.body, min(5.0, left))
                d = Delivery(alert, url, ok, attempt, error, clock() - t0)
                out.append(d)
                emit(d)
                if ok:
                    break
                if attempt < retries and deadline - clock() > delay + 0.2:
                    sleep(delay)
                    delay *= 2
    return out


def hostname(conf: Any) -> str:
    return conf.host or socket.gethostname()


def channels(conf: Any) -> list[str]:
    """Every distinct channel URL of the config: [alerts] urls, then each app's own, in order."""
    seen: list[str] = []
    for url in [*conf.alerts.urls, *(u for a in conf.apps for u in (a.alerts or ()))]:
        if url not in seen:
            seen.append(url)
    return seen


def send_test(
    conf: Any,
    store: Store,
    channel: int | None = None,
    *,
    send: Callable[[str, str, str, float], tuple[bool, str | None]] = send_one,
) -> list[Delivery]:
    """Send a test message through every channel, or only the `channel`th (from 1, as in
    `channels(conf)`), and record each attempt in `store` as `alert.sent` / `alert.failed` (kind
    `test`). One attempt per channel; channels left without a delivery ran out of time."""
    urls = channels(conf)
    if channel is not None:
        urls = [urls[channel - 1]]
    host = hostname(conf.alerts)
    test = Alert(
        None,
        "test",
        "test",
        f"recovery test alert from {host}",
        f"This is a test message from recovery on {host}. Alerts for {', '.join(a.name for a in conf.apps)} come here.",
        channels=urls,
    )
    events: list[Event] = []
    deliveries = deliver(
        [test],
        retries=1,
        budget=max(conf.alerts.timeout, 5.0 * len(urls)),
        emit=lambda d: events.append(new_event("alert.sent" if d.ok else "alert.failed", None, None, d.event_data())),
        send=send,
    )
    store.append(events)
    return deliveries


# -- heartbeat ---------------------------------------------------------------------------------


def heartbeat_due(conn: sqlite3.Connection, failed: bool, now: _dt.datetime) -> bool:
    """Fail pings always; OK pings at most every HEARTBEAT_EVERY (a watch loop runs every few seconds)."""
    return failed or not recorded_since(conn, None, "heartbeat.sent", earlier(now, HEARTBEAT_EVERY))


def heartbeat_url(conf: Any, failed: bool) -> str | None:
    if not conf.heartbeat_url:
        return None
    if not failed:
        return conf.heartbeat_url
    return conf.heartbeat_fail_url or conf.heartbeat_url.rstrip("/") + "/fail"


def ping(url: str, timeout: float, transport: Any = None) -> tuple[bool, str | None, int | None]:
    """GET the heartbeat URL; (ok, error scrubbed of the URL's secrets, status)."""
    import httpx

    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=True) as client:
            r = client.get(url)
    except httpx.HTTPError as exc:
        return False, scrub(f"{type(exc).__name__}: {exc}", [url]), None
    if r.status_code >= 400:
        return False, f"HTTP {r.status_code}", r.status_code
    return True, None, r.status_code
