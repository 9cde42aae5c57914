"""`recovery replay`: the recorded history run through the policy again, under other settings.

At each point where a recorded check decided about an app, the policy decides again from the
same observations (re-judged under the new timeout, retries and expected status) and from a
history folded in memory from the replayed decisions. Possible because the policy is pure:
the same inputs give the same decision, so a replay with no changed setting changes nothing.

`load` reads the store; everything after it is pure.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as _dt
import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from . import policy
from .config import AppConfig, app_value
from .errors import ConfigError
from .events import format_ts, parse_ts
from .model import DOWN_STATES, UP_STATES, History, observed_gap, opens_incident, restarts_count_since, suspension_kept
from .observations import Attempt, Instance, Observations, Pm2Daemon, ProcessView
from .urls import shown_url

LOCK_CODES = ("already_recovered", "already_restarted", "lock_timeout")
# Re-decided under the daemon lock: PM2's daemon ran again (this run or another resurrected it),
# or this run's resurrect had already failed.
DAEMON_LOCK_ACTIONS = ("wait", "escalate")


# -- settings -----------------------------------------------------------------------------------


# The app keys a replay can change; each value is read as the config file reads it.
SETTINGS = (
    "timeout",
    "retries",
    "retry_delay",
    "expect_status",
    "slow_threshold",
    "verify_timeout",
    "max_restarts",
    "window",
    "restart_grace",
)


def _setting(key: str, text: str) -> Any:
    """A `--set` value as the config's own converter takes it: a whole number as a TOML integer,
    anything else as a string; `slow_threshold=off` for none."""
    if key == "slow_threshold" and text.lower() in ("", "off", "none"):
        return None
    return app_value(key, int(text) if text.isdigit() else text)


def parse_settings(pairs: Iterable[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` options as AppConfig fields; a ConfigError names the bad one."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--set {pair!r}: use KEY=VALUE, e.g. timeout=1s")
        if key not in SETTINGS:
            raise ConfigError(f"--set {pair!r}: {key!r} cannot be replayed (use {', '.join(SETTINGS)})")
        try:
            out[key] = _setting(key, value.strip())
        except ValueError as exc:
            raise ConfigError(f"--set {pair!r}: {exc}") from None
    return out


# -- what was recorded ----------------------------------------------------------------------------


@dataclass
class Point:
    """One recorded decision about an app, with what it was decided on and what followed.

    Probes and the PM2 sample are kept as read, [ok, attempt, latency_ms, status, error] each and
    [status, known, source, pid, instance count, error], or as their JSON text from the
    decision_points projection, parsed only when the point must be decided again.
    """

    seq: int
    ts: str
    run_id: str
    probes: Any  # a list of probe rows, or its JSON text
    sample: Any  # the sample row, its JSON text, or None
    action: str
    code: str
    state: str
    dry_run: bool = False
    restarted_at: str | None = None  # our restart after it (restart.requested by the check)
    verified: bool | None = None  # its verification, when there was one
    summary: tuple[int, int, float | None, int | None] | None = None  # probes, failed, first latency and status

    def probe_summary(self) -> tuple[int, int, float | None, int | None]:
        """(probes, failed probes, the first one's latency_ms and status), without parsing when known."""
        if self.summary is None:
            rows = self.probe_rows()
            first = rows[0] if rows else [None, None, None, None, None]
            self.summary = (len(rows), sum(1 for r in rows if not r[0]), first[2], first[3])
        return self.summary

    def probe_rows(self) -> list[Any]:
        if isinstance(self.probes, str):
            self.probes = json.loads(self.probes)
        rows: list[Any] = self.probes
        return rows

    def attempts(self) -> tuple[Attempt, ...]:
        return tuple(
            Attempt(bool(ok), int(n or 1), "", float(ms or 0.0), status=status, error=None if ok else error or "error")
            for ok, n, ms, status, error in self.probe_rows()
        )

    def observed(self, app: str, attempts: tuple[Attempt, ...]) -> Observations:
        sample = json.loads(self.sample) if isinstance(self.sample, str) else self.sample
        if sample is None:
            return Observations(attempts, None, "no PM2 sample recorded")
        status, known, source, pid, count, error, *more = sample
        daemon = Pm2Daemon(**more[0]) if more and isinstance(more[0], dict) else None
        young = more[1:6] if len(more) >= 6 else None
        if error:
            return Observations(attempts, None, str(error), daemon=daemon)
        if known is not None and not known:
            return Observations(attempts, ProcessView(app, source or "jlist", ()), daemon=daemon)
        members = [Instance(app, i, pid if i == 0 else None, status or "unknown") for i in range(count or 1)]
        if young:  # a young instance, for the crash-loop rule
            inst_status, age, restart_time, unstable_restarts, exit_code = young
            online = inst_status == "online"
            members[-1] = dataclasses.replace(
                members[-1],
                status=inst_status or members[-1].status,
                uptime_s=age if online else None,
                since_start_s=None if online else age,
                restart_time=restart_time,
                unstable_restarts=unstable_restarts,
                exit_code=exit_code,
            )
        return Observations(attempts, ProcessView(app, source or "jlist", tuple(members)), daemon=daemon)


@dataclass(frozen=True)
class Operator:
    """Something an operator did that the policy's history remembers."""

    seq: int
    ts: str
    type: str  # maintenance.started, maintenance.ended, suspension.lifted, verification.passed
    until: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Answered:
    """The first time a URL of the app answered a probe (a refused URL that never did is a wrong URL)."""

    seq: int
    ts: str
    url: str


@dataclass(frozen=True)
class Pm2Restarted:
    """PM2 restarted the app on its own (`count` times), as a sample revealed."""

    seq: int
    ts: str
    count: int


Step = Union["Point", "Operator", "Healthy", "Answered", "Pm2Restarted"]

_OPERATOR_TYPES = ("maintenance.started", "maintenance.ended", "suspension.lifted")
_TYPES = (
    "probe.batched",
    "probe.succeeded",
    "probe.failed",
    "process.sampled",
    "decision.made",
    "restart.requested",
    "restart.failed",
    "verification.passed",
    "verification.failed",
    "process.restarted",
    *_OPERATOR_TYPES,
)


def steps_from(events: Iterable[Any]) -> dict[str, list[Step]]:
    """Each app's replayable steps from its events in seq order, read as the decision_points
    projection folds them (for the events after its last fold, and stores without it)."""
    from .projections import RunObservations, decision_code

    out: dict[str, list[Step]] = {}
    seen = RunObservations()
    points: dict[tuple[str, str], Point] = {}
    answered: set[tuple[str, str]] = set()
    for e in events:
        if e.app is None:
            if e.type == "restart.requested":  # `pm2 resurrect`: one event for every app it names
                for name in e.data.get("apps") or ():
                    point = points.get((name, e.run_id or ""))
                    if point is not None:
                        point.restarted_at = e.ts
            continue
        key, d = (e.app, e.run_id or ""), e.data
        if e.type == "probe.succeeded" and d.get("url") and (e.app, str(d["url"])) not in answered:
            answered.add((e.app, str(d["url"])))
            out.setdefault(e.app, []).append(Answered(e.seq, e.ts, str(d["url"])))
        if e.type == "probe.batched":
            if d.get("url") and (e.app, str(d["url"])) not in answered:
                answered.add((e.app, str(d["url"])))
                out.setdefault(e.app, []).append(Answered(e.seq, str(d["start"]), str(d["url"])))
            out.setdefault(e.app, []).extend(batched_points(e.seq, d))
        elif e.type == "process.restarted":
            out.setdefault(e.app, []).append(Pm2Restarted(e.seq, e.ts, int(d.get("count") or 1)))
        elif e.type in ("probe.succeeded", "probe.failed", "process.sampled"):
            if key not in points:
                seen.see(e.app, e.run_id, e.type, d)
        elif e.type == "decision.made":
            probes, sample = seen.take(e.app, e.run_id) or ([], None)
            action, state, dry_run = d.get("action") or "none", d.get("state") or "down", bool(d.get("dry_run"))
            points[key] = Point(e.seq, e.ts, key[1], probes, sample, action, decision_code(d), state, dry_run)
            out.setdefault(e.app, []).append(points[key])
        elif e.type == "restart.requested":
            if key in points and d.get("by", "check") == "check":
                points[key].restarted_at = e.ts
        elif e.type in ("restart.failed", "verification.failed", "verification.passed"):
            if key in points:
                points[key].verified = e.type == "verification.passed"
            elif e.type == "verification.passed":
                out.setdefault(e.app, []).append(Operator(e.seq, e.ts, e.type))  # an operator's restart came back
        else:
            out.setdefault(e.app, []).append(
                Operator(e.seq, e.ts, e.type, until=d.get("until"), reason=d.get("reason"))
            )
    return out


def batched_points(seq: int, data: dict[str, Any]) -> list[Point]:
    """A `probe.batched` event as the healthy checks it stands for: at each probe's own time, one
    answered probe and the cheap sample (the pid, online), decided healthy."""
    from .batching import batch_probes

    status, pid = data.get("status"), data.get("pid")
    sample = ["online", True, "pidfile", pid, 1, None]
    return [
        Point(
            seq, ts, "", [[True, 1, ms, status, None]], sample, "none", "healthy", "healthy", summary=(1, 0, ms, status)
        )
        for ts, ms in batch_probes(data)
    ]


def _batch_steps(seq: int, data: dict[str, Any], app: AppConfig) -> list[Step]:
    """A batch from the store: one Healthy step when each of its answers is healthy again under
    `app`'s settings (in time, not slow, an expected status), else a Point per probe."""
    from .batching import batch_probes

    probes = batch_probes(data)
    status = data.get("status")
    limit = min(app.timeout, app.slow_threshold if app.slow_threshold is not None else app.timeout) * 1000
    if probes and status is not None and app.status_ok(int(status)) and all(ms <= limit for _, ms in probes):
        return [Healthy(seq, probes[0][0], probes[-1][0], len(probes))]
    return list(batched_points(seq, data))


def _events(store: Any, types: Sequence[str], apps: Sequence[str], after: int) -> list[Any]:
    return [e for e in store.query(types=types, after_seq=after) if e.app in apps]


@dataclass(frozen=True)
class Healthy:
    """A run of recorded healthy checks that are healthy again under the replayed settings."""

    seq: int
    ts: str
    last_ts: str
    count: int


def load(store: Any, apps: Sequence[AppConfig], since: str | None) -> dict[str, list[Step]]:
    """The replayable steps of `apps` (with the settings to replay) recorded since `since`.

    From the decision_points projection, so months load fast: runs of checks that stay healthy
    come as one step; the operators' events and the events after the projection's last fold
    are read from the events. A store without the projection is read from the events alone.
    """
    from . import projections

    names = [a.name for a in apps]
    start = store.first_seq_since(since) if since is not None else 0
    folded = projections.folded_for_replay(store.conn)
    if folded is None:
        return steps_from(_events(store, _TYPES, names, start - 1))
    out: dict[str, list[Step]] = {}
    for app in apps:
        steps = out.setdefault(app.name, [])
        slow_ms = app.slow_threshold * 1000 if app.slow_threshold is not None else None
        rows = projections.decision_points(
            store.conn,
            app.name,
            start,
            folded,
            limit_ms=app.timeout * 1000,
            slow_ms=slow_ms,
            expect_status=app.expect_status,
        )
        for row in rows:
            if row[0]:
                steps.append(Healthy(row[1], row[2], row[3], row[4]))
                continue
            run_id, action, code, state, dry_run, probes, sample, restarted_at, verified, *summary = row[5:]
            point = Point(
                row[1], row[2], run_id or "", probes, sample, action, code, state, bool(dry_run), restarted_at
            )
            point.verified = None if verified is None else bool(verified)
            point.summary = (summary[0], summary[1], summary[2], summary[3])
            steps.append(point)
    extra: dict[str, list[Step]] = {}
    for e in _events(store, _OPERATOR_TYPES, names, start - 1):
        if e.seq <= folded:
            extra.setdefault(e.app, []).append(Operator(e.seq, e.ts, e.type, e.data.get("until"), e.data.get("reason")))
    for seq, ts, app_name in projections.operator_verifications(store.conn, names, start, folded):
        extra.setdefault(app_name, []).append(Operator(seq, ts, "verification.passed"))
    for seq, ts, app_name, url in projections.answered_urls(store.conn, names):
        if seq <= folded:  # also before `since`: an answer then still counts
            extra.setdefault(app_name, []).append(Answered(seq, ts, url))
    for seq, ts, app_name, count in projections.pm2_restart_rows(store.conn, names, 0, folded):
        extra.setdefault(app_name, []).append(Pm2Restarted(seq, ts, count))
    by_name = {a.name: a for a in apps}
    for seq, app_name, data in projections.batched_rows(store.conn, names, start, folded):
        extra.setdefault(app_name, []).extend(_batch_steps(seq, json.loads(data), by_name[app_name]))
    tail = steps_from(_events(store, _TYPES, names, max(folded, start - 1)))
    for name in out:
        if name in extra:
            out[name] = sorted(out[name] + extra[name], key=lambda step: step.seq)
        out[name] += tail.get(name, [])
    return out


# -- the replay -----------------------------------------------------------------------------------


@dataclass
class Totals:
    failed_probes: int = 0
    restarts: int = 0
    incidents: int = 0
    downtime_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "downtime_s": round(self.downtime_s, 1)}


