"""Compact recording for `recovery watch`: a steady healthy stretch of an app as `probe.batched` events.

A watch step of a healthy app writes check.started, probe.succeeded, process.sampled, decision.made
and check.finished: about 130 MB a day at the 2 s default (bench/watch_bytes.py, projections included). While an app is steady, those events
are not written; its probe (time, latency, status) joins the app's open batch instead, written as
one `probe.batched` event (see the fold, `projections.Folder.batched`) when it spans a minute,
before anything else is written (so seq and ts stay in order), and at the watch's end.

An app is steady in a step when its last decision (written or batched) was healthy with action
none, and in this step: one check probe that answered at the first attempt with the same HTTP
status, the cheap sample (pid files) showing the same pid online, a healthy decision, and nothing
else. At the first sign of anything else in the step (a failed probe, a retry, a full `pm2 jlist`
sample, a restart, a log entry ingested, an UNKNOWN, another app's trouble), the open batches and
everything held for the step are written at once, in order, and the rest of the step passes
through. A killed watch (SIGKILL) loses at most each app's open batch: a minute of healthy probes.

Kept even in a steady step: one cheap process sample per app every SAMPLE_EVERY_S or so, so the
memory-leak forecast keeps its points, and `host.sampled` (the host's memory and load, once a
minute under `recovery check`) as often; written with the batch that ends next, so that they split
no batch.
`recovery check` (cron) does not batch: it writes every event, as before.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .events import Event, format_ts, parse_ts
from .events import new as new_event
from .store import Recorder, Store

BATCH_SPAN_S = 60.0  # a batch holds at most this much time of probes (first to last)
SAMPLE_EVERY_S = 300.0  # a steady app's cheap process sample (its memory), and the host's, still written this often


# -- reading a batch back ---------------------------------------------------------------------------


def batch_probes(data: dict[str, Any]) -> list[tuple[str, float]]:
    """(ts, latency_ms) of each probe of a `probe.batched` event's data, oldest first."""
    start = parse_ts(str(data["start"]))
    return [
        (format_ts(start + _dt.timedelta(milliseconds=at)), float(ms))
        for at, ms in zip(data.get("at_ms") or (), data.get("latency_ms") or (), strict=False)
    ]


def expand(e: Event) -> list[Event]:
    """A `probe.batched` event as the probe.succeeded events it stands for, each at its own time
    (data: url, attempt 1, latency_ms, status, phase, and batch_seq naming the stored event);
    any other event as itself."""
    if e.type != "probe.batched":
        return [e]
    d = e.data
    base = {k: d[k] for k in ("url", "status") if d.get(k) is not None}
    return [
        Event(
            "probe.succeeded",
            e.app,
            e.run_id,
            {**base, "attempt": 1, "latency_ms": ms, "phase": d.get("phase", "check"), "batch_seq": e.seq},
            ts=ts,
            host=e.host,
            id=f"{e.id}.{i}",
            seq=e.seq,
        )
        for i, (ts, ms) in enumerate(batch_probes(d))
    ]


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """A batch in one line's worth: how many probes over how long, latency min/median/max."""
    latencies = [float(ms) for ms in data.get("latency_ms") or ()]
    at = data.get("at_ms") or [0]
    out: dict[str, Any] = {"probes": len(latencies), "span_s": round(at[-1] / 1000, 1)}
    if latencies:
        out["latency_min/median/max_ms"] = "/".join(
            f"{v:g}" for v in (min(latencies), round(statistics.median(latencies), 1), max(latencies))
        )
    for key in ("status", "pid", "start", "url"):
        if data.get(key) is not None:
            out[key] = data[key]
    return out


def query_types(types: list[str], expanding: bool) -> list[str]:
    """The stored types to read for `types`: expanded, probe.succeeded is also in the batches."""
    if expanding and "probe.succeeded" in types and "probe.batched" not in types:
        return [*types, "probe.batched"]
    return types


def expanded(events: Iterable[Event]) -> Iterator[Event]:
    """`events` with each batch expanded into its probes."""
    for e in events:
        yield from expand(e)


# -- writing batches --------------------------------------------------------------------------------


@dataclass
class Batch:
    """An app's open batch: its steady probes so far."""

    url: str
    start: str
    status: int | None
    pid: int | None
    at_ms: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    def offset_ms(self, ts: str) -> int:
        return round((parse_ts(ts) - parse_ts(self.start)).total_seconds() * 1000)

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"url": self.url, "phase": "check", "start": self.start}
        d.update(at_ms=self.at_ms, latency_ms=self.latency_ms, status=self.status, pid=self.pid)
        return d


@dataclass
class _Seen:
    """What the batcher remembers of an app between steps."""

    steady: bool = False  # its last decision (written or batched) was healthy with action none
    status: int | None = None  # the HTTP status of its last probe
    pid: int | None = None  # the pid of its last process sample
    sampled_at: str | None = None  # when its last process sample was written


