"""Alerts people can trust: what is owed, computed from the record; delivered through apprise; recorded.

What is owed comes from the projections and the `alert.sent` events, not from the run that
noticed: an incident owes one `down` alert, one `recovered` (or `failed`, `suspended`) alert, a
`reminder` every `remind_every` while it stays open; PM2 restarting the app on its own three
times within an hour owes one `pm2_restarts` alert per hour. Each is owed once per channel, so a
channel that failed is retried on the next run, and one that got it never gets it again.
Alerts older than `OWED_FOR` are no longer owed: a stale "down" helps nobody. A channel gets
nothing about an incident that ended before it first appeared (`channel.added`): configuring alerts
does not send the past. A channel that failed rests before its next attempt (`resting`), longer the
longer it keeps failing. One deliverer at a time (`delivery_lock`), never under an app's restart lock:
`recovery check` delivers after its recovery work, `recovery watch` from a thread of its own.

apprise is imported only when something is to be sent (it costs ~0.5 s to import); planning is
a few indexed queries. Channel URLs hold secrets: events, output and errors carry `redact(url)`
and a short hash to tell channels apart, never the URL.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from .events import Event, format_ts, parse_ts
from .events import new as new_event
from .store import first_seq_since, held_lock, recorded_since
from .units import earlier, shown_ts, span

if TYPE_CHECKING:
    from .config import AppConfig, Config
    from .store import Recorder, Store

OWED_FOR = 3600.0  # an alert not delivered within an hour of its cause is dropped
PM2_RESTARTS = 3  # PM2's own restarts within PM2_WINDOW that owe a `pm2_restarts` alert
PM2_WINDOW = 3600.0
HEARTBEAT_EVERY = 60.0  # an OK heartbeat at most this often (watch steps are seconds apart)
ATTEMPT_TIMEOUT = 5.0  # an attempt may take at least this long, or its share of the budget if longer
REST_FIRST = 10.0  # a channel that failed rests this long before its next attempt,
REST_MAX = 300.0  # then as long as it has been failing, up to this (so ~15 tries in OWED_FOR)
SLACK = 1.0  # beyond an attempt's timeout, before it is given up as a whole
T = TypeVar("T")
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
    ended: str | None = None  # when its cause ended (an ended incident); None: it still holds


def _clock(ts: str | None) -> str:
    return shown_ts(ts) if ts else "?"


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
    first_seen: Mapping[str, str] | None = None,
) -> list[Alert]:
    """The alerts owed for `app`, each with the channels that have not had it yet.

    `first_seen` maps channel ids to when each first appeared (`sightings`): a channel is not owed
    alerts whose cause ended before then. `hints()` gives the app's root-cause hints, strongest
    first (recovery.hints); it is called only when an alert is owed (for its "Likely cause" line)
    or when `check_leak` asks whether a memory-leak forecast owes a `leak` alert.
    """
    channels = list(conf.channels(app))
    if not channels:
        return []
    ids = {channel_id(u): u for u in channels}
    cutoff = earlier(now, OWED_FOR)
    try:
        incidents = conn.execute(
            "SELECT id, started_at, started_seq, ended_at, ended_seq, duration_s, outcome, first_reason,"
            " coalesce(detected_at, started_at) FROM incidents"
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
    for iid, started, sseq, ended, eseq, duration, outcome, first_reason, detected in incidents:
        f = _facts(conn, name, sseq, eseq)
        opened = [
            f"{name} on {host} stopped answering at {_clock(started)}: {first_reason or 'down'}.",
            _sample_text(f.get("sample")),
        ]
        if ended is None or detected >= cutoff:  # owed from when it was known
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
    for a in alerts:
        if a.incident is not None and a.kind != "reminder":
            a.ended = next(i[3] for i in incidents if i[0] == a.incident)
    # What was sent since the oldest cause still owed: the incidents', the last hour, and for
    # a leak alert (once per UTC day) the day so far.
    since = cutoff
    if any(a.kind == "leak" for a in alerts):
        since = min(since, format_ts(now.replace(hour=0, minute=0, second=0, microsecond=0)))
    sent = _sent(conn, name, min(first_seq_since(conn, since), first_seq or 1 << 62) - 1)
    for a in alerts:
        a.channels = [
            u
            for cid, u in ids.items()
            if cid not in sent.get(a.key, set()) and not (first_seen and a.ended and a.ended < first_seen.get(cid, ""))
        ]
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
            ended=rows[-1][1],
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


def _within(seconds: float, fn: Callable[[], T]) -> tuple[bool, T | None]:
    """`fn()` on a daemon thread, waited for at most `seconds`: (finished, its value).

    A client's timeout bounds each read, not the exchange: a server that drips its answer a byte
    at a time holds it for ever (apprise, requests and httpx alike). What is left behind ends when
    the server lets go, or with the process; it is recorded as failed, so the alert stays owed.
    """
    box: list[T] = []
    worker = threading.Thread(target=lambda: box.append(fn()), name="recovery-send", daemon=True)
    worker.start()
    worker.join(seconds)
    return (True, box[0]) if box else (False, None)


def send_one(url: str, title: str, body: str, timeout: float) -> tuple[bool, str | None]:
    """One attempt through one channel, within `timeout` as a whole; (sent, error with secrets scrubbed)."""
    import logging

    apprise = _apprise()
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return False, "apprise does not understand this URL (see `recovery config validate`)"
    plugin.socket_connect_timeout = plugin.socket_read_timeout = max(0.5, timeout)

    def attempt() -> tuple[bool, list[str]]:
        try:
            with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
                ok = bool(plugin.notify(body=body, title=title))
            return ok, captured.getvalue().strip().splitlines()
        except Exception as exc:
            return False, [f"{type(exc).__name__}: {exc}"]

    finished, result = _within(max(0.5, timeout) + SLACK, attempt)
    if not finished or result is None:
        return False, f"no complete answer within {round(max(0.5, timeout), 1):g}s"
    ok, log = result
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
    stop: Callable[[], bool] = lambda: False,
) -> list[Delivery]:
    """Send each alert through each of its channels: up to `retries` attempts with backoff, all
    within `budget` seconds, each attempt within its share of it (at least ATTEMPT_TIMEOUT). Every
    attempt is passed to `emit`; what is left (out of time, or `stop()`) is owed to the next run."""
    deadline = clock() + budget
    share = max(ATTEMPT_TIMEOUT, budget / max(1, sum(len(a.channels) for a in alerts)))
    out: list[Delivery] = []
    for alert in alerts:
        for url in alert.channels:
            delay = 0.5
            for attempt in range(1, retries + 1):
                left = deadline - clock()
                if left < 0.2 or stop():
                    return out
                t0 = clock()
                ok, error = send(url, alert.title, alert.body, min(share, left))
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


# -- one delivery pass ---------------------------------------------------------------------------


def delivery_lock(store_path: Path) -> contextlib.AbstractContextManager[bool]:
    """Hold the store's delivery flock if no one else does (yields False then): one deliverer at a
    time, so two never plan and send the same alert. Not an app's lock: restarts never wait on it."""
    return held_lock(store_path, "-alerts.lock")  # app locks are "<store>.<app>.lock": no clash


