"""The policy: pure functions from what was observed and what happened before to what to do.

Every input is an argument (the observations, the app's history, its configuration, the time):
no clock, network, PM2 or store. This module imports nothing that does I/O; a test walks its
imports. A decision carries a machine `code` (compared by code) and a `reason` for people
(never parsed).
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from .config import AppConfig
from .events import Event, format_ts, parse_ts
from .model import STATE_CODES, History
from .observations import (
    ERRORED,
    RESTARTING,
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
from .units import age, format_duration, shown_ts, span

ACTIONS = ("none", "restart", "wait", "suppress", "escalate")

# code -> what it means. A decision's code says why it was taken; `state` what the app is now.
CODES: dict[str, str] = {
    "healthy": "the app answered in time",
    "degraded": "the app answered, slower than slow_threshold",
    "cert_expiring": "the app answered, but its https certificate expires within cert_warn: renew it",
    "paused": "an operator paused recovery for the app",
    "hung": "PM2 says online but the probes failed: restart",
    "errored": "PM2 gave up restarting the app (crash loop): restart",
    "stopped": "an operator stopped the app in PM2: left alone",
    "pm2_restarting": "PM2 is restarting the app itself: wait and verify",
    "unknown_app": "PM2 has no process of that name",
    "pm2_unreadable": "PM2 could not be read",
    "unknown_status": "PM2 reports a status this tool does not act on",
    "warming_up": "failures within restart_grace of our last restart: not counted",
    "backoff": "the next restart is not allowed yet (exponential backoff)",
    "restart_loop": "max_restarts reached within window: restarts suspended",
    "suspended": "restarts are suspended since an earlier restart loop",
    "already_recovered": "another run restarted the app meanwhile and verified it",
    "already_restarted": "another run restarted the app meanwhile without recovery",
    "lock_timeout": "another run held the app's lock too long",
    "never_answered": "the URL has never answered in the record and is refused: a wrong URL, not restarted",
    "crash_loop": "PM2 is cycling the app through crashes itself: not restarted on top",
    "pm2_down": "the PM2 daemon is not running: its saved process list is resurrected",
    "pm2_frozen": "the PM2 daemon runs but does not answer: reported, nothing restarted",
    "pm2_transition": "PM2 is moving the app between states (stopping, launching): waited out",
    "worker_hung": "one worker of a PM2 cluster does not answer (busy loop or stall): that worker alone is restarted",
}
# Codes of a check that saw PM2 cycling the app through crashes, giving up, or bringing it back from one.
CRASH_CODES = frozenset({"crash_loop", "errored", "pm2_restarting"})
# The word in an app's result line for each state a decision concludes (anything else: DOWN).
LABELS = {
    "healthy": "OK",
    "paused": "PAUSED",
    "degraded": "DEGRADED",
    "suspended": "SUSPENDED",
    "recovering": "RECOVERING",
    "stopped": "CRITICAL",
}
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3  # Nagios plugin exit codes


@dataclass(frozen=True)
class Decision:
    action: str  # one of ACTIONS
    code: str  # one of CODES
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)
    # The app state this decision concludes (projections fold it): healthy, degraded, down,
    # recovering, suspended, paused, stopped.
    state: str = "down"
    # After a "wait": whether to probe until healthy (PM2 is restarting it) or just report.
    verify: bool = False
    dry_run: bool = False

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.action, "code": self.code, "reason": self.reason, "state": self.state}
        d["inputs"] = self.inputs
        if self.dry_run:
            d["dry_run"] = True
        return d

    @property
    def exit_code(self) -> int:
        """The Nagios exit code of a decision that is not followed by a restart."""
        if self.action == "escalate":
            return CRITICAL
        return STATE_CODES.get(self.state, CRITICAL)

    @property
    def label(self) -> str:
        """The word in the app's result line."""
        if self.action == "escalate":
            return "CRITICAL"
        return LABELS.get(self.state, "DOWN")


def failure_summary(attempts: Sequence[Attempt]) -> str:
    """'3 failed probes (timeout)' or '2 failed probes (refused, timeout)'."""
    failed = [a for a in attempts if not a.ok]
    kinds = Counter(a.error for a in failed)
    label = ", ".join(k for k, _ in kinds.most_common() if k)
    noun = "probe" if len(failed) == 1 else "probes"
    return f"{len(failed)} failed {noun} ({label})"