class Batcher:
    """What `recovery watch` keeps across its steps: each app's open batch and what was last seen of it.

    Each step records through `recorder()`; `close()` (the watch's end: SIGTERM, SIGINT) writes the
    open batches.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 5.0,
        span_s: float = BATCH_SPAN_S,
        sample_every_s: float = SAMPLE_EVERY_S,
        group: str | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.group = group  # [store] group: a store this creates is 0640, owned by that group
        self.span_s = span_s
        self.sample_every_s = sample_every_s
        self.open: dict[str, Batch] = {}
        self.seen: dict[str, _Seen] = {}
        self.current: BatchingRecorder | None = None
        self.host_at: str | None = None  # when host.sampled was last written

    def recorder(self, *, now: Callable[[], _dt.datetime] | None = None) -> BatchingRecorder:
        """The recorder of one step (the store, or its spool, as `Recorder`)."""
        self.finish_step()
        self.current = BatchingRecorder(self, self.path, busy_timeout=self.busy_timeout, now=now, group=self.group)
        return self.current

    def finish_step(self) -> None:
        """The last step's recorder, if it did not end its step (an exception mid-step): what it held is written."""
        if self.current is not None:
            self.current.close()
            self.current = None

    def close(self, *, now: Callable[[], _dt.datetime] | None = None) -> None:
        """The watch's end: the step under way is written out, then every open batch."""
        self.finish_step()
        if not self.open:
            return
        rec = Recorder(self.path, busy_timeout=self.busy_timeout, now=now, group=self.group)
        try:
            rec._write(self.take_batches(format_ts(rec.now())))
        finally:
            rec.close()

    def app(self, name: str) -> _Seen:
        return self.seen.setdefault(name, _Seen())

    def take_batches(self, ts: str) -> list[Event]:
        """The open batches as events at `ts`, oldest first; none is open afterwards."""
        out = [new_event("probe.batched", app, None, b.data(), ts=ts) for app, b in self.open.items()]
        self.open.clear()
        return sorted(out, key=lambda e: e.data["start"])

    def add(self, app: str, probe: Event, pid: int | None, ts: str) -> list[Event]:
        """Put a steady probe into `app`'s open batch; returns the batch it closed (at `ts`), if
        the probe falls beyond its span or differs in URL, status or pid."""
        d = probe.data
        url, status, closed = str(d.get("url") or ""), d.get("status"), []
        b = self.open.get(app)
        if b is not None and (
            (b.url, b.status, b.pid) != (url, status, pid) or b.offset_ms(probe.ts) > self.span_s * 1000
        ):
            closed.append(new_event("probe.batched", app, None, b.data(), ts=ts))
            b = None
        if b is None:
            b = self.open[app] = Batch(url, probe.ts, status, pid)
        b.at_ms.append(b.offset_ms(probe.ts))
        b.latency_ms.append(float(d.get("latency_ms") or 0.0))
        return closed


