"""Prometheus metrics from the store's projections (never a scan of raw events). Issue 18, point 1.

Three ways out, one collector (`StoreCollector`, read afresh at each collection):
    `recovery metrics`             prints the text exposition (or writes a file, atomically)
    `[metrics] textfile`           `write_textfile`, run by `recovery publish` after each check has
                                   answered (node_exporter's textfile collector convention)
    `recovery watch --metrics-port` `MetricsServer` answers GET /metrics from a thread of its own

What each series is read from (app_state, incidents, restarts and the rollups; the spool files):
    recovery_up, recovery_state, recovery_probe_latency_seconds, recovery_incident_open,
    recovery_last_check_timestamp_seconds                      app_state (the fold's current row)
    recovery_probes_total, recovery_probe_duration_seconds     rollup_day, every day since the store began
    recovery_probe_latency_quantile_seconds                    rollup sketches over the last 1h / 24h
    recovery_availability_ratio                                rollups, as `recovery report --since 24h|7d`
    recovery_restarts_total                                    restarts (ours by who, and PM2's own)
    recovery_incidents_total                                   incidents
    recovery_events_spooled                                    the spool files beside the store (and fallbacks)

Counters are totals since the store began: `recovery archive` folds before it moves raw events
into segments and never touches the projections, and a rebuild folds the segments first, so the
totals never go down. prometheus_client is imported here only: never on the healthy check's path.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import rollups, sketch
from .config import Config
from .errors import MetricsError, StoreError
from .model import DOWN_STATES, UP_STATES
from .units import earlier, format_ts, parse_ts

STATES = ("healthy", "degraded", "recovering", "down", "suspended", "stopped", "paused", "unknown")
WHO = ("check", "schedule", "operator", "pm2")  # who restarted an app (restarts.by), as `recovery report`
WINDOWS = (("24h", 86400.0), ("7d", 7 * 86400.0))  # availability
QUANTILE_WINDOWS = (("1h", 3600.0), ("24h", 86400.0))
QUANTILES = (0.5, 0.95, 0.99)
# Histogram bounds in seconds: from a fast local answer to a probe's usual timeout.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class AppMetrics:
    """One app's numbers, as read from the projections."""

    app: str
    state: str = "unknown"  # paused while a pause lasts
    up: bool | None = None  # whether it answered at its last check (a paused app too); None: never checked
    last_latency_s: float | None = None
    last_check_s: float | None = None
    open_incident: bool = False
    probes_ok: int = 0
    probes_failed: int = 0
    restarts_by: dict[str, int] = field(default_factory=dict)
    incidents: int = 0
    availability: dict[str, float] = field(default_factory=dict)  # window -> ratio (observed windows only)
    quantiles: dict[tuple[str, float], float] = field(default_factory=dict)  # (window, q) -> seconds
    latency: sketch.Sketch = field(default_factory=sketch.Sketch)  # every answered check probe


@dataclass
class Snapshot:
    """Everything one exposition says; `problem` is why the store could not be read (then `apps` is empty)."""

    apps: list[AppMetrics]
    spooled: int
    problem: str | None = None


def read(config: Config, now: _dt.datetime | None = None, days: DaySketches | None = None) -> Snapshot:
    """The metrics of the configured apps from the store, its projections brought up to date first.
    A store that cannot be read is not an exception here: `problem` says why, and the spool still counts.
    `days` keeps the merged latency of past days between reads (a long-running server's scrapes)."""
    from .reading import open_folded

    now = now or _dt.datetime.now(_dt.UTC)
    spooled = spooled_events(config.store.path)
    try:
        store = open_folded(config.store.path, config.store.busy_timeout)
    except StoreError as exc:
        return Snapshot([], spooled, str(exc))
    try:
        days = days or DaySketches()
        return Snapshot([_app(store.conn, a.name, now, days) for a in config.apps], spooled)
    except sqlite3.Error as exc:
        return Snapshot([], spooled, f"cannot read the projections of {config.store.path}: {exc}")
    finally:
        store.close()


def spooled_events(store_path: Path) -> int:
    """Events written to spool files (the store was unusable) and not yet replayed into it."""
    from .store import spool_files, spool_path, spool_scan

    return sum(len(spool_scan(f).events) for f in spool_files(spool_path(store_path)))


def _epoch(ts: str | None) -> float | None:
    return None if ts is None else parse_ts(ts).timestamp()


