"""`recovery check`: one unit of work over the configured apps.

observe (probe, PM2) -> record -> decide (the pure policy) -> act (restart) -> verify -> alert.
A `CheckRun` is built with everything it talks to passed in: the PM2 adapter, the prober, the
recorder and the clock. `open_run` builds the real ones; the fast tests pass fakes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import policy, projections, telemetry
from .clock import Clock, SystemClock
from .config import AppConfig, Config
from .errors import Pm2CannotRun, Pm2DaemonUnavailable, Pm2Error, RecoveryError
from .model import History
from .observations import (
    RUNNING,
    STOPPED,
    TRANSITION,
    Attempt,
    ClusterSeen,
    Observations,
    Pm2Daemon,
    ProcessView,
    Worker,
)
from .policy import CRITICAL, OK, UNKNOWN, WARNING, Decision
from .store import Recorder, held_lock
from .units import one_line

if TYPE_CHECKING:
    from .batching import Batcher

STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# PM2 caught moving an app (stopping, launching) is read again this often, for at most this long.
TRANSITION_POLL_S, TRANSITION_WAIT_S = 0.5, 3.0
# `--deadline`: the run keeps this much in hand to record, fold and answer; a restart is begun only
# with at least RESTART_MIN_S more left (PM2's own kill_timeout is 1.6 s by default).
DEADLINE_MARGIN_S, RESTART_MIN_S = 2.0, 5.0
# The lock `pm2 resurrect` is run under: it concerns every app, so it is not an app's lock.
DAEMON_LOCK = ".pm2-daemon"
# PM2's default min_uptime (1 s) and a margin: a failing process younger than this is read again
YOUNG_S = 1.5
# Cluster mode: probes per worker in one concurrent burst. PM2's master hands connections to its
# workers in turn, a worker the next one only once it took the last: 2 x N reach every worker that
# still takes connections twice (a stalled worker fails two of them, a one-off failure one), with a
# margin for other clients' connections taking turns meanwhile.
PROBES_PER_WORKER = 2
# A CPU reading over a shorter window is ticks, not a trend: a worker that reads pinned over a
# burst shorter than this is read again once the window is this long (never on the healthy path).
CPU_MIN_WINDOW_S = 1.0
__all__ = ["CRITICAL", "OK", "UNKNOWN", "WARNING", "CheckResult", "CheckRun", "Checker", "open_run"]


class Pm2Port(Protocol):
    """What a check needs of PM2 (`recovery.pm2.Pm2` is the real one)."""

    def view(self, name: str) -> ProcessView:
        """The full sample (`pm2 jlist`); raises Pm2Error."""
        ...

    def quick_view(self, name: str) -> ProcessView | None:
        """The cheap sample (pid files, /proc); None when that is not enough."""
        ...

    def restart(self, name: str, command: str = "restart") -> Any:
        """`pm2 restart|reload NAME`: a result with exit_code, stdout, stderr, duration_ms, tail()."""
        ...

    def cpu_mark(self, name: str) -> Any: ...

    def cpu_window(self, mark: Any) -> dict[str, Any]: ...

    def workers(self, mark: Any) -> dict[int, int]:
        """pid -> pm_id of the app's processes when `mark` was taken (cluster mode: several)."""
        ...

    def cpu_by_pid(self, mark: Any) -> dict[int, float]:
        """Each process's CPU share (percent of one CPU) since `mark`."""
        ...

    def restart_worker(self, pm_id: int) -> Any:
        """`pm2 restart PM_ID`: one worker of a cluster; a result like restart's."""
        ...

    def daemon(self) -> Pm2Daemon | None:
        """PM2's daemon from its files (no pm2 call); None when that cannot be known."""
        ...

    def resurrect(self) -> Any:
        """`pm2 resurrect`: a result like restart's; raises Pm2Error."""
        ...


class Prober(Protocol):
    """One HTTP attempt at an app (`HttpProber` is the real one)."""

    def attempt(self, app: AppConfig, n: int, timeout: float | None = None) -> Attempt: ...

    def burst(
        self, app: AppConfig, count: int, timeout: float | None = None
    ) -> tuple[list[Attempt], Callable[[], None]]:
        """`count` concurrent attempts, each on a fresh connection kept open until `release()`."""
        ...

    def close(self) -> None: ...


class HttpProber:
    """Probes over httpx, one client per app; `transport` is the seam for tests."""

    def __init__(self, transport: Any = None) -> None:
        self.transport = transport
        self.clients: dict[str, Any] = {}
        self.certs: dict[str, str] = {}  # app -> when its https certificate expires, as last seen

    def attempt(self, app: AppConfig, n: int, timeout: float | None = None) -> Attempt:
        from .probe import make_client, probe_once

        client = self.clients.get(app.name)
        if client is None:
            client = self.clients[app.name] = make_client(app.url, app.timeout, self.transport, app.ca_file)
        a = probe_once(client, app.url, n, app.status_ok, timeout=timeout, body_check=app.body_problem)
        # A kept-alive connection shakes hands once: its certificate stands for the later attempts.
        if a.cert_expires is not None:
            self.certs[app.name] = a.cert_expires
        elif a.ok and app.name in self.certs:
            a = dataclasses.replace(a, cert_expires=self.certs[app.name])
        return a

    def burst(
        self, app: AppConfig, count: int, timeout: float | None = None
    ) -> tuple[list[Attempt], Callable[[], None]]:
        from .probe import probe_burst

        limit = app.timeout if timeout is None else timeout
        return probe_burst(
            app.url,
            count,
            app.status_ok,
            timeout=limit,
            transport=self.transport,
            body_check=app.body_problem,
            ca_file=app.ca_file,
        )

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()


def cluster_trouble(attempts: tuple[Attempt, ...] | list[Attempt], cluster: ClusterSeen) -> bool:
    """Whether a cluster's burst shows anything to decide on: a failed probe, or a worker in a busy loop."""
    return not all(a.ok for a in attempts) or any(policy.pinned(w) for w in cluster.workers)


def try_urls(config: Config, transport: Any = None) -> list[tuple[AppConfig, Attempt]]:
    """One probe of each app's URL, as a check makes it (`recovery config validate --probe`)."""
    prober = HttpProber(transport)
    try:
        return [(app, prober.attempt(app, 1)) for app in config.apps]
    finally:
        prober.close()


