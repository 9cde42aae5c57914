"""The policy: pure functions from what was observed to what to do. No clock, network or PM2."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import Event
from .pm2 import ERRORED, RESTARTING, RUNNING, STOPPED, ProcessView
from .probe import Attempt

ACTIONS = ("none", "restart", "wait", "suppress", "escalate")


@dataclass(frozen=True)
class Decision:
    action: str  # one of ACTIONS
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "inputs": self.inputs}


def failure_summary(attempts: Sequence[Attempt]) -> str:
    """'3 failed probes (timeout)' or '2 failed probes (refused, timeout)'."""
    failed = [a for a in attempts if not a.ok]
    kinds = Counter(a.error for a in failed)
    label = ", ".join(k for k, _ in kinds.most_common() if k)
    noun = "probe" if len(failed) == 1 else "probes"
    return f"{len(failed)} failed {noun} ({label})"


def decide(attempts: Sequence[Attempt], view: ProcessView | None, pm2_problem: str | None = None) -> Decision:
    """What to do about one app, given this run's probes and PM2's view of the process."""
    inputs: dict[str, Any] = {
        "probes": len(attempts),
        "failed": sum(1 for a in attempts if not a.ok),
        "errors": sorted({a.error for a in attempts if a.error}),
    }
    if view is not None:
        inputs["pm2_status"] = view.status
        inputs["instances"] = len(view.instances)
    if attempts and attempts[-1].ok:
        return Decision("none", "healthy", inputs)
    failures = failure_summary(attempts)
    if view is None:
        return Decision("escalate", f"{failures}, and PM2 could not be read: {pm2_problem}", inputs)
    if not view.known:
        return Decision("escalate", f"{failures}, and PM2 has no process named {view.name!r}", inputs)
    status = view.status
    if status in RUNNING:
        return Decision("restart", f"hung: PM2 says {status} but {failures}", inputs)
    if status in ERRORED:
        return Decision("restart", f"errored: PM2 gave up restarting it (crash loop), {failures}", inputs)
    if status in RESTARTING:
        return Decision("wait", f"PM2 is already restarting it (status {status!r}), {failures}", inputs)
    if status in STOPPED:
        return Decision("none", f"stopped by an operator (pm2 status {status!r}); left alone", inputs)
    return Decision("escalate", f"{failures}, PM2 status {status!r} is not one this tool acts on", inputs)


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
        return Decision("none", f"already restarted by run {other_run[:8]} and verified healthy", inputs)
    return Decision("escalate", f"already restarted by run {other_run[:8]} without recovery ({last.type})", inputs)