def _causes(restarts: Sequence[tuple[str, str]]) -> str:
    """'hung x2, errored x1' from the codes of the counted restarts."""
    counts = Counter(code or "unknown" for _, code in restarts)
    return ", ".join(f"{cause} x{n}" for cause, n in counts.most_common())


def paused_now(history: History, now: _dt.datetime) -> bool:
    """Whether an operator's pause is in force: until its end. One started ahead of `now` (the wall
    clock was stepped back since) holds only while the step is shorter than the pause itself, so
    a step back never stretches a pause beyond twice its length, and a second's correction keeps it."""
    if not history.paused_until or history.paused_until <= format_ts(now):
        return False
    if not history.paused_at:
        return True
    ahead = -age(now, history.paused_at)
    return ahead <= 0 or ahead < age(parse_ts(history.paused_until), history.paused_at)


def decide(observed: Observations, history: History, app: AppConfig, now: _dt.datetime) -> Decision:
    """What to do about one app, from this run's probes, PM2's view and the app's history."""
    attempts, view = observed.attempts, observed.view
    inputs: dict[str, Any] = {
        "probes": len(attempts),
        "failed": sum(1 for a in attempts if not a.ok),
        "errors": sorted({a.error for a in attempts if a.error}),
    }
    if view is not None:
        inputs["pm2_status"] = view.status
        inputs["instances"] = len(view.instances)
    if observed.daemon is not None:
        inputs["pm2_daemon"] = observed.daemon.data()
    paused = paused_now(history, now)
    if paused:
        inputs["paused_until"] = history.paused_until
    if observed.cluster is not None and not paused and observed.daemon is None:
        one = worker_hung(observed, history, app, now, inputs)
        if one is not None:
            return one
    last = attempts[-1] if attempts else None
    if last is not None and last.ok:
        inputs["latency_ms"] = round(last.latency_ms, 1)
        if view is not None and not view.known:
            reason = f"answers, but PM2 has no process named {view.name!r}"
            return Decision("escalate", "unknown_app", reason, inputs, "healthy")
        if paused:
            reason = f"paused until {history.paused_until} ({history.pause_reason or 'no reason'})"
            return Decision("none", "paused", reason, inputs, "paused")
        if observed.daemon is not None:
            return _daemon_while_answering(observed.daemon, inputs)
        slow = app.slow_threshold
        if slow is not None and last.latency_ms > slow * 1000:
            inputs["slow_threshold_ms"] = slow * 1000
            reason = f"degraded: answered in {last.latency_ms:.0f}ms, slower than slow_threshold {slow * 1000:.0f}ms"
            return Decision("none", "degraded", reason, inputs, "degraded")
        expiring = cert_expiring(last, app, now)
        if expiring is not None:
            inputs["cert_expires"] = last.cert_expires
            return Decision("none", "cert_expiring", expiring, inputs, "degraded")
        return Decision("none", "healthy", "healthy", inputs, "healthy")

    failures = failure_summary(attempts)
    if paused:
        reason = f"paused until {history.paused_until} ({history.pause_reason or 'no reason'}); {failures}, nothing restarted"
        return Decision("none", "paused", reason, inputs, "paused")
    if observed.daemon is not None:
        return _daemon_while_failing(observed.daemon, failures, view, inputs)
    if view is None:
        reason = f"{failures}, and PM2 could not be read: {observed.pm2_problem}"
        return Decision("escalate", "pm2_unreadable", reason, inputs, "down")
    if not view.known:
        return Decision("escalate", "unknown_app", f"{failures}, and PM2 has no process named {view.name!r}", inputs)
    status = view.status
    looping = crash_loop(observed, history, app, now, failures, inputs)
    if looping is not None:
        return looping
    if status in TRANSITION:
        reason = f"PM2 is moving it (status {status!r}), {failures}; waited out, decided again at the next check"
        return Decision("wait", "pm2_transition", reason, inputs, "recovering")
    if status in STOPPED:
        reason = f"stopped by an operator (pm2 status {status!r}); left alone"
        return Decision("none", "stopped", reason, inputs, "stopped")
    if status in RESTARTING:
        reason = f"PM2 is already restarting it (status {status!r}), {failures}"
        return Decision("wait", "pm2_restarting", reason, inputs, "recovering", verify=True)
    if status in RUNNING and wants_listening(observed, history):
        return never_answered(observed, app, failures, inputs)
    if status in RUNNING:
        code, cause = "hung", f"hung: PM2 says {status} but {failures}"
    elif status in ERRORED:
        code, cause = "errored", f"errored: PM2 gave up restarting it (crash loop), {failures}"
    else:
        reason = f"{failures}, PM2 status {status!r} is not one this tool acts on"
        return Decision("escalate", "unknown_status", reason, inputs, "down")
    return _guarded_restart(code, cause, failures, history, app, now, inputs)


