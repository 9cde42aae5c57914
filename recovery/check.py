"""`recovery check`: probe, sample, decide, restart, verify — every step an event."""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import policy, telemetry
from .config import AppConfig, Config
from .errors import Pm2Error
from .model import STATE_CODES
from .pm2 import Pm2, ProcessView, find_pm2, pidfile_view
from .probe import Attempt, make_client, probe_once
from .store import Recorder


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


# Nagios plugin exit codes.
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# The word in an app's result line for each state a decision concludes (anything else: DOWN).
_LABELS = {
    "healthy": "OK",
    "paused": "PAUSED",
    "degraded": "DEGRADED",
    "suspended": "SUSPENDED",
    "recovering": "RECOVERING",
    "stopped": "CRITICAL",
}


@dataclass
class AppResult:
    app: str
    code: int
    state: str  # OK, RECOVERED, DOWN, CRITICAL, UNKNOWN
    summary: str
    latency_ms: float | None = None
    restarted: bool = False
    action: str = "none"

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
        }


@dataclass
class CheckResult:
    run_id: str
    apps: list[AppResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # store or pm2 trouble: UNKNOWN
    duration_ms: float = 0.0

    @property
    def code(self) -> int:
        if self.problems:
            return UNKNOWN
        return max((a.code for a in self.apps), default=OK)

    def lines(self) -> list[str]:
        return [a.line() for a in self.apps] + [f"UNKNOWN {p}" for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "code": self.code,
            "status": STATE_NAMES[self.code],
            "apps": [a.to_dict() for a in self.apps],
            "problems": self.problems,
            "duration_ms": round(self.duration_ms, 1),
        }


@contextlib.contextmanager
def app_lock(store_path: Path, app: str, timeout: float, sleep: Callable[[float], None]) -> Iterator[bool]:
    """Hold an exclusive flock for `app` beside the store; yields False if it could not be had in time."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in app)
    path = store_path.with_name(f"{store_path.name}.{safe}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        # The store's folder is unusable; runs against the same store still meet in /tmp.
        digest = hashlib.sha256(str(store_path.resolve()).encode()).hexdigest()[:16]
        fd = os.open(Path(tempfile.gettempdir()) / f"recovery-{digest}.{safe}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                sleep(0.1)
        yield True
    finally:
        os.close(fd)  # closing releases the flock


class Checker:
    """One check run over the configured apps. Clock, sleep and HTTP transport are injectable."""

    def __init__(
        self,
        config: Config,
        *,
        trigger: str = "manual",
        dry_run: bool = False,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: Any = None,
        apps: list[str] | None = None,
    ) -> None:
        self.config = config
        self.trigger = trigger
        self.dry_run = dry_run
        self.environ = os.environ if environ is None else environ
        self.sleep = sleep
        self.clock = clock
        self.transport = transport
        self.apps = [a for a in config.apps if not apps or a.name in apps]
        self.run_id = uuid.uuid4().hex
        self.pm2: Pm2 | None = None
        self.full_views: dict[str, ProcessView] = {}  # app -> this run's `pm2 jlist` sample of it
        self.host_done = False  # host.sampled is considered once per run

    def emit(self, type: str, app: str | None, **data: Any) -> None:
        self.rec.emit(type, app, self.run_id, **data)

    def _conn(self) -> Any:
        """The store's connection for telemetry's small reads; None when the store is unusable."""
        return self.rec.store.conn if self.rec.store is not None else None

    def run(self) -> CheckResult:
        """Check every app: probe, sample, decide, and restart and verify when the policy says so."""

        def body(result: CheckResult) -> None:
            result.apps.extend(self._each(self.check_app))
            self.ingest_logs()
            self.send_alerts()

        return self._session(body, finish=self.heartbeat)

    def restart_now(self, name: str, *, by: str, reason: str) -> CheckResult:
        """An operator's or a schedule's restart, recorded with who and why, verified like any other."""
        app = next(a for a in self.config.apps if a.name == name)

        def body(result: CheckResult) -> None:
            lock_wait = app.verify_timeout + 120
            with app_lock(self.config.store.path, app.name, lock_wait, self.sleep) as held:
                if not held:
                    result.apps.append(
                        AppResult(
                            app.name, CRITICAL, "CRITICAL", f"another recovery run held the lock for {lock_wait:.0f}s"
                        )
                    )
                    return
                with make_client(app.url, app.timeout, self.transport) as client:
                    result.apps.append(self.restart(app, client, "", reason, by=by))

        return self._session(body)

    def _each(self, fn: Callable[[AppConfig], AppResult]) -> Iterator[AppResult]:
        for app in self.apps:
            yield fn(app)
            self.rec.flush()

    def _session(self, body: Callable[[CheckResult], None], finish: Callable[[int], None] | None = None) -> CheckResult:
        """Open the record, run `body` with PM2 at hand, `finish(code)`, close the record; store
        trouble is UNKNOWN."""
        start = self.clock()
        result = CheckResult(self.run_id)
        self.rec = Recorder(self.config.store.path, busy_timeout=self.config.store.busy_timeout)
        if self.rec.replayed:
            self.emit("spool.replayed", None, count=self.rec.replayed, spool=str(self.rec.spool))
        self.emit(
            "check.started",
            None,
            trigger=self.trigger,
            apps=[a.name for a in self.apps],
            dry_run=self.dry_run,
            pid=os.getpid(),
        )
        self.start_seq = self.rec.last_seq()
        self.rec.flush()
        self.rec.fold()
        try:
            self.pm2 = Pm2(find_pm2(self.config.pm2.bin, self.environ), self.environ)
        except Pm2Error as exc:
            result.problems.append(str(exc))
        if self.pm2 is not None:
            body(result)
        if finish is not None:
            finish(result.code if not self.rec.problem else UNKNOWN)
        result.duration_ms = (self.clock() - start) * 1000
        self.emit(
            "check.finished",
            None,
            outcome=STATE_NAMES[result.code if not self.rec.problem else UNKNOWN],
            code=UNKNOWN if self.rec.problem else result.code,
            duration_ms=round(result.duration_ms, 1),
            apps={a.app: a.state for a in result.apps},
            problems=result.problems,
        )
        self.rec.flush()
        self.rec.fold()  # so that Datasette and sqlite3 see this run in the projections at once
        self.rec.close()
        if self.rec.problem:
            where = (
                f"{self.rec.spooled} event(s) spooled to {self.rec.spool}" if self.rec.spooled else "nothing spooled"
            )
            if self.rec.lost:
                where = f"{len(self.rec.lost)} event(s) could not be kept"
            result.problems.append(f"event store unusable: {self.rec.problem}; {where}")
        return result

    # -- one app -----------------------------------------------------------------------

    def probe(self, app: AppConfig, client: Any) -> list[Attempt]:
        attempts: list[Attempt] = []
        for n in range(1, app.retries + 1):
            a = probe_once(client, app.url, n, app.status_ok)
            attempts.append(a)
            self.emit("probe.succeeded" if a.ok else "probe.failed", app.name, **a.data(of=app.retries, phase="check"))
            if a.ok:
                break
            if n < app.retries and app.retry_delay > 0:
                self.sleep(app.retry_delay)
        return attempts

    def full_view(
        self,
        app: AppConfig,
        *,
        check: bool = False,
        cpu: dict[str, Any] | None = None,
        fallback: ProcessView | None = None,
    ) -> tuple[ProcessView | None, str | None]:
        """A `pm2 jlist` sample, recorded. As the `check`'s own sample (taken before it acts) it
        carries `cpu` (the CPU during the probes), and PM2's own restarts it reveals become
        `process.restarted`; `fallback` (the cheap sample) is recorded instead if PM2 cannot be read."""
        assert self.pm2 is not None
        try:
            view = self.pm2.view(app.name)
        except Pm2Error as exc:
            self.emit("process.sampled", app.name, source="jlist", error=str(exc))
            if fallback is not None:
                self.sampled(app, fallback)
            return fallback, str(exc)
        self.full_views[app.name] = view
        if check:
            self.sampled(app, view, **(cpu or {}))
        else:
            self.emit("process.sampled", app.name, **view.data())
        return view, None

    def sampled(self, app: AppConfig, view: ProcessView, **extra: Any) -> None:
        """Record the check's sample of `app`, then PM2's own restarts it shows, and the host once a minute."""
        data = {**view.data(), **extra}
        self.emit("process.sampled", app.name, **data)
        restarted = telemetry.pm2_restarts(self._conn(), app.name, data)
        if restarted:
            self.emit("process.restarted", app.name, **restarted)
        if not self.host_done:
            self.host_done = True
            host = telemetry.host_sample() if telemetry.host_due(self._conn()) else {}
            if host:
                self.emit("host.sampled", None, **host)

    def _discover_logs(self, app: AppConfig) -> tuple[str, ...]:
        """A full sample (recorded like any other) for the log paths, when nothing else names them."""
        view, _ = self.full_view(app)
        self.rec.flush()
        return view.logs if view is not None else ()

    def send_alerts(self) -> None:
        """After the recovery and log steps: deliver what the record says is owed, within
        [alerts] timeout for the whole run. apprise is imported only when something is owed."""
        conf = self.config.alerts
        if self.dry_run or self.rec.store is None or not (conf.urls or any(a.alerts for a in self.apps)):
            return
        from . import alerts

        self.rec.flush()
        self.rec.fold()
        if self.rec.store is None:
            return
        now, host = utc_now(), alerts.hostname(conf)
        conn = self.rec.store.conn

        def hints_of(name: str) -> Callable[[], list[Any]]:
            def found() -> list[Any]:
                from .hints import hints_for

                return hints_for(conn, name, now)

            return found

        try:
            # A leak forecast is looked at when this run took a full sample (at most once a minute).
            owed = [
                a
                for app in self.apps
                for a in alerts.plan(
                    conn, app, conf, now, host=host, hints=hints_of(app.name), check_leak=app.name in self.full_views
                )
            ]
        except sqlite3.Error as exc:
            self.emit("alert.failed", None, kind="plan", error=f"cannot read what is owed: {exc}")
            return
        if owed:
            alerts.deliver(
                owed,
                retries=conf.retries,
                budget=conf.timeout,
                sleep=self.sleep,
                emit=lambda d: self.emit("alert.sent" if d.ok else "alert.failed", d.alert.app, **d.event_data()),
            )
            self.rec.flush()

    def heartbeat(self, code: int) -> None:
        """Ping the dead-man's switch: `/fail` (or heartbeat_fail_url) when the run ended
        CRITICAL or UNKNOWN; OK pings at most once a minute."""
        conf = self.config.alerts
        if self.dry_run or not conf.heartbeat_url:
            return
        from . import alerts

        failed = code in (CRITICAL, UNKNOWN)
        self.rec.flush()
        if self.rec.store is not None:
            try:
                if not alerts.heartbeat_due(self.rec.store.conn, failed, utc_now()):
                    return
            except sqlite3.Error:
                pass
        url = alerts.heartbeat_url(conf, failed)
        assert url is not None
        ok, error, status = alerts.ping(url, min(5.0, conf.timeout))
        data: dict[str, Any] = {"outcome": "fail" if failed else "ok", "url": alerts.redact(url), "status": status}
        if error:
            data["error"] = error
        self.emit("heartbeat.sent" if ok else "heartbeat.failed", None, **data)

    def ingest_logs(self) -> None:
        """Last, after every probe and restart: what is new in each app's logs, within a small
        budget. Trouble here is a `log.failed` event; it never changes the check's verdict."""
        conf = self.config.logs
        if not conf.in_check or self.dry_run or self.rec.store is None:
            return
        from .errors import RecoveryError
        from .logs.checkstep import ingest_in_check

        self.rec.flush()
        for app in self.apps:
            try:
                view = self.full_views.get(app.name)
                ingest_in_check(
                    self.rec.store,
                    app,
                    conf,
                    seen=view.logs if view is not None else (),
                    discover=lambda app=app: self._discover_logs(app),
                    run_id=self.run_id,
                )
            except (RecoveryError, OSError, sqlite3.Error) as exc:
                self.emit("log.failed", app.name, error=str(exc))
            self.rec.flush()

    def check_app(self, app: AppConfig) -> AppResult:
        history = self.rec.history(app.name, utc_now(), app.window)
        assert self.pm2 is not None
        mark = telemetry.cpu_mark(app.name, self.pm2.home)
        with make_client(app.url, app.timeout, self.transport) as client:
            attempts = self.probe(app, client)
            if attempts[-1].ok:
                # The cheap sample (pid files, /proc); `pm2 jlist` once a minute or after a pid change.
                view: ProcessView | None = pidfile_view(app.name, self.pm2.home)
                if telemetry.full_sample_due(self._conn(), app.name, view):
                    view, _ = self.full_view(app, check=True, cpu=telemetry.cpu_window(mark), fallback=view)
                else:
                    assert view is not None
                    self.sampled(app, view)
                decision = policy.decide(attempts, view, app=app, history=history, now=utc_now())
                self.emit("decision.made", app.name, **decision.data())
                return self.outcome(app, decision, attempts)
            # Sample before any restart, so the record shows the process as it was when it hung.
            view, pm2_problem = self.full_view(app, check=True, cpu=telemetry.cpu_window(mark))
            decision = policy.decide(attempts, view, pm2_problem, app=app, history=history, now=utc_now())
            self.rec.flush()
            return self.act(app, client, attempts, decision)

    def outcome(self, app: AppConfig, decision: policy.Decision, attempts: list[Attempt]) -> AppResult:
        """The result line of a decision that needs no restart."""
        last = attempts[-1] if attempts else None
        latency = last.latency_ms if last is not None and last.ok else None
        state, action, reason = decision.state, decision.action, decision.reason
        if action == "escalate":
            return AppResult(app.name, CRITICAL, "CRITICAL", reason, latency, action=action)
        summary = reason
        if latency is not None and state == "healthy":
            summary = f"{latency:.0f}ms"
        elif latency is not None and state == "paused":
            summary = f"{reason}; {latency:.0f}ms"
        code = STATE_CODES.get(state, CRITICAL)
        return AppResult(app.name, code, _LABELS.get(state, "DOWN"), summary, latency, action=action)

    def act(self, app: AppConfig, client: Any, attempts: list[Attempt], decision: policy.Decision) -> AppResult:
        failures = policy.failure_summary(attempts)
        if decision.action == "restart" and self.dry_run:
            self.emit("decision.made", app.name, **{**decision.data(), "state": "down"}, dry_run=True)
            return AppResult(
                app.name,
                CRITICAL,
                "DOWN",
                f"{decision.reason}; would restart (dry run, nothing done)",
                action="restart",
            )
        if decision.action != "restart" and not (decision.action == "wait" and decision.verify):
            self.emit("decision.made", app.name, **decision.data())
            return self.outcome(app, decision, attempts)

        lock_wait = app.verify_timeout + app.timeout * app.retries + 120
        with app_lock(self.config.store.path, app.name, lock_wait, self.sleep) as held:
            if not held:
                reason = f"{failures}; another recovery run held the lock for {lock_wait:.0f}s"
                self.emit(
                    "decision.made", app.name, action="escalate", reason=reason, state="down", inputs=decision.inputs
                )
                return AppResult(app.name, CRITICAL, "CRITICAL", reason, action="escalate")
            decision = policy.decide_under_lock(decision, self.rec.since(self.start_seq, app.name), self.run_id)
            self.emit("decision.made", app.name, **decision.data())
            self.rec.flush()
            if decision.action == "none":
                return AppResult(app.name, WARNING, "RECOVERED", f"{failures}; {decision.reason}", action="none")
            if decision.action == "escalate":
                return AppResult(app.name, CRITICAL, "CRITICAL", f"{failures}; {decision.reason}", action="escalate")
            if decision.action == "wait":
                passed, seconds, last = self.verify(app, client)
                if passed:
                    return AppResult(
                        app.name,
                        WARNING,
                        "RECOVERED",
                        f"{decision.reason}; PM2 brought it back, healthy in {seconds:.1f}s",
                        action="wait",
                    )
                return AppResult(
                    app.name,
                    CRITICAL,
                    "CRITICAL",
                    f"{decision.reason}; still not answering after {app.verify_timeout:g}s ({last})",
                    action="wait",
                )
            return self.restart(app, client, failures, decision.reason)

    def restart(self, app: AppConfig, client: Any, failures: str, reason: str, by: str = "check") -> AppResult:
        """Restart through PM2, then verify. `failures` says why, for the result line."""
        assert self.pm2 is not None
        command = ["pm2", app.restart_command, app.name]
        self.emit("restart.requested", app.name, by=by, reason=reason, command=command)
        self.rec.flush()
        try:
            r = self.pm2.restart(app.name, app.restart_command)
        except Pm2Error as exc:
            self.emit("restart.failed", app.name, command=command, exit_code=None, error=str(exc))
            return AppResult(app.name, CRITICAL, "CRITICAL", f"{failures}; restart failed: {exc}", action="restart")
        if r.exit_code != 0:
            tail = r.tail(r.stderr or r.stdout, 4)
            self.emit(
                "restart.failed",
                app.name,
                command=command,
                exit_code=r.exit_code,
                stderr_tail=tail,
                duration_ms=round(r.duration_ms, 1),
            )
            first = tail.splitlines()[-1] if tail else ""
            return AppResult(
                app.name,
                CRITICAL,
                "CRITICAL",
                f"{failures}; pm2 {app.restart_command} exited {r.exit_code}: {first}",
                action="restart",
            )
        self.emit(
            "restart.succeeded",
            app.name,
            command=command,
            exit_code=0,
            stderr_tail=r.tail(r.stderr, 4),
            duration_ms=round(r.duration_ms, 1),
        )
        self.rec.flush()
        passed, seconds, last = self.verify(app, client)
        # The new process, from the pid files (no pm2 call): the record shows what came back.
        after = pidfile_view(app.name, self.pm2.home)
        if after is not None:
            self.emit("process.sampled", app.name, **after.data(), after_restart=True)
        verb = "reloaded" if app.restart_command == "reload" else "restarted"
        if by != "check":
            if passed:
                return AppResult(
                    app.name,
                    OK,
                    "RESTARTED",
                    f"{verb} by {by} ({reason}), healthy again in {seconds:.1f}s",
                    restarted=True,
                    action="restart",
                )
            return AppResult(
                app.name,
                CRITICAL,
                "CRITICAL",
                f"{verb} by {by} ({reason}), still not answering after {app.verify_timeout:g}s ({last})",
                restarted=True,
                action="restart",
            )
        if passed:
            return AppResult(
                app.name,
                WARNING,
                "RECOVERED",
                f"{verb} after {failures}, healthy again in {seconds:.1f}s",
                restarted=True,
                action="restart",
            )
        return AppResult(
            app.name,
            CRITICAL,
            "CRITICAL",
            f"{verb} after {failures}, still not answering after {app.verify_timeout:g}s ({last})",
            restarted=True,
            action="restart",
        )

    def verify(self, app: AppConfig, client: Any) -> tuple[bool, float, str]:
        """Probe until the app answers or verify_timeout passes; returns (passed, seconds, last error)."""
        start = self.clock()
        deadline = start + app.verify_timeout
        n, delay, last = 0, 0.2, "no attempt"
        while True:
            n += 1
            remaining = deadline - self.clock()
            a = probe_once(client, app.url, n, app.status_ok, timeout=max(0.1, min(app.timeout, remaining)))
            self.emit("probe.succeeded" if a.ok else "probe.failed", app.name, **a.data(phase="verify"))
            elapsed = self.clock() - start
            if a.ok:
                self.emit(
                    "verification.passed",
                    app.name,
                    attempts=n,
                    seconds=round(elapsed, 2),
                    latency_ms=round(a.latency_ms, 1),
                )
                self.rec.flush()
                return True, elapsed, ""
            last = a.error or "error"
            if self.clock() + delay >= deadline:
                self.emit(
                    "verification.failed",
                    app.name,
                    attempts=n,
                    seconds=round(elapsed, 2),
                    last_error=last,
                    detail=a.detail,
                    verify_timeout=app.verify_timeout,
                )
                self.rec.flush()
                return False, elapsed, last
            self.sleep(delay)
            delay = min(delay * 1.5, 2.0)
