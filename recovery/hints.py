"""Root-cause hints: why does the app keep needing restarts? Small rules over one app's history,
each giving a kind, a one-line message, a confidence (0..1) and its evidence (event seqs,
incident ids, template ids, numbers).

    memory_leak             memory grows steadily within uptime windows; it claims the hangs that came near the limit or one level
    event_loop_blocked      hangs with the CPU pinned: a busy loop, a catastrophic regex, synchronous work
    stalled_on_io           hangs with the CPU idle: waiting on a DB pool, a lock, an upstream
    database_trouble        database connection error templates spike before incidents
    crash_loop              PM2 restarts the app itself, again and again, with errors
    schedule                incidents at one time of day on 3+ different days, or right after deploys
    restarts_treat_symptom  restarts rise week over week: restarting is not fixing anything

Pure: the history arrives as a `HintInput` (built from the store by `projections.hint_input`, or
by hand in tests); `evaluate(model)` gives the hints, strongest first. This module imports
nothing that does I/O, so a rule can be run on any history held in memory.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .stats import fit_line, time_of_day_clusters, unlikely_count
from .units import MB, ago, earlier, format_ts, mb, one_line, parse_ts, span, times

LOOKBACK_S = 7 * 86400.0  # hints read this far back unless told otherwise
WEEK_S = 7 * 86400.0
WEEKS = 4  # restarts_treat_symptom compares the last four weeks, whatever the period

PINNED_CPU = 80.0  # % of one core at the hang: the event loop is blocked
IDLE_CPU = 15.0  # % at the hang: the loop is idle, waiting
LEAK_MIN_SAMPLES = 5
LEAK_MIN_R2 = 0.6  # how well a straight line fits memory over an uptime window
LEAK_MIN_GROWTH = 16 * MB  # and at least this much growth, and LEAK_MIN_SHARE of the window's start
LEAK_MIN_SHARE = 0.2
SAME_LEVEL = 0.25  # hangs "near the same level": end levels within 25 % of each other
# A leak explains a hang only with a sign that memory caused it (else the hang is its CPU rule's):
NEAR_LIMIT = 0.85  # the hang's memory at this share of max_memory_restart or more
GC_PRESSURE = 0.9  # or V8's heap this full (PM2's axm heap metrics) with the CPU busy: the collector thrashing
FORECAST_RECENT = 1 / 3  # the forecast extends a line fitted to this last share of the window's samples
LEAK_ALONE = 0.6  # a leak that explains no hang: its own finding, below a clear cause of a hang
AFTER_DEPLOY_S = 1800.0
BEFORE_INCIDENT_MIN = 10.0
CRASH_TEMPLATES = 20  # the crash-loop rule names the top error among this many

# Decision codes (decision.made data["code"]) the rules compare; never the reason text.
# PM2 says the process runs, yet it does not answer (the app, or one worker of a cluster)
HANG_CODES = frozenset({"hung", "worker_hung"})
ERRORED_CODES = frozenset({"errored"})  # PM2 gave up restarting it
CYCLING_CODES = frozenset({"crash_loop", "errored"})  # the deciding check saw PM2 cycling it, or giving up
WAIT_CODES = frozenset({"pm2_restarting"})  # PM2 was bringing it back after a crash: the check waited
CRASH_YOUNG_S = 60.0  # a process PM2 started this recently, after a crash, is in a crash loop's cycle

DB_ERRORS = re.compile(
    # PostgreSQL's 5432 and the ports Debian gives further clusters (5433, 5434, ...), PgBouncer's
    # 6432, MySQL, MongoDB, Redis, SQL Server, Oracle, CockroachDB, Cassandra
    r"(ECONNREFUSED|ETIMEDOUT|ECONNRESET|EHOSTUNREACH)\S*\s+\S*:(543\d|6432|3306|33060|27017|6379|1433|1521|26257|9042)\b"
    r"|too many (connections|clients)|remaining connection slots"
    r"|\bpool\b.*\b(timeout|timed out|exhausted)|(timeout|timed out)\b.*\b(pool|acquir\w*)\b|KnexTimeoutError"
    r"|\bP(1001|1017|2024)\b|Can't reach database server|Server has closed the connection"
    r"|Connection terminated|MongoNetworkError|MongoServerSelectionError|SequelizeConnection\w*Error"
    r"|PROTOCOL_CONNECTION_LOST|ER_CON_COUNT_ERROR|the database system is (starting up|shutting down)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Hint:
    kind: str
    message: str
    confidence: float  # 0..1
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "confidence": self.confidence, "evidence": self.evidence}


# -- the read model: what the rules read -----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A process.sampled event that read PM2 (the ones that could not are left out)."""

    seq: int
    ts: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Incident:
    """An incident that began in the period, with what the check that opened it saw."""

    id: int
    started_at: str
    code: str  # the code of the decision that opened it: hung, worker_hung, errored, ...
    sample: Sample | None = None  # that check's process sample, taken just before it decided
    worker: int | None = None  # the pm_id of the cluster's worker it named as hung (worker_hung)
    # What the deciding check saw of PM2's process (its decision's inputs, else its sample)
    exit_code: int | None = None  # the last exit code PM2 recorded
    restart_time: int | None = None  # PM2's restart count
    unstable_restarts: int | None = None  # restarts PM2 counted as sooner than its min_uptime
    status: str | None = None  # PM2's status: online, errored, waiting restart, ...
    uptime_s: float | None = None  # since PM2 started the process (or marked it errored)
    recovered: bool = False  # it ended by itself, answering again with no restart, by the time looked at

    @property
    def hung(self) -> bool:
        """A hang: the process ran and did not answer. A crash loop's refused probes are not one."""
        return self.code in HANG_CODES and not self.crash_looping

    @property
    def crash_looping(self) -> bool:
        """Whether the deciding check saw PM2 cycling the process through crashes (or giving up):
        the code says so (crash_loop, errored), or PM2 was bringing back a young process whose
        last exit code was not 0 (pm2_restarting, unless it came back and answered), or, in a
        record older than those codes, a "hang" of a young process after unstable restarts."""
        if self.code in CYCLING_CODES or self.status in ERRORED_CODES:
            return True
        crashed = self.exit_code not in (None, 0)
        unstable = bool(self.unstable_restarts)
        if self.code in WAIT_CODES:
            return (crashed or unstable) and not self.recovered
        # PM2's own word (exits sooner than min_uptime), not an exit code that our restart may have left
        young = self.uptime_s is not None and self.uptime_s < CRASH_YOUNG_S
        return self.code in HANG_CODES and young and unstable

    @property
    def hang_sample(self) -> Sample | None:
        return self.sample if self.hung else None

    @property
    def cpu(self) -> float | None:
        """The CPU while the probes of a hang went unanswered (or PM2's figure when that was not measured);
        for one worker of a cluster, that worker's own, not the busiest process's."""
        return hang_cpu(self.own_data)[0] if self.hang_sample is not None else None

    @property
    def own_data(self) -> Mapping[str, Any]:
        """The hang's sample as it concerns the hung process: for one worker of a cluster, its entry."""
        d = self.hang_sample.data if self.hang_sample is not None else {}
        if self.worker is not None:
            return next((i for i in _instances(d) if i.get("pm_id") == self.worker), {})
        return d

    def hung_in(self, worker: int | None) -> bool:
        """Whether this hang was of `worker` (a pm_id; None: an app with one process)."""
        return self.worker is None or self.worker == worker


