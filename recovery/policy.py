"""The policy: pure functions from what was observed to what to do. No clock, network or PM2."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import AppConfig, format_duration
from .events import Event, format_ts, parse_ts
from .model import History
from .pm2 import ERRORED, RESTARTING, RUNNING, STOPPED, ProcessView
from .probe import Attempt

ACTIONS = ("none", "restart", "wait", "suppress", "escalate")


@dataclass(frozen=True)
class Decision:
    action: str  # one of ACTIONS
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)
    # The app state this decision concludes (projections fold it): healthy, degraded, down,
    # recovering, suspended, paused, stopped.
    state: str = "down"
    # After a "wait": whether to probe until healthy (PM2 is restarting it) or just report.
    verify: bool = False

    def data(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "state": self.state, "inputs": self.inputs}


def failure_summary(attempts: Sequence[Attempt]) -> str:
    """'3 failed probes (timeout)' or '2 failed probes (refused, timeout)'."""
    failed = [a for a in attempts if not a.ok]
    kinds = Counter(a.error for a in failed)
    label = ", ".join(k for k, _ in kinds.most_common() if k)
    noun = "probe" if len(failed) == 1 else "probes"
    return f"{len(failed)} failed {noun} ({label})"


def _causes(restarts: Sequence[tuple[str, str]]) -> str:
    """'hung x2, errored x1' from the reasons of the counted restarts."""
    counts = Counter((reason.split(":")[0].strip() or "unknown") for _, reason in restarts)
    return ", ".join(f"{cause} x{n}" for cause, n in counts.most_common())


def _ago(now: _dt.datetime, ts: str | None) -> float | None:
    return (now - parse_ts(ts)).total_seconds() if ts else None


def decide(
    attempts: Sequence[Attempt],
    view: ProcessView | None,
    pm2_problem: str | None = None,
    *,
    app: AppConfig | None = None,
    history: History | None = None,
    now: _dt.datetime | None = None,
) -> Decision:
    """What to do about one app, from this run's probes, PM2's view and the app's history.

    Pure: the clock arrives as `now`, the past as `history` (a projection of the events).
    """
    history = history or History()
    now = now or _dt.datetime.now(_dt.UTC)
    inputs: dict[str, Any] = {
        "probes": len(attempts),
        "failed": sum(1 for a in attempts if not a.ok),
        "errors": sorted({a.error for a in attempts if a.error}),
    }
    if view is not None:
        inputs["pm2_status"] = view.status
        inputs["instances"] = len(view.instances)
    paused = bool(history.paused_until and history.paused_until > format_ts(now))
    if paused:
        inputs["paused_until"] = history.paused_until
    last = attempts[-1] if attempts else None
    if last is not None and last.ok:
        inputs["latency_ms"] = round(last.latency_ms, 1)
        if view is not None and not view.known:
            return Decision("escalate", f"answers, but PM2 has no process named {view.name!r}", inputs, "healthy")
        if paused:
            return Decision(
                "none", f"paused until {history.paused_until} ({history.pause_reason or 'no reason'})", inputs, "paused"
            )
        slow = app.slow_threshold if app is not None else None
        if slow is not None and last.latency_ms > slow * 1000:
            inputs["slow_threshold_ms"] = slow * 1000
            return Decision(
                "none",
                f"degraded: answered in {last.latency_ms:.0f}ms, slower than slow_threshold {slow * 1000:.0f}ms",
                inputs,
                "degraded",
            )
        return Decision("none", "healthy", inputs, "healthy")

    failures = failure_summary(attempts)
    if paused:
        reason = f"paused until {history.paused_until} ({history.pause_reason or 'no reason'}); {failures}, nothing restarted"
        return Decision("none", reason, inputs, "paused")
    if view is None:
        return Decision("escalate", f"{failures}, and PM2 could not be read: {pm2_problem}", inputs, "down")
    if not view.known:
        return Decision("escalate", f"{failures}, and PM2 has no process named {view.name!r}", inputs, "down")
    status = view.status
    if status in STOPPED:
        return Decision("none", f"stopped by an operator (pm2 status {status!r}); left alone", inputs, "stopped")
    if status in RESTARTING:
        return Decision(
            "wait", f"PM2 is already restarting it (status {status!r}), {failures}", inputs, "recovering", verify=True
        )
    if status in RUNNING:
        cause = f"hung: PM2 says {status} but {failures}"
    elif status in ERRORED:
        cause = f"errored: PM2 gave up restarting it (crash loop), {failures}"
    else:
        return Decision("escalate", f"{failures}, PM2 status {status!r} is not one this tool acts on", inputs, "down")

    if app is None:
        return Decision("restart", cause, inputs, "recovering")
    since_last = _ago(now, history.last_restart_at)
    inputs["restarts_in_window"] = len(history.recent_restarts)
    if since_last is not None:
        inputs["seconds_since_restart"] = round(since_last, 1)
    if since_last is not None and since_last < app.restart_grace:
        reason = f"warming up: restarted {since_last:.0f}s ago (restart_grace {format_duration(app.restart_grace)}); {failures}"
        return Decision("wait", reason, inputs, "recovering")
    if history.suspended_at:
        reason = f"restart loop: suspended since {history.suspended_at} ({history.suspend_reason}); `recovery resume {app.name}` allows restarts again"
        return Decision("suppress", reason, inputs, "suspended")
    n = len(history.recent_restarts)
    if n >= app.max_restarts:
        reason = (
            f"restart loop: {n} restarts in {format_duration(app.window)}, last causes: "
            f"{_causes(history.recent_restarts)}; not restarting again"
        )
        return Decision("suppress", reason, inputs, "suspended")
    if n >= 1 and since_last is not None:
        needed = app.restart_grace * 2 ** (n - 1)
        inputs["backoff_s"] = needed
        if since_last < needed:
            reason = f"backoff: restart {n + 1} of {app.max_restarts} allowed in {needed - since_last:.0f}s; {failures}"
            return Decision("wait", reason, inputs, "down")
    return Decision("restart", cause, inputs, "recovering")


def decide_under_lock(first: Decision, since_start: Sequence[Event], run_id: str) -> Decision:
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
        return Decision("none", f"already restarted by run {other_run[:8]} and verified healthy", inputs, "healthy")
    return Decision(
        "escalate", f"already restarted by run {other_run[:8]} without recovery ({last.type})", inputs, "down"
    )