class Fold:
    """The app's history as the policy reads it, folded in memory like the projections fold it."""

    def __init__(self) -> None:
        self.state = "unknown"
        self.paused_until: str | None = None
        self.pause_reason: str | None = None
        self.paused_at: str | None = None
        self.suspended_at: str | None = None
        self.suspend_reason: str | None = None
        self.lifted_at: str | None = None
        self.restarts: list[tuple[str, str]] = []  # (at, code) of our automatic restarts, oldest first
        self.restart_ats: list[str] = []  # their times, for bisect
        self.last_check_at: str | None = None
        self.incident_open = False
        self.totals = Totals()
        self.answered: set[str] = set()  # the URLs that ever answered
        self.pm2_ats: list[str] = []  # when PM2 restarted the app on its own, oldest first
        self.pm2_totals: list[int] = []  # how many times in all, up to each of them

    def history(self, now: _dt.datetime, window: float, url: str | None = None) -> History:
        counting_since = restarts_count_since(now, window, self.lifted_at)
        return History(
            state=self.state,
            paused_until=self.paused_until,
            pause_reason=self.pause_reason,
            paused_at=self.paused_at,
            suspended_at=self.suspended_at,
            suspend_reason=self.suspend_reason,
            last_restart_at=self.last_restart_at(),
            recent_restarts=tuple(self.restarts[bisect.bisect_right(self.restart_ats, counting_since) :]),
            url_answered=None if url is None else bool({url, shown_url(url)} & self.answered),
            pm2_restarts=self.pm2_restarts_since(format_ts(now - _dt.timedelta(seconds=window))),
        )

    def last_restart_at(self) -> str | None:
        """Our last restart, unless a lifted suspension came after it (a lift starts afresh)."""
        last = self.restarts[-1][0] if self.restarts else None
        return None if last and self.lifted_at and last <= self.lifted_at else last

    def pm2_restarted(self, ts: str, count: int) -> None:
        self.pm2_ats.append(ts)
        self.pm2_totals.append((self.pm2_totals[-1] if self.pm2_totals else 0) + count)

    def pm2_restarts_since(self, since: str) -> int:
        i = bisect.bisect_right(self.pm2_ats, since)
        before = self.pm2_totals[i - 1] if i else 0
        return (self.pm2_totals[-1] if self.pm2_totals else 0) - before

    @classmethod
    def from_history(cls, base: History) -> Fold:
        """A fold that continues from `base` (the history the store gave)."""
        fold = cls()
        fold.state = base.state
        fold.paused_until, fold.pause_reason, fold.paused_at = base.paused_until, base.pause_reason, base.paused_at
        fold.suspended_at, fold.suspend_reason = base.suspended_at, base.suspend_reason
        fold.restarts = list(base.recent_restarts)
        fold.restart_ats = [at for at, _ in fold.restarts]
        fold.incident_open = base.open_incident is not None
        return fold

    def point(self, step: Point) -> None:
        """A recorded decision, and our restart and verification after it, as they went."""
        self.decided(step.ts, step.state, step.code)
        if step.restarted_at:
            self.restarted(step.restarted_at, step.code)
        if step.verified is not None:
            self.verified(step.ts, step.verified)

    def decided(self, ts: str, state: str, code: str) -> None:
        """A decision concluding `state`, with its code."""
        state = suspension_kept(state, code, self.suspended_at)
        if self.last_check_at is not None and self.state in DOWN_STATES and state != "paused":
            self.totals.downtime_s += observed_gap(self.last_check_at, ts)
        self.last_check_at = ts
        if state == "paused":
            return
        if state in UP_STATES:
            self.incident_open = False
            self._lift(ts)
        elif state in ("down", "recovering", "suspended"):
            if not self.incident_open and opens_incident(state, code):
                self.incident_open = True
                self.totals.incidents += 1
            if state == "suspended" and self.suspended_at is None:
                self.suspended_at, self.suspend_reason = ts, code
        elif state == "stopped":
            self.incident_open = False
        self.state = state

    def restarted(self, ts: str, code: str) -> None:
        self.restarts.append((ts, code))
        self.restart_ats.append(ts)
        self.totals.restarts += 1
        self.state = "recovering"

    def verified(self, ts: str, passed: bool) -> None:
        if passed:
            self.state = "healthy"
            self.incident_open = False
            self._lift(ts)
        else:
            self.state = "down"

    def operator(self, step: Operator) -> None:
        if step.type == "maintenance.started":
            self.paused_until, self.pause_reason, self.paused_at = step.until, step.reason, step.ts
        elif step.type == "maintenance.ended":
            self.paused_until = self.pause_reason = self.paused_at = None
        elif step.type == "suspension.lifted":
            self._lift(step.ts)
            if self.state == "suspended":
                self.state = "down"
        elif step.type == "verification.passed":
            self.verified(step.ts, True)

    def _lift(self, ts: str) -> None:
        if self.suspended_at is not None:
            self.suspended_at, self.suspend_reason, self.lifted_at = None, None, ts