def hang_cpu(d: Mapping[str, Any]) -> tuple[float | None, str]:
    """The CPU the rules read from a process sample, and what it is: the demand of the event-loop
    thread over the probe window (`cpu_demand`), else the share of that window it ran
    (`cpu_window`), else PM2's own figure (`cpu`, an average PM2 took at its last poll, which can
    lag a loop that blocked since). `why` shows the same figure, so the timeline and the hint agree."""
    for key, what in (
        ("cpu_demand", "over the probe window"),
        ("cpu_window", "over the probe window"),
        ("cpu", "PM2's figure"),
    ):
        v = d.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v), what
    return None, ""


def _instances(d: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-worker entries of a cluster's sample ([] for one process)."""
    instances = d.get("instances")
    return [i for i in instances if isinstance(i, Mapping)] if isinstance(instances, list) else []


@dataclass(frozen=True)
class Restart:
    """A row of the restarts projection: ours (by check, schedule, operator) or PM2's own (by pm2)."""

    seq: int
    at: str
    by: str
    count: int = 1


@dataclass(frozen=True)
class Pm2Restart:
    """A process.restarted event: restarts PM2 made on its own, with their likely cause."""

    seq: int
    ts: str
    count: int = 1
    cause: str | None = None  # crash, memory limit, unknown
    exit_code: int | None = None
    template_id: str | None = None  # the error template that pointed at a crash
    workers: tuple[int, ...] = ()  # the pm_ids of a cluster's workers it restarted


@dataclass(frozen=True)
class Deploy:
    """A maintenance.ended event: a pause (usually a deploy) ended."""

    seq: int
    ts: str


@dataclass(frozen=True)
class TemplateCount:
    """An error template and how many entries it had in a window."""

    template_id: str
    template: str | None
    count: int


@dataclass(frozen=True)
class TemplateBeforeIncidents:
    """An error template seen in the minutes before incidents, against its rate elsewhere."""

    template_id: str
    template: str | None
    example: str | None
    before_incidents: int  # entries in the windows before incidents
    expected: float  # entries due in those windows at its rate elsewhere
    lift: float | None  # before_incidents / expected; None when never seen elsewhere
    incident_ids: tuple[int, ...]  # the incidents it preceded


@dataclass(frozen=True)
class ErrorsBeforeIncidents:
    """Error templates before the incidents of the period (see logs.incidents)."""

    incidents: tuple[int, ...] = ()  # the incidents looked at (those with raw log entries kept)
    templates: tuple[TemplateBeforeIncidents, ...] = ()  # ranked, most incidents preceded first


@dataclass(frozen=True)
class HintInput:
    """One app's history from `since` to `now`, as the rules read it."""

    app: str
    since: str  # an event timestamp
    now: _dt.datetime
    incidents: tuple[Incident, ...] = ()  # begun in the period, oldest first
    samples: tuple[Sample, ...] = ()  # the period's newest process samples, oldest first
    restarts: tuple[Restart, ...] = ()  # from `since` or WEEKS before now, whichever is earlier, oldest first
    pm2_restarts: tuple[Pm2Restart, ...] = ()  # in the period
    deploys: tuple[Deploy, ...] = ()  # in the period
    before_incidents: ErrorsBeforeIncidents = ErrorsBeforeIncidents()
    crash_errors: tuple[TemplateCount, ...] = ()  # top templates from crash_errors_from(model) to now

    @property
    def until(self) -> str:
        return format_ts(self.now)


def evaluate(model: HintInput) -> list[Hint]:
    """Every hint the history gives, strongest first."""
    leak = _leak(model)  # two rules set aside the hangs a leak explains: worked out once
    found = [hint for rule in RULES if (hint := rule(model, leak)) is not None]
    found.sort(key=lambda h: (-h.confidence, h.kind))
    return found


def strongest(model: HintInput) -> Hint | None:
    """The strongest hint, or None (for `recovery status` and alert messages)."""
    found = evaluate(model)
    return found[0] if found else None


def crash_errors_from(model: HintInput) -> str | None:
    """Where the crash-loop rule counts error templates from (`HintInput.crash_errors`): some minutes
    before the first PM2 restart or crash-loop incident (so the first incident has its errors);
    None when the history shows no crash loop."""
    loop = _crash_loop(model)
    return None if loop is None else earlier(parse_ts(loop.first), 60 * BEFORE_INCIDENT_MIN)


# -- helpers -----------------------------------------------------------------------------------


def _rate(bytes_per_s: float) -> str:
    per_min = bytes_per_s * 60 / MB
    if per_min >= 60:
        return f"{bytes_per_s / MB:.1f}MB/s"
    if per_min >= 1:
        return f"{per_min:.1f}MB/min"
    return f"{per_min * 60:.1f}MB/h"


def _conf(x: float) -> float:
    return round(max(0.0, min(0.95, x)), 2)


def _db_templates(model: HintInput) -> list[TemplateBeforeIncidents]:
    """The templates before incidents that are database connection errors."""
    return [t for t in model.before_incidents.templates if DB_ERRORS.search(f"{t.template or ''}\n{t.example or ''}")]


# -- memory ------------------------------------------------------------------------------------


@dataclass
class _Window:
    """One uptime window: the samples of one process (one pid) in a row."""

    key: Any
    worker: int | None = None  # its pm_id in a cluster (each worker leaks or not on its own)
    points: list[tuple[int, float, int]] = field(default_factory=list)  # (seq, seconds, memory)
    ended: bool = False
    fit: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fitted: int = 0  # samples the line was fitted to
    used: list[tuple[float, float]] = field(default_factory=list)  # those samples: (seconds, memory)

    @property
    def growth(self) -> float:
        return self.fit[1] * (self.points[-1][1] - self.points[0][1])

    @property
    def leaking(self) -> bool:
        if self.fitted < LEAK_MIN_SAMPLES or self.fit[1] <= 0 or self.fit[2] < LEAK_MIN_R2:
            return False
        start = self.fit[0] + self.fit[1] * self.points[0][1]
        return self.growth >= max(LEAK_MIN_GROWTH, LEAK_MIN_SHARE * max(start, 0.0))

    @property
    def end_level(self) -> int:
        return max(m for _, _, m in self.points[-2:])


def _memory_points(samples: tuple[Sample, ...]) -> list[tuple[int | None, Any, int, str, int]]:
    """(worker, pid, seq, ts, memory) per process per sample: a cluster's sample gives one per
    worker (its own memory, not the sum), another sample one with worker None."""
    out: list[tuple[int | None, Any, int, str, int]] = []
    for s in samples:
        d = s.data
        if d.get("after_restart"):
            continue
        instances = _instances(d)
        if instances:
            for i in instances:
                if i.get("pid") and isinstance(i.get("memory"), int) and isinstance(i.get("pm_id"), int):
                    out.append((i["pm_id"], i["pid"], s.seq, s.ts, i["memory"]))
        elif d.get("pid") and isinstance(d.get("memory"), int):
            out.append((None, d["pid"], s.seq, s.ts, d["memory"]))
    return out


def _windows(samples: tuple[Sample, ...], hung: Mapping[int, Incident] | None = None) -> list[_Window]:
    """Samples split by process (each worker of a cluster on its own); the line is fitted without
    the samples taken at a hang of that process (`hung`: sample seq -> incident): a hung process
    serves nothing and stops allocating, which would bend the line."""
    hung = hung or {}
    t0 = parse_ts(samples[0].ts) if samples else None
    out: list[_Window] = []
    last: dict[int | None, _Window] = {}  # the open window of each worker
    for worker, pid, seq, ts, mem in _memory_points(samples):
        w = last.get(worker)
        if w is None or w.key != pid:
            if w is not None:
                w.ended = True
            w = last[worker] = _Window(pid, worker)
            out.append(w)
        assert t0 is not None
        w.points.append((seq, (parse_ts(ts) - t0).total_seconds(), mem))
    for w in out:
        fitted = [(t, float(m)) for seq, t, m in w.points if not (seq in hung and hung[seq].hung_in(w.worker))]
        if len(fitted) >= 2:
            w.fit = fit_line(fitted)
            w.fitted = len(fitted)
            w.used = fitted
    return out


def _recent(w: _Window) -> tuple[float, float]:
    """(memory at its last sample, bytes/s) for a forecast: the steeper of two lines, one fitted to the window's
    recent samples (its last FORECAST_RECENT share, LEAK_MIN_SAMPLES at least), one to all of it.
    A line over the whole window alone bends towards a flat warm-up or a leak that began late and
    says both the level and the rate too low (optimistic); the recent one alone, right after a
    jump at start-up, can still hold flat samples. Erring early is the safe side of a forecast."""
    recent = w.used[-max(LEAK_MIN_SAMPLES, int(len(w.used) * FORECAST_RECENT)) :]
    a, b, _ = fit_line(recent) if len(recent) >= 2 else w.fit
    if b < w.fit[1]:
        a, b, _ = w.fit
    return a + b * w.points[-1][1], b


@dataclass(frozen=True)
class _Leak:
    """The leak hint, and the incidents (ids) it explains: hangs at the end of a leaking window
    with a sign that memory caused them (see _memory_cause); other hangs stay their CPU rules'."""

    hint: Hint | None = None
    explained: frozenset[int] = frozenset()


def _memory_cause(inc: Incident, level: int, others: list[int], limit: int | None) -> str | None:
    """Why memory caused this hang at `level` (others: the levels of the app's other busy hangs), or None:
    near PM2's memory limit; or, the CPU not idle, near the level of other hangs or V8's heap full."""
    d = inc.own_data
    own_limit = d.get("max_memory_restart") if isinstance(d.get("max_memory_restart"), int) else limit
    if own_limit and level >= NEAR_LIMIT * own_limit:
        return "near max_memory_restart"
    if _idle(inc):  # memory that starves a process keeps its CPU busy (the collector); an idle loop waits
        return None
    if any(abs(level - o) <= SAME_LEVEL * max(level, o) for o in others):
        return "near the level of other hangs"
    used, total = d.get("heap_used"), d.get("heap_total")
    if isinstance(used, int) and isinstance(total, int) and total > 0 and used >= GC_PRESSURE * total:
        return "GC pressure"
    return None


def _idle(inc: Incident) -> bool:
    return inc.cpu is not None and inc.cpu <= IDLE_CPU


def _leak(model: HintInput) -> _Leak:
    hang_at = {inc.hang_sample.seq: inc for inc in model.incidents if inc.hang_sample is not None}
    windows = _windows(model.samples, hang_at)

    def hang_of(w: _Window, seq: int) -> Incident | None:
        inc = hang_at.get(seq)
        return inc if inc is not None and inc.hung_in(w.worker) else None

    leaking = [w for w in windows if w.leaking]
    if not leaking:
        return _Leak()
    # PM2's memory limit: the app's, or in a cluster each worker's (PM2 applies it per worker)
    limits = [
        d["max_memory_restart"]
        for s in model.samples
        for d in (s.data, *_instances(s.data))
        if isinstance(d.get("max_memory_restart"), int)
    ]
    limit = limits[-1] if limits else None
    limit_restarts = [r for r in model.pm2_restarts if r.cause == "memory limit"]
    for w in leaking:  # a hang that we restarted ends its window too
        w.ended = w.ended or any(hang_of(w, seq) for seq, _, _ in w.points[-2:])
    ended = [w for w in leaking if w.ended]
    at_end: dict[int, tuple[Incident, int]] = {}  # hangs at the end of a leaking window, with the level
    for w in ended:
        for seq, _, _ in w.points[-2:]:
            if (inc := hang_of(w, seq)) is not None:
                at_end[inc.id] = (inc, w.end_level)
    # the levels of the app's other hangs that were not idle (stalls that recur on a clock while a leak
    # restarts with each restart would come at one level too, by coincidence)
    levels_of = {
        i.id: m for i in model.incidents if i.hung and not _idle(i) and isinstance(m := i.own_data.get("memory"), int)
    }
    levels_of.update({iid: level for iid, (inc, level) in at_end.items() if not _idle(inc)})
    causes: dict[int, str] = {}
    for iid, (inc, level) in at_end.items():
        others = [m for other, m in levels_of.items() if other != iid]
        if (cause := _memory_cause(inc, level, others, limit)) is not None:
            causes[iid] = cause
    explained = set(causes)
    unexplained = sorted(set(at_end) - explained)
    hung_levels = [at_end[iid][1] for iid in sorted(explained)]
    # The window still open that leaks fastest (a cluster may have one per worker).
    current = max((w for w in leaking if not w.ended), key=lambda w: w.fit[1], default=None)
    if not ended and current is None:
        return _Leak()
    rate = max(w.fit[1] for w in leaking)
    conf = 0.45 if not ended else 0.7
    levels = [w.end_level for w in ended]
    same_level = len(levels) >= 2 and (max(levels) - min(levels)) <= SAME_LEVEL * max(levels)
    if len(ended) >= 2:
        conf += 0.1 if same_level else 0.05
    if explained or limit_restarts:
        conf += 0.1
    elif unexplained:  # memory caused nothing seen: the hangs go to their CPU rules at full strength
        conf = min(conf, LEAK_ALONE)
    workers = sorted({w.worker for w in leaking if w.worker is not None})
    of = (" of worker " + ", ".join(f"#{k}" for k in workers)) if workers else ""
    parts = [
        f"memory grows {_rate(rate)} within {len(leaking)} uptime window{'s' if len(leaking) > 1 else ''}{of}"
        f" (steady: a fitted line, r² {min(w.fit[2] for w in leaking):.2f})"
    ]
    if explained:
        parts.append(f"it hung at ~{mb(max(hung_levels))}" + (f" {len(explained)} times" if len(explained) > 1 else ""))
    elif limit_restarts:
        parts.append(f"PM2 restarted it at max_memory_restart {mb(limit or 0)} {len(limit_restarts)} time(s)")
    elif ended and not unexplained:
        parts.append(f"it was restarted at ~{mb(max(levels))}")
    if unexplained:
        far = mb(max(at_end[i][1] for i in unexplained))
        which = f"{len(unexplained)} hangs" if len(unexplained) > 1 else "a hang"
        parts.append(
            f"{which} at the end of a climb (~{far}) showed no sign memory caused {'them' if len(unexplained) > 1 else 'it'}"
            " (not near max_memory_restart nor the level of other hangs, no GC pressure): see the hang's own hint"
        )
    target, target_name = None, ""
    if limit:
        target, target_name = limit, f"max_memory_restart {mb(limit)}"
    elif hung_levels:
        target, target_name = min(hung_levels), f"the level where it hung ({mb(min(hung_levels))})"
    forecast = None
    if current is not None and target is not None:
        now_level, b = _recent(current)
        if target > now_level:
            forecast = (target - now_level) / b
            parts.append(f"at this rate it reaches {target_name} in {span(forecast)}")
    message = "memory leak: " + "; ".join(parts) + " (a heap snapshot, node --inspect, shows what is kept)"
    evidence: dict[str, Any] = {
        "growth_bytes_per_s": round(rate, 1),
        "windows": [
            {
                "pid": w.key,
                **({"pm_id": w.worker} if w.worker is not None else {}),
                "samples": len(w.points),
                "first_seq": w.points[0][0],
                "last_seq": w.points[-1][0],
                "start_bytes": w.points[0][2],
                "end_bytes": w.end_level,
                "r2": round(w.fit[2], 3),
                "bytes_per_s": round(w.fit[1], 1),
                "ended": w.ended,
            }
            for w in leaking
        ],
        "incidents": sorted(explained),
        "memory_limit_restarts": [r.seq for r in limit_restarts],
    }
    proofs = sorted(set(causes.values())) + (["PM2 memory-limit restarts"] if limit_restarts else [])
    if proofs:
        evidence["cause_evidence"] = "; ".join(proofs)
    if unexplained:
        evidence["unexplained_incidents"] = unexplained
    if limit:
        evidence["max_memory_restart"] = limit
    if hung_levels:
        evidence["hang_level_bytes"] = min(hung_levels)
    if forecast is not None and current is not None:
        evidence["forecast_s"] = round(forecast)
        evidence["forecast_from"] = next(s.ts for s in model.samples if s.seq == current.points[-1][0])
    return _Leak(Hint("memory_leak", message, _conf(conf), evidence), frozenset(explained))


def forecast_errors(models: Iterable[HintInput], limit_hit_at: str) -> list[tuple[str, float, float]]:
    """The leak forecast scored against what happened: (now, forecast_s, actual_s) for each model
    (the history as it stood at its `now`, before `limit_hit_at`) whose memory_leak hint gave a
    forecast; both count from the sample the forecast starts at (`evidence["forecast_from"]`).
    forecast_s - actual_s > 0 is optimistic: the limit came sooner than said."""
    hit = parse_ts(limit_hit_at)
    out = []
    for model in models:
        leak = _leak(model).hint
        if model.now >= hit or leak is None or "forecast_s" not in leak.evidence:
            continue
        actual = (hit - parse_ts(leak.evidence["forecast_from"])).total_seconds()
        out.append((model.until, float(leak.evidence["forecast_s"]), actual))
    return out


# -- the rules: (model, leak) -> Hint | None ------------------------------------------------------


def memory_leak(model: HintInput, leak: _Leak) -> Hint | None:
    return leak.hint


def _hangs(model: HintInput) -> list[Incident]:
    return [i for i in model.incidents if i.hung and i.cpu is not None]


def _cpu_source(incidents: list[Incident]) -> str:
    """' over the probe window' when every one of these hangs' CPU was measured so; ', PM2's figure'
    when any was PM2's own (the same words `why` puts beside the figure)."""
    whats = {hang_cpu(i.own_data)[1] for i in incidents}
    if whats == {"over the probe window"}:
        return " over the probe window"
    return ", PM2's figure" if "PM2's figure" in whats else ""


def _workers_of(incidents: list[Incident]) -> list[int]:
    """The pm_ids of the cluster workers these hangs were of, each once, in order."""
    return list(dict.fromkeys(i.worker for i in incidents if i.worker is not None))


def _in_workers(incidents: list[Incident]) -> str:
    """' in worker #2' / ' in workers #1, #3' when the hangs were of single workers of a cluster."""
    workers = _workers_of(incidents)
    if not workers:
        return ""
    return f" in worker{'s' if len(workers) > 1 else ''} " + ", ".join(f"#{k}" for k in workers)


def event_loop_blocked(model: HintInput, leak: _Leak) -> Hint | None:
    hung = _hangs(model)
    pinned = [i for i in hung if i.cpu is not None and i.cpu >= PINNED_CPU]
    if not pinned:
        return None
    own = [i for i in pinned if i.id not in leak.explained]
    # The CPU measured over each hang's probe window is the evidence. PM2's event-loop delay metric
    # is not: the app reports it from its own loop, so a blocked loop leaves PM2 its last value,
    # taken before the block (a few ms), which says nothing about the hang.
    evidence = {
        "incidents": [i.id for i in pinned],
        "sample_seqs": [i.hang_sample.seq for i in pinned if i.hang_sample],
        "cpu": [i.cpu for i in pinned],
        "hangs": len(hung),
    }
    cpu = max(i.cpu or 0.0 for i in pinned)
    workers = _workers_of(pinned)
    if workers:
        evidence["workers"] = workers
    if not own:
        message = (
            f"event loop blocked at high memory: {len(pinned)} hang(s) with the CPU pinned ({cpu:.0f}%) came at"
            " the end of a memory climb: the garbage collector thrashing (see the memory leak hint)"
        )
        return Hint("event_loop_blocked", message, 0.3, evidence)
    share = len(own) / len(hung)
    message = (
        f"event loop blocked: {len(own)} of {len(hung)} hangs had the CPU pinned ({cpu:.0f}%"
        f"{_cpu_source(own)}){_in_workers(own)}:"
        " a busy loop, a catastrophic regex or synchronous work; a CPU profile (node --cpu-prof) shows where"
    )
    return Hint("event_loop_blocked", message, _conf(0.5 + 0.35 * share + (0.05 if len(own) >= 2 else 0)), evidence)


def stalled_on_io(model: HintInput, leak: _Leak) -> Hint | None:
    hung = _hangs(model)
    idle = [i for i in hung if i.cpu is not None and i.cpu <= IDLE_CPU and i.id not in leak.explained]
    if not idle:
        return None
    db = _db_templates(model)
    idle_ids = {i.id for i in idle}
    with_db = sorted({iid for t in db for iid in t.incident_ids if iid in idle_ids})
    share = len(idle) / len(hung)
    cpu = max(i.cpu or 0.0 for i in idle)
    message = (
        f"stalled on I/O: {len(idle)} of {len(hung)} hangs with the CPU idle ({cpu:.0f}%"
        f"{_cpu_source(idle)}){_in_workers(idle)}:"
        " the server accepts"
        " connections but never answers, waiting on something (an exhausted DB pool, a lock, an upstream,"
        " a promise that never resolves)"
    )
    if with_db:
        message += f"; database errors came before {len(with_db)} of them"
    evidence = {
        "incidents": [i.id for i in idle],
        "sample_seqs": [i.hang_sample.seq for i in idle if i.hang_sample],
        "cpu": [i.cpu for i in idle],
        "hangs": len(hung),
        "db_templates": [t.template_id for t in db],
    }
    if _workers_of(idle):
        evidence["workers"] = _workers_of(idle)
    return Hint("stalled_on_io", message, _conf(0.45 + 0.3 * share + (0.1 if with_db else 0)), evidence)


def database_trouble(model: HintInput, leak: _Leak) -> Hint | None:
    db = [t for t in _db_templates(model) if unlikely_count(t.before_incidents, t.expected)]
    if not db:
        return None
    n = len(model.before_incidents.incidents)
    preceded = sorted({iid for t in db for iid in t.incident_ids})
    top = db[0]
    lift = "never seen otherwise" if top.lift is None else f"{top.lift:g}x its usual rate"
    example = f"“{one_line(top.template or top.example, 80)}” ({top.before_incidents}x in the {BEFORE_INCIDENT_MIN:g} min before, {lift})"
    evidence: dict[str, Any] = {
        "templates": [t.template_id for t in db],
        "incidents": preceded,
        "counts": {t.template_id: t.before_incidents for t in db},
        "lift": {t.template_id: t.lift for t in db},
    }
    # A database that does not answer leaves the event loop idle, waiting; a hang with the CPU
    # pinned is the app's own work, and the errors before it are context, not its cause.
    cpu = {i.id: i.cpu for i in model.incidents}
    pinned = [iid for iid in preceded if (cpu.get(iid) or 0.0) >= PINNED_CPU]
    idle = [iid for iid in preceded if iid not in pinned]
    if pinned:
        evidence["pinned"] = pinned
    if not idle:
        message = (
            f"database errors before {len(preceded)} of {n} incidents, e.g. {example}, but the CPU was pinned"
            " at each hang: context, not the cause (see event_loop_blocked)"
        )
        return Hint("database_trouble", message, 0.3, evidence)
    message = (
        f"database trouble: connection errors before {len(idle)} of {n} incidents, e.g. {example}:"
        " check the database, its connection limit and the app's pool size and timeouts"
    )
    conf = 0.55 + 0.3 * len(idle) / max(n, 1) + (0.1 if top.lift is None or top.lift >= 5 else 0)
    return Hint("database_trouble", message, _conf(conf), evidence)


@dataclass(frozen=True)
class _Loop:
    """What shows a crash loop in the period."""

    theirs: list[Restart]  # PM2's own restarts
    n: int  # how many of them were not at the memory limit
    looping: list[Incident]  # incidents whose deciding check saw PM2 cycling the process (or giving up)
    errored: list[Incident]  # those opened when PM2 had given up (status errored)

    @property
    def first(self) -> str:
        return min([r.at for r in self.theirs] + [i.started_at for i in self.looping])


def _crash_loop(model: HintInput) -> _Loop | None:
    """PM2's own restarts in the period, and the incidents whose deciding check saw PM2 cycling
    the process; None when that is not a crash loop (fewer than 3 such restarts, no such incident)."""
    since, until = model.since, model.until
    theirs = [r for r in model.restarts if r.by == "pm2" and since <= r.at <= until]
    memory = sum(r.count for r in model.pm2_restarts if r.cause == "memory limit")
    n = sum(r.count for r in theirs) - memory
    looping = [i for i in model.incidents if i.crash_looping]
    if n < 3 and not looping:
        return None
    return _Loop(theirs, n, looping, [i for i in looping if i.code in ERRORED_CODES])


def _gave_up(model: HintInput, loop: _Loop) -> str | None:
    """When PM2 first showed the app errored (it gave up restarting it) in the loop, if it did."""
    seen = [i.started_at for i in loop.looping if i.status in ERRORED_CODES or i.code in ERRORED_CODES]
    seen += [s.ts for s in model.samples if s.ts >= loop.first and s.data.get("status") in ERRORED_CODES]
    return min(seen) if seen else None


def _restart_count(model: HintInput, loop: _Loop) -> int | None:
    """PM2's restart count (restart_time) at its newest reading in the loop."""
    seen = [(i.started_at, i.restart_time) for i in loop.looping if i.restart_time is not None]
    seen += [
        (s.ts, s.data["restart_time"])
        for s in model.samples
        if s.ts >= loop.first and isinstance(s.data.get("restart_time"), int)
    ]
    return max(seen)[1] if seen else None


def crash_loop(model: HintInput, leak: _Leak) -> Hint | None:
    loop = _crash_loop(model)
    if loop is None:
        return None
    n, errored = loop.n, loop.errored
    crashes = [r for r in model.pm2_restarts if r.cause == "crash"]
    named = [r.template_id for r in crashes if r.template_id]
    tops = model.crash_errors
    top = next((t for t in tops if t.template_id in named), tops[0] if tops else None)
    count = _restart_count(model, loop)
    if n <= 0 and count is not None:  # no earlier reading to count from: PM2's own counter says
        parts = [f"crash loop: PM2 restarted it {count} time{'s' if count != 1 else ''} (its restart count)"]
    else:
        parts = [f"crash loop: PM2 restarted it {n} time{'s' if n != 1 else ''} on its own"]
        if count is not None and count != n:
            parts[0] += f" (restart count {count})"
    workers = sorted({k for r in model.pm2_restarts for k in r.workers})
    if workers:
        parts[0] += " (worker " + ", ".join(f"#{k}" for k in workers) + ")"
    gave_up = _gave_up(model, loop)
    if errored:
        parts[0] += f" and gave up (errored) {times(len(errored))}"
    elif gave_up is not None:
        parts[0] += f" and gave up (errored) {ago(model.now, gave_up)}"
    seen = [r.exit_code for r in crashes] + [i.exit_code for i in loop.looping if i.exit_code != 0]
    codes = sorted({c for c in seen if c is not None})
    if codes:
        parts.append(f"exit code {', '.join(map(str, codes))}")
    if top:
        parts.append(
            f"top error “{one_line(top.template, 80)}” ({top.count}x; `recovery errors show {top.template_id}`)"
        )
    else:
        parts.append("no error logs ingested: `recovery ingest` and `pm2 logs` show why it exits")
    # The deciding check saw PM2 cycling it (its own counters), not only a crash PM2 is recovering from.
    cycling = n >= 3 or any(i.code in CYCLING_CODES or i.unstable_restarts for i in loop.looping)
    conf = (
        0.5
        + (0.15 if gave_up is not None else 0)
        + (0.1 if codes else 0)
        + (0.15 if top else 0)
        + (0.05 if max(n, count or 0) >= 5 else 0)
        + (0.1 if cycling else 0)
    )
    evidence: dict[str, Any] = {
        "pm2_restarts": n,
        "restart_seqs": [r.seq for r in loop.theirs],
        "errored_incidents": [i.id for i in errored],
        "process_restarted": [r.seq for r in crashes],
        "exit_codes": codes,
        "templates": [top.template_id] if top else [],
        "incidents": [i.id for i in loop.looping],
    }
    if count is not None:
        evidence["restart_time"] = count
    if gave_up is not None:
        evidence["gave_up_at"] = gave_up
    if workers:
        evidence["workers"] = workers
    return Hint("crash_loop", "; ".join(parts), _conf(conf), evidence)


def schedule(model: HintInput, leak: _Leak) -> Hint | None:
    starts = [i.started_at for i in model.incidents]
    best: Hint | None = None
    for cluster in time_of_day_clusters(starts):
        k = len(cluster.members)
        message = (
            f"schedule: {k} of {len(starts)} incidents, on {cluster.days} different days, began"
            f" {cluster.clock()}: look for what runs then (cron jobs, backups, log rotation, batch traffic)"
        )
        hint = Hint(
            "schedule",
            message,
            _conf(0.4 + 0.45 * k / len(starts)),
            {
                "hours_utc": cluster.hours(),
                "days": cluster.days,
                "incidents": len(starts),
                "in_cluster": k,
                "incident_ids": [model.incidents[m].id for m in cluster.members],
            },
        )
        if best is None or hint.confidence > best.confidence:
            best = hint
    ends = [(d.seq, parse_ts(d.ts)) for d in model.deploys]
    if len(starts) >= 2 and ends:
        after = []
        for inc in model.incidents:
            t = parse_ts(inc.started_at)
            hit = [seq for seq, end in ends if 0 <= (t - end).total_seconds() <= AFTER_DEPLOY_S]
            if hit:
                after.append((inc.id, hit[-1]))
        if len(after) >= 2 and 2 * len(after) >= len(starts):
            message = (
                f"schedule: {len(after)} of {len(starts)} incidents began within {span(AFTER_DEPLOY_S)} after"
                " a maintenance window ended (a deploy?): the new release, or its warm-up, is the suspect"
            )
            hint = Hint(
                "schedule",
                message,
                _conf(0.45 + 0.4 * len(after) / len(starts)),
                {
                    "incident_ids": [i for i, _ in after],
                    "maintenance_seqs": [s for _, s in after],
                    "incidents": len(starts),
                },
            )
            if best is None or hint.confidence > best.confidence:
                best = hint
    return best


def restarts_treat_symptom(model: HintInput, leak: _Leak) -> Hint | None:
    """Restarts per week over the last four weeks (whatever the period): rising means no fix."""
    bounds = [earlier(model.now, k * WEEK_S) for k in range(WEEKS, -1, -1)]
    weeks = [0] * WEEKS
    for r in model.restarts:
        if not bounds[0] <= r.at <= bounds[-1]:
            continue
        for k in range(WEEKS):
            if bounds[k] <= r.at < bounds[k + 1] or (k == WEEKS - 1 and r.at == bounds[WEEKS]):
                weeks[k] += r.count
                break
    w1, w2, w3 = weeks[-3:]
    steady = w1 < w2 < w3 and w1 >= 1
    doubled = w2 >= 1 and w3 >= 2 * w2
    if w3 < 3 or not (steady or doubled):
        return None
    conf = 0.5 + (0.1 if steady else 0) + (0.1 if doubled and w3 >= 6 else 0)
    message = (
        f"restarts treat a symptom: restarts rise week over week ({', '.join(map(str, weeks))} in the last"
        " four weeks): restarting is not fixing the cause; see the other hints and"
        " `recovery errors --around-incidents`"
    )
    return Hint("restarts_treat_symptom", message, _conf(conf), {"restarts_per_week": weeks, "weeks_from": bounds[0]})


Rule = Callable[[HintInput, _Leak], Hint | None]
RULES: tuple[Rule, ...] = (
    memory_leak,
    event_loop_blocked,
    stalled_on_io,
    database_trouble,
    crash_loop,
    schedule,
    restarts_treat_symptom,
)
