"""`recovery watch`: the check of `recovery check` in a loop, for detection in seconds.

One thread, one step at a time: each step is a whole `Checker` run (trigger "watch"), started
`interval` seconds after the start of the previous one, or at once when that one took longer.
Stopping (SIGTERM, SIGINT) sets an Event; the step in progress is finished, except that its
probes end after the attempt under way (each ends within its timeout) and an app whose probes
were cut short is left undecided: a restart and its verification are never cut short.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from .check import OK, Checker, CheckResult
from .config import Config, format_duration
from .events import now_ts


class _Check(Protocol):
    def run(self) -> CheckResult: ...


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
        parts.append(f"{a.name} {a.url} ({probes}, {format_duration(a.timeout)} timeout)")
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
        stamp = self.now()
        for line in lines:
            out.write(f"{stamp} {line}\n")
        out.flush()

    def __call__(self, result: CheckResult) -> None:
        states = (tuple((a.app, a.state) for a in result.apps), tuple(result.problems))
        if result.code != OK or states != self.last:
            self.say(*result.lines())
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
) -> int:
    """Check `config`'s apps every `interval` seconds (start to start) until `stop` is set; returns 0."""
    if interval <= 0:
        raise ValueError("the watch interval must be longer than 0")
    on_result = on_result or Journal()
    make_check = make_check or (lambda c: Checker(c, trigger="watch", apps=apps, stop=stop.is_set))
    config = watched(config)
    while not stop.is_set():
        start = clock()
        try:
            result = make_check(config).run()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            result = CheckResult(run_id="-", problems=[f"watch step failed: {type(exc).__name__}: {exc}"])
        on_result(result)
        # Measured from this step's start: a step longer than the interval is followed at once.
        stop.wait(max(0.0, start + interval - clock()))
    return 0


def stop_on_signals(stop: threading.Event, signals: tuple[int, ...] | None = None) -> None:
    """Make SIGTERM and SIGINT (or `signals`) set `stop` instead of ending the process mid-step."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        # Not stop.set() here: the handler runs on the main thread, which may hold the Event's
        # internal lock inside stop.wait(), and set() would then wait for itself forever.
        threading.Thread(target=stop.set, name="recovery-stop", daemon=True).start()

    for sig in signals or (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