def history_with(
    base: History, events: Sequence[Any], now: _dt.datetime, window: float, url: str | None = None
) -> History:
    """`base` with one app's `events` folded on top: the history the policy reads when some of
    the record is still in the spool (the store unusable or locked), so that loop protection,
    warm-up and the one-restart guard hold without the store."""
    fold = Fold.from_history(base)
    for steps in steps_from(events).values():
        for step in steps:
            if isinstance(step, Operator):
                fold.operator(step)
            elif isinstance(step, Point):
                fold.point(step)
            elif isinstance(step, Answered):
                fold.answered.add(step.url)
            elif isinstance(step, Pm2Restarted):
                fold.pm2_restarted(step.ts, step.count)
    folded = fold.history(now, window, url)
    answered = True if folded.url_answered else base.url_answered
    return dataclasses.replace(
        folded,
        since=base.since,
        open_incident=base.open_incident,
        url_answered=answered,
        pm2_restarts=base.pm2_restarts + folded.pm2_restarts,
    )


@dataclass(frozen=True)
class Change:
    at: str
    recorded: tuple[str, str]  # (action, code)
    replayed: tuple[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "recorded": {"action": self.recorded[0], "code": self.recorded[1]},
            "replayed": {"action": self.replayed[0], "code": self.replayed[1]},
        }


