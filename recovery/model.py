"""Read models the pure core takes as arguments: what the history says, as plain values.

Built by `projections` (from SQL) or by `replay` (from events in memory); read by `policy`.
Imports nothing that does I/O.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from .units import format_ts, parse_ts

# States an app can be in. `paused` is a state too, but only while `paused_until` lies ahead.
UP_STATES = {"healthy", "degraded"}
DOWN_STATES = {"down", "recovering", "suspended", "stopped"}
# An interval between two checks longer than this is not counted as up or down time:
# nobody was looking (the watcher itself was not running).
MAX_GAP_S = 900.0
# What a state means as a Nagios exit code, for `recovery check` and `recovery status` alike.
STATE_CODES = {"healthy": 0, "paused": 0, "degraded": 1, "recovering": 1, "down": 2, "suspended": 2, "stopped": 2}


@dataclass(frozen=True)
class History:
    """What the event history says about one app, as the policy needs it."""

    state: str = "unknown"
    since: str | None = None
    paused_until: str | None = None
    pause_reason: str | None = None
    paused_at: str | None = None  # when the pause in force was started
    suspended_at: str | None = None
    suspend_reason: str | None = None
    last_restart_at: str | None = None  # our last automatic restart
    # (at, decision code) of our automatic restarts counted for the ceiling
    recent_restarts: tuple[tuple[str, str], ...] = ()
    open_incident: int | None = None
    # Whether the app's configured URL ever answered (a probe.succeeded with that url); None: unknown
    url_answered: bool | None = None
    # PM2's own restarts (crashes, memory limit: not ours, not an operator's) within the window
    pm2_restarts: int = 0


def opens_incident(state: str, code: str) -> bool:
    """Whether a decision opens an incident when none is open: a failure in the warm-up grace
    after our restart does not (that restart's incident was closed by its verification, and
    warm-up is not a new failure); it joins an incident that is open."""
    return state in ("down", "recovering", "suspended") and code != "warming_up"


def restarts_count_since(now: _dt.datetime, window: float, lifted_at: str | None) -> str:
    """Our restarts count towards the ceiling from the window's start, or from the last lift of a
    suspension when that is later (a lifted app starts afresh)."""
    start = format_ts(now - _dt.timedelta(seconds=window))
    return lifted_at if lifted_at and lifted_at > start else start


def observed_gap(last_check_at: str, ts: str) -> float:
    """The seconds from the last check to this one that count for the state the app was in: none
    when the gap is longer than MAX_GAP_S (nobody was looking) or not positive."""
    gap = (parse_ts(ts) - parse_ts(last_check_at)).total_seconds()
    return gap if 0 < gap <= MAX_GAP_S else 0.0


def suspension_kept(state: str, code: str, suspended_at: str | None) -> str:
    """The state a decision concludes, once folded. Only a `restart_loop` decision starts a
    suspension: a `suspended` one was taken from a suspension that an operator may have lifted
    while the run probed (`recovery resume` during `watch`); it must not suspend the app again,
    nor quote its own reason inside a new one."""
    if state == "suspended" and suspended_at is None and code == "suspended":
        return "down"
    return state