def sightings(
    conn: sqlite3.Connection, ids: Iterable[str], apps: Sequence[str], now: _dt.datetime
) -> tuple[dict[str, str], list[str]]:
    """When each channel (by id) first appeared, and the channels with no `channel.added` yet.

    The time is its `channel.added` event's; for a channel without one that was in use before
    this rule, OWED_FOR before its first recorded alert (what it was owed then, it still is);
    else `now`: the start of the run that sees it first."""
    seen: dict[str, str] = {}
    for (data,) in conn.execute("SELECT data FROM events WHERE app IS NULL AND type = 'channel.added' ORDER BY seq"):
        d = json.loads(data)
        seen.setdefault(d.get("channel_id", ""), d.get("since", ""))
    missing = [cid for cid in ids if cid not in seen]
    if missing and apps:
        marks = ",".join("?" * len(apps))
        for cid in missing:
            (first,) = conn.execute(
                f"SELECT min(ts) FROM events WHERE app IN ({marks}) AND type IN ('alert.sent', 'alert.failed')"
                " AND json_extract(data, '$.channel_id') = ?",
                (*apps, cid),
            ).fetchone()
            if first:
                seen[cid] = earlier(parse_ts(first), OWED_FOR)
    return {cid: seen.get(cid) or format_ts(now) for cid in ids}, missing