@dataclass
class AppReplay:
    app: str
    decisions: int = 0
    recorded: Totals = field(default_factory=Totals)
    replayed: Totals = field(default_factory=Totals)
    changed: list[Change] = field(default_factory=list)
    assumed: dict[str, int] = field(default_factory=dict)  # what the replay had to assume, and how often

    @property
    def exact_until(self) -> str | None:
        """After the first decision that differs, the recorded world no longer follows the replayed one."""
        return self.changed[0].at if self.changed else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "recorded": self.recorded.to_dict(),
            "replayed": self.replayed.to_dict(),
            "changed": [c.to_dict() for c in self.changed],
            "exact_until": self.exact_until,
            "assumed": self.assumed,
        }


ASSUMPTIONS = {
    "extra_attempts": "attempts beyond those recorded were taken to answer like the last recorded one",
    "longer_timeout": "a recorded timeout was kept as a failure, though a longer timeout might have let it answer",
    "status_unknown": "a recorded failure without an HTTP status stays a failure under the new expected status",
    "lock": "decisions another run's restart settled were kept as recorded",
}


def rejudge(recorded: Sequence[Attempt], app: AppConfig, assumed: dict[str, int]) -> tuple[Attempt, ...]:
    """The attempts a check with `app`'s settings would have made, from the recorded ones."""
    if not recorded:
        return ()
    out: list[Attempt] = []
    for n in range(1, app.retries + 1):
        if n <= len(recorded):
            r = recorded[n - 1]
        else:
            r = recorded[-1]
            assumed["extra_attempts"] = assumed.get("extra_attempts", 0) + 1
        a = _judge(r, n, app, assumed)
        out.append(a)
        if a.ok:
            break
    return tuple(out)