class MissingPm2:
    """Stands in for PM2 when it cannot be found: the apps are still probed and recorded, every
    pm2 call fails with why, and the run ends UNKNOWN naming it."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def _fail(self, *args: Any) -> Any:
        raise Pm2CannotRun(self.problem)

    view = restart = resurrect = _fail

    def quick_view(self, name: str) -> ProcessView | None:
        return None

    def cpu_mark(self, name: str) -> Any:
        return None

    def cpu_window(self, mark: Any) -> dict[str, Any]:
        return {}

    def workers(self, mark: Any) -> dict[int, int]:
        return {}

    def cpu_by_pid(self, mark: Any) -> dict[int, float]:
        return {}

    def restart_worker(self, pm_id: int) -> Any:
        raise Pm2CannotRun(self.problem)

    def daemon(self) -> Pm2Daemon | None:
        return None


@dataclass
class AppResult:
    app: str
    code: int
    state: str  # OK, RECOVERED, DOWN, CRITICAL, ...
    summary: str
    latency_ms: float | None = None
    restarted: bool = False
    action: str = "none"
    failed: int = 0  # probes of this run that failed
    slow_ms: float | None = None  # the app's slow_threshold: the latency's warning level in perfdata

    def line(self) -> str:
        return f"{self.app} {self.state} {self.summary}".rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "code": self.code,
            "status": STATE_NAMES[self.code],
            "state": self.state,
            "summary": self.summary,
            "latency_ms": self.latency_ms,
            "restarted": self.restarted,
            "action": self.action,
            "failed_probes": self.failed,
        }

    def perfdata(self) -> str:
        """Nagios perfdata: the latency in seconds (warning at slow_threshold; U when no probe
        answered), the probes that failed and the restarts of this run."""
        label = _perf_label
        latency = "U" if self.latency_ms is None else f"{self.latency_ms / 1000:.3f}s"
        warn = f"{self.slow_ms / 1000:g}" if self.slow_ms is not None else ""
        return (
            f"{label(self.app + '_latency')}={latency};{warn};;0 {label(self.app + '_failed')}={self.failed};;;0"
            f" {label(self.app + '_restarts')}={int(self.restarted)};;;0"
        )


def nagios_line(code: int, summary: str, perf: str = "") -> str:
    """A Nagios plugin's status line: `RECOVERY <STATE> - <summary> | <perfdata>` (a '|' in the
    summary would start the perfdata, so it reads '/')."""
    text = f"RECOVERY {STATE_NAMES[code]} - {summary.replace('|', '/')}"
    return f"{text} | {perf}" if perf else text


def _perf_label(name: str) -> str:
    """A perfdata label, quoted when it holds more than letters, digits, '_', '-' and '.'."""
    if all(c.isalnum() or c in "_-." for c in name):
        return name
    return "'" + name.replace("'", "").replace("=", "_") + "'"


@dataclass
class CheckResult:
    run_id: str
    apps: list[AppResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # store or pm2 trouble: UNKNOWN
    duration_ms: float = 0.0
    cut: str | None = None  # what --deadline cut short

    @property
    def code(self) -> int:
        if self.problems:
            return UNKNOWN
        return max((a.code for a in self.apps), default=OK)

    def lines(self) -> list[str]:
        """The Nagios plugin's output: the status line (state, the worst apps, perfdata), then a line
        per app and per problem."""
        return [self.status_line(), *self.app_lines()]

    def app_lines(self) -> list[str]:
        """A line per app and per problem (what `recovery watch` logs at each change)."""
        return (
            [a.line() for a in self.apps] + [f"UNKNOWN {p}" for p in self.problems] + ([self.cut] if self.cut else [])
        )

    def status_line(self) -> str:
        """`RECOVERY <STATE> - <the worst apps> | <perfdata>`, as Nagios and its kin read a plugin."""
        code = self.code
        worst = [a for a in self.apps if a.code == code]
        if self.problems:
            summary = self.problems[0] + (f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else "")
        elif code == OK:
            summary = (
                self.apps[0].line()
                if len(self.apps) == 1
                else f"{len(self.apps)} apps OK"
                if self.apps
                else "no apps checked"
            )
        else:
            summary = "; ".join(one_line(a.line(), 100) for a in worst[:3])
            if len(worst) > 3:
                summary += f" (+{len(worst) - 3} more)"
        return nagios_line(code, summary, " ".join(a.perfdata() for a in self.apps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "code": self.code,
            "status": STATE_NAMES[self.code],
            "apps": [a.to_dict() for a in self.apps],
            "problems": self.problems,
            "duration_ms": round(self.duration_ms, 1),
            "cut_short": self.cut,
        }


def app_lock(store_path: Path, app: str, timeout: float, clock: Clock) -> contextlib.AbstractContextManager[bool]:
    """Hold an exclusive flock for `app` beside the store; yields False if it could not be had in time."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in app)
    return held_lock(store_path, f".{safe}.lock", wait=timeout, clock=clock)