# A worker that used at least this share of a CPU over the probe window is in a busy loop.
CPU_PINNED = 90.0


def pinned(worker: Worker) -> bool:
    """A worker in a busy loop: its CPU pinned over the probe window, and no probe answered by it
    (a worker busy serving real traffic still answers)."""
    return worker.cpu_window is not None and worker.cpu_window >= CPU_PINNED and not worker.answered


def hung_workers(cluster: ClusterSeen) -> tuple[list[Worker], str]:
    """The workers the evidence names, most failed first, and which evidence: "socket" (they hold
    failed probes' connections), "cpu" (pinned, answering nothing) or "none"."""
    by_socket = sorted((w for w in cluster.workers if w.failed), key=lambda w: (-w.failed, w.pm_id))
    if by_socket:
        return by_socket, "socket"
    by_cpu = sorted((w for w in cluster.workers if pinned(w)), key=lambda w: (-(w.cpu_window or 0), w.pm_id))
    return by_cpu, "cpu" if by_cpu else "none"


def worker_hung(
    observed: Observations, history: History, app: AppConfig, now: _dt.datetime, inputs: dict[str, Any]
) -> Decision | None:
    """Cluster mode: one worker hung among others that answer. None when the probes say nothing
    of the kind (all answered and no CPU pinned: healthy; all failed: the whole app, decided as in
    fork mode).

    The worker is named from the socket of a timed-out probe it holds (a stalled worker), else
    from its CPU pinned over the probe window (a busy loop: PM2's master stops handing it
    connections, so every probe may answer). Failures among successes that no evidence ties to
    a worker are a failure of some worker: the whole app is restarted (or reloaded).
    """
    cluster = observed.cluster
    if cluster is None:
        return None
    attempts = observed.attempts
    failed = [a for a in attempts if not a.ok]
    named, evidence = hung_workers(cluster)
    workers: dict[str, Any] = {"total": len(cluster.workers), "failed": sorted(w.pm_id for w in named)}
    inputs["workers"] = workers
    if not failed and not named:
        return None
    # What each worker showed (CPU over the window, probes it held), for the record and for people.
    workers.update({("seen" if k == "workers" else k): v for k, v in cluster.data().items() if k != "total"})
    if len(failed) == len(attempts):
        workers["evidence"] = "none"
        return None  # every probe failed: the app as a whole, as in fork mode
    if named and len(named) == len(cluster.workers):
        return None  # every worker named: not one worker's problem
    view = observed.view
    if view is not None and view.known and view.status not in RUNNING:
        return None  # PM2 is moving, stopping or restarting it: decided as in fork mode
    summary = failure_summary(attempts) if failed else f"{len(attempts)} probes answered"
    if not named:
        workers["evidence"] = "none"
        cause = (
            f"hung: {summary} of {len(attempts)} across {len(cluster.workers)} workers, "
            "and no worker could be named (no socket, no CPU evidence): the whole app"
        )
        return _guarded_restart("hung", cause, summary, history, app, now, inputs)
    worker = named[0]
    inputs["worker"] = {"pm_id": worker.pm_id, "pid": worker.pid, "evidence": evidence}
    if evidence == "socket":
        why = f"it holds {worker.failed} failed probe connection(s) ({summary} of {len(attempts)})"
    else:
        why = f"its CPU was {worker.cpu_window:.0f}% over the probe window ({summary} of {len(attempts)})"
    cause = f"worker hung: worker {worker.pm_id} (pid {worker.pid}) of {len(cluster.workers)}: {why}"
    return _guarded_restart("worker_hung", cause, summary, history, app, now, inputs)


