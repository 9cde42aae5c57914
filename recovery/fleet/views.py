"""The fleet views over PostgreSQL: `fleet_status`, `fleet_report`, `fleet_verify` (issue 18 point 3).

Computation only, over the tables of recovery/fleet/schema.sql (shipping fills them): status and
report read the shipped read models (fleet_app_state, fleet_incidents, fleet_restarts and the
hour/day rollups, by their keys and indexes), so their cost grows with hosts x apps and the
period's days, never with the raw history; verify is the one reader of fleet_events, streamed in
(host, seq) order through a server-side cursor. `fleet_text` below writes the results for people.

The report is recovery/report.py's, across hosts: the same definitions and the same code for
what stands out, with two differences: the fleet keeps hour and day rollups only, so a period's
edges fall on whole UTC hours (the hour `since` falls in counts entirely, as a local report
older than two days does); and hints and top errors stay on each host (`recovery report` there).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from recovery import report as local
from recovery.events import Event
from recovery.model import MAX_GAP_S
from recovery.projections import STATE_CODES, seconds_between
from recovery.rollups import _next
from recovery.sketch import merged
from recovery.store import GENESIS, chain_hash
from recovery.units import age, earlier, format_ts, parse_ts, period_label

from . import FleetError, connect, scrub, shown_dsn

STALE_AFTER_S = MAX_GAP_S  # a host whose newest shipped check is older than this is flagged STALE
UNKNOWN = 3
PROBLEMS_PER_HOST = 20  # verify names at most this many bad events per host (and counts the rest)


@contextmanager
def opened(url: str) -> Iterator[Any]:
    """A connection to the fleet store; every PostgreSQL error inside becomes one FleetError line,
    the password never in it. Missing tables mean nothing was shipped there yet."""
    conn = connect(url)  # first: it says so in one line when psycopg is not installed
    import psycopg

    try:
        yield conn
    except psycopg.errors.UndefinedTable:
        raise FleetError(f"no fleet tables in {shown_dsn(url)}: nothing has been shipped there yet") from None
    except psycopg.Error as exc:
        text = " ".join(scrub(str(exc), url).split())
        raise FleetError(f"the fleet store {shown_dsn(url)} failed: {text}") from None
    finally:
        conn.close()


# -- fleet status ----------------------------------------------------------------------------------


@dataclass
class FleetApp:
    app: str
    state: str
    since: str | None
    reason: str | None
    last_check_at: str | None
    latency_ms: float | None
    pm2_status: str | None
    open_incident: int | None
    incident_since: str | None
    paused_until: str | None
    code: int = UNKNOWN


@dataclass
class HostStatus:
    host: str
    last_check_at: str | None  # the newest check shipped from it
    last_shipped_at: str | None
    last_seq: int
    stale: bool  # no check shipped for STALE_AFTER_S (or never): is it, its cron or its shipping down?
    apps: list[FleetApp]
    code: int  # the worst app's, as `recovery status`; UNKNOWN when stale or without apps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FleetStatus:
    generated_at: str
    stale_after_s: float
    hosts: list[HostStatus]

    @property
    def code(self) -> int:
        return max((h.code for h in self.hosts), default=UNKNOWN)  # no host shipped: nothing is known

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "stale_after_s": self.stale_after_s,
            "hosts": [h.to_dict() for h in self.hosts],
            "code": self.code,
        }


def fleet_status(conn: Any, now: _dt.datetime, stale_after: float = STALE_AFTER_S) -> FleetStatus:
    """Every host's apps (state, since, last check, latency, open incident), hosts without a check for
    `stale_after` seconds flagged stale, hosts with no apps listed. One query over the read models."""
    rows = conn.execute(
        "SELECT h.host, h.last_check_at, to_char(h.last_shipped_at AT TIME ZONE 'UTC',"
        ' \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\'), h.last_seq,'
        " a.app, a.state, a.since, a.reason, a.last_check_at, a.last_latency_ms, a.pm2_status, a.open_incident,"
        " i.started_at, a.paused_until"
        " FROM fleet_hosts h LEFT JOIN fleet_app_state a ON a.host = h.host"
        " LEFT JOIN fleet_incidents i ON i.host = a.host AND i.id = a.open_incident"
        " ORDER BY h.host, a.app"
    ).fetchall()
    nowts = format_ts(now)
    hosts: dict[str, HostStatus] = {}
    for host, host_check, shipped, last_seq, *cells in rows:  # cells: FleetApp's fields but its code
        h = hosts.get(host)
        if h is None:
            h = hosts[host] = HostStatus(host, host_check, shipped, int(last_seq or 0), False, [], 0)
        if cells[0] is None:  # a host without apps
            continue
        a = FleetApp(*cells)
        if a.paused_until and a.paused_until > nowts:
            a.state = "paused"
        a.code = STATE_CODES.get(a.state, UNKNOWN)
        if a.last_check_at and (h.last_check_at is None or a.last_check_at > h.last_check_at):
            h.last_check_at = a.last_check_at
        h.apps.append(a)
    for h in hosts.values():
        h.stale = h.last_check_at is None or age(now, h.last_check_at) > stale_after
        h.code = max((a.code for a in h.apps), default=UNKNOWN)
        if h.stale:
            h.code = UNKNOWN
    return FleetStatus(nowts, stale_after, list(hosts.values()))


# -- fleet report ----------------------------------------------------------------------------------


@dataclass
class HostReport:
    host: str
    apps: list[local.AppReport]

    def to_dict(self) -> dict[str, Any]:
        known = [a.availability_percent for a in self.apps if a.availability_percent is not None]
        return {
            "availability_percent_min": min(known) if known else None,  # its worst app's
            "apps": {a.app: a.to_dict() for a in self.apps},
        }


@dataclass
class FleetReport:
    since: str
    until: str
    generated_at: str
    hosts: list[HostReport]

    @property
    def seconds(self) -> float:
        return seconds_between(self.since, self.until)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "generated_at": self.generated_at,
            "hosts": {h.host: h.to_dict() for h in self.hosts},
        }


Key = tuple[str, str]  # (host, app)


def hour_parts(start: str, end: str, *, inclusive: bool) -> list[tuple[str, str, str]]:
    """(table, from, to) with `start` in [from, to) covering the hours from `start`'s (whole) to `end`'s
    (whole when `inclusive`, else not at all): whole days from the day table, the edges from the hour table."""
    h1 = start[:13]
    h2 = _next(end[:13]) if inclusive else end[:13]
    if h2 <= h1:
        return []
    d1 = h1[:10] if h1.endswith("T00") else _next(h1[:10])
    d2 = h2[:10]
    if d1 >= d2:
        return [("fleet_rollup_hour", h1, h2)]
    parts = [("fleet_rollup_day", d1, d2)]
    if not h1.endswith("T00"):
        parts.append(("fleet_rollup_hour", h1, d1 + "T00"))
    if not h2.endswith("T00"):
        parts.append(("fleet_rollup_hour", d2 + "T00", h2))
    return parts


def _windows(conn: Any, start: str, end: str, *, inclusive: bool) -> dict[Key, local._Window]:
    """Every host's and app's sums over the period, from the rollups, and its restarts by who."""
    out: dict[Key, local._Window] = {}
    texts: dict[Key, list[str]] = {}
    for table, a, b in hour_parts(start, end, inclusive=inclusive):
        for host, app, probes, failures, up, down, unobserved, latency in conn.execute(
            "SELECT host, app, sum(probes), sum(failures), sum(up_s), sum(down_s), sum(unobserved_s),"
            f" string_agg(latency, E'\\n') FROM {table} WHERE start >= %s AND start < %s GROUP BY host, app",
            (a, b),
        ):
            w = out.get((host, app)) or out.setdefault((host, app), local._Window())
            w.probes += int(probes or 0)
            w.failures += int(failures or 0)
            w.up_s += float(up or 0.0)
            w.down_s += float(down or 0.0)
            w.unobserved_s += float(unobserved or 0.0)
            if latency:
                texts.setdefault((host, app), []).extend(latency.split("\n"))
    for k, t in texts.items():
        out[k].latency = merged(t)
    for host, app, who, n, unrecovered in conn.execute(
        "SELECT host, app, by, sum(count), sum(CASE WHEN source = 'recovery' AND outcome IN ('failed', 'unverified')"
        f" THEN 1 ELSE 0 END) FROM fleet_restarts WHERE at >= %s AND at {'<=' if inclusive else '<'} %s"
        " GROUP BY host, app, by",
        (start, end),
    ):
        w = out.get((host, app)) or out.setdefault((host, app), local._Window())
        w.restarts_by[who] = int(n or 0)
        w.unrecovered_restarts += int(unrecovered or 0)
    return out


def _incidents(conn: Any, since: str, until: str, now: _dt.datetime) -> dict[Key, list[local.IncidentRow]]:
    """Incidents that overlap [since, until], oldest first per host and app; an open one lasts until now."""
    out: dict[Key, list[local.IncidentRow]] = {}
    for host, iid, app, started, ended, duration, restarts, outcome, reason, detected, unobserved in conn.execute(
        "SELECT host, id, app, started_at, ended_at, duration_s, restarts, outcome, first_reason, detected_at,"
        " unobserved_s FROM fleet_incidents WHERE started_at <= %s AND (ended_at IS NULL OR ended_at >= %s)"
        " ORDER BY host, app, started_at, id",
        (until, since),
    ):
        if ended is None:
            duration = round(max(0.0, age(now, started)), 3)
        row = local.IncidentRow(
            iid, started, ended, duration or 0.0, restarts, outcome, reason, [], detected, unobserved
        )
        out.setdefault((host, app), []).append(row)
    return out


def fleet_report(conn: Any, since: str, until: str | None = None, now: _dt.datetime | None = None) -> FleetReport:
    """`recovery report` for every host's apps from `since` to `until` (default: now), beside the
    period of the same length before it. A handful of queries, whatever the number of hosts."""
    now = now or _dt.datetime.now(_dt.UTC)
    until = until or format_ts(now)
    length = max(0.0, seconds_between(since, until))
    before = earlier(parse_ts(since), length)
    cur = _windows(conn, since, until, inclusive=True)
    prev = _windows(conn, before, since, inclusive=False)
    incidents = _incidents(conn, since, until, now)
    apps: dict[str, set[str]] = {host: set() for (host,) in conn.execute("SELECT host FROM fleet_hosts")}
    for host, app in conn.execute("SELECT host, app FROM fleet_app_state"):
        apps.setdefault(host, set()).add(app)
    for host, app in [*cur, *incidents]:
        apps.setdefault(host, set()).add(app)
    label = period_label(length)
    hosts = []
    for host in sorted(apps):
        rows = []
        for app in sorted(apps[host]):
            key = (host, app)
            rows.append(
                local.app_numbers(
                    app,
                    cur.get(key) or local._Window(),
                    prev.get(key) or local._Window(),
                    incidents.get(key, []),
                    since,
                    label,
                )
            )
        hosts.append(HostReport(host, rows))
    return FleetReport(since, until, format_ts(now), hosts)


# -- fleet verify ----------------------------------------------------------------------------------


@dataclass
class BadEvent:
    seq: int
    id: str | None  # None for events that are missing (a gap)
    problem: str


@dataclass
class HostChain:
    host: str
    events: int  # rows read
    first_seq: int | None
    last_seq: int | None
    bad: list[BadEvent] = field(default_factory=list)
    more: int = 0  # bad events beyond PROBLEMS_PER_HOST, counted only

    @property
    def ok(self) -> bool:
        return not self.bad

    def flag(self, seq: int, id_: str | None, problem: str) -> None:
        if len(self.bad) < PROBLEMS_PER_HOST:
            self.bad.append(BadEvent(seq, id_, problem))
        else:
            self.more += 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class FleetVerify:
    hosts: list[HostChain]

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "hosts": [h.to_dict() for h in self.hosts]}


def fleet_verify(conn: Any, batch: int = 10_000, hosts: list[str] | None = None) -> FleetVerify:
    """Each host's hash chain, recomputed with recovery.store.chain_hash over fleet_events in seq
    order (a server-side cursor: never loaded whole). Names every event whose contents do not match
    its hash (edited), whose prev_hash is not its predecessor's hash (history before it changed), and
    every gap in seq (deleted), also before the first and after the last seq the host says it shipped.
    With `hosts`, those hosts only (each chain is independent)."""
    only = " WHERE host = ANY(%s)" if hosts else ""
    args = (hosts,) if hosts else ()
    shipped = {
        host: (first, last)
        for host, first, last in conn.execute(f"SELECT host, first_seq, last_seq FROM fleet_hosts{only}", args)
    }
    chains: dict[str, HostChain] = {}
    with conn.cursor(name="fleet_verify") as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT host, seq, id, ts, event_host, app, type, run_id, data, prev_hash, hash FROM fleet_events"
            f"{only} ORDER BY host, seq",
            args,
        )
        chain: HostChain | None = None
        expected_prev, expected_seq = GENESIS, 1
        for host, seq, id_, ts, event_host, app, type_, run_id, data, prev_hash, stored in cur:
            if chain is None or chain.host != host:
                if chain is not None:
                    _tail(chain, shipped.get(chain.host))
                first = (shipped.get(host) or (None, None))[0] or 1
                chain = chains[host] = HostChain(host, 0, seq, None)
                if seq > first:
                    chain.flag(
                        first,
                        None,
                        f"missing: the first {seq - first} event(s) shipped (seq {first}..{seq - 1}) were deleted",
                    )
                expected_prev = GENESIS if seq == 1 else prev_hash  # archived before shipping began: start there
                expected_seq = seq
            chain.events += 1
            chain.last_seq = seq
            # The events missing before it (its link cannot be checked across them), else a broken
            # link; and its own contents, unless its link is already named (a changed prev_hash also
            # changes its hash: one line for one edit).
            linked = True
            if seq != expected_seq:
                chain.flag(expected_seq, None, f"missing: seq jumps from {expected_seq - 1} to {seq} (events deleted)")
            elif prev_hash != expected_prev:
                linked = False
                chain.flag(
                    seq, id_, "its prev_hash is not the hash of the event before it: history before it was changed"
                )
            e = Event(type_, app, run_id, ts=ts, host=event_host, id=id_)
            if linked and chain_hash(prev_hash, seq, e, data) != stored:
                chain.flag(seq, id_, "its contents do not match its hash: the row was edited")
            expected_prev, expected_seq = stored, seq + 1
        if chain is not None:
            _tail(chain, shipped.get(chain.host))
    conn.rollback()  # the named cursor's read-only transaction
    for host in shipped:
        if host not in chains:
            chains[host] = HostChain(host, 0, None, None)
            _tail(chains[host], shipped[host])
    return FleetVerify([chains[h] for h in sorted(chains)])


def _tail(chain: HostChain, shipped: tuple[int | None, int | None] | None) -> None:
    """Flag the events after the last one read that the host says it shipped (deleted at the end)."""
    last = shipped[1] if shipped else None
    have = chain.last_seq or 0
    if last is not None and last > have:
        chain.flag(
            have + 1, None, f"missing: the host shipped up to seq {last}, the fleet store ends at {have or 'nothing'}"
        )


# -- text ------------------------------------------------------------------------------------------

_STATUS_HEAD = ["HOST", "APP", "STATE", "SINCE", "LAST CHECK", "LATENCY", "PM2", "INCIDENT"]
_STATUS_DROP = ["PM2", "SINCE", "LATENCY", "INCIDENT"]


def status_text(s: FleetStatus, now: _dt.datetime, *, width: int | None = None) -> str:
    """One row per host and app (a host without apps: one row), stale hosts flagged, then the reasons."""
    from recovery.render import _grid, fit_columns, fitted
    from recovery.units import ago

    body, notes = [], []
    for h in s.hosts:
        flag = " (STALE)" if h.stale else ""
        if not h.apps:
            body.append([h.host, "-", "NO APPS", "-", ago(now, h.last_check_at) + flag, "-", "-", "-"])
            continue
        for a in h.apps:
            body.append(
                [
                    h.host,
                    a.app,
                    a.state.upper(),
                    ago(now, a.since),
                    ago(now, a.last_check_at) + flag,
                    f"{a.latency_ms:.0f}ms" if a.latency_ms is not None else "-",
                    a.pm2_status or "-",
                    f"#{a.open_incident} since {ago(now, a.incident_since)}" if a.open_incident else "-",
                ]
            )
            if a.reason and a.state != "healthy":
                notes.append(f"{h.host}/{a.app}: {a.reason}")
    stale = [h.host for h in s.hosts if h.stale]
    if stale:
        notes.append(f"STALE (no check shipped for {period_label(s.stale_after_s)}): {', '.join(stale)}")
    if not s.hosts:
        return "no host has shipped to the fleet store yet"
    return "\n".join(_grid(*fit_columns(_STATUS_HEAD, body, width, _STATUS_DROP)) + fitted(notes, width))


def report_text(r: FleetReport, *, width: int | None = None) -> str:
    """The report's summary table with a HOST column, then what stands out, per host and app."""
    from recovery.render import _SUMMARY_DROP, _SUMMARY_HEAD, _grid, _heading, _summary_row, fit_columns, fitted

    body = [[h.host, *_summary_row(a)] for h in r.hosts for a in h.apps]
    body += [[h.host, "-", *["-"] * (len(_SUMMARY_HEAD) - 1)] for h in r.hosts if not h.apps]
    lines = [f"recovery fleet report: {_heading(r)}, {len(r.hosts)} host(s)", ""]  # type: ignore[arg-type]
    lines += _grid(*fit_columns(["HOST", *_SUMMARY_HEAD], body, width, _SUMMARY_DROP))
    notes = [f"{h.host}/{a.app}: {note}" for h in r.hosts for a in h.apps for note in a.stands_out]
    if notes:
        lines += ["", "stands out:"] + [f"  - {n}" for n in notes]
    return "\n".join(fitted(lines, width))


def verify_lines(v: FleetVerify) -> list[str]:
    """One line per bad event (host, seq, id, what is wrong); empty when every chain holds."""
    out = []
    for h in v.hosts:
        for b in h.bad:
            out.append(f"host {h.host}: seq {b.seq}" + (f" (event {b.id})" if b.id else "") + f": {b.problem}")
        if h.more:
            out.append(f"host {h.host}: and {h.more} more bad event(s)")
    return out