class BatchingRecorder(Recorder):
    """One watch step's recorder: holds the step's events while every app in it is steady.

    `emit` holds what a steady step writes; at the step's `check.finished` the held probes go into
    the batches and the rest is dropped (host.sampled, and a process sample when one is due, are
    written). Anything else writes the open batches and the held events first, then passes
    through, with every later event of the step. A write by someone else through this recorder's
    store (the check's log ingestion appends `log.ingested` itself) counts as anything else.
    """

    def __init__(self, batcher: Batcher, path: Path, **options: Any) -> None:
        self.batcher = batcher
        self.held: list[Event] = []
        self.passing = False  # the step is not steady: every event is written at once
        self.apps: list[str] | None = None  # the step's apps (its check.started)
        self.own_write = False
        super().__init__(path, **options)
        if self.store is not None:
            self.store = _WatchedStore(self.store, self)

    # -- emitting ----------------------------------------------------------------------------

    def emit(self, type: str, app: str | None, run_id: str | None, **data: Any) -> Event:
        e = new_event(type, app, run_id, data, ts=format_ts(self.now()))
        if not self.passing and self.holds(e):
            self.held.append(e)
            if e.type == "check.finished":
                self.end_step()
            return e
        self.pass_through(e.ts)
        self.write([e])
        return e

    def holds(self, e: Event) -> bool:
        """Whether `e` belongs to a steady step (checked in the order the step emits them)."""
        d, kinds = e.data, [h.type for h in self.held if h.app == e.app]
        if e.type == "check.started":
            if self.held or self.apps is not None:
                return False
            self.apps = [str(a) for a in d.get("apps") or ()]
            return not d.get("dry_run")
        if self.apps is None:
            return False  # not in a step (a restart_now, or events before check.started)
        if e.type == "host.sampled":
            return True
        if e.app is None or e.app not in self.apps:
            return e.type == "check.finished" and not d.get("code") and not d.get("problems")
        seen = self.batcher.app(e.app)
        if e.type == "probe.succeeded":
            return (
                seen.steady
                and not kinds
                and d.get("phase") == "check"
                and d.get("attempt") == 1
                and "burst" not in d
                and d.get("status") == seen.status
            )
        if e.type == "process.sampled":
            return (
                kinds == ["probe.succeeded"]
                and d.get("source") == "pidfile"
                and d.get("status") == "online"
                and not any(d.get(k) for k in ("error", "after_restart", "settling", "instances"))
                and d.get("pid") is not None
                and d.get("pid") == seen.pid
            )
        if e.type == "decision.made":
            return kinds == ["probe.succeeded", "process.sampled"] and steady_decision(d)
        return False

    def end_step(self) -> None:
        """The step was steady: its probes go into the batches. A batch that this closes is written
        (at the step's start: its probes are all older), with the samples due (host and process)."""
        held, self.held = self.held, []
        by_app = {a: [e for e in held if e.app == a] for a in self.apps or ()}
        if any(len(events) != 3 for events in by_app.values()):
            self.held = held  # an app decided nothing (stopped mid-step): not a steady step
            self.pass_through(held[-1].ts)
            return
        self.apps = None
        now = parse_ts(held[-1].ts)

        def due(last: str | None) -> bool:
            return last is None or (now - parse_ts(last)).total_seconds() >= self.batcher.sample_every_s

        closed: list[Event] = []
        kept: list[Event] = []
        for app, (probe, sample, _) in by_app.items():
            ended = self.batcher.add(app, probe, sample.data.get("pid"), held[0].ts)
            closed += ended
            if ended and due(self.batcher.app(app).sampled_at):
                kept.append(sample)  # written with a batch, so that samples split no batch
        if closed:
            kept += [e for e in held if e.type == "host.sampled" and due(self.batcher.host_at)]
        self.write(closed + sorted(kept, key=lambda e: e.ts))

    def pass_through(self, ts: str) -> None:
        """From now on the step is written as it goes: first the open batches (at `ts`, or the
        time of the step's first held event), then what the step held."""
        if self.passing:
            return
        self.passing = True
        held, self.held = self.held, []
        at = held[0].ts if held else ts
        self.write(self.batcher.take_batches(at) + held)

    def write_batches(self, ts: str) -> None:
        """Write the open batches (at the time of the step's first held event, else `ts`), and nothing else."""
        if not self.passing:
            self.write(self.batcher.take_batches(self.held[0].ts if self.held else ts))

    # -- writing -----------------------------------------------------------------------------

    def write(self, events: list[Event]) -> None:
        """Write `events` (to the store, else the spool) and note what they say about each app."""
        if not events:
            return
        self.own_write = True
        try:
            self._write(events)
        finally:
            self.own_write = False
        for e in events:
            self.note(e)

    def note(self, e: Event) -> None:
        if e.type == "host.sampled":
            self.batcher.host_at = e.ts
        if e.app is None:
            return
        seen = self.batcher.app(e.app)
        if e.type == "decision.made":
            seen.steady = steady_decision(e.data)
        elif e.type in ("probe.succeeded", "probe.failed") and e.data.get("phase") == "check":
            seen.status = e.data.get("status")
        elif e.type == "process.sampled" and not e.data.get("error"):
            seen.pid = e.data.get("pid") if not e.data.get("instances") else None
            seen.sampled_at = e.ts
        elif e.type in ("restart.requested", "verification.passed", "verification.failed"):
            seen.steady = False  # until a decision says healthy again

    def close(self) -> None:
        """The step's end: what it still holds (it did not finish) is written, then the store closed."""
        if self.held:
            self.pass_through(self.held[-1].ts)
        if self.batcher.current is self:
            self.batcher.current = None
        super().close()


def steady_decision(d: dict[str, Any]) -> bool:
    """A decision after which a steady step changes nothing: healthy, no action, not a dry run."""
    return (
        d.get("state") == "healthy"
        and d.get("action") == "none"
        and d.get("code") == "healthy"
        and not d.get("dry_run")
    )


class _WatchedStore(Store):
    """The step's store as others in the step write through it: a write of theirs (log ingestion's
    `log.ingested`) first writes what the step held, so that seq and ts stay in order. A
    `log.ingested` that kept no entry and warns of nothing (an app's stdout read past) is no sign
    of anything: only the open batches are written before it, and the step may stay steady."""

    def __init__(self, store: Store, rec: BatchingRecorder) -> None:
        self.__dict__.update(store.__dict__)  # the same open store, whatever it holds
        self.rec = rec

    def append(self, events: Sequence[Event], *, skip_known: bool = False) -> list[Event]:
        events = list(events)
        if not self.rec.own_write and events:
            if all(quiet(e) for e in events):
                self.rec.write_batches(events[0].ts)
            else:
                self.rec.pass_through(events[0].ts)
        return super().append(events, skip_known=skip_known)


def quiet(e: Event) -> bool:
    """A `log.ingested` that kept no log entry and warns of nothing."""
    return e.type == "log.ingested" and not e.data.get("entries") and not e.data.get("warnings")


__all__ = ["BATCH_SPAN_S", "Batch", "Batcher", "BatchingRecorder", "batch_probes", "expand", "summary"]