def _daemon_while_answering(daemon: Pm2Daemon, inputs: dict[str, Any]) -> Decision:
    """The app answers, but PM2's daemon is down or frozen: nothing supervises it; nothing to restart."""
    code = "pm2_down" if daemon.state == "down" else "pm2_frozen"
    reason = f"answers, but {daemon.sentence}: PM2 no longer supervises it; nothing restarted"
    return Decision("escalate", code, reason, inputs, "healthy")


def _daemon_while_failing(
    daemon: Pm2Daemon, failures: str, view: ProcessView | None, inputs: dict[str, Any]
) -> Decision:
    """The probes failed and PM2's daemon is down (resurrect its saved list) or frozen (report it).

    Never a plain `pm2` call: with the daemon down it would start a fresh, empty one.
    """
    words = daemon.sentence
    if daemon.state != "down":
        reason = f"{failures}, and {words}; nothing restarted: PM2 must be looked at by hand"
        return Decision("escalate", "pm2_frozen", reason, inputs, "down")
    alive = [i.pid for i in view.instances if i.pid] if view is not None else []
    if alive:
        # Its processes outlived the daemon: a resurrected copy would only fight them for the port.
        pids = ", ".join(map(str, alive))
        reason = f"{failures}, and {words}, but its processes still run (pid {pids}); not resurrected beside them"
        return Decision("escalate", "pm2_down", reason, inputs, "down")
    if not daemon.dump:
        reason = (
            f"{failures}, and {words}; there is no saved process list ({daemon.home}/dump.pm2) "
            "to resurrect: start the apps and run `pm2 save`; nothing restarted"
        )
        return Decision("escalate", "pm2_down", reason, inputs, "down")
    reason = f"pm2 down: {words}; {failures}: resurrecting PM2's saved process list"
    return Decision("restart", "pm2_down", reason, inputs, "recovering")


def resurrect_failed(first: Decision, failures: str, problem: str) -> Decision:
    """An app of a run whose `pm2 resurrect` already failed: nothing more to try in this run."""
    return Decision("escalate", "pm2_down", f"{failures}; {problem}", first.inputs, "down")


def daemon_back(first: Decision, how: str) -> Decision:
    """A pm2_down restart, re-taken under the daemon lock: the daemon runs again (`how`), so
    nothing is resurrected, and the app is verified."""
    return Decision("wait", "pm2_down", f"{first.reason}; {how}", first.inputs, "recovering", verify=True)


# PM2's own restarts (crashes, memory limit) within `window` that make a young process a crash loop
CRASH_LOOP_RESTARTS = 2


