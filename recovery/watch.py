"""`recovery watch`: the check of `recovery check` in a loop, for detection in seconds.

One thread, one step at a time: each step is a whole `Checker` run (trigger "watch"), started
`interval` seconds after the start of the previous one, or at once when that one took longer.
Stopping (SIGTERM, SIGINT) sets an Event; the step in progress is finished, except that its
probes end after the attempt under way (each ends within its timeout) and an app whose probes
were cut short is left undecided: a restart and its verification are never cut short.

Alerts and the heartbeat are not sent by the steps but by an `AlertWorker` thread with its own
connection to the store and its own budget ([alerts] timeout, retries): a channel that never
answers delays no probe and no restart. Each step nudges it; at the stop it gets `STOP_GRACE`
seconds to finish the attempt in flight, then the process leaves without it (what it did not
send stays owed in the record, for the next deliverer).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from .batching import Batcher
from .check import CRITICAL, OK, UNKNOWN, Checker, CheckResult
from .clock import utc_now
from .config import Config, format_duration
from .events import now_ts
from .store import Recorder
from .units import shown_ts
from .urls import shown_url
from .workers import NudgedWorker

STOP_GRACE = 2.0  # at the stop, how long the alert worker may take to end; an attempt still in flight stays owed
LEAK_EVERY = 60.0  # the worker looks at an app's leak forecast at most this often


class _Check(Protocol):
    def run(self) -> CheckResult: ...


class _Deliverer(Protocol):
    def start(self) -> None: ...

    def nudge(self, code: int) -> None: ...

    def close(self, grace: float = STOP_GRACE) -> bool: ...


def watched(config: Config) -> Config:
    """`config` as watch probes it: the [watch] timeout/retries/retry_delay unless an app set its own."""
    return dataclasses.replace(config, apps=tuple(a.for_watch(config.watch) for a in config.apps))


def describe(config: Config, interval: float, apps: list[str] | None = None) -> str:
    """The start-up line: what is watched, how often, and how each app is probed."""
    parts = []
    for a in watched(config).apps:
        if apps and a.name not in apps:
            continue
        probes = f"{a.retries} probe{'s' if a.retries > 1 else ''}"
        if a.retries > 1 and a.retry_delay:
            probes += f" {format_duration(a.retry_delay)} apart"
        parts.append(f"{a.name} {shown_url(a.url)} ({probes}, {format_duration(a.timeout)} timeout)")
    return f"watching {', '.join(parts)} every {format_duration(interval)}; store {config.store.path}"


class Journal:
    """Prints a step's lines only when they say something: a change of state, or trouble.

    A healthy app stays quiet after its first line, so a journal or log file is not flooded;
    every line carries a UTC timestamp and stdout is flushed after each step.
    """

    def __init__(self, out: TextIO | None = None, now: Callable[[], str] = now_ts) -> None:
        self.out = out
        self.now = now
        self.last: tuple[Any, ...] | None = None

    def say(self, *lines: str) -> None:
        out = self.out or sys.stdout
        stamp = shown_ts(self.now())
        for line in lines:
            out.write(f"{stamp} {line}\n")
        out.flush()

    def __call__(self, result: CheckResult) -> None:
        states = (tuple((a.app, a.state) for a in result.apps), tuple(result.problems))
        if result.code != OK or states != self.last:
            self.say(*result.app_lines())
        self.last = states


def run_watch(
    config: Config,
    *,
    interval: float,
    stop: threading.Event,
    apps: list[str] | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    make_check: Callable[[Config], _Check] | None = None,
    deliverer: _Deliverer | None = None,
    batcher: Batcher | None = None,
    shipper: _Deliverer | None = None,
) -> int:
    """Check `config`'s apps every `interval` seconds (start to start) until `stop` is set; returns 0.

    The steps deliver nothing; `deliverer` (by default an `AlertWorker` when alerts or a heartbeat
    are configured) is nudged after each step and closed, within its grace, at the stop. Steady
    healthy checks are recorded a minute at a time (`batcher`, see recovery.batching); the open
    batches are written at the stop. With `[fleet] postgres`, `shipper` (by default a
    recovery.fleet.ship.ShipWorker) ships after each step on its own thread.
    """
    if interval <= 0:
        raise ValueError("the watch interval must be longer than 0")
    on_result = on_result or Journal()
    if make_check is None:
        if batcher is None and config.watch.batch > 0:
            batcher = Batcher(
                config.store.path,
                busy_timeout=config.store.busy_timeout,
                span_s=config.watch.batch,
                group=config.store.group,
            )
        kept = batcher
        make_check = lambda c: Checker(  # noqa: E731
            c, trigger="watch", apps=apps, deliver=False, stop=stop.is_set, batcher=kept
        )
        if deliverer is None and delivers(config):
            deliverer = AlertWorker(config, apps)
    if shipper is None and config.fleet.postgres is not None:
        from .fleet.ship import ShipWorker

        shipper = ShipWorker(config)
    config = watched(config)
    workers = [w for w in (deliverer, shipper) if w is not None]
    for worker in workers:
        worker.start()
    try:
        while not stop.is_set():
            start = clock()
            try:
                result = make_check(config).run()
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                result = CheckResult(run_id="-", problems=[f"watch step failed: {type(exc).__name__}: {exc}"])
            on_result(result)
            for worker in workers:
                worker.nudge(result.code)
            # Measured from this step's start: a step longer than the interval is followed at once.
            stop.wait(max(0.0, start + interval - clock()))
    finally:
        if batcher is not None:
            try:
                batcher.close()
            except Exception:
                traceback.print_exc(file=sys.stderr)  # the deliverer still gets its grace
        for worker in workers:
            worker.close()
    return 0


def delivers(config: Config) -> bool:
    """Whether there is anything to deliver: alert channels or a heartbeat URL."""
    conf = config.alerts
    return bool(conf.urls or conf.heartbeat_url or any(a.alerts for a in config.apps))


class AlertWorker(NudgedWorker):
    """Delivers `recovery watch`'s alerts and heartbeat on a thread of its own.

    Its own store connection (opened on its thread), its own budget per pass ([alerts] timeout and
    retries, through `alerts.send_owed`), and the delivery lock: what is owed comes from the record,
    so a pass that was cut short loses nothing. Nudges that come while a pass runs make one more
    pass, with the newest step's outcome for the heartbeat.
    """

    thread_name = "recovery-alerts"

    def __init__(self, config: Config, apps: list[str] | None = None) -> None:
        self.config = config
        self.apps = [a for a in config.apps if not apps or a.name in apps]
        self.leak_looked: dict[str, float] = {}
        self.rec: Recorder | None = None
        self.opened_at = utc_now()  # before the first step: channels are there since the watch began
        super().__init__()

    def close(self, grace: float = STOP_GRACE) -> bool:
        return super().close(grace)

    def work(self) -> None:
        try:
            self.deliver(self.code)
        except Exception:
            traceback.print_exc(file=sys.stderr)  # the watch goes on; what is owed stays owed

    def finished(self) -> None:
        if self.rec is not None:
            self.rec.close()

    def recorder(self) -> Recorder:
        if self.rec is None or self.rec.store is None:  # (re)opened after trouble, like each step's
            if self.rec is not None:
                self.rec.close()
            store = self.config.store
            self.rec = Recorder(store.path, busy_timeout=store.busy_timeout, group=store.group)
        return self.rec

    def rest(self, seconds: float) -> None:
        """Between retries: a sleep the stop cuts short."""
        self.stopping.wait(seconds)

    def deliver(self, code: int | None) -> None:
        """One pass: the owed alerts, then the heartbeat for the newest step's outcome."""
        from . import alerts

        rec = self.recorder()
        run_id = uuid.uuid4().hex
        now = time.monotonic()
        leak = {a.name for a in self.apps if now - self.leak_looked.get(a.name, -LEAK_EVERY) >= LEAK_EVERY}
        for name in leak:
            self.leak_looked[name] = now
        alerts.send_owed(
            rec,
            self.config,
            self.apps,
            utc_now(),
            run_id=run_id,
            leak_apps=leak,
            seen_at=self.opened_at,
            sleep=self.rest,
            stop=self.stopping.is_set,
        )
        if code is not None and not self.stopping.is_set():
            alerts.beat(rec, self.config.alerts, code in (CRITICAL, UNKNOWN), utc_now(), run_id=run_id)


def stop_on_signals(stop: threading.Event, signals: tuple[int, ...] | None = None) -> None:
    """Make SIGTERM and SIGINT (or `signals`) set `stop` instead of ending the process mid-step."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        # Not stop.set() here: the handler runs on the main thread, which may hold the Event's
        # internal lock inside stop.wait(), and set() would then wait for itself forever.
        threading.Thread(target=stop.set, name="recovery-stop", daemon=True).start()

    for sig in signals or (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