class DaySketches:
    """The latency sketch of an app's days before yesterday, merged once and kept while those days'
    rows hold the same probes (a spool replay of old events changes them, and the sum is redone).
    A year of ten apps is ~3,650 day sketches: ~200 ms to merge, too much for every scrape."""

    def __init__(self) -> None:
        self.kept: dict[str, tuple[str, tuple[int, int], sketch.Sketch]] = {}  # app -> (cutoff, fingerprint, sketch)

    def latency(self, conn: sqlite3.Connection, app: str, now: _dt.datetime) -> sketch.Sketch:
        """Every answered check probe of `app` since the store began, as one sketch."""
        cutoff = (now - _dt.timedelta(days=1)).strftime("%Y-%m-%d")
        count, probes = conn.execute(
            "SELECT count(*), coalesce(sum(probes), 0) FROM rollup_day WHERE app = ? AND start < ?", (app, cutoff)
        ).fetchone()
        kept = self.kept.get(app)
        if kept is None or kept[:2] != (cutoff, (count, probes)):
            old = _merged(conn, app, "start < ?", cutoff)
            kept = self.kept[app] = (cutoff, (count, probes), old)
        recent = _merged(conn, app, "start >= ?", cutoff)
        return sketch.Sketch(dict(kept[2].counts)).merge(recent)


def _merged(conn: sqlite3.Connection, app: str, where: str, cutoff: str) -> sketch.Sketch:
    (texts,) = conn.execute(
        f"SELECT group_concat(latency, '\n') FROM rollup_day WHERE app = ? AND {where}", (app, cutoff)
    ).fetchone()
    return sketch.merged(texts.split("\n") if texts else [])


def _app(conn: sqlite3.Connection, name: str, now: _dt.datetime, days: DaySketches) -> AppMetrics:
    m = AppMetrics(name)
    row = conn.execute(
        "SELECT state, last_latency_ms, last_check_at, open_incident, paused_until FROM app_state WHERE app = ?",
        (name,),
    ).fetchone()
    if row is not None:
        state, latency_ms, last_check, incident, paused = row
        m.state = "paused" if paused and paused > format_ts(now) else state
        m.up = True if state in UP_STATES else False if state in DOWN_STATES else None
        m.last_latency_s = None if latency_ms is None else latency_ms / 1000.0
        m.last_check_s = _epoch(last_check)
        m.open_incident = incident is not None
    probes, failures = conn.execute(
        "SELECT sum(probes), sum(failures) FROM rollup_day WHERE app = ?", (name,)
    ).fetchone()
    m.probes_failed = int(failures or 0)
    m.probes_ok = int(probes or 0) - m.probes_failed
    m.latency = days.latency(conn, name, now)
    m.restarts_by = {
        by: int(n or 0)
        for by, n in conn.execute("SELECT by, sum(count) FROM restarts WHERE app = ? GROUP BY by", (name,))
    }
    m.incidents = conn.execute("SELECT count(*) FROM incidents WHERE app = ?", (name,)).fetchone()[0]
    until = format_ts(now)
    sums = {
        label: rollups.sums(conn, name, earlier(now, seconds), until, inclusive=True)
        for label, seconds in {**dict(WINDOWS), **dict(QUANTILE_WINDOWS)}.items()
    }
    for label, _ in WINDOWS:
        s = sums[label]
        if s.up_s + s.down_s > 0:
            m.availability[label] = s.up_s / (s.up_s + s.down_s)
    for label, _ in QUANTILE_WINDOWS:
        s = sums[label]
        for q in QUANTILES:
            v = s.latency.quantile(q)
            if v is not None:
                m.quantiles[(label, q)] = v / 1000.0
    return m