def crash_loop(
    observed: Observations, history: History, app: AppConfig, now: _dt.datetime, failures: str, inputs: dict[str, Any]
) -> Decision | None:
    """PM2 is bringing the app back itself: nothing of ours on top. None when it is not.

    Only an instance PM2 started less than restart_grace ago counts (a failing old process is a
    hang). It is a crash loop (`crash_loop`, wait and report; down) when PM2 counts unstable
    restarts (exits sooner than its min_uptime), or when PM2 restarted the app on its own at least
    CRASH_LOOP_RESTARTS times within `window`. Caught `online`, `launching` or `stopped` between
    two crashes, it is neither a hang nor an operator's stop. Short of that, a young process whose
    last exit code was not 0, none of our restarts since, is a one-off crash PM2 is recovering
    from (`pm2_restarting`, wait and verify). Once PM2 gives up the status is `errored`, decided
    elsewhere.
    """
    view = observed.view
    if view is None:
        return None
    pm2_restarts = history.pm2_restarts + observed.pm2_restarts
    for inst in view.instances:
        if inst.status in ERRORED:
            continue
        up = inst.uptime_s if inst.uptime_s is not None else inst.since_start_s
        if up is None or up >= app.restart_grace:
            continue
        crash_exit = inst.exit_code not in (None, 0)
        if (inst.status in STOPPED or inst.status == "stopping") and not crash_exit:
            continue  # an operator's stop ends the process cleanly (or kills it); a crash does not
        unstable = inst.unstable_restarts or 0
        cycling = unstable > 0 or (pm2_restarts >= CRASH_LOOP_RESTARTS and inst.status in RUNNING | RESTARTING)
        crashed = crash_exit and (inst.restart_time or 0) > 0 and inst.status in RUNNING
        ours = history.last_restart_at is not None and age(now, history.last_restart_at) < app.restart_grace
        if not cycling and (not crashed or ours):
            continue
        facts = {
            "restart_time": inst.restart_time,
            "unstable_restarts": inst.unstable_restarts,
            "exit_code": inst.exit_code,
            "uptime_s": up,
            "pm2_restarts_in_window": pm2_restarts,
        }
        inputs.update({k: v for k, v in facts.items() if v is not None})
        exit_text = f", last exit code {inst.exit_code}" if inst.exit_code is not None else ""
        started = f"started {up:.1f}s ago (status {inst.status!r})"
        if not cycling:
            reason = f"PM2 restarted it after a crash{exit_text}, {started}; {failures}; waiting for it"
            return Decision("wait", "pm2_restarting", reason, inputs, "recovering", verify=True)
        counted = f"{unstable} unstable" if unstable else f"{pm2_restarts} in {format_duration(app.window)}"
        reason = (
            f"crash loop: PM2 restarted it {inst.restart_time or 0} times ({counted}){exit_text}, {started}; "
            f"{failures}; not restarted on top of PM2's own restarts"
        )
        return Decision("wait", "crash_loop", reason, inputs, "down")
    return None


def cert_expiring(attempt: Attempt, app: AppConfig, now: _dt.datetime) -> str | None:
    """'certificate expires …' when an https app's certificate ends within `cert_warn`; else None."""
    if app.cert_warn is None or attempt.cert_expires is None:
        return None
    left = (parse_ts(attempt.cert_expires) - now).total_seconds()
    if left > app.cert_warn:
        return None
    return (
        f"degraded: its certificate expires {shown_ts(attempt.cert_expires)} (in {span(left)}),"
        f" within cert_warn {format_duration(app.cert_warn)}: renew it"
    )


def wants_listening(observed: Observations, history: History) -> bool:
    """Whether this is a refused URL that never answered, for which the check reads the addresses
    the app's processes listen on (the decision names them)."""
    failed = [a for a in observed.attempts if not a.ok]
    return history.url_answered is False and bool(failed) and all(a.error == "refused" for a in failed)