class CheckRun:
    """One check run (or one operator restart) over the configured apps."""

    def __init__(
        self,
        config: Config,
        *,
        pm2: Pm2Port,
        prober: Prober,
        recorder: Recorder,
        clock: Clock,
        trigger: str = "manual",
        dry_run: bool = False,
        apps: list[str] | None = None,
        pm2_problem: str | None = None,
        stop: Callable[[], bool] | None = None,
        deliver: bool = True,
        listening: Callable[[list[int]], list[tuple[str, int]]] | None = None,
        owners: Callable[[int, list[int], list[int]], dict[int, int]] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.config = config
        # `--deadline`: the whole run (probes, restart, verification, logs, alerts) ends by then
        self.deadline = deadline
        self.deadline_at = clock.monotonic() + deadline if deadline is not None else None
        self.cut_by_deadline: list[str] = []  # what the deadline cut short, for the result
        self.stop = stop  # asked before each further probe attempt: True ends the probes, undecided
        self.cut_short = False  # an app was left undecided because of a stop
        self.pm2 = pm2
        self.prober = prober
        self.rec = recorder
        self.clock = clock
        self.trigger = trigger
        self.dry_run = dry_run
        self.pm2_problem = pm2_problem
        # False: alerts and the heartbeat are left to a deliverer of their own (watch's worker).
        self.deliver = deliver
        self.opened_at = clock.now()  # a channel first seen by this run counts as there since then
        self.listening = listening  # procnet.listening unless a test passes its own
        self.owners = owners  # procnet.connection_owners unless a test passes its own
        self.apps = [a for a in config.apps if not apps or a.name in apps]
        self.run_id = uuid.uuid4().hex
        self.start_seq = 0
        self.full_views: dict[str, ProcessView] = {}  # app -> this run's `pm2 jlist` sample of it
        self.host_done = False  # host.sampled is considered once per run
        self.minute_due = False  # and was due: this run is the first of its minute (the leak forecast's cadence)
        self.daemon: Pm2Daemon | None = None  # PM2's daemon, once a pm2 call found it down or frozen
        self.resurrected = False  # this run ran `pm2 resurrect` (once, for every app)
        self.resurrect_problem: str | None = None  # and what went wrong with it
        self.pm2_revealed: dict[str, int] = {}  # app -> PM2's own restarts this run's sample revealed
        # apps decided a crash loop: their logs are read this run, however recent the last read
        self.crashing: set[str] = set()

    def emit(self, type: str, app: str | None, **data: Any) -> None:
        self.rec.emit(type, app, self.run_id, **data)

    def fold(self) -> None:
        """Bring the projections up to date: the policy reads them, and Datasette shows them."""
        self.rec.read(projections.fold, 0)

    # -- the two units of work -----------------------------------------------------------

    def run(self) -> CheckResult:
        """Check every app: probe, sample, decide, and restart and verify when the policy says so."""

        def body(result: CheckResult) -> None:
            result.apps.extend(self.check_app(app) for app in self.apps)
            self.ingest_logs()
            self.send_alerts()

        return self._session(body, heartbeat=True)

    def restart_now(self, name: str, *, by: str, reason: str) -> CheckResult:
        """An operator's or a schedule's restart, recorded with who and why, verified like any other."""
        app = next(a for a in self.config.apps if a.name == name)

        def body(result: CheckResult) -> None:
            lock_wait = app.verify_timeout + 120
            with app_lock(self.config.store.path, app.name, lock_wait, self.clock) as held:
                if not held:
                    summary = f"another recovery run held the lock for {lock_wait:.0f}s"
                    result.apps.append(AppResult(app.name, CRITICAL, "CRITICAL", summary))
                    return
                result.apps.append(self.restart(app, "", reason, code=by, by=by))

        return self._session(body, heartbeat=False)

    def _session(self, body: Callable[[CheckResult], None], *, heartbeat: bool) -> CheckResult:
        """Open the record, run `body`, ping the heartbeat, close the record. A store that turned
        out unusable, or a pm2 that cannot be run, makes the run UNKNOWN."""
        start = self.clock.monotonic()
        result = CheckResult(self.run_id)
        if self.rec.replayed:
            self.emit(
                "spool.replayed", None, count=self.rec.replayed, spool=str(self.rec.spool), files=self.rec.replayed_from
            )
        self.emit(
            "check.started",
            None,
            trigger=self.trigger,
            apps=[a.name for a in self.apps],
            dry_run=self.dry_run,
            pid=os.getpid(),
        )
        self.start_seq = self.rec.last_seq()
        self.fold()
        try:
            # Without a usable pm2 the apps are still probed and every event recorded.
            body(result)
            if self.pm2_problem:
                result.problems.append(self.pm2_problem)
            if self.cut_by_deadline:
                result.cut = f"cut short by --deadline {self.deadline:g}s: " + ", ".join(self.cut_by_deadline)
            if heartbeat and not self.cut_short:
                self.heartbeat(UNKNOWN if self.rec.problem else result.code)
        finally:
            self.prober.close()
        code = UNKNOWN if self.rec.problem else result.code
        result.duration_ms = (self.clock.monotonic() - start) * 1000
        self.emit(
            "check.finished",
            None,
            outcome=STATE_NAMES[code],
            code=code,
            duration_ms=round(result.duration_ms, 1),
            apps={a.app: a.state for a in result.apps},
            problems=result.problems,
            **({"cut_by_deadline": self.cut_by_deadline} if self.cut_by_deadline else {}),
        )
        self.fold()  # so that Datasette and sqlite3 see this run in the projections at once
        self.keep_size(result)
        self.rec.close()
        if self.rec.damaged:
            lost = ", ".join(f"{d.file} at byte {d.offset} ({d.bytes} bytes: {d.why})" for d in self.rec.damaged)
            result.problems.append(f"spool damaged, its events there are lost: {lost} (recorded as spool.damaged)")
        if self.rec.problem:
            result.problems.append(f"event store unusable: {self.rec.problem}; {self.rec.spool_summary()}")
        return result

    def keep_size(self, result: CheckResult) -> None:
        """`[store] max_size`: past it, archive the oldest whole months (recovery.archive); a stat
        of the store file when it is under."""
        limit, store = self.config.store.max_size, self.rec.store
        if limit is None or store is None:
            return
        from .archive import keep_under, over_budget

        if not over_budget(store.path, limit):
            return
        try:
            keep_under(store, limit, now=self.clock.now())
        except RecoveryError as exc:
            result.problems.append(f"[store] max_size: {exc}")

    # -- observe -------------------------------------------------------------------------

    def probe(self, app: AppConfig) -> list[Attempt]:
        """Up to `retries` attempts, until one answers. After a timeout the next attempt waits
        `retry_delay`, and at least until `app.attempt_spacing()` after the start of the one that
        timed out, so that one CPU burst shorter than the timeout cannot fail every attempt.
        A stop asked for (watch's SIGTERM) ends the probes after the attempt under way."""
        attempts: list[Attempt] = []
        for n in range(1, app.retries + 1):
            started = self.clock.monotonic()
            a = self.prober.attempt(app, n, timeout=self.bounded(app.timeout))
            attempts.append(a)
            self.emit("probe.succeeded" if a.ok else "probe.failed", app.name, **a.data(of=app.retries, phase="check"))
            if a.ok or n == app.retries or self.stopping():
                break
            wait = app.retry_delay
            if a.error == "timeout":
                wait = max(wait, started + app.attempt_spacing() - self.clock.monotonic())
            if wait > 0:
                self.clock.sleep(wait)
                if self.stopping():
                    break
        return attempts

    def stopping(self) -> bool:
        return (self.stop is not None and self.stop()) or self.left() <= DEADLINE_MARGIN_S

    def left(self) -> float:
        """Seconds left before `--deadline` (inf without one)."""
        return float("inf") if self.deadline_at is None else self.deadline_at - self.clock.monotonic()

    def bounded(self, seconds: float) -> float | None:
        """`seconds`, cut to what the deadline leaves (keeping its margin, never below 0.1 s); None
        without a deadline."""
        if self.deadline_at is None:
            return None
        return min(seconds, max(0.1, self.left() - DEADLINE_MARGIN_S))

    def cut(self, what: str) -> None:
        """Note what the deadline cut short (said in the result and in check.finished)."""
        self.cut_by_deadline.append(what)

    def full_view(
        self,
        app: AppConfig,
        *,
        cpu: dict[str, Any] | None = None,
        fallback: ProcessView | None = None,
        before_acting: bool = True,
    ) -> tuple[ProcessView | None, str | None]:
        """A `pm2 jlist` sample, recorded. Taken before acting, it carries `cpu` (the CPU during the
        probes), and PM2's own restarts it reveals become `process.restarted`; `fallback` (the
        cheap sample) is recorded instead if PM2 cannot be read."""
        try:
            view = self.pm2.view(app.name)
        except Pm2Error as exc:
            fallback = self.pm2_unusable(app, exc, fallback)
            # PM2's daemon down or frozen goes with the sample: the replay decides from it too.
            daemon = {"daemon": self.daemon.data()} if self.daemon is not None else {}
            self.emit("process.sampled", app.name, source="jlist", error=str(exc), **daemon)
            if fallback is not None:
                self.sampled(app, fallback, **daemon)
            return fallback, str(exc)
        self.full_views[app.name] = view
        if before_acting:
            self.sampled(app, view, **(cpu or {}))
        else:
            self.emit("process.sampled", app.name, **view.data())
        return view, None

    def sampled(self, app: AppConfig, view: ProcessView, **extra: Any) -> None:
        """Record the check's sample of `app`, then PM2's own restarts it shows, and the host once a minute."""
        data = {**view.data(), **extra}
        self.emit("process.sampled", app.name, **data)
        now = self.clock.now()
        restarted = self.rec.read(lambda conn: telemetry.pm2_restarts(conn, app.name, data, now), None)
        if restarted:
            self.emit("process.restarted", app.name, **restarted)
            self.pm2_revealed[app.name] = int(restarted.get("count") or 0)
        if not self.host_done:
            self.host_done = True
            if self.rec.read(lambda conn: telemetry.host_due(conn, now), False):
                self.minute_due = True
                host = telemetry.host_sample()
                if host:
                    self.emit("host.sampled", None, **host)

    def observe(self, app: AppConfig) -> Observations:
        """Probe, then sample PM2: cheaply when healthy (`pm2 jlist` once an hour, or after a pid
        change), fully before any restart so the record shows the process as it was when it hung."""
        mark = self.pm2.cpu_mark(app.name)
        workers = self.pm2.workers(mark) if mark is not None else {}
        cluster: ClusterSeen | None = None
        if len(workers) > 1:
            attempts, cluster = self.probe_workers(app, mark, workers)
        else:
            attempts = tuple(self.probe(app))
        if attempts[-1].ok and not (cluster is not None and cluster_trouble(attempts, cluster)):
            quick = self.pm2.quick_view(app.name)
            now = self.clock.now()
            if self.rec.read(lambda conn: telemetry.full_sample_due(conn, app.name, quick, now), quick is None):
                view, _ = self.full_view(app, cpu=self.pm2.cpu_window(mark), fallback=quick)
            elif quick is not None:
                self.sampled(app, quick)
                view = quick
            else:
                view = None
            return Observations(attempts, view, daemon=self.daemon, cluster=cluster)
        view, problem = self.full_view(app, cpu=self.pm2.cpu_window(mark))
        if view is not None and view.status in TRANSITION:
            view = self.settled(app, view)
        elif view is not None and view.status in STOPPED and self.pm2_revealed.get(app.name):
            # `stopped` right after PM2 restarted it on its own: a crash loop caught between two
            # lives, or an operator's stop. One more read tells: an operator's stop stays stopped.
            view = self.settled(app, view, moving=STOPPED, within=TRANSITION_POLL_S)
        if view is not None:
            view = self.aged(app, view)
        return Observations(
            attempts,
            view,
            problem,
            daemon=self.daemon,
            pm2_restarts=self.pm2_revealed.get(app.name, 0),
            cluster=cluster,
        )

    def probe_workers(
        self, app: AppConfig, mark: Any, workers: dict[int, int]
    ) -> tuple[tuple[Attempt, ...], ClusterSeen]:
        """The check's probing in cluster mode: one burst; when it shows trouble and `retries` allows,
        a second burst, spaced as fork mode spaces its attempts (a CPU burst shorter than the
        timeout fails only the first), decides. Every probe is recorded; the CPU window of the
        second spans both bursts."""
        started = self.clock.monotonic()
        attempts, seen = self.probe_cluster(app, mark, workers, phase="check")
        if app.retries < 2 or not cluster_trouble(attempts, seen) or self.stopping():
            return attempts, seen
        wait = app.retry_delay
        if any(a.error == "timeout" for a in attempts):
            wait = max(wait, started + app.attempt_spacing() - self.clock.monotonic())
        if wait > 0:
            self.clock.sleep(wait)
            if self.stopping():
                return attempts, seen
        return self.probe_cluster(app, mark, workers, phase="check", burst=2)

    def probe_cluster(
        self,
        app: AppConfig,
        mark: Any,
        workers: dict[int, int],
        *,
        phase: str,
        timeout: float | None = None,
        burst: int = 1,
    ) -> tuple[tuple[Attempt, ...], ClusterSeen]:
        """One concurrent burst of PROBES_PER_WORKER x N probes, each on a fresh connection, then
        per worker: its CPU over the burst, and (when something failed or a CPU reads pinned) which
        probes' connections it holds, read from /proc while the connections are still open."""
        count = max(app.retries, PROBES_PER_WORKER * len(workers))
        started = self.clock.monotonic()
        attempts, release = self.prober.burst(app, count, timeout)
        try:
            for a in attempts:
                data = a.data(of=count, phase=phase, burst=burst)
                self.emit("probe.succeeded" if a.ok else "probe.failed", app.name, **data)
            cpu = self.pm2.cpu_by_pid(mark)
            busy = any(v >= policy.CPU_PINNED for v in cpu.values())
            elapsed = self.clock.monotonic() - started
            if busy and elapsed < CPU_MIN_WINDOW_S:
                self.clock.sleep(CPU_MIN_WINDOW_S - elapsed)
                cpu = self.pm2.cpu_by_pid(mark)
                busy = any(v >= policy.CPU_PINNED for v in cpu.values())
            owners: dict[int, int] = {}
            if busy or not all(a.ok for a in attempts):
                owners = self.connection_owners(app, attempts, list(workers))
        finally:
            release()
        seen = []
        for pid, pm_id in sorted(workers.items(), key=lambda w: w[1]):
            mine = [a for a in attempts if a.local_port is not None and owners.get(a.local_port) == pid]
            failed = sum(1 for a in mine if not a.ok)
            seen.append(Worker(pm_id, pid, cpu.get(pid), failed=failed, answered=len(mine) - failed))
        unattributed = sum(1 for a in attempts if not a.ok) - sum(w.failed for w in seen)
        window = round(self.clock.monotonic() - started, 2)
        return tuple(attempts), ClusterSeen(tuple(seen), unattributed, window)

    def connection_owners(self, app: AppConfig, attempts: list[Attempt], pids: list[int]) -> dict[int, int]:
        """client port -> the worker pid holding the server side of that probe's connection."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(app.url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return {}
        ports = [a.local_port for a in attempts if a.local_port is not None]
        if not ports:
            return {}
        if self.owners is not None:
            return self.owners(port, ports, pids)
        from . import procnet

        try:
            return procnet.connection_owners(port, ports, pids)
        except OSError:
            return {}

    def aged(self, app: AppConfig, view: ProcessView) -> ProcessView:
        """A process PM2 started less than YOUNG_S ago with no crash counted yet may be a crash
        loop's first life, about to exit: read PM2 again once it is that old (at most YOUNG_S
        later, on a failure path only), so that the decision sees whether it crashed. Recorded."""
        ages = [
            i.uptime_s
            for i in view.instances
            if i.status in RUNNING and i.uptime_s is not None and i.uptime_s < YOUNG_S and not i.unstable_restarts
        ]
        if not ages:
            return view
        self.clock.sleep(YOUNG_S - min(ages))
        try:
            newer = self.pm2.view(app.name)
        except Pm2Error:
            return view
        self.full_views[app.name] = newer
        self.emit("process.sampled", app.name, **newer.data(), settling=True)
        return newer

    def with_listening(self, observed: Observations) -> Observations:
        """`observed` with the addresses the app's processes (and their children) listen on, read
        from /proc: only for a refused URL that never answered, so never on the healthy path."""
        view = observed.view
        pids = [i.pid for i in view.instances if i.pid] if view is not None else []
        if view is None or not pids:
            return observed
        from . import procnet

        if any(i.exec_mode == "cluster_mode" for i in view.instances):
            pids += procnet.parents(pids)  # the cluster's listening socket is the PM2 daemon's
        read = self.listening or procnet.listening
        try:
            found = read(pids)
        except OSError:
            return observed
        return dataclasses.replace(observed, listening=tuple(procnet.format_address(a) for a in found))

    def settled(
        self,
        app: AppConfig,
        view: ProcessView,
        *,
        moving: frozenset[str] | set[str] = TRANSITION,
        within: float = TRANSITION_WAIT_S,
    ) -> ProcessView:
        """PM2 caught moving the app (an operator's restart, a start): read again until it settles,
        within `within` seconds, so that the decision is on where it went, not on the move.
        Each read is recorded; the last one is what the policy sees."""
        deadline = self.clock.monotonic() + within
        while view.status in moving and self.clock.monotonic() < deadline:
            self.clock.sleep(TRANSITION_POLL_S)
            try:
                view = self.pm2.view(app.name)
            except Pm2Error:
                break  # the move is what the record shows; the next check reads PM2 again
            self.full_views[app.name] = view
            self.emit("process.sampled", app.name, **view.data(), settling=True)
        return view

    # -- decide and act ------------------------------------------------------------------

    def history(self, app: AppConfig) -> History:
        """The app's history from the store, with what is still in the spool folded on top."""
        now = self.clock.now()
        base = self.rec.read_back(
            lambda conn: projections.history(conn, app.name, now, app.window, url=app.url), History()
        )
        spooled = self.rec.spooled_events(app.name)
        if not spooled:
            return base
        from .replay import history_with

        return history_with(base, spooled, now, app.window, app.url)

    def check_app(self, app: AppConfig) -> AppResult:
        history = self.history(app)
        observed = self.observe(app)
        result = self.decide_and_act(app, history, observed)
        result.failed = sum(1 for a in observed.attempts if not a.ok)
        result.slow_ms = app.slow_threshold * 1000 if app.slow_threshold is not None else None
        return result

    def decide_and_act(self, app: AppConfig, history: History, observed: Observations) -> AppResult:
        if self.stopping() and not observed.attempts[-1].ok and len(observed.attempts) < app.retries:
            # Stopped before the probes were done: too little seen to restart on, nothing decided.
            self.cut_short = True
            if self.left() <= DEADLINE_MARGIN_S:
                self.cut(f"{app.name}'s probes")
                why = f"--deadline {self.deadline:g}s reached"
            else:
                why = "stopped"
            return AppResult(app.name, UNKNOWN, "UNKNOWN", f"{why} before its probes were done; nothing decided")
        if policy.wants_listening(observed, history):
            observed = self.with_listening(observed)
        decision = policy.decide(observed, history, app, self.clock.now())
        if decision.code in policy.CRASH_CODES:
            self.crashing.add(app.name)  # the error before each exit names the cause: the first alert quotes it
        if self.dry_run:
            decision = policy.dry_run(decision)
        if not decision.dry_run and (
            (decision.code == "pm2_down" and decision.action == "restart")
            or (self.resurrected and decision.action != "none")
            or (decision.action == "restart" and self.resurrected_elsewhere(app))
        ):
            # A daemon to resurrect, or an app still starting from this run's `pm2 resurrect`.
            return self.recover_daemon(app, observed.attempts, decision)
        if not policy.needs_lock(decision):
            self.emit("decision.made", app.name, **decision.data())
            return self.outcome(app, decision, observed.attempts)
        return self.act(app, observed.attempts, decision)

    def outcome(self, app: AppConfig, decision: Decision, attempts: tuple[Attempt, ...]) -> AppResult:
        """The result line of a decision that is not acted on."""
        last = attempts[-1] if attempts else None
        latency = last.latency_ms if last is not None and last.ok else None
        summary = decision.reason
        if decision.dry_run:
            summary = f"{decision.reason}; would restart (dry run, nothing done)"
        elif latency is not None and decision.state == "healthy" and decision.action != "escalate":
            summary = f"{latency:.0f}ms"
        elif latency is not None and decision.state == "paused":
            summary = f"{decision.reason}; {latency:.0f}ms"
        return AppResult(app.name, decision.exit_code, decision.label, summary, latency, action=decision.action)

    def act(self, app: AppConfig, attempts: tuple[Attempt, ...], decision: Decision) -> AppResult:
        """Take the app's lock, re-decide from what other runs did meanwhile, then restart or wait."""
        failures = policy.failure_summary(attempts)
        lock_wait = app.verify_timeout + app.timeout * app.retries + 120
        lock_wait = self.bounded(lock_wait) or lock_wait
        with app_lock(self.config.store.path, app.name, lock_wait, self.clock) as held:
            if not held:
                decision = policy.lock_timed_out(decision, failures, lock_wait)
            else:
                decision = policy.under_lock(decision, self.rec.since(self.start_seq, app.name), self.run_id)
            self.emit("decision.made", app.name, **decision.data())
            if decision.action in ("none", "escalate"):
                summary = decision.reason if decision.code == "lock_timeout" else f"{failures}; {decision.reason}"
                code, label = (WARNING, "RECOVERED") if decision.action == "none" else (CRITICAL, "CRITICAL")
                return AppResult(app.name, code, label, summary, action=decision.action)
            if decision.action == "wait":
                passed, seconds, last = self.verify(app)
                if passed:
                    summary = f"{decision.reason}; PM2 brought it back, healthy in {seconds:.1f}s"
                    return AppResult(app.name, WARNING, "RECOVERED", summary, action="wait")
                summary = f"{decision.reason}; still not answering after {waited(app, seconds)} ({last})"
                return AppResult(app.name, CRITICAL, "CRITICAL", summary, action="wait")
            if decision.code == "worker_hung":
                return self.restart_worker(app, decision)
            return self.restart(app, failures, decision.reason, code=decision.code)

    def restart_worker(self, app: AppConfig, decision: Decision) -> AppResult:
        """`pm2 restart PM_ID` for the one hung worker, then verify every worker answers."""
        worker = decision.inputs["worker"]
        pm_id, pid = int(worker["pm_id"]), int(worker["pid"])
        command = ["pm2", "restart", str(pm_id)]
        ids = {"pm_id": pm_id, "pid": pid}
        what = f"worker {pm_id} (pid {pid}, {worker['evidence']} evidence)"
        if (
            late := self.too_late_to_restart(app, f"{what} hung", cut_as=f"{app.name}'s worker {pm_id} restart")
        ) is not None:
            return late
        self.read_logs_first([app])
        self.emit(
            "restart.requested",
            app.name,
            by="check",
            code=decision.code,
            reason=decision.reason,
            command=command,
            **ids,
        )
        problem = self.run_restart(
            app.name, command, lambda: self.pm2.restart_worker(pm_id), "restart", f"pm2 restart {pm_id}", **ids
        )
        if problem:
            return AppResult(app.name, CRITICAL, "CRITICAL", f"{what} hung; {problem}", action="restart")
        passed, seconds, last = self.verify_cluster(app)
        after = self.pm2.quick_view(app.name)
        if after is not None:
            self.emit("process.sampled", app.name, **after.data(), after_restart=True)
        exit_code, label = policy.after_restart("check", passed)
        if passed:
            summary = f"{what} hung, restarted alone, every worker answering again in {seconds:.1f}s"
        else:
            summary = f"{what} hung, restarted alone, still failing after {app.verify_timeout:g}s ({last})"
        return AppResult(app.name, exit_code, label, summary, restarted=True, action="restart")

    def too_late_to_restart(
        self, app: AppConfig, failures: str, *, action: str = "restart", cut_as: str | None = None
    ) -> AppResult | None:
        """With under RESTART_MIN_S (plus the margin) left before --deadline, no restart of any kind
        is begun (an app, one worker, `pm2 resurrect`): the result that says so, the cut noted; None
        when there is time."""
        if self.left() >= DEADLINE_MARGIN_S + RESTART_MIN_S:
            return None
        self.cut(cut_as or f"{app.name}'s {action}")
        summary = (
            f"{failures}; not {action}ed: --deadline {self.deadline:g}s left {max(0.0, self.left()):.1f}s"
            f" (the next check {action}s it)"
        )
        return AppResult(app.name, CRITICAL, "CRITICAL", summary.lstrip("; "), action="restart")

    def verify_until(self, app: AppConfig, start: float) -> float:
        """When a verification begun at `start` gives up: after verify_timeout, or sooner by --deadline."""
        return start + (self.bounded(app.verify_timeout) or app.verify_timeout)

    def verification_failed(
        self, app: AppConfig, start: float, until: float, n: int, elapsed: float, last: str, detail: str | None
    ) -> str:
        """Record a verification that gave up; its last error, saying when --deadline cut it short."""
        cut = until < start + app.verify_timeout
        extra = {"cut_by_deadline": self.deadline} if cut else {}
        self.emit(
            "verification.failed",
            app.name,
            attempts=n,
            seconds=round(elapsed, 2),
            last_error=last,
            detail=detail,
            verify_timeout=app.verify_timeout,
            **extra,
        )
        if not cut:
            return last
        self.cut(f"{app.name}'s verification after {elapsed:.1f}s")
        return f"{last}; verification cut short by --deadline, the next check verifies"

    def verify_cluster(self, app: AppConfig) -> tuple[bool, float, str]:
        """verify() for a cluster: bursts of per-worker probes until every probe answers and no
        worker reads pinned, or verify_timeout passes; returns (passed, seconds, last problem)."""
        start = self.clock.monotonic()
        deadline = self.verify_until(app, start)
        n, delay, last = 0, 0.2, "no attempt"
        while True:
            mark = self.pm2.cpu_mark(app.name)
            workers = self.pm2.workers(mark) if mark is not None else {}
            remaining = deadline - self.clock.monotonic()
            timeout = max(0.1, min(app.timeout, remaining))
            if len(workers) > 1:
                attempts, seen = self.probe_cluster(app, mark, workers, phase="verify", timeout=timeout)
            else:  # PM2 still writing the new worker's pid file: probe as in fork mode meanwhile
                attempts = (self.prober.attempt(app, n + 1, timeout=timeout),)
                self.emit(
                    "probe.succeeded" if attempts[0].ok else "probe.failed",
                    app.name,
                    **attempts[0].data(phase="verify"),
                )
                seen = ClusterSeen(())
            n += len(attempts)
            elapsed = self.clock.monotonic() - start
            if len(workers) > 1 and not cluster_trouble(attempts, seen):
                latency = max(a.latency_ms for a in attempts)
                self.emit(
                    "verification.passed", app.name, attempts=n, seconds=round(elapsed, 2), latency_ms=round(latency, 1)
                )
                return True, elapsed, ""
            failed = [a for a in attempts if not a.ok]
            last = failed[-1].error or "error" if failed else "a worker's CPU still pinned"
            if self.clock.monotonic() + delay >= deadline:
                detail = failed[-1].detail if failed else None
                return False, elapsed, self.verification_failed(app, start, deadline, n, elapsed, last, detail)
            self.clock.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def restart(self, app: AppConfig, failures: str, reason: str, *, code: str, by: str = "check") -> AppResult:
        """Restart through PM2, then verify. `failures` says why, for the result line."""
        command = ["pm2", app.restart_command, app.name]
        if (late := self.too_late_to_restart(app, failures)) is not None:
            return late
        self.read_logs_first([app])
        self.emit("restart.requested", app.name, by=by, code=code, reason=reason, command=command)
        problem = self.run_restart(
            app.name,
            command,
            lambda: self.pm2.restart(app.name, app.restart_command),
            "restart",
            f"pm2 {app.restart_command}",
        )
        if problem:
            return AppResult(app.name, CRITICAL, "CRITICAL", f"{failures}; {problem}", action="restart")
        passed, seconds, last = self.verify(app)
        # The new process, from the pid files (no pm2 call): the record shows what came back.
        after = self.pm2.quick_view(app.name)
        if after is not None:
            self.emit("process.sampled", app.name, **after.data(), after_restart=True)
        verb = "reloaded" if app.restart_command == "reload" else "restarted"
        exit_code, label = policy.after_restart(by, passed)
        if by == "check":
            what = f"{verb} after {failures}"
        else:
            what = f"{verb} by {by} ({reason})"
        if passed:
            summary = f"{what}, healthy again in {seconds:.1f}s"
        else:
            summary = f"{what}, still not answering after {waited(app, seconds)} ({last})"
        return AppResult(app.name, exit_code, label, summary, restarted=True, action="restart")

    # -- PM2's daemon down, frozen or pm2 unusable -------------------------------------------

    def pm2_unusable(self, app: AppConfig, exc: Pm2Error, fallback: ProcessView | None) -> ProcessView | None:
        """Note what a failed pm2 call says about PM2 as a whole: a pm2 that cannot be run makes
        the run UNKNOWN; a daemon down or frozen goes into the observations. With the daemon
        down, the pid files (no pm2 call) tell whether the app's processes outlived it."""
        if isinstance(exc, Pm2CannotRun) and self.pm2_problem is None:
            self.pm2_problem = str(exc)
        if isinstance(exc, Pm2DaemonUnavailable):
            self.daemon = exc.daemon
            if fallback is None and exc.daemon.state == "down":
                return self.pm2.quick_view(app.name)
        return fallback

    def resurrected_elsewhere(self, app: AppConfig) -> bool:
        """Whether another run resurrected PM2's saved list, this app in it, since this run began:
        the app is still starting, not hung."""
        return any(
            e.type == "restart.requested" and e.app is None and app.name in (e.data.get("apps") or ())
            for e in self.rec.since(self.start_seq)
            if e.run_id != self.run_id
        )

    def recover_daemon(self, app: AppConfig, attempts: tuple[Attempt, ...], decision: Decision) -> AppResult:
        """PM2's daemon is down: `pm2 resurrect` once for every app, under a lock that is not per
        app, unless the daemon runs again by then; then verify the app."""
        failures = policy.failure_summary(attempts)
        lock_wait = 120.0 + max((a.verify_timeout for a in self.apps), default=0.0)
        with app_lock(self.config.store.path, DAEMON_LOCK, lock_wait, self.clock) as held:
            if not held:
                decision = policy.lock_timed_out(decision, failures, lock_wait)
                self.emit("decision.made", app.name, **decision.data())
                return AppResult(app.name, CRITICAL, "CRITICAL", decision.reason, action="escalate")
            if self.resurrect_problem:
                decision = policy.resurrect_failed(decision, failures, self.resurrect_problem)
                self.emit("decision.made", app.name, **decision.data())
                return AppResult(app.name, CRITICAL, "CRITICAL", decision.reason, action="escalate")
            if self.resurrected:
                decision = policy.daemon_back(decision, "PM2's saved list was resurrected earlier in this run")
            else:
                daemon = self.pm2.daemon()
                if daemon is not None and daemon.state == "up":
                    decision = policy.daemon_back(decision, "it runs again (another run brought it back)")
            self.emit("decision.made", app.name, **decision.data())
            if decision.action == "restart":
                if (late := self.too_late_to_restart(app, failures, action="resurrect")) is not None:
                    return late
                self.resurrect_problem = self.resurrect(decision)
                if self.resurrect_problem:
                    summary = f"{failures}; {self.resurrect_problem}"
                    return AppResult(app.name, CRITICAL, "CRITICAL", summary, action="restart")
        passed, seconds, last = self.verify(app)
        after = self.pm2.quick_view(app.name)
        if after is not None:
            self.emit("process.sampled", app.name, **after.data(), after_restart=True)
        ours = decision.action == "restart"
        what = f"resurrected by pm2 resurrect after {failures}" if ours else decision.reason
        if passed:
            summary = f"{what}, healthy again in {seconds:.1f}s"
            return AppResult(app.name, WARNING, "RECOVERED", summary, restarted=ours, action=decision.action)
        summary = f"{what}, still not answering after {waited(app, seconds)} ({last})"
        return AppResult(app.name, CRITICAL, "CRITICAL", summary, restarted=ours, action=decision.action)

    def run_restart(
        self, app: str | None, command: list[str], call: Callable[[], Any], failed_as: str, ran_as: str, **extra: Any
    ) -> str | None:
        """Run a restarting pm2 call (`restart`, `restart PM_ID`, `resurrect`) and record how it went
        (`restart.failed` or `restart.succeeded`, with `extra`); returns what went wrong, if anything."""
        try:
            r = call()
        except Pm2Error as exc:
            self.emit("restart.failed", app, **extra, command=command, exit_code=None, error=str(exc))
            if isinstance(exc, Pm2CannotRun) and self.pm2_problem is None:
                self.pm2_problem = str(exc)
            return f"{failed_as} failed: {exc}"
        outcome = {"command": command, "exit_code": r.exit_code, "duration_ms": round(r.duration_ms, 1)}
        if r.exit_code != 0:
            tail = r.tail(r.stderr or r.stdout, 4)
            self.emit("restart.failed", app, **extra, **outcome, stderr_tail=tail)
            first = tail.splitlines()[-1] if tail else ""
            return f"{ran_as} exited {r.exit_code}: {first}"
        self.emit("restart.succeeded", app, **extra, **outcome, stderr_tail=r.tail(r.stderr, 4))
        return None

    def resurrect(self, decision: Decision) -> str | None:
        """Run `pm2 resurrect` and record it once for the run (no app: it concerns every app);
        returns what went wrong, if anything."""
        self.resurrected = True
        command = ["pm2", "resurrect"]
        apps = [a.name for a in self.apps]
        self.read_logs_first(self.apps)
        self.emit(
            "restart.requested", None, by="check", code="pm2_down", reason=decision.reason, command=command, apps=apps
        )
        problem = self.run_restart(None, command, self.pm2.resurrect, "pm2 resurrect", "pm2 resurrect", code="pm2_down")
        if problem:
            return problem
        self.daemon = None
        self.fold()  # the apps sampled later in this run show new pids: ours, not PM2's own restarts
        return None

    def verify(self, app: AppConfig) -> tuple[bool, float, str]:
        """Probe until the app answers or verify_timeout passes; returns (passed, seconds, last error)."""
        start = self.clock.monotonic()
        deadline = self.verify_until(app, start)
        n, delay, last = 0, 0.2, "no attempt"
        while True:
            n += 1
            remaining = deadline - self.clock.monotonic()
            a = self.prober.attempt(app, n, timeout=max(0.1, min(app.timeout, remaining)))
            self.emit("probe.succeeded" if a.ok else "probe.failed", app.name, **a.data(phase="verify"))
            elapsed = self.clock.monotonic() - start
            if a.ok:
                self.emit(
                    "verification.passed",
                    app.name,
                    attempts=n,
                    seconds=round(elapsed, 2),
                    latency_ms=round(a.latency_ms, 1),
                )
                return True, elapsed, ""
            last = a.error or "error"
            if self.clock.monotonic() + delay >= deadline:
                return False, elapsed, self.verification_failed(app, start, deadline, n, elapsed, last, a.detail)
            self.clock.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    # -- after the recovery work -----------------------------------------------------------

    def send_alerts(self) -> None:
        """After the recovery and log steps, with no app's lock held: deliver what the record says
        is owed, within [alerts] timeout. apprise is imported only when something is owed."""
        conf = self.config.alerts
        if not self.deliver or self.dry_run or self.rec.store is None:
            return
        if not (conf.urls or any(a.alerts for a in self.apps)):
            return
        from . import alerts

        config = self.config
        if self.deadline_at is not None:
            if self.left() <= DEADLINE_MARGIN_S:
                self.cut("the alerts (still owed: the next run sends them)")
                return
            config = dataclasses.replace(
                config, alerts=dataclasses.replace(conf, timeout=self.bounded(conf.timeout) or conf.timeout)
            )
        self.fold()
        # A leak forecast is looked at when this run took a full sample (a failure, a pid change, hourly)
        # or is the first of its minute: the cheap sample records memory too.
        leak_apps = set(self.full_views) | ({a.name for a in self.apps} if self.minute_due else set())
        alerts.send_owed(
            self.rec,
            config,
            self.apps,
            self.clock.now(),
            run_id=self.run_id,
            leak_apps=leak_apps,
            seen_at=self.opened_at,
            sleep=self.clock.sleep,
        )

    def heartbeat(self, code: int) -> None:
        """Ping the dead-man's switch: `/fail` (or heartbeat_fail_url) when the run ended CRITICAL
        or UNKNOWN after an OK one, the OK URL on the way back and at most once a minute."""
        conf = self.config.alerts
        if not self.deliver or self.dry_run or not conf.heartbeat_url:
            return
        from . import alerts

        alerts.beat(self.rec, conf, code in (CRITICAL, UNKNOWN), self.clock.now(), run_id=self.run_id)

    def read_logs_first(self, apps: list[AppConfig]) -> None:
        """Just before restarting `apps`: their new log lines, within `[logs] check_budget` and
        whatever `check_every` says, so that lines without a timestamp are bounded by the failure,
        not by a read after the restart. No `pm2 jlist` for it; trouble is a `log.failed` event."""
        conf = self.config.logs
        if not conf.in_check or self.dry_run or self.rec.store is None:
            return
        if self.left() < DEADLINE_MARGIN_S + RESTART_MIN_S:
            self.cut("the log read before the restart")
            return
        for app in apps:
            self.read_logs(app, conf, before_restart=True)

    def ingest_logs(self) -> None:
        """Last, after every probe and restart: what is new in each app's logs, within a small
        budget. Trouble here is a `log.failed` event; it never changes the check's verdict."""
        conf = self.config.logs
        if not conf.in_check or self.dry_run or self.rec.store is None:
            return
        if self.left() <= DEADLINE_MARGIN_S:
            self.cut("the log reading")
            return
        for app in self.apps:

            def discover(app: AppConfig = app) -> tuple[str, ...]:
                """A full sample (recorded like any other) for the log paths, when nothing else names them."""
                view, _ = self.full_view(app, before_acting=False)
                return view.logs if view is not None else ()

            every = dataclasses.replace(conf, check_every=0.0) if app.name in self.crashing else conf
            self.read_logs(app, every, discover=discover)

    def read_logs(
        self,
        app: AppConfig,
        conf: Any,
        *,
        before_restart: bool = False,
        discover: Callable[[], tuple[str, ...]] | None = None,
    ) -> None:
        """One app's new log lines (the paths from this run's sample when it took one); trouble is a
        `log.failed` event, never the check's verdict."""
        store = self.rec.store
        if store is None:
            return
        from .logs.checkstep import ingest_in_check

        view = self.full_views.get(app.name)
        seen = view.logs if view is not None else ()
        try:
            ingest_in_check(
                store, app, conf, seen=seen, discover=discover, run_id=self.run_id, before_restart=before_restart
            )
        except (RecoveryError, OSError, sqlite3.Error) as exc:
            self.emit("log.failed", app.name, error=str(exc), **({"before_restart": True} if before_restart else {}))


def waited(app: AppConfig, seconds: float) -> str:
    """How long a verification waited: its verify_timeout, or less when --deadline cut it."""
    return f"{app.verify_timeout:g}s" if seconds >= app.verify_timeout - 0.5 else f"{seconds:.1f}s"


def open_run(
    config: Config,
    *,
    trigger: str = "manual",
    dry_run: bool = False,
    apps: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    transport: Any = None,
    clock: Clock | None = None,
    stop: Callable[[], bool] | None = None,
    deliver: bool = True,
    batcher: Batcher | None = None,
    deadline: float | None = None,
) -> CheckRun:
    """A check run with the real parts: the store (or its spool), PM2 found as cron would, httpx.
    With `batcher` (`recovery watch`), steady healthy checks are recorded as batches."""
    from .pm2 import Pm2, find_pm2

    clock = clock or SystemClock()
    env = os.environ if environ is None else environ
    if batcher is not None:
        recorder: Recorder = batcher.recorder(now=clock.now)
    else:
        recorder = Recorder(
            config.store.path, busy_timeout=config.store.busy_timeout, now=clock.now, group=config.store.group
        )
    pm2: Pm2Port
    problem = None
    try:
        pm2 = Pm2(find_pm2(config.pm2.bin, env), env, read_timeout=config.pm2.timeout)
    except Pm2Error as exc:
        pm2, problem = MissingPm2(str(exc)), str(exc)
    return CheckRun(
        config,
        pm2=pm2,
        prober=HttpProber(transport),
        recorder=recorder,
        clock=clock,
        trigger=trigger,
        dry_run=dry_run,
        apps=apps,
        pm2_problem=problem,
        stop=stop,
        deliver=deliver,
        deadline=deadline,
    )


class Checker:
    """A fresh `CheckRun` with the real parts for each `run()`: what `recovery watch` loops."""

    def __init__(self, config: Config, **options: Any) -> None:
        self.config = config
        self.options = options

    def run(self) -> CheckResult:
        return open_run(self.config, **self.options).run()

    def restart_now(self, name: str, *, by: str, reason: str) -> CheckResult:
        return open_run(self.config, **self.options).restart_now(name, by=by, reason=reason)