def families(snap: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot, each with its HELP and TYPE."""
    readable = GaugeMetricFamily(
        "recovery_store_readable", "1 when the event store and its projections could be read, 0 when not."
    )
    readable.add_metric([], 0.0 if snap.problem else 1.0)
    yield readable
    spooled = GaugeMetricFamily(
        "recovery_events_spooled", "Events waiting in spool files (the store was unusable), not yet in the store."
    )
    spooled.add_metric([], float(snap.spooled))
    yield spooled
    if snap.problem:
        return
    apps = snap.apps
    up = GaugeMetricFamily(
        "recovery_up", "1 when the app answers (healthy or degraded), 0 when it does not.", labels=["app"]
    )
    state = GaugeMetricFamily(
        "recovery_state", "The app's state now: 1 for the current state, 0 for the others.", labels=["app", "state"]
    )
    latency = GaugeMetricFamily(
        "recovery_probe_latency_seconds", "Latency of the app's last answered check probe.", labels=["app"]
    )
    quantile = GaugeMetricFamily(
        "recovery_probe_latency_quantile_seconds",
        "Latency quantiles of answered check probes over a recent window (from the rollups' sketches, within 0.5%).",
        labels=["app", "window", "quantile"],
    )
    histogram = HistogramMetricFamily(
        "recovery_probe_duration_seconds",
        "Latency of every answered check probe since the store began (from the rollups' sketches; sum within 0.5%).",
        labels=["app"],
    )
    probes = CounterMetricFamily(
        "recovery_probes", "Check probes since the store began, by result (ok or failed).", labels=["app", "result"]
    )
    restarts = CounterMetricFamily(
        "recovery_restarts",
        "Restarts since the store began, by who made them: check, schedule, operator, or pm2 on its own.",
        labels=["app", "by"],
    )
    incidents = CounterMetricFamily("recovery_incidents", "Incidents (outages) since the store began.", labels=["app"])
    incident_open = GaugeMetricFamily(
        "recovery_incident_open", "1 while the app has an open incident, else 0.", labels=["app"]
    )
    availability = GaugeMetricFamily(
        "recovery_availability_ratio",
        "Share of observed time the app answered over the window, as `recovery report` counts it.",
        labels=["app", "window"],
    )
    last_check = GaugeMetricFamily(
        "recovery_last_check_timestamp_seconds", "When the app was last checked (Unix time).", labels=["app"]
    )
    for a in apps:
        if a.up is not None:
            up.add_metric([a.app], 1.0 if a.up else 0.0)
        for s in STATES:
            state.add_metric([a.app, s], 1.0 if a.state == s else 0.0)
        if a.last_latency_s is not None:
            latency.add_metric([a.app], a.last_latency_s)
        for (window, q), v in sorted(a.quantiles.items()):
            quantile.add_metric([a.app, window, f"{q:g}"], v)
        buckets, total = _histogram(a.latency)
        histogram.add_metric([a.app], buckets, total)
        probes.add_metric([a.app, "ok"], float(a.probes_ok))
        probes.add_metric([a.app, "failed"], float(a.probes_failed))
        for by in (*WHO, *sorted(set(a.restarts_by) - set(WHO))):
            restarts.add_metric([a.app, by], float(a.restarts_by.get(by, 0)))
        incidents.add_metric([a.app], float(a.incidents))
        incident_open.add_metric([a.app], 1.0 if a.open_incident else 0.0)
        for window, ratio in a.availability.items():
            availability.add_metric([a.app, window], ratio)
        if a.last_check_s is not None:
            last_check.add_metric([a.app], a.last_check_s)
    yield from (up, state, latency, quantile, histogram, probes, restarts, incidents, incident_open)
    yield from (availability, last_check)


def _histogram(sk: sketch.Sketch) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets (le in seconds) and the sum of a latency sketch (milliseconds), within the sketch's error."""
    counts = [0] * len(BUCKETS)
    total_ms = 0.0
    n = 0
    for k, c in sk.counts.items():
        ms = sketch.value(k)
        total_ms += ms * c
        n += c
        for i, le in enumerate(BUCKETS):
            # A bucket's value is within RELATIVE_ERROR of each latency in it: one of le or less
            # is never counted above le (one up to 1% above may be counted in it).
            if ms <= le * 1000.0 * (1 + sketch.RELATIVE_ERROR):
                counts[i] += c
                break
    out, running = [], 0
    for le, c in zip(BUCKETS, counts, strict=True):
        running += c
        out.append((f"{le:g}", float(running)))
    out.append(("+Inf", float(n)))
    return out, total_ms / 1000.0


class StoreCollector(Collector):
    """Reads the store at each collection: a scrape always sees the newest check."""

    def __init__(self, config: Config, now: Callable[[], _dt.datetime] | None = None) -> None:
        self.config = config
        self.now = now
        self.last: Snapshot | None = None  # the snapshot of the latest collection, for its `problem`
        self.days = DaySketches()

    def collect(self) -> Iterator[Metric]:
        self.last = read(self.config, self.now() if self.now else None, self.days)
        return families(self.last)


def registry(config: Config) -> tuple[CollectorRegistry, StoreCollector]:
    reg = CollectorRegistry(auto_describe=False)
    collector = StoreCollector(config)
    reg.register(collector)
    return reg, collector


def exposition(config: Config) -> tuple[bytes, str | None]:
    """The text exposition of the store's metrics, and the problem that left it partial (None: none)."""
    reg, collector = registry(config)
    text = generate_latest(reg)
    return text, collector.last.problem if collector.last else None


def write_atomically(path: Path, text: bytes) -> None:
    """Write `text` to `path` through a temporary file in the same folder, then rename: a reader
    (node_exporter) sees the old file or the new one, never half of one. Mode 0644."""
    folder = path.parent
    if not folder.is_dir():
        raise MetricsError(
            f"cannot write {path}: the folder {folder} does not exist (create it, or fix [metrics] textfile)"
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise MetricsError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MetricsError(f"cannot write {path}: {exc.strerror or exc}") from exc


def write_textfile(config: Config) -> None:
    "Write the metrics exposition to config.metrics.textfile, atomically; MetricsError when the store could not be read (the file then says so: recovery_store_readable 0)."
    path = config.metrics.textfile
    if path is None:
        raise MetricsError("no [metrics] textfile in the config")
    text, problem = exposition(config)
    write_atomically(Path(path), text)
    if problem:
        raise MetricsError(problem)


# -- `recovery watch --metrics-port` ------------------------------------------------------------


class MetricsServer:
    """GET /metrics on a thread of its own, read from the store at each scrape."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        reg, _ = registry(config)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = generate_latest(reg)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every 15 s is not news for the watch's journal

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="recovery-metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
