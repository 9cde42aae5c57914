"""Writing results for people and machines: report tables and Markdown, the `why` timeline, event
lines, the status table. Formatting only: what it writes is computed in `report` and `status`."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import replay
from .config import format_status_ranges
from .events import Event
from .hints import hang_cpu
from .report import AppReport, IncidentRow, Report, Step, Timeline, worker_counts
from .status import AppStatus
from .units import ago, format_duration, mb, one_line, percent, period_label, shown_ts, span

if TYPE_CHECKING:
    from .fleet.ship import Backlog

SHOWN_INCIDENTS = 20  # per app in text and Markdown; --json lists every one
TIMELINE_MAX = 200  # text shows the first and last half of a longer timeline; --json shows every event

# -- one event per line (`recovery events`) ----------------------------------------------------------

# Shown first, in this order, when an event is printed as text; the rest follow sorted.
_LEADING = (
    "action",
    "reason",
    "attempt",
    "phase",
    "error",
    "status",
    "latency_ms",
    "pid",
    "memory",
    "by",
    "command",
    "exit_code",
    "duration_ms",
    "attempts",
    "seconds",
    "outcome",
    "code",
)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    if isinstance(v, dict):
        return "{" + " ".join(f"{k}={_value(x)}" for k, x in v.items()) + "}"
    text = str(v)
    return f'"{text}"' if (" " in text or not text) else text


def _field(key: str, v: Any) -> str:
    if key == "instances" and isinstance(v, list):  # a cluster's sample: one word per worker
        return ",".join(_instance_fact(i) for i in v)
    if key == "command" and isinstance(v, list):
        return _value(" ".join(str(x) for x in v))
    if key == "memory" and isinstance(v, int):
        return mb(v, 1)
    return _value(v)


def format_event(e: Event) -> str:
    """One line: time, seq, app, type, then the data as key=value (a batch of probes summed up)."""
    data = e.data
    if e.type == "probe.batched":
        from .batching import summary

        data = summary(data)
    keys = [k for k in _LEADING if k in data] + sorted(k for k in data if k not in _LEADING and k != "probes")
    if "probes" in data:
        keys.insert(0, "probes")
    fields = " ".join(f"{k}={_field(k, data[k])}" for k in keys if data[k] not in (None, "", [], {}) and k != "inputs")
    ts = shown_ts(e.ts, ms=True)
    return f"{ts}  #{e.seq:<6} {(e.app or '-'):<12} {e.type:<20} {fields}".rstrip()


# -- `recovery report` ------------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:g}ms"


def _ts(ts: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _when(ts: str | None) -> str:
    return shown_ts(ts)


def _grid(head: list[str], body: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return [indent + "  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head, *body]]


def fit_columns(
    head: list[str], body: list[list[str]], width: int | None, drop_order: list[str]
) -> tuple[list[str], list[list[str]]]:
    """The table's columns that fit in `width` characters (None: all): columns empty in every row
    ('-') go first, then those of `drop_order`, least useful first; the rest keep their order."""
    cols = list(range(len(head)))

    def size(keep: list[int]) -> int:
        return sum(max(len(r[c]) for r in [head, *body]) for c in keep) + 2 * (len(keep) - 1)

    if width is None or size(cols) <= width:
        return head, body
    empty = [c for c in cols if body and all(r[c] in ("-", "") for r in body) and head[c] in drop_order]
    order = empty + [head.index(h) for h in drop_order if head.index(h) not in empty]
    for c in order:
        if size(cols) <= width:
            break
        cols.remove(c)
    return [head[c] for c in cols], [[r[c] for c in cols] for r in body]


def wrap(text: str, width: int | None, indent: str = "    ") -> list[str]:
    """`text` as lines of at most `width` characters (None: one line), the later ones indented."""
    if width is None or len(text) <= width:
        return [text]
    import textwrap

    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=True)


# ANSI colours for a state word on a terminal (never in a pipe, never with NO_COLOR).
_STATE_COLOURS = {
    "HEALTHY": "32",
    "PAUSED": "36",
    "DEGRADED": "33",
    "RECOVERING": "33",
    "DOWN": "31",
    "SUSPENDED": "31;1",
    "STOPPED": "31",
}


def _coloured_state(line: str, word: str) -> str:
    """A status row with its state word (the first column after the app's) coloured."""
    code = _STATE_COLOURS.get(word)
    return line.replace(f"  {word}", f"  \033[{code}m{word}\033[0m", 1) if code else line


_SUMMARY_HEAD = [
    "APP",
    "AVAILABILITY",
    "WORST",
    "UNOBSERVED",
    "PROBES",
    "FAILURES",
    "INCIDENTS",
    "RESTARTS",
    "MTTR",
    "MTBF",
    "P50",
    "P95",
    "P99",
]
_INCIDENT_HEAD = ["#", "STARTED (UTC)", "DURATION", "RESTARTS", "OUTCOME", "FIRST REASON"]


def _error_row(e: dict[str, Any]) -> list[str]:
    prev = e["previous_count"]
    change = "new" if prev == 0 else f"{e['count'] - prev:+d}"
    return [str(e["count"]), change, _when(e["last_seen"]), e["template_id"], one_line(e["template"] or "", 90)]


_ERRORS_HEAD = ["COUNT", "VS BEFORE", "LAST SEEN", "TEMPLATE", "TEXT"]


def _summary_row(a: AppReport) -> list[str]:
    lat = a.latency_ms
    return [
        a.app,
        percent(a.availability_percent) + ("%" if a.availability_percent is not None else ""),
        percent(a.availability_worst_percent) + ("%" if a.availability_worst_percent is not None else ""),
        span(a.unobserved_s, decimals=True),
        str(a.probes),
        str(a.failures),
        str(len(a.incidents)),
        str(a.restarts),
        span(a.mttr_s, decimals=True),
        span(a.mtbf_s),
        _ms(lat["p50"]),
        _ms(lat["p95"]),
        _ms(lat["p99"]),
    ]


def worker_text(w: dict[str, Any]) -> str:
    """'worker #2 (pid 4242)'."""
    return f"worker #{w.get('pm_id')}" + (f" (pid {w['pid']})" if w.get("pid") else "")


def _workers_named(workers: list[dict[str, Any]]) -> str:
    """'#2 pid 4242', '#2 pid 4242 +1': the first worker an incident named, and how many more."""
    if not workers:
        return "-"
    w = workers[0]
    text = f"#{w.get('pm_id')}" + (f" pid {w['pid']}" if w.get("pid") else "")
    return text + (f" +{len(workers) - 1}" if len(workers) > 1 else "")


def _incident_head(incidents: list[IncidentRow]) -> list[str]:
    """The incident table's head, with a WORKER column when an incident was about one worker of a cluster."""
    if any(i.workers for i in incidents):
        return [*_INCIDENT_HEAD[:-1], "WORKER", _INCIDENT_HEAD[-1]]
    return _INCIDENT_HEAD


def _incident_row(i: IncidentRow, workers: bool = False) -> list[str]:
    duration = span(i.duration_s, decimals=True) + (" so far" if i.ended_at is None else "")
    cells = [f"#{i.id}", _when(i.started_at), duration, str(i.restarts), i.outcome, i.reason or "-"]
    return [*cells[:-1], _workers_named(i.workers), cells[-1]] if workers else cells


def _worker_restarts(a: AppReport) -> str:
    """'check #2 1x; pm2 #2 3x, #0 1x': restarts of one worker by who made them."""
    return "; ".join(
        f"{who} {worker_counts(a.worker_restarts[who])}" for who in a.restarts_by if a.worker_restarts.get(who)
    )


def _by_who(a: AppReport) -> str:
    return ", ".join(f"{who} {n}" for who, n in a.restarts_by.items())


def _heading(r: Report) -> str:
    return f"{_when(r.since)} to {_when(r.until)} ({period_label(r.seconds)})"


# The report's summary columns dropped first when it does not fit the terminal (`--wide` keeps all).
_SUMMARY_DROP = ["P50", "P99", "UNOBSERVED", "WORST", "MTBF", "PROBES", "FAILURES", "P95", "MTTR", "RESTARTS"]


def fitted(lines: list[str], width: int | None) -> list[str]:
    """`lines` with each longer than `width` wrapped, its continuations indented under it."""
    if width is None:
        return lines
    out = []
    for line in lines:
        lead = line[: len(line) - len(line.lstrip())]
        out += wrap(line, width, indent=lead + "    ")
    return out


def report_text(r: Report, width: int | None = None) -> str:
    """Readable tables: one summary row per app, then each app's incidents, restarts and notes.
    With `width`, the least useful summary columns are dropped and long lines wrapped to fit."""
    lines = [f"recovery report: {_heading(r)}", ""]
    lines += _grid(*fit_columns(_SUMMARY_HEAD, [_summary_row(a) for a in r.apps], width, _SUMMARY_DROP))
    for a in r.apps:
        lines += ["", a.app]
        shown = a.incidents[-SHOWN_INCIDENTS:]
        if shown:
            lines.append("  incidents:")
            head = _incident_head(shown)
            rows = [_incident_row(i, head is not _INCIDENT_HEAD) for i in shown]
            lines += _grid(head, rows, indent="    ")
            if len(a.incidents) > len(shown):
                lines.append(f"    ... and {len(a.incidents) - len(shown)} earlier (--json lists all)")
        else:
            lines.append("  incidents: none")
        lines.append(f"  restarts by: {_by_who(a)}")
        if a.worker_restarts:
            lines.append(f"  restarts of one worker: {_worker_restarts(a)}")
        if a.top_errors:
            lines.append("  top errors (`recovery errors show TEMPLATE` for examples):")
            lines += _grid(_ERRORS_HEAD, [_error_row(e) for e in a.top_errors], indent="    ")
        if a.stands_out:
            lines.append("  stands out:")
            lines += [f"    - {note}" for note in a.stands_out]
        if a.hints:
            lines.append("  likely causes (confidence):")
            lines += [f"    - {hint_line(h)}" for h in a.hints]
    return "\n".join(fitted(lines, width))


def hint_line(h: dict[str, Any]) -> str:
    """'(0.85) memory leak: memory grows ...'."""
    return f"({h['confidence']:.2f}) {h['message']}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    return [_md_row(head), "| " + " | ".join("---" for _ in head) + " |", *(_md_row(r) for r in body)]


def report_markdown(r: Report) -> str:
    """A Markdown document: a summary table, then a section per app."""
    lines = ["# recovery report", "", f"{_heading(r)}; generated {_when(r.generated_at)}.", ""]
    lines += _md_table([h.lower() for h in _SUMMARY_HEAD], [_summary_row(a) for a in r.apps])
    for a in r.apps:
        lines += ["", f"## {a.app}", "", "### Incidents", ""]
        shown = a.incidents[-SHOWN_INCIDENTS:]
        if shown:
            head = _incident_head(shown)
            lines += _md_table([h.lower() for h in head], [_incident_row(i, head is not _INCIDENT_HEAD) for i in shown])
            if len(a.incidents) > len(shown):
                lines += ["", f"... and {len(a.incidents) - len(shown)} earlier (`--json` lists all)."]
        else:
            lines.append("None.")
        lines += ["", "### Restarts by who made them", ""]
        lines += _md_table(list(a.restarts_by), [[str(n) for n in a.restarts_by.values()]])
        if a.worker_restarts:
            lines += ["", f"Restarts of one worker: {_worker_restarts(a)}."]
        if a.top_errors:
            lines += ["", "### Top errors", ""]
            lines += _md_table([h.lower() for h in _ERRORS_HEAD], [_error_row(e) for e in a.top_errors])
        lines += ["", "### What stands out", ""]
        lines += [f"- {note}" for note in a.stands_out] or ["Nothing."]
        if a.hints:
            lines += ["", "### Likely causes", ""]
            lines += [f"- {hint_line(h)}" for h in a.hints]
    return "\n".join(lines) + "\n"


# -- `recovery why` ---------------------------------------------------------------------------------


def offset(seconds: float) -> str:
    """+0.0s, +2.1s, +1m03s, +2h03m, -4.2s."""
    seconds = round(seconds, 1)  # so that -0.04 reads +0.0s
    return ("-" if seconds < 0 else "+") + span(abs(seconds), decimals=True)


def _cmd(v: Any) -> str:
    return " ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def facts(type_: str, d: dict[str, Any]) -> str:
    """The key facts of one event, as a short phrase."""
    if type_ == "decision.made":
        text = f"{d.get('action', '?')}: {d.get('reason') or '-'}"
        worker = (d.get("inputs") or {}).get("worker")
        if isinstance(worker, dict) and worker.get("pm_id") is not None:
            pid = f", pid {worker['pid']}" if worker.get("pid") else ""
            evidence = f", {worker['evidence']} evidence" if worker.get("evidence") else ""
            text += f" [worker #{worker['pm_id']}{pid}{evidence}]"
        return text + (" (dry run, nothing done)" if d.get("dry_run") else "")
    if type_ in ("probe.succeeded", "probe.failed"):
        attempt = d.get("attempt")
        parts = [
            ("verify " if d.get("phase") == "verify" else "")
            + (f"attempt {attempt}" + (f"/{d['of']}" if d.get("of") else "") if attempt is not None else "probe")
        ]
        if d.get("error"):
            parts.append(str(d["error"]))
        if d.get("status") is not None:
            parts.append(f"HTTP {d['status']}")
        if d.get("latency_ms") is not None:
            parts.append(
                f"{d['latency_ms']:g}ms" if isinstance(d["latency_ms"], (int, float)) else str(d["latency_ms"])
            )
        return ", ".join(parts)
    if type_ == "process.sampled":
        if d.get("error"):
            return f"PM2 unreadable: {d['error']}"
        parts = [str(d.get("status") or "?")]
        if d.get("pid"):
            parts.append(f"pid {d['pid']}")
        if isinstance(d.get("instances"), list):
            parts.append(f"{len(d['instances'])} workers: " + " ".join(_instance_fact(i) for i in d["instances"]))
        if isinstance(d.get("memory"), int):
            parts.append(mb(d["memory"], 1))
        cpu, what = hang_cpu(d)
        if cpu is not None and what != "PM2's figure":
            # the figure the hints read (over the probe window), PM2's own beside it
            seconds = f" ({d['cpu_window_s']:g}s)" if isinstance(d.get("cpu_window_s"), (int, float)) else ""
            pm2_cpu = f", PM2 said {d['cpu']:g}%" if isinstance(d.get("cpu"), (int, float)) else ""
            parts.append(f"cpu {cpu:g}% {what}{seconds}{pm2_cpu}")
        elif d.get("cpu") is not None:
            parts.append(f"cpu {d['cpu']:g}% (PM2)")
        if d.get("restart_time") is not None:
            parts.append(f"restart_time {d['restart_time']}")
        return ", ".join(parts)
    if type_ == "process.restarted":
        named = [w for w in d.get("workers") or [] if isinstance(w, dict)]
        if named:
            what = ", ".join(
                f"worker #{w.get('pm_id')} (pid {w.get('old_pid') or '?'} -> {w.get('new_pid') or '?'})"
                + (f" {w['count']}x" if (w.get("count") or 1) > 1 else "")
                for w in named
            )
        else:
            n = d.get("count") or 1
            what = "the app" + (f" {n}x" if n > 1 else "")
            if d.get("old_pid") and d.get("new_pid"):
                what += f" (pid {d['old_pid']} -> {d['new_pid']})"
        return f"PM2 restarted {what} on its own, cause {d.get('cause') or 'unknown'}"
    if type_ == "restart.requested":
        text = f"by {d.get('by', 'check')}: {_cmd(d.get('command') or 'restart')}"
        if d.get("pm_id") is not None:
            text += f" (worker #{d['pm_id']}" + (f", pid {d['pid']})" if d.get("pid") else ")")
        return text + (f" ({d['reason']})" if d.get("by", "check") != "check" and d.get("reason") else "")
    if type_ in ("restart.succeeded", "restart.failed"):
        parts = [_cmd(d.get("command") or "restart")]
        if "exit_code" in d:
            parts.append(f"exit {d['exit_code']}")
        if d.get("duration_ms") is not None:
            parts.append(f"{d['duration_ms']:g}ms")
        problem = d.get("error") or (str(d.get("stderr_tail") or "").strip().splitlines() or [""])[-1]
        if type_ == "restart.failed" and problem:
            parts.append(problem)
        return ", ".join(parts)
    if type_ in ("verification.passed", "verification.failed"):
        parts = [
            f"{d.get('attempts', '?')} attempt{'' if d.get('attempts') == 1 else 's'}",
            f"{d.get('seconds', '?')}s",
        ]
        if d.get("last_error"):
            parts.append(f"last error {d['last_error']}")
        return ", ".join(parts)
    if type_ == "check.started":
        return f"trigger {d.get('trigger', '?')}" + (", dry run" if d.get("dry_run") else "")
    return " ".join(f"{k}={_field(k, v)}" for k, v in d.items() if v not in (None, "", [], {}) and k != "inputs")


def _instance_fact(i: Any) -> str:
    """'#2:4242/online/60.0MB' for one worker of a cluster sample."""
    if not isinstance(i, dict):
        return "?"
    text = f"#{i.get('pm_id')}:{i.get('pid') or '-'}"
    if i.get("status") not in (None, "online"):
        text += f"/{i['status']}"
    if isinstance(i.get("memory"), int):
        text += f"/{mb(i['memory'], 1)}"
    return text


def ending(t: Timeline) -> str:
    """How the incident ended (or that it is still open), its duration and restarts."""
    i = t.incident
    restarts = f"{i.restarts} restart{'' if i.restarts == 1 else 's'}"
    if i.ended_at is None:
        return f"still open, for {span(i.duration_s, decimals=True)} so far, {restarts}"
    return f"ended: {i.outcome} after {span(i.duration_s, decimals=True)}, {restarts}"


CYCLE_MAX = 8  # the longest run of events whose repetition `why` folds into one line


def _signature(s: Step) -> tuple[Any, ...]:
    """What makes two events the same for a reader of the timeline: a probe's phase and outcome, a
    decision's code, a sample's status; any other event is its own."""
    d = s.data
    if s.type in ("probe.failed", "probe.succeeded"):
        return (s.type, d.get("phase"), d.get("error") or d.get("status"))
    if s.type == "decision.made":
        return (s.type, d.get("code") or d.get("reason"), d.get("action"))
    if s.type in ("process.sampled", "check.started", "check.finished", "log.ingested"):
        return (s.type, d.get("status"))
    return (s.type, s.seq)


def _what(s: Step) -> str:
    """'probe.failed timeout', 'verify probe.failed refused', 'decision.made wait (warming_up)'."""
    d = s.data
    if s.type in ("probe.failed", "probe.succeeded"):
        what = ("verify " if d.get("phase") == "verify" else "") + s.type
        outcome = d.get("error") or (f"HTTP {d['status']}" if d.get("status") is not None else "")
        return f"{what} {outcome}".rstrip()
    if s.type == "decision.made":
        return f"decision.made {d.get('action', '?')} ({d.get('code') or '?'})"
    return s.type


def _row(s: Step) -> list[str]:
    return [offset(s.offset_s), f"#{s.seq}", s.type, facts(s.type, s.data)]


def collapsed_rows(steps: list[Step]) -> list[list[str]]:
    """One row per event, except that a run of events repeating (the same probe failing, or the
    same few events check after check) is one line: `12 × probe.failed timeout over 24.0s`, or the
    first round in full and then `11 more times: …`. `why --json` keeps every event."""
    sigs = [_signature(s) for s in steps]
    rows: list[list[str]] = []
    i = 0
    while i < len(steps):
        best = (1, 1)  # (repeats, cycle length)
        for length in range(1, CYCLE_MAX + 1):
            k = 1
            while sigs[i + k * length : i + (k + 1) * length] == sigs[i : i + length]:
                k += 1
            if k >= 3 and k * length > best[0] * best[1]:
                best = (k, length)
        k, length = best
        if k < 3:
            rows.append(_row(steps[i]))
            i += 1
            continue
        run = steps[i : i + k * length]
        over = span(run[-1].offset_s - run[0].offset_s, decimals=True)
        if length == 1:
            rows.append(
                [offset(run[0].offset_s), f"#{run[0].seq}..#{run[-1].seq}", f"{k} ×", f"{_what(run[0])} over {over}"]
            )
        else:
            rows += [_row(s) for s in run[:length]]
            rest = run[length:]
            counts = Counter(_what(s) for s in rest)
            listed = ", ".join(f"{n} × {w}" for w, n in counts.items())
            rows.append(
                [
                    offset(rest[0].offset_s),
                    f"#{rest[0].seq}..#{rest[-1].seq}",
                    f"{k - 1} more times",
                    f"{listed} over {over}",
                ]
            )
        i += k * length
    return rows


def timeline_text(t: Timeline, width: int | None = None) -> str:
    """The incident's header, one line per event, and how it ended (long lines wrapped to `width`)."""
    i = t.incident
    head = f"{t.app} incident #{i.id}: started {_when(i.started_at)}"
    if i.detected_at and i.detected_at != i.started_at:
        later = span(max(0.0, (_ts(i.detected_at) - _ts(i.started_at)).total_seconds()), decimals=True)
        head += f" (first failed probe; detected {later} later)"
    lines = [head + (f", {i.reason}" if i.reason else "")]
    if i.workers:
        lines.append("about " + ", ".join(worker_text(w) for w in i.workers) + " of the cluster")
    rows = collapsed_rows(t.steps)
    if len(rows) > TIMELINE_MAX:
        half = TIMELINE_MAX // 2
        skipped = len(rows) - 2 * half
        rows = [
            *rows[:half],
            ["...", "", f"{skipped} more events", f"(recovery why {t.app} --incident {i.id} --json lists all)"],
            *rows[-half:],
        ]
    widths = [max(len(r[c]) for r in rows) for c in range(3)] if rows else [0, 0, 0]
    lines += [f"  {r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
    if t.hints:
        lines.append("likely causes (confidence):")
        lines += [f"  - {hint_line(h)}" for h in t.hints]
    lines.append(ending(t))
    return "\n".join(fitted(lines, width))


def _step_dict(s: Step) -> dict[str, Any]:
    return {
        "seq": s.seq,
        "ts": s.ts,
        "offset_s": s.offset_s,
        "type": s.type,
        "app": s.app,
        "facts": facts(s.type, s.data),
        "data": s.data,
    }


def timeline_dict(t: Timeline) -> dict[str, Any]:
    """The JSON of `recovery why --json`: the incident, its events with their facts, how it ended, the hints."""
    return {
        "app": t.app,
        "incident": {**t.incident.to_dict(), "reason": t.incident.reason},
        "events": [_step_dict(s) for s in t.steps],
        "ending": ending(t),
        "hints": t.hints,
    }


# -- `recovery status` ------------------------------------------------------------------------------

_STATUS_HEAD = [
    "APP",
    "STATE",
    "SINCE",
    "LAST CHECK",
    "LATENCY",
    "PM2",
    "WORKERS",
    "PID",
    "UPTIME",
    "MEMORY",
    "CPU",
    "RESTARTS 24H",
    "INCIDENT",
    "HINT",
]


WORKER_IDS_SHOWN = 3  # failed workers named in the WORKERS cell; the notes below the table name all


def workers_cell(w: dict[str, Any] | None) -> str:
    """'3/4', '3/4 (#2 hung)', '2/4 (#1,#3 hung)', '2/4 (#1 hung +1)', '0/4 (all hung)'; '-' for one process."""
    if not w:
        return "-"
    text = f"{w['healthy']}/{w['total']}"
    failed = w["failed"]
    if not failed:
        return text
    why = failed[0]["why"]
    same = [f for f in failed if f["why"] == why]
    if len(same) == len(failed) == w["total"] > 1:
        return f"{text} (all {why})"
    same = same[:WORKER_IDS_SHOWN]
    more = len(failed) - len(same)
    ids = ",".join("#" + str(f["pm_id"]) for f in same)
    return f"{text} ({ids} {why}" + (f" +{more}" if more else "") + ")"


# The status columns dropped first when the table does not fit the terminal (`--wide` keeps all).
_STATUS_DROP = [
    "PID",
    "WORKERS",
    "PM2",
    "CPU",
    "MEMORY",
    "UPTIME",
    "RESTARTS 24H",
    "SINCE",
    "LATENCY",
    "INCIDENT",
    "HINT",
]


def status_table(
    rows: list[AppStatus], now: _dt.datetime | None = None, *, width: int | None = None, colour: bool = False
) -> str:
    """A plain-text table, one row per app, then a line per app that is not healthy or has a hint.
    With `width`, the least useful columns are dropped and the notes wrapped until every line fits;
    with `colour`, the state words are coloured (ANSI)."""
    now = now or _dt.datetime.now(_dt.UTC)
    body = []
    for r in rows:
        check = ago(now, r.last_check_at) + (" (STALE: is cron running?)" if r.stale else "")
        body.append(
            [
                r.app,
                r.state.upper(),
                ago(now, r.since),
                check,
                f"{r.latency_ms:.0f}ms" if r.latency_ms is not None else "-",
                r.pm2_status or "-",
                workers_cell(r.workers),
                str(r.pid or "-"),
                span(r.uptime_s),
                mb(r.memory) if r.memory else "-",
                f"{r.cpu:.0f}%" if r.cpu is not None else "-",
                f"{r.restarts_24h} ours / {r.pm2_restarts_24h} pm2",
                f"#{r.open_incident} since {ago(now, r.incident_since)}" if r.open_incident else "-",
                f"{r.hint['kind']} {r.hint['confidence']:.2f}" if r.hint else "-",
            ]
        )
    lines = _grid(*fit_columns(_STATUS_HEAD, body, width, _STATUS_DROP))
    if colour:
        lines = [lines[0]] + [_coloured_state(line, r.state.upper()) for line, r in zip(lines[1:], rows)]
    notes = [f"{r.app}: {r.reason}" for r in rows if r.reason and r.state not in ("healthy",)]
    notes += [
        f"{r.app}: worker #{f['pm_id']} (pid {f['pid'] or '-'}) {f['why']}"
        for r in rows
        if r.workers
        for f in r.workers["failed"]
    ]
    notes += [
        f"{r.app}: PM2 restarted worker #{i['pm_id']} on its own in the last 24h ({i['pm2_restarts_24h']}x)"
        for r in rows
        if r.workers
        for i in r.workers["instances"]
        if i.get("pm2_restarts_24h")
    ]
    notes += [f"{r.app}: likely cause ({r.hint['confidence']:.2f}): {r.hint['message']}" for r in rows if r.hint]
    return "\n".join(lines + fitted(notes, width))


# -- recovery replay ---------------------------------------------------------------------------


def _setting_text(value: Any) -> str:
    if isinstance(value, tuple):
        return format_status_ranges(value)
    if isinstance(value, float):
        return format_duration(value)
    return "off" if value is None else str(value)


def _action(pair: tuple[str, str]) -> str:
    return f"{pair[0]} ({pair[1]})" if pair[1] else pair[0]


def replay_text(r: replay.Replay) -> str:
    """The replay for people: per app a recorded/replayed table, the decisions that differ, the caveats."""
    settings = ", ".join(f"{k}={_setting_text(v)}" for k, v in r.settings.items()) or "the configured settings"
    lines = [f"replay of the record since {r.since or 'its start'} with {settings}"]
    for a in r.apps:
        lines += ["", f"{a.app}: {a.decisions} recorded decision{'s' if a.decisions != 1 else ''}"]
        head = ("", "FAILED PROBES", "RESTARTS", "INCIDENTS", "DOWNTIME")
        rows = [
            (label, str(t.failed_probes), str(t.restarts), str(t.incidents), span(t.downtime_s))
            for label, t in (("recorded", a.recorded), ("replayed", a.replayed))
        ]
        widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *rows)
        ]
        if not a.changed:
            lines.append("  no decision differs")
        else:
            lines.append(f"  decisions that differ ({len(a.changed)}):")
            shown = a.changed[:20]
            lines += [f"    {c.at}  {_action(c.recorded)} -> {_action(c.replayed)}" for c in shown]
            if len(a.changed) > len(shown):
                lines.append(f"    ... and {len(a.changed) - len(shown)} more (--json lists every one)")
            lines.append(
                f"  exact until {a.exact_until}: after the first decision that differs, the recorded world no "
                "longer follows (it did not see the replayed restarts and their outcomes)"
            )
        for key, n in a.assumed.items():
            lines.append(f"  assumed {n} time{'s' if n != 1 else ''}: {replay.ASSUMPTIONS[key]}")
    return "\n".join(lines)


def fleet_line(b: Backlog, now: _dt.datetime | None = None, *, width: int | None = None) -> str:
    """`recovery status`'s line under the table when a fleet is configured: events not shipped yet,
    the last ship, and since when shipping fails (with its error), cut to `width`."""
    now = now or _dt.datetime.now(_dt.UTC)
    text = f"fleet: {b.events} event{'s' if b.events != 1 else ''} not shipped (host {b.host})"
    text += f"; last ship {ago(now, b.shipped_at)}" if b.shipped_at else "; never shipped"
    if b.error:
        text += f"; failing since {ago(now, b.error_since)}: {b.error}"
    return one_line(text, width or 1000)