def resting(conn: sqlite3.Connection, ids: Collection[str], apps: Sequence[str], now: _dt.datetime) -> dict[str, str]:
    """Channels that failed and are not to be tried yet: channel id -> when they may be again.

    A channel failing since F, last at L, rests until L + (L - F), at least REST_FIRST and at most
    REST_MAX: the wait doubles while it keeps failing, from the record alone (any run, any process).
    A delivery ends the streak, a test message's too (`recovery alert test` once it is fixed).
    Only the last OWED_FOR counts: alerts older than that are not owed.
    """
    if not ids or not apps:
        return {}
    marks = ",".join("?" * len(apps))
    streak: dict[str, tuple[str, str]] = {}  # channel id -> (first, last) failure since its last success
    from_seq = first_seq_since(conn, earlier(now, OWED_FOR))
    rows = conn.execute(
        f"SELECT seq, type, ts, json_extract(data, '$.channel_id') FROM events WHERE app IN ({marks})"
        " AND type IN ('alert.sent', 'alert.failed') AND seq >= ?"
        " UNION ALL SELECT seq, type, ts, json_extract(data, '$.channel_id') FROM events"
        " WHERE app IS NULL AND type = 'alert.sent' AND seq >= ? ORDER BY seq",
        (*apps, from_seq, from_seq),
    )
    for _, type_, ts, cid in rows:
        if cid not in ids:
            continue
        if type_ == "alert.sent":
            streak.pop(cid, None)
        else:
            streak[cid] = (streak[cid][0] if cid in streak else ts, ts)
    out: dict[str, str] = {}
    for cid, (first, last) in streak.items():
        failing = (parse_ts(last) - parse_ts(first)).total_seconds()
        until = parse_ts(last) + _dt.timedelta(seconds=min(REST_MAX, max(REST_FIRST, failing)))
        if until > now and parse_ts(last) <= now:  # a failure "in the future" (clock stepped back) rests nothing
            out[cid] = format_ts(until)
    return out


def send_owed(
    rec: Recorder,
    config: Config,
    apps: Sequence[AppConfig],
    now: _dt.datetime,
    *,
    run_id: str | None,
    leak_apps: Collection[str] = (),
    seen_at: _dt.datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
) -> list[Delivery] | None:
    """Deliver what the record says is owed for `apps`, within [alerts] timeout and retries, and
    record each attempt; None when another deliverer holds the delivery lock (it sends them).

    Under the lock: channels seen for the first time are recorded (`channel.added`), then each
    app's owed alerts are planned, channels resting after failures left out, and the rest sent.
    A leak forecast is looked at for `leak_apps`. `seen_at` is when the caller began (a check
    run's start, a watch's): a channel seen first now counts as there since then (default `now`),
    so the very run in which alerts were configured tells about its own incidents.
    """
    from . import hints, projections

    conf = config.alerts
    if rec.store is None or not any(conf.channels(a) for a in apps):
        return []
    with delivery_lock(rec.path) as held:
        if not held:
            return None
        host = hostname(conf)
        urls = {channel_id(u): u for a in apps for u in conf.channels(a)}
        names = [a.name for a in apps]

        def failed(error: str) -> None:
            rec.emit("alert.failed", None, run_id, kind="plan", error=f"cannot read what is owed: {error}")

        seen = rec.read(lambda conn: sightings(conn, urls, names, seen_at or now), None, fatal=False, on_error=failed)
        if seen is None:
            return []
        since, unrecorded = seen
        for cid in unrecorded:
            rec.emit("channel.added", None, run_id, channel=redact(urls[cid]), channel_id=cid, since=since[cid])

        def hints_of(name: str) -> Callable[[], list[Any]]:
            return lambda: rec.read(
                lambda conn: hints.evaluate(projections.hint_input(conn, name, now)), [], fatal=False
            )

        def owed(conn: sqlite3.Connection) -> list[Alert]:
            due = [
                alert
                for app in apps
                for alert in plan(
                    conn,
                    app,
                    conf,
                    now,
                    host=host,
                    hints=hints_of(app.name),
                    check_leak=app.name in leak_apps,
                    first_seen=since,
                )
            ]
            rest = resting(conn, {channel_id(u) for a in due for u in a.channels}, names, now)
            for alert in due:
                alert.channels = [u for u in alert.channels if channel_id(u) not in rest]
            return [a for a in due if a.channels]

        due: list[Alert] = rec.read(owed, [], fatal=False, on_error=failed)
        if not due:
            return []
        return deliver(
            due,
            retries=conf.retries,
            budget=conf.timeout,
            sleep=sleep,
            stop=stop,
            emit=lambda d: _record(rec, d, run_id),
        )