def never_answered(observed: Observations, app: AppConfig, failures: str, inputs: dict[str, Any]) -> Decision:
    """A URL that is refused and never answered while PM2 says online: a wrong URL, not a hung app."""
    parts = urlsplit(app.url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    host = parts.hostname or "?"
    wanted = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    listening = observed.listening
    if listening is None:
        where = f"the addresses {app.name} listens on could not be read"
    elif not listening:
        where = f"{app.name} listens on no TCP port"
    else:
        inputs["listening"] = list(listening)
        same_port = any(a.rsplit(":", 1)[-1] == str(port) for a in listening)
        where = f"{app.name} listens on {', '.join(listening)}, not {wanted if same_port else port}"
    reason = (
        f"never answered: {failures} at {wanted}, which never answered in the record; {where}; "
        "not restarted: check the app's url"
    )
    return Decision("escalate", "never_answered", reason, inputs, "down")


def _guarded_restart(
    code: str,
    cause: str,
    failures: str,
    history: History,
    app: AppConfig,
    now: _dt.datetime,
    inputs: dict[str, Any],
) -> Decision:
    """A restart, unless warm-up, a suspension, the ceiling or the backoff says otherwise."""
    since_last, recent = _restart_ages(history, now, inputs)
    inputs["restarts_in_window"] = len(recent)
    if since_last is not None and since_last < app.restart_grace:
        reason = (
            f"warming up: restarted {since_last:.0f}s ago "
            f"(restart_grace {format_duration(app.restart_grace)}); {failures}"
        )
        return Decision("wait", "warming_up", reason, inputs, "recovering")
    if history.suspended_at:
        reason = (
            f"restart loop: suspended since {history.suspended_at} ({history.suspend_reason}); "
            f"`recovery resume {app.name}` allows restarts again"
        )
        return Decision("suppress", "suspended", reason, inputs, "suspended")
    n = len(recent)
    if n >= app.max_restarts:
        reason = (
            f"restart loop: {n} restarts in {format_duration(app.window)}, last causes: "
            f"{_causes(recent)}; not restarting again"
        )
        return Decision("suppress", "restart_loop", reason, inputs, "suspended")
    if n >= 1 and since_last is not None:
        needed = app.restart_grace * 2 ** (n - 1)
        inputs["backoff_s"] = needed
        if since_last < needed:
            reason = f"backoff: restart {n + 1} of {app.max_restarts} allowed in {needed - since_last:.0f}s; {failures}"
            return Decision("wait", "backoff", reason, inputs, "down")
    return Decision("restart", code, cause, inputs, "recovering")


def _restart_ages(
    history: History, now: _dt.datetime, inputs: dict[str, Any]
) -> tuple[float | None, tuple[tuple[str, str], ...]]:
    """Seconds since our last counted restart, and the restarts that count for the ceiling.

    The last restart of ours (a `pm2 resurrect` too) holds the next one back (warm-up, backoff);
    after `recovery resume` the history has none, so the app gets a fresh attempt at once. A
    restart recorded ahead of `now` (the wall clock was stepped back since) has no age anyone can
    trust: it never counts as recent, neither for the warm-up grace and the backoff nor in the window.
    """
    now_ts = format_ts(now)
    recent = tuple(r for r in history.recent_restarts if r[0] <= now_ts)
    if len(recent) < len(history.recent_restarts):
        inputs["restarts_ahead_of_clock"] = len(history.recent_restarts) - len(recent)
    last = history.last_restart_at
    if last is not None and last > now_ts:
        last = recent[-1][0] if recent else None
    since_last = age(now, last) if last else None
    if since_last is not None:
        inputs["seconds_since_restart"] = round(since_last, 1)
    return since_last, recent


def dry_run(decision: Decision) -> Decision:
    """The decision of a dry run: a restart is decided and recorded, but not made; the app stays down."""
    if decision.action != "restart":
        return decision
    return replace(decision, state="down", dry_run=True)


def needs_lock(decision: Decision) -> bool:
    """Whether acting on the decision takes the app's lock (a restart, or waiting on PM2's own)."""
    return not decision.dry_run and (decision.action == "restart" or (decision.action == "wait" and decision.verify))


def lock_timed_out(decision: Decision, failures: str, waited: float) -> Decision:
    """The decision when another run held the app's lock for longer than this run would wait."""
    reason = f"{failures}; another recovery run held the lock for {waited:.0f}s"
    return Decision("escalate", "lock_timeout", reason, decision.inputs, "down")


def under_lock(first: Decision, since_start: Sequence[Event], run_id: str) -> Decision:
    """Re-take a restart decision once the app's lock is held, from the events another run wrote.

    Another run may have restarted the app while this one was probing or waiting for the lock,
    or just before this run started (its verification then ends after our start): its outcome
    stands, and the app is not restarted twice.
    """
    if first.action != "restart":
        return first
    kinds = ("restart.requested", "restart.failed", "verification.passed", "verification.failed")
    others = [e for e in since_start if e.run_id != run_id and e.type in kinds]
    if not others:
        return first
    last = others[-1]
    other_run = last.run_id or "?"
    inputs = dict(first.inputs, other_run=other_run, other_event_seq=last.seq)
    if last.type == "verification.passed":
        reason = f"already restarted by run {other_run[:8]} and verified healthy"
        return Decision("none", "already_recovered", reason, inputs, "healthy")
    reason = f"already restarted by run {other_run[:8]} without recovery ({last.type})"
    return Decision("escalate", "already_restarted", reason, inputs, "down")


def after_restart(by: str, passed: bool) -> tuple[int, str]:
    """The exit code and label of a restart we made, once verified (`passed`) or not."""
    if not passed:
        return CRITICAL, "CRITICAL"
    return (WARNING, "RECOVERED") if by == "check" else (OK, "RESTARTED")