def _judge(r: Attempt, n: int, app: AppConfig, assumed: dict[str, int]) -> Attempt:
    limit_ms = app.timeout * 1000
    if r.status is None:  # no answer: refused, reset, timed out ...
        if r.error == "timeout" and limit_ms > r.latency_ms * 1.05:
            assumed["longer_timeout"] = assumed.get("longer_timeout", 0) + 1
        return dataclasses.replace(r, attempt=n)
    if r.latency_ms > limit_ms:
        return Attempt(False, n, r.url, limit_ms, error="timeout", detail="replayed: slower than the timeout")
    if app.status_ok(r.status):
        return Attempt(True, n, r.url, r.latency_ms, status=r.status)
    return Attempt(False, n, r.url, r.latency_ms, status=r.status, error="status", detail=f"HTTP {r.status}")


def replay_app(name: str, steps: Sequence[Step], app: AppConfig) -> AppReplay:
    """Decide again at every recorded decision of one app under `app`'s settings."""
    out = AppReplay(name)
    recorded, replayed = Fold(), Fold()
    limit_ms = app.timeout * 1000
    slow_ms = app.slow_threshold * 1000 if app.slow_threshold is not None else None
    status_ok = functools.lru_cache(maxsize=None)(app.status_ok)
    for step in steps:
        if isinstance(step, Answered):
            recorded.answered.add(step.url)
            replayed.answered.add(step.url)
            continue
        if isinstance(step, Pm2Restarted):
            recorded.pm2_restarted(step.ts, step.count)
            replayed.pm2_restarted(step.ts, step.count)
            continue
        if isinstance(step, Operator):
            recorded.operator(step)
            replayed.operator(step)
            continue
        if isinstance(step, Healthy):
            out.decisions += step.count
            for world in (recorded, replayed):
                world.decided(step.ts, "healthy", "healthy")
                world.last_check_at = step.last_ts
            continue
        out.decisions += 1
        # The recorded world, as it went.
        n_probes, n_failed, latency, status = step.probe_summary()
        recorded.totals.failed_probes += n_failed
        recorded.point(step)
        # A recorded healthy answer that is still one in time, with the expected status and not
        # slow, is healthy again: for an answered probe the policy reads only the pause (the same
        # in both worlds), PM2's knowing the app (the same sample) and slow_threshold.
        if (
            step.code == "healthy"
            and n_probes == 1
            and n_failed == 0
            and (latency or 0.0) <= limit_ms
            and (slow_ms is None or (latency or 0.0) <= slow_ms)
            and status is not None
            and status_ok(status)
        ):
            replayed.decided(step.ts, "healthy", "healthy")
            continue
        # The replayed world: the same observations, re-judged, and the replayed history.
        now = parse_ts(step.ts)
        attempts = rejudge(step.attempts(), app, out.assumed)
        replayed.totals.failed_probes += sum(1 for a in attempts if not a.ok)
        decision = policy.decide(step.observed(name, attempts), replayed.history(now, app.window, app.url), app, now)
        if step.dry_run:
            decision = policy.dry_run(decision)
        daemon_lock = step.code == "pm2_down" and step.action in DAEMON_LOCK_ACTIONS
        if (step.code in LOCK_CODES or daemon_lock) and decision.action == "restart":
            out.assumed["lock"] = out.assumed.get("lock", 0) + 1
            verify = (daemon_lock and step.action == "wait") or decision.verify
            decision = dataclasses.replace(
                decision, action=step.action, code=step.code, state=step.state, verify=verify
            )
        replayed.decided(step.ts, decision.state, decision.code)
        acted = decision.action == "restart" and not decision.dry_run
        if acted:
            replayed.restarted(step.restarted_at or step.ts, decision.code)
        if (acted or (decision.action == "wait" and decision.verify)) and step.verified is not None:
            replayed.verified(step.ts, step.verified)
        if (decision.action, decision.code) != (step.action, step.code):
            out.changed.append(Change(step.ts, (step.action, step.code), (decision.action, decision.code)))
    out.recorded, out.replayed = recorded.totals, replayed.totals
    return out


@dataclass
class Replay:
    since: str | None
    settings: dict[str, Any]
    apps: list[AppReplay]

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "settings": {k: _setting_json(v) for k, v in self.settings.items()},
            "apps": {a.app: a.to_dict() for a in self.apps},
        }


def _setting_json(value: Any) -> Any:
    return [list(r) for r in value] if isinstance(value, tuple) else value


def replay(
    steps: dict[str, list[Step]], apps: Sequence[AppConfig], settings: dict[str, Any], since: str | None
) -> Replay:
    """Every app's replay under its own settings with `settings` laid over them."""
    return Replay(
        since,
        settings,
        [replay_app(a.name, steps.get(a.name, []), dataclasses.replace(a, **settings)) for a in apps],
    )


def replay_store(store: Any, apps: Sequence[AppConfig], settings: dict[str, Any], since: str | None) -> Replay:
    """Load the recorded history of `apps` since `since` and replay it under `settings`."""
    return replay(load(store, [dataclasses.replace(a, **settings) for a in apps], since), apps, settings, since)