def _record(rec: Recorder, d: Delivery, run_id: str | None) -> None:
    rec.emit("alert.sent" if d.ok else "alert.failed", d.alert.app, run_id, **d.event_data())


# -- heartbeat ---------------------------------------------------------------------------------


def heartbeat_due(conn: sqlite3.Connection, failed: bool, now: _dt.datetime) -> bool:
    """A ping when the state changes (OK to fail, fail to OK) or nothing was pinged yet. While it
    holds: an OK ping at most every HEARTBEAT_EVERY (the switch needs them); a fail ping not again,
    unless the last one did not get through (then again after HEARTBEAT_EVERY)."""
    last = None
    for type_ in ("heartbeat.sent", "heartbeat.failed"):
        row = conn.execute(
            "SELECT seq, ts, json_extract(data, '$.outcome') FROM events WHERE app IS NULL AND type = ?"
            " ORDER BY seq DESC LIMIT 1",
            (type_,),
        ).fetchone()
        if row and (last is None or row[0] > last[0]):
            last = (*row, type_)
    if last is None:
        return True
    _, ts, outcome, type_ = last
    if outcome != ("fail" if failed else "ok"):
        return True
    if failed and type_ == "heartbeat.sent":
        return False
    age = (now - parse_ts(ts)).total_seconds()
    return age >= HEARTBEAT_EVERY or age < 0  # a ping "in the future" (clock stepped back) is not recent


def heartbeat_url(conf: Any, failed: bool) -> str | None:
    if not conf.heartbeat_url:
        return None
    if not failed:
        return conf.heartbeat_url
    return conf.heartbeat_fail_url or conf.heartbeat_url.rstrip("/") + "/fail"


def beat(rec: Recorder, conf: Any, failed: bool, now: _dt.datetime, *, run_id: str | None) -> None:
    """Ping the heartbeat (or its fail URL) if `heartbeat_due`, and record the ping."""
    if not conf.heartbeat_url or not rec.read(lambda conn: heartbeat_due(conn, failed, now), True):
        return
    url = heartbeat_url(conf, failed) or conf.heartbeat_url
    ok, error, status = ping(url, min(ATTEMPT_TIMEOUT, conf.timeout))
    data: dict[str, Any] = {"outcome": "fail" if failed else "ok", "url": redact(url), "status": status}
    if error:
        data["error"] = error
    rec.emit("heartbeat.sent" if ok else "heartbeat.failed", None, run_id, **data)


def ping(url: str, timeout: float, transport: Any = None) -> tuple[bool, str | None, int | None]:
    """GET the heartbeat URL within `timeout` as a whole; (ok, error scrubbed of the URL's secrets, status)."""
    import httpx

    def get() -> tuple[bool, str | None, int | None]:
        try:
            with httpx.Client(timeout=timeout, transport=transport, follow_redirects=True) as client:
                r = client.get(url)
        except httpx.HTTPError as exc:
            return False, scrub(f"{type(exc).__name__}: {exc}", [url]), None
        if r.status_code >= 400:
            return False, f"HTTP {r.status_code}", r.status_code
        return True, None, r.status_code

    finished, result = _within(timeout + SLACK, get)
    if not finished or result is None:
        return False, f"no complete answer within {round(timeout, 1):g}s", None
    return result
