"""Benchmark: `recovery status` and `recovery report` on a store of 10 million events (a year, 10 apps).

1. Generates (or reuses, unless --fresh) a store at --db (default .cache/bench/big.db) and a
   config beside it (recovery.toml: 10 [[apps]] on 127.0.0.1, nothing is probed). A year ending
   now of check runs covering all 10 apps, cadence chosen so the total is about --events: per run
   check.started/finished, per app probe.succeeded + decision.made, a pidfile process.sampled every
   --sample-every runs; and, seeded (--seed), the history an operator would see: hangs (timeouts,
   jlist sample, restart, verification), stalls between 02:00 and 03:00 UTC for `web`, a memory
   leak in `media` (PM2's max_memory_restart restarts it on its own), restart loops that end
   suspended, crash loops (errored), PM2 restarting a crashed app by itself (restart_time jumps
   with no restart.requested), slow spells (degraded) for `search`, deploys under maintenance
   pauses, a nightly scheduled restart of `jobs`, operator restarts, and a few hours when the
   watcher itself was not running.
   Rows are exactly what Store.append writes (same columns, Event.data_json() encoding,
   chain_hash), so `recovery verify` passes; they are built here and inserted by a child process
   with executemany in large transactions; the secondary indexes are dropped first and created
   again afterwards with the migration's own SQL. 21,000 rows (both ends and 40 runs in between)
   are then re-encoded with Event.data_json() and re-hashed with recovery.store.chain_hash;
   --verify runs `recovery verify` over the whole chain (about 3 minutes for 10M rows).
2. Folds the projections once (`recovery rebuild`) and prints generation time, fold time, db size.
   Before timing, healthy checks are appended from the last event up to now (so status does not
   flag the apps STALE) and folded incrementally.
3. Times fresh processes, N runs each (median and all runs; one untimed warm-up run first):
   `python -c pass`, `recovery --help` (CLI start-up), `recovery status --json`, and, when the
   command exists, `recovery report --since 7d --json` and `--since 365d --json`.

Run: .venv/bin/python bench/big_store.py [-n 5] [--fresh] [--events 10000000] [--profile]
A small trial: .venv/bin/python bench/big_store.py --db /tmp/small.db --events 300000 --fresh
10M events take about 5.7 GB on disk, ~4 minutes to generate and ~2 to fold on 2 CPUs (printed as it goes).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import heapq
import json
import marshal
import math
import multiprocessing
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recovery import projections
from recovery.events import Event
from recovery.store import GENESIS, Store, chain_hash

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DB = REPO / ".cache" / "bench" / "big.db"
HOST = "app-server-1"
DAY = 86400.0
MINUTE = 60.0
MB = 1048576

# Same encodings as Event.data_json() and chain_hash(), built once (json.dumps builds an encoder per call).
_DATA_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
_JSON_STR = json.encoder.encode_basestring  # a str as json.dumps(..., ensure_ascii=False) writes it
_SHA = hashlib.sha256

# The apps: (name, median latency in ms); ports 3001-3010. `web` stalls at night, `media` leaks memory,
# `search` has slow spells (slow_threshold), `jobs` is restarted every night at 04:00 by a schedule.
APPS = [
    ("web", 35.0),
    ("api", 18.0),
    ("admin", 60.0),
    ("shop", 45.0),
    ("blog", 25.0),
    ("auth", 12.0),
    ("search", 140.0),
    ("media", 80.0),
    ("jobs", 8.0),
    ("docs", 20.0),
]
TIMEOUT, RETRIES, RETRY_DELAY, VERIFY_TIMEOUT = 5.0, 3, 2.0, 60.0
MAX_RESTARTS, WINDOW, GRACE = 3, 1800.0, 60.0
SLOW_THRESHOLD = 1.5  # search only
DEPLOYED = ("web", "api", "shop", "admin")
LEAK_LIMIT = 1024 * MB  # media's max_memory_restart

# Incident rates, per app and 30 days.
RATES = {"hang": 2.0, "loop": 0.12, "errored": 0.2, "waiting": 0.5, "blip": 3.0}
WEB_NIGHT_STALLS = 5.0
SEARCH_SLOW_SPELLS = 6.0
DEPLOYS = 4.0
OPERATOR_RESTARTS = 0.5  # over all apps
WATCHER_OUTAGES_PER_YEAR = 3


def write_config(path: Path, db: Path) -> None:
    lines = [
        "# bench/big_store.py: a generated store; nothing here is ever probed.",
        "[store]",
        f'path = "{db}"',
        'busy_timeout = "5s"',
        "",
        "[policy]",
        f"max_restarts = {MAX_RESTARTS}",
        'window = "30m"',
        'restart_grace = "60s"',
    ]
    for i, (name, _) in enumerate(APPS):
        lines += [
            "",
            "[[apps]]",
            f'name = "{name}"',
            f'url = "http://127.0.0.1:{3001 + i}/"',
            'timeout = "5s"',
            f"retries = {RETRIES}",
            'retry_delay = "2s"',
            'verify_timeout = "60s"',
        ]
        if name == "search":
            lines.append('slow_threshold = "1500ms"')
    path.write_text("\n".join(lines) + "\n")


# -- writing rows as Store.append would ------------------------------------------------------


class Writer:
    """Assigns seq, id and hash as Store.append does; buffers rows; inserts them with executemany.

    Transactions of about `commit_every` rows. The hot events pass their data already encoded
    (templates in Sim, exactly as Event.data_json() writes them: the spot check re-encodes a
    sample of stored rows with it); the chain payload is built as chain_hash's json.dumps would.
    """

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        seq: int,
        prev: str,
        salt: str,
        *,
        batch: int = 50_000,
        commit_every: int = 1_000_000,
        progress: bool = True,
        path: Path | None = None,
        cache_mb: int = 256,
    ) -> None:
        """Inserts through `conn`, or, given `path` instead, in a child process of its own."""
        self.conn = conn
        self.seq = seq
        self.prev = prev
        self.salt = salt  # ids: 16 hex digits of seq, then 16 of salt; unique, and appended in index order
        self.rows: list[tuple] = []
        self.batch = batch
        self.commit_every = commit_every
        self.in_tx = 0
        self.written = 0
        self.progress = progress
        self.started = time.perf_counter()
        self.next_report = 1_000_000
        self.day_cache: dict[int, str] = {}
        self.sec, self.sec_prefix = -1, ""
        self.last_ts = ""
        self.child: Any = None
        if path is not None:
            # A process, not a thread: a thread would wait for the GIL after every row sqlite3 steps.
            ctx = multiprocessing.get_context("fork")
            rx, self.tx = ctx.Pipe(duplex=True)
            self.child = ctx.Process(target=_insert_process, args=(path, cache_mb, commit_every, rx), daemon=True)
            self.child.start()
            rx.close()

    def ts(self, t: float) -> str:
        """Epoch seconds as recovery.events.now_ts() writes them: 2026-11-28T14:42:15.123Z."""
        s, ms = divmod(int(t * 1000), 1000)
        if s != self.sec:
            day, sod = divmod(s, 86400)
            prefix = self.day_cache.get(day)
            if prefix is None:
                prefix = self.day_cache[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
            h, rem = divmod(sod, 3600)
            self.sec, self.sec_prefix = s, f"{prefix}T{h:02d}:{rem // 60:02d}:{rem % 60:02d}."
        return f"{self.sec_prefix}{ms:03d}Z"

    def emit(self, t: float, app: str | None, type_: str, run_id: str, data: dict[str, Any] | str) -> str:
        """Append one event; `data` is a dict, or its Event.data_json() text already."""
        seq = self.seq = self.seq + 1
        ts = self.ts(t)
        eid = f"{seq:016x}{self.salt}"
        dj = data if data.__class__ is str else _DATA_JSON(data)
        prev = self.prev
        # = json.dumps([prev, seq, id, ts, host, app, type, run_id, data_json], separators=(",", ":"),
        #   ensure_ascii=False) for these values (hex, ISO times, plain names; run_id never None here)
        app_json = "null" if app is None else f'"{app}"'
        payload = f'["{prev}",{seq},"{eid}","{ts}","{HOST}",{app_json},"{type_}","{run_id}",{_JSON_STR(dj)}]'
        h = _SHA(payload.encode("utf-8")).hexdigest()
        self.rows.append((seq, eid, ts, HOST, app, type_, run_id, dj, prev, h))
        self.prev = h
        self.last_ts = ts
        if len(self.rows) >= self.batch:
            self.flush()
        return ts

    def _insert(self, rows: list[tuple]) -> None:
        assert self.conn is not None
        self.in_tx = _insert_rows(self.conn, rows, self.in_tx, self.commit_every)

    def flush(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            if self.child is not None:
                self.tx.send_bytes(marshal.dumps(rows))  # blocks while the child is a batch behind
            else:
                self._insert(rows)
            self.written += len(rows)
        if self.progress and self.written >= self.next_report:
            el = time.perf_counter() - self.started
            print(
                f"  {self.written / 1e6:5.1f}M events  {el:6.1f}s  ({self.written / el / 1000:.0f}k/s)  at {self.last_ts[:10]}",
                flush=True,
            )
            while self.next_report <= self.written:
                self.next_report += 1_000_000

    def close(self) -> None:
        """Write what is buffered and commit."""
        self.flush()
        if self.child is not None:
            self.tx.send_bytes(b"")
            answer = self.tx.recv()
            self.child.join()
            self.child = None
            if answer != "ok":
                raise RuntimeError(f"the insert process failed: {answer}")
        elif self.in_tx:
            assert self.conn is not None
            self.conn.execute("COMMIT")
            self.in_tx = 0


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple], in_tx: int, commit_every: int) -> int:
    if not in_tx:
        conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (seq, id, ts, host, app, type, run_id, data, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    in_tx += len(rows)
    if in_tx >= commit_every:
        conn.execute("COMMIT")
        in_tx = 0
    return in_tx


def _insert_process(path: Path, cache_mb: int, commit_every: int, rx: Any) -> None:
    """The child of a Writer: inserts the batches it is sent until an empty one, then commits."""
    try:
        conn = fast_connection(path, cache_mb)
        in_tx = 0
        while True:
            msg = rx.recv_bytes()
            if not msg:
                break
            in_tx = _insert_rows(conn, marshal.loads(msg), in_tx, commit_every)
        if in_tx:
            conn.execute("COMMIT")
        conn.close()
        rx.send("ok")
    except BaseException as exc:
        rx.send(f"{type(exc).__name__}: {exc}")
        raise


# -- the simulated history --------------------------------------------------------------------


@dataclass
class App:
    idx: int
    name: str
    median: float
    url: str
    pid: int
    started: float  # when the current process started
    restart_time: int = 0
    mem_base: int = 90 * MB
    leak_per_s: float = 0.0
    hang_at_mem: float | None = None
    mode: str = "ok"  # ok, hang, loop, errored, waiting
    cpu_hung: float = 99.5
    fail_verify: bool = False
    loop_left: int = 0
    our_restarts: list[float] = field(default_factory=list)  # by check, for window and backoff
    last_restart: float | None = None
    suspended_at: str | None = None
    suspend_reason: str | None = None
    lifted: float = 0.0
    paused_until: float = 0.0
    paused_until_ts: str = ""
    pause_reason: str = ""
    reload_at: float = 0.0  # a deploy's pm2 reload: the next check may catch it
    slow_until: float = 0.0
    pending: list[tuple[float, str]] = field(default_factory=list)  # (time, kind), sorted, popped from the end
    operator_after_loop: bool = False


class Sim:
    def __init__(
        self,
        w: Writer,
        rng: random.Random,
        start: float,
        end: float,
        interval: float,
        sample_every: int,
        *,
        incidents: bool = True,
        state: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.w, self.rng, self.start, self.end = w, rng, start, end
        self.interval, self.sample_every = interval, sample_every
        self.cursor = start
        self.cron_pid = rng.randint(10_000, 400_000)
        self.next_pid = rng.randint(2_000, 60_000)
        self.apps: list[App] = []
        self.ops: list[tuple[float, int, str, str]] = []  # heap of (time, n, kind, app) between runs
        self.n_ops = 0
        for i, (name, median) in enumerate(APPS):
            a = App(
                i,
                name,
                median,
                f"http://127.0.0.1:{3001 + i}/",
                self.new_pid(),
                start - rng.uniform(0.5, 20) * DAY,
                rng.randint(0, 6),
                rng.randint(70, 160) * MB,
            )
            if name == "media":
                a.leak_per_s = rng.uniform(1.4, 1.8) * MB / 60  # ~1 GB in 9-11 hours
                a.mem_base = 140 * MB
                a.started = start - rng.uniform(0, 8) * 3600
                self.draw_leak_hang(a)
            if state and name in state:
                s = state[name]
                a.pid = s.get("pid") or a.pid
                if s.get("restart_time") is not None:
                    a.restart_time = s["restart_time"]
                if s.get("uptime_s") is not None and s.get("sampled_at"):
                    a.started = projections.parse_ts(s["sampled_at"]).timestamp() - s["uptime_s"]
                if name == "media":
                    a.started = max(a.started, start - 3600)
            self.apps.append(a)
        self.apps_json = _DATA_JSON([a.name for a in self.apps])
        self.outages: list[tuple[float, float]] = []
        if incidents:
            self.plan()

    # -- planning ------------------------------------------------------------------------

    def new_pid(self) -> int:
        self.next_pid += self.rng.randint(3, 900)
        if self.next_pid > 4_000_000:
            self.next_pid = 2_000
        return self.next_pid

    def draw_leak_hang(self, a: App) -> None:
        a.hang_at_mem = self.rng.uniform(850, 990) * MB if self.rng.random() < 0.15 else None

    def times(self, per_30d: float, lo: float, hi: float) -> list[float]:
        """Poisson arrivals between lo and hi."""
        out, t = [], lo
        rate = per_30d / (30 * DAY)
        while True:
            t += self.rng.expovariate(rate)
            if t >= hi:
                return out
            out.append(t)

    def op(self, t: float, kind: str, app: str) -> None:
        self.n_ops += 1
        heapq.heappush(self.ops, (t, self.n_ops, kind, app))

    def plan(self) -> None:
        rng, lo = self.rng, self.start + DAY
        hi = self.end - DAY  # the last day is quiet: the history ends with every app healthy
        for a in self.apps:
            pending = []
            for kind, rate in RATES.items():
                pending += [(t, kind) for t in self.times(rate, lo, hi)]
            if a.name == "web":  # a backup job starves the db pool: stalls between 02:00 and 03:00 UTC
                for t in self.times(WEB_NIGHT_STALLS, lo, hi):
                    pending.append((t - t % DAY + 2 * 3600 + rng.uniform(0, 3600), "stall"))
            if a.name == "search":
                pending += [(t, "slow") for t in self.times(SEARCH_SLOW_SPELLS, lo, hi)]
            if a.name in DEPLOYED:
                for t in self.times(DEPLOYS, lo, hi):
                    day0 = t - t % DAY
                    if time.gmtime(day0).tm_wday < 5:  # weekdays, 09:00-17:00 UTC
                        self.op(day0 + rng.uniform(9, 17) * 3600, "deploy", a.name)
            a.pending = sorted(pending, reverse=True)
        for t in self.times(OPERATOR_RESTARTS, lo, hi):
            self.op(t, "operator", rng.choice(self.apps).name)
        day0 = self.start - self.start % DAY + DAY
        while day0 + 4 * 3600 < self.end:
            if day0 + 4 * 3600 > self.start:
                self.op(day0 + 4 * 3600 + rng.uniform(0, 2), "nightly", "jobs")
            day0 += DAY
        for _ in range(WATCHER_OUTAGES_PER_YEAR):
            t = rng.uniform(lo, hi)
            self.outages.append((t, t + rng.uniform(20 * MINUTE, 3 * 3600)))

    # -- the run loop --------------------------------------------------------------------

    def run(self) -> int:
        k = 0
        planned = self.start
        while planned < self.end:
            while self.ops and self.ops[0][0] <= planned:
                t, _, kind, name = heapq.heappop(self.ops)
                self.operator(max(t, self.cursor + 0.05), kind, self.app(name))
            if not any(a <= planned < b for a, b in self.outages):
                self.check_run(max(planned + self.rng.uniform(0.0, 0.4), self.cursor + 0.05), k)
            k += 1
            planned = self.start + k * self.interval
        return k

    def app(self, name: str) -> App:
        return next(a for a in self.apps if a.name == name)

    def run_id(self, t: float) -> str:
        """Time-ordered random hex, like a UUIDv7 (Checker uses uuid4; any unique 32-hex string works)."""
        return f"{int(t * 1000):012x}{self.rng.getrandbits(80):020x}"

    def check_run(self, t: float, k: int, trigger: str = "cron") -> None:
        w = self.w
        rid = self.run_id(t)
        self.cron_pid = self.cron_pid + self.rng.randint(20, 400) if self.cron_pid < 4_000_000 else 3_000
        # {"trigger": trigger, "apps": [...], "dry_run": False, "pid": pid}, as Event.data_json() writes it
        w.emit(
            t,
            None,
            "check.started",
            rid,
            f'{{"apps":{self.apps_json},"dry_run":false,"pid":{self.cron_pid},"trigger":"{trigger}"}}',
        )
        t0 = t
        t += 0.25 + self.rng.random() * 0.05
        results, code = {}, 0
        for a in self.apps:
            t, label, c = self.check_app(a, t, rid, (k + a.idx) % self.sample_every == 0)
            results[a.name] = label
            code = max(code, c)
            t += 0.002
        w.emit(
            t,
            None,
            "check.finished",
            rid,
            {
                "outcome": ("OK", "WARNING", "CRITICAL", "UNKNOWN")[code],
                "code": code,
                "duration_ms": round((t - t0) * 1000, 1),
                "apps": results,
                "problems": [],
            },
        )
        self.cursor = t
        for a in self.apps:
            if a.operator_after_loop:
                a.operator_after_loop = False
                self.op(t + self.rng.uniform(60, 1200), "lift", a.name)

    # -- one app in one run ----------------------------------------------------------------

    def latency(self, a: App, t: float) -> float:
        hour = (t % DAY) / 3600
        busy = 1.0 + 0.35 * math.sin((hour - 9) / 24 * 2 * math.pi)  # busier in the European afternoon
        ms = a.median * busy * math.exp(self.rng.gauss(0.0, 0.35))
        if self.rng.random() < 0.004:
            ms *= self.rng.uniform(4, 20)
        if t < a.slow_until:
            ms = self.rng.uniform(1600, 4200)
        return round(min(ms, TIMEOUT * 1000 - 5), 1)

    def memory(self, a: App, t: float) -> int:
        up = max(0.0, t - a.started)
        if a.leak_per_s:
            return int(a.mem_base + up * a.leak_per_s)
        return int(a.mem_base + min(up, 6 * 3600) * 400 + (a.pid % 7) * MB)  # warms up, then flat

    def pm2_restarted_itself(self, a: App, when: float, n: int = 1) -> None:
        a.pid, a.started, a.restart_time = self.new_pid(), when, a.restart_time + n

    def check_app(self, a: App, t: float, rid: str, sample: bool) -> tuple[float, str, int]:
        rng = self.rng
        # Conditions that began since the last run.
        while a.pending and a.pending[-1][0] <= t:
            when, kind = a.pending.pop()
            if a.mode != "ok" or t < a.paused_until:
                continue  # already down (or in a deploy): one story at a time
            if kind in ("hang", "stall"):
                a.mode, a.cpu_hung = "hang", (99.0 + rng.random() if kind == "hang" else rng.uniform(0.1, 1.5))
                a.fail_verify = rng.random() < 0.1
            elif kind == "loop":
                a.mode, a.cpu_hung, a.loop_left = "loop", 99.0 + rng.random(), rng.randint(8, 40)
            elif kind in ("errored", "waiting"):
                a.mode = kind
            elif kind == "blip":  # crashed, PM2 restarted it within a second: only restart_time tells
                self.pm2_restarted_itself(a, when)
                if t - when < 3:
                    a.mode = "blip"
            elif kind == "slow":
                a.slow_until = when + rng.uniform(10, 90) * MINUTE
        if a.leak_per_s:
            mem = self.memory(a, t)
            if a.mode == "ok" and a.hang_at_mem and mem > a.hang_at_mem:
                a.mode, a.cpu_hung, a.fail_verify = "hang", 100.0, False  # GC thrash before the limit
            elif a.mode == "ok" and mem > LEAK_LIMIT:  # max_memory_restart: PM2 restarts it on its own
                self.pm2_restarted_itself(a, a.started + (LEAK_LIMIT - a.mem_base) / a.leak_per_s)
                self.draw_leak_hang(a)
        paused = t < a.paused_until
        if paused and a.reload_at and t >= a.reload_at - 1:
            a.reload_at = 0.0
            if rng.random() < 0.3:
                return self.down(a, t, rid, "refused", "online", paused=True)
        if a.mode == "ok":
            return self.healthy(a, t, rid, sample, paused)
        if a.mode == "blip":
            a.mode = "ok"
            return self.healthy(a, t, rid, sample, paused, first_refused=True)
        if a.mode == "waiting":
            self.pm2_restarted_itself(a, t + 1.0)
            return self.down(a, t, rid, "refused", "waiting restart")
        if a.mode == "errored":
            return self.down(a, t, rid, "refused", "errored")
        if a.mode == "loop":
            a.loop_left -= 1
            if a.loop_left <= 0:
                a.mode = "ok"
                if a.suspended_at and rng.random() < 0.6:
                    a.operator_after_loop = True  # an operator lifts it and restarts by hand
                    a.mode = "loop-held"
                    return self.down(a, t, rid, "timeout", "online")
                return self.healthy(a, t, rid, sample, paused)
        if a.mode == "loop-held":
            return self.down(a, t, rid, "timeout", "online")
        return self.down(a, t, rid, "timeout", "online")

    def pidfile(self, a: App, t: float, rid: str) -> None:
        # {"source": "pidfile", "status": "online", "known": True, "pm_id", "pid", "memory", "cpu", "uptime_s"}
        cpu, up = round(self.rng.uniform(0.0, 4.0), 1), round(t - a.started, 1)
        self.w.emit(
            t,
            a.name,
            "process.sampled",
            rid,
            f'{{"cpu":{cpu!r},"known":true,"memory":{self.memory(a, t)},"pid":{a.pid},"pm_id":{a.idx},'
            f'"source":"pidfile","status":"online","uptime_s":{up!r}}}',
        )

    def healthy(
        self, a: App, t: float, rid: str, sample: bool, paused: bool, first_refused: bool = False
    ) -> tuple[float, str, int]:
        w, name = self.w, a.name
        inputs: dict[str, Any]
        attempt = 1
        if first_refused:
            t += 0.0012
            w.emit(
                t,
                name,
                "probe.failed",
                rid,
                {
                    "url": a.url,
                    "attempt": 1,
                    "latency_ms": 1.2,
                    "error": "refused",
                    "detail": "[Errno 111] Connection refused",
                    "of": RETRIES,
                    "phase": "check",
                },
            )
            t += RETRY_DELAY
            attempt = 2
            sample = True  # the pid changed
        ms = self.latency(a, t)
        t += ms / 1000
        # {"url", "attempt", "latency_ms", "status": 200, "of": 3, "phase": "check"}
        w.emit(
            t,
            name,
            "probe.succeeded",
            rid,
            f'{{"attempt":{attempt},"latency_ms":{ms!r},"of":{RETRIES},"phase":"check","status":200,"url":"{a.url}"}}',
        )
        if sample:
            t += 0.0006
            self.pidfile(a, t, rid)
        t += 0.0004
        if not (paused or first_refused or (a.name == "search" and ms > SLOW_THRESHOLD * 1000)):
            # {"action": "none", "reason": "healthy", "state": "healthy", "inputs": {...}}: nearly half the events
            w.emit(
                t,
                name,
                "decision.made",
                rid,
                f'{{"action":"none","inputs":{{"errors":[],"failed":0,"instances":1,"latency_ms":{ms!r},'
                f'"pm2_status":"online","probes":1}},"reason":"healthy","state":"healthy"}}',
            )
            if a.suspended_at is not None:
                a.suspended_at, a.lifted = None, t
            return t, "OK", 0
        inputs = {
            "probes": attempt,
            "failed": attempt - 1,
            "errors": ["refused"] if first_refused else [],
            "pm2_status": "online",
            "instances": 1,
            "latency_ms": ms,
        }
        if paused:
            inputs["paused_until"] = a.paused_until_ts
            data = {
                "action": "none",
                "reason": f"paused until {a.paused_until_ts} ({a.pause_reason})",
                "state": "paused",
                "inputs": inputs,
            }
            label, code = "PAUSED", 0
        elif a.name == "search" and ms > SLOW_THRESHOLD * 1000:
            inputs["slow_threshold_ms"] = SLOW_THRESHOLD * 1000
            data = {
                "action": "none",
                "reason": f"degraded: answered in {ms:.0f}ms, slower than slow_threshold {SLOW_THRESHOLD * 1000:.0f}ms",
                "state": "degraded",
                "inputs": inputs,
            }
            label, code = "DEGRADED", 1
        else:
            data = {"action": "none", "reason": "healthy", "state": "healthy", "inputs": inputs}
            label, code = "OK", 0
        w.emit(t, name, "decision.made", rid, data)
        if a.suspended_at is not None and not paused:
            a.suspended_at, a.lifted = None, t
        return t, label, code

    def down(
        self, a: App, t: float, rid: str, error: str, pm2_status: str, paused: bool = False
    ) -> tuple[float, str, int]:
        """Three failed probes, a jlist sample, a decision, and what follows from it."""
        w, rng, name = self.w, self.rng, a.name
        for n in range(1, RETRIES + 1):
            ms = (
                round(TIMEOUT * 1000 + rng.uniform(0.5, 6), 1)
                if error == "timeout"
                else round(rng.uniform(0.6, 2.5), 1)
            )
            t += ms / 1000
            w.emit(
                t,
                name,
                "probe.failed",
                rid,
                {
                    "url": a.url,
                    "attempt": n,
                    "latency_ms": ms,
                    "error": error,
                    "of": RETRIES,
                    "phase": "check",
                    "detail": "timed out" if error == "timeout" else "[Errno 111] Connection refused",
                },
            )
            if n < RETRIES:
                t += RETRY_DELAY
        t += rng.uniform(0.25, 0.45)  # pm2 jlist: Node start-up
        sample: dict[str, Any] = {"source": "jlist", "status": pm2_status, "known": True, "pm_id": a.idx}
        if pm2_status == "errored":
            a.restart_time += 15  # PM2 gave up after its own restarts
            sample.update(
                memory=0, cpu=0, restart_time=a.restart_time, unstable_restarts=15, exit_code=1, exec_mode="fork_mode"
            )
        elif pm2_status == "online":
            sample.update(
                pid=a.pid,
                memory=self.memory(a, t),
                cpu=round(a.cpu_hung if error == "timeout" else 0.0, 1),
                restart_time=a.restart_time,
                unstable_restarts=0,
                uptime_s=round(max(0.0, t - a.started), 1),
                exec_mode="fork_mode",
            )
        else:  # launching, waiting restart: no uptime yet
            sample.update(memory=0, cpu=0, restart_time=a.restart_time, unstable_restarts=0, exec_mode="fork_mode")
        w.emit(t, name, "process.sampled", rid, sample)
        t += 0.001
        failures = f"{RETRIES} failed probes ({error})"
        inputs: dict[str, Any] = {
            "probes": RETRIES,
            "failed": RETRIES,
            "errors": [error],
            "pm2_status": pm2_status,
            "instances": 1,
        }
        if paused:
            inputs["paused_until"] = a.paused_until_ts
            w.emit(
                t,
                name,
                "decision.made",
                rid,
                {
                    "action": "none",
                    "state": "paused",
                    "inputs": inputs,
                    "reason": f"paused until {a.paused_until_ts} ({a.pause_reason}); {failures}, nothing restarted",
                },
            )
            return t, "PAUSED", 0
        if pm2_status == "waiting restart":
            w.emit(
                t,
                name,
                "decision.made",
                rid,
                {
                    "action": "wait",
                    "state": "recovering",
                    "inputs": inputs,
                    "reason": f"PM2 is already restarting it (status 'waiting restart'), {failures}",
                },
            )
            a.mode = "ok"
            t, ok, secs = self.verify(a, t + 0.01, rid)
            return t, "RECOVERED", 1
        cause = (
            f"hung: PM2 says online but {failures}"
            if pm2_status == "online"
            else f"errored: PM2 gave up restarting it (crash loop), {failures}"
        )
        # The policy (recovery.policy.decide), from the restarts this tool made.
        a.our_restarts = [r for r in a.our_restarts if r > t - WINDOW and r > a.lifted]
        nrec = len(a.our_restarts)
        since_last = t - a.last_restart if a.last_restart is not None else None
        inputs["restarts_in_window"] = nrec
        if since_last is not None:
            inputs["seconds_since_restart"] = round(since_last, 1)
        decision: dict[str, Any]
        if since_last is not None and since_last < GRACE:
            decision = {
                "action": "wait",
                "state": "recovering",
                "reason": f"warming up: restarted {since_last:.0f}s ago (restart_grace 1m); {failures}",
            }
        elif a.suspended_at:
            decision = {
                "action": "suppress",
                "state": "suspended",
                "reason": f"restart loop: suspended since {a.suspended_at} ({a.suspend_reason}); "
                f"`recovery resume {name}` allows restarts again",
            }
        elif nrec >= MAX_RESTARTS:
            reason = f"restart loop: {nrec} restarts in 30m, last causes: {cause.split(':')[0]} x{nrec}; not restarting again"
            decision = {"action": "suppress", "state": "suspended", "reason": reason}
            a.suspended_at, a.suspend_reason = w.ts(t), reason
        elif nrec >= 1 and since_last is not None and since_last < GRACE * 2 ** (nrec - 1):
            needed = GRACE * 2 ** (nrec - 1)
            inputs["backoff_s"] = needed
            decision = {
                "action": "wait",
                "state": "down",
                "reason": f"backoff: restart {nrec + 1} of {MAX_RESTARTS} allowed in {needed - since_last:.0f}s; {failures}",
            }
        else:
            decision = {"action": "restart", "state": "recovering", "reason": cause}
        decision["inputs"] = inputs
        w.emit(t, name, "decision.made", rid, decision)
        if decision["action"] == "suppress":
            return t, "SUSPENDED", 2
        if decision["action"] != "restart":
            return (
                t,
                ("RECOVERING" if decision["state"] == "recovering" else "DOWN"),
                (1 if decision["state"] == "recovering" else 2),
            )
        t = self.restart(a, t + 0.001, rid, "check", cause)
        a.our_restarts.append(t)
        a.last_restart = t
        # How the app comes back: a hang is cured (or, once in ten, not yet), a loop hangs again later.
        if a.mode == "hang" and a.fail_verify:
            a.fail_verify = False
            t = self.verify_fail(a, t, rid)
            return t, "CRITICAL", 2
        if a.mode in ("hang", "errored"):
            a.mode = "ok"
        t, _, _ = self.verify(a, t, rid)
        return t, "RECOVERED", 1

    def restart(self, a: App, t: float, rid: str, by: str, reason: str) -> float:
        command = ["pm2", "restart", a.name]
        self.w.emit(t, a.name, "restart.requested", rid, {"by": by, "reason": reason, "command": command})
        ms = round(self.rng.uniform(700, 1800), 1)
        t += ms / 1000
        self.w.emit(
            t,
            a.name,
            "restart.succeeded",
            rid,
            {"command": command, "exit_code": 0, "stderr_tail": "", "duration_ms": ms},
        )
        a.pid, a.started, a.restart_time = self.new_pid(), t, a.restart_time + 1
        if a.leak_per_s:
            self.draw_leak_hang(a)
        return t

    def verify(self, a: App, t: float, rid: str) -> tuple[float, bool, float]:
        """Probe until it answers: a few refused attempts while Node starts, then 200."""
        w, rng = self.w, self.rng
        start, delay, n = t, 0.2, 0
        fails = rng.choice((0, 1, 1, 2, 2, 3, 4, 6))
        while True:
            n += 1
            if n <= fails:
                ms = round(rng.uniform(0.5, 2.0), 1)
                t += ms / 1000
                w.emit(
                    t,
                    a.name,
                    "probe.failed",
                    rid,
                    {
                        "url": a.url,
                        "attempt": n,
                        "latency_ms": ms,
                        "error": "refused",
                        "detail": "[Errno 111] Connection refused",
                        "phase": "verify",
                    },
                )
                t += delay
                delay = min(delay * 1.5, 2.0)
                continue
            ms = round(a.median * rng.uniform(3, 12), 1)  # first request after start: cold
            t += ms / 1000
            w.emit(
                t,
                a.name,
                "probe.succeeded",
                rid,
                {"url": a.url, "attempt": n, "latency_ms": ms, "status": 200, "phase": "verify"},
            )
            w.emit(
                t, a.name, "verification.passed", rid, {"attempts": n, "seconds": round(t - start, 2), "latency_ms": ms}
            )
            return t, True, t - start

    def verify_fail(self, a: App, t: float, rid: str) -> float:
        """The app hangs again at once: every verify probe times out until verify_timeout."""
        w = self.w
        start, n = t, 0
        while True:
            n += 1
            left = start + VERIFY_TIMEOUT - t
            ms = round(max(100.0, min(TIMEOUT, left) * 1000) + self.rng.uniform(0.5, 5), 1)
            t += ms / 1000
            w.emit(
                t,
                a.name,
                "probe.failed",
                rid,
                {
                    "url": a.url,
                    "attempt": n,
                    "latency_ms": ms,
                    "error": "timeout",
                    "detail": "timed out",
                    "phase": "verify",
                },
            )
            if t + 0.2 >= start + VERIFY_TIMEOUT:
                w.emit(
                    t,
                    a.name,
                    "verification.failed",
                    rid,
                    {
                        "attempts": n,
                        "seconds": round(t - start, 2),
                        "last_error": "timeout",
                        "detail": "timed out",
                        "verify_timeout": VERIFY_TIMEOUT,
                    },
                )
                return t
            t += 0.2

    # -- what happens between runs ---------------------------------------------------------

    def operator(self, t: float, kind: str, a: App) -> None:
        rng, w = self.rng, self.w
        if kind == "deploy":
            if a.mode != "ok" or t < a.paused_until:
                return
            version = f"v{rng.randint(1, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
            a.paused_until = t + 15 * MINUTE
            a.paused_until_ts = w.ts(a.paused_until)
            a.pause_reason = f"deploy {version}"
            w.emit(
                t,
                a.name,
                "maintenance.started",
                self.run_id(t),
                {"until": a.paused_until_ts, "reason": a.pause_reason, "by": "deploy"},
            )
            a.reload_at = t + rng.uniform(20, 60)
            self.pm2_restarted_itself(a, a.reload_at)  # the deploy's `pm2 reload`: PM2 counts it
            self.op(t + rng.uniform(3, 12) * MINUTE, "deployed", a.name)
            self.cursor = t
        elif kind == "deployed":
            w.emit(t, a.name, "maintenance.ended", self.run_id(t), {"reason": "deploy finished", "by": "deploy"})
            a.paused_until, a.reload_at = 0.0, 0.0
            self.cursor = t
        elif kind == "lift":
            if a.suspended_at:
                w.emit(
                    t,
                    a.name,
                    "suspension.lifted",
                    self.run_id(t),
                    {"reason": "db pool size fixed", "by": "alice", "since": a.suspended_at},
                )
                a.suspended_at, a.lifted = None, t
            a.mode = "ok"
            self.cursor = t
            self.manual_restart(t + rng.uniform(5, 60), a, "operator", "after fixing the db pool size")
        elif kind == "operator":
            if a.mode == "ok" and t >= a.paused_until:
                self.manual_restart(t, a, "operator", rng.choice(("config change", "clear cache", "rotate secrets")))
        elif kind == "nightly":
            if a.mode == "ok":
                self.manual_restart(t, a, "schedule", "nightly")

    def manual_restart(self, t: float, a: App, by: str, reason: str) -> None:
        """`recovery restart APP --by ... --reason ...`: a run of its own."""
        w = self.w
        rid = self.run_id(t)
        self.cron_pid += self.rng.randint(20, 400)
        w.emit(t, None, "check.started", rid, {"trigger": by, "apps": [a.name], "dry_run": False, "pid": self.cron_pid})
        t0 = t
        t = self.restart(a, t + 0.3, rid, by, reason)
        t, _, _ = self.verify(a, t, rid)
        w.emit(
            t + 0.001,
            None,
            "check.finished",
            rid,
            {
                "outcome": "OK",
                "code": 0,
                "duration_ms": round((t - t0) * 1000, 1),
                "apps": {a.name: "RESTARTED"},
                "problems": [],
            },
        )
        self.cursor = t + 0.001


# -- generation, fold, top-up ------------------------------------------------------------------


def per_run(n_apps: int, sample_every: int) -> float:
    return 2 + n_apps * (2 + 1 / sample_every)


def fast_connection(path: Path, cache_mb: int) -> sqlite3.Connection:
    """A connection tuned for one bulk writer; the file becomes a WAL store again when done."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")  # a crash leaves a .partial file, never the reused store
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(f"PRAGMA cache_size = -{cache_mb * 1024}")
    return conn


def generate(db: Path, args: argparse.Namespace, end: float) -> None:
    partial = db.with_name(db.name + ".partial")
    for p in (partial, Path(str(partial) + "-wal"), Path(str(partial) + "-shm"), Path(str(partial) + "-journal")):
        p.unlink(missing_ok=True)
    rng = random.Random(args.seed)
    interval = args.days * DAY * per_run(len(APPS), args.sample_every) / args.events
    print(
        f"generating ~{args.events / 1e6:g}M events: {args.days:g} days ending {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(end))} UTC,"
        f" a check of {len(APPS)} apps every {interval:.1f}s, seed {args.seed} -> {db}",
        flush=True,
    )
    Store.open(partial).close()  # the schema, as the migrations create it
    conn = fast_connection(partial, args.cache_mb)
    # The secondary indexes are dropped and created again, with the very SQL the migration wrote,
    # once the rows are in: building them in one pass is much faster than row by row.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.close()  # no connection open across the fork
    started = time.perf_counter()
    w = Writer(None, 0, GENESIS, f"{rng.getrandbits(64):016x}", path=partial, cache_mb=args.cache_mb)
    sim = Sim(w, rng, end - args.days * DAY, end, interval, args.sample_every)
    runs = sim.run()
    w.close()
    gen_s = time.perf_counter() - started
    print(
        f"  wrote {w.written:,} events ({runs:,} check runs) in {gen_s:.1f}s ({w.written / gen_s / 1000:.0f}k events/s)",
        flush=True,
    )
    t = time.perf_counter()
    conn = fast_connection(partial, args.cache_mb)
    for _name, sql in indexes:
        conn.execute(sql)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    assert mode == "wal", mode
    conn.close()
    os.replace(partial, db)
    print(
        f"  indexes ({', '.join(n for n, _ in indexes)}) built in {time.perf_counter() - t:.1f}s;"
        f" generation total {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    spot_check(db, random.Random(args.seed))


def spot_check(db: Path, rng: random.Random, windows: int = 40, n: int = 500) -> None:
    """Re-encode (Event.data_json()) and re-hash (chain_hash) the first and last `n` rows and `windows` runs of them in between."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    starts = [1, max(1, last - n + 1)] + [rng.randint(2, max(2, last - n)) for _ in range(windows)]
    checked = 0
    for lo in starts:
        rows = conn.execute(
            "SELECT seq, id, ts, host, app, type, run_id, data, prev_hash, hash FROM events"
            " WHERE seq >= ? ORDER BY seq LIMIT ?",
            (lo, n),
        ).fetchall()
        prev = GENESIS if lo == 1 else conn.execute("SELECT hash FROM events WHERE seq = ?", (lo - 1,)).fetchone()[0]
        for seq, eid, ts, host, app, type_, run_id, data, prev_hash, h in rows:
            e = Event(type=type_, app=app, run_id=run_id, data=json.loads(data), ts=ts, host=host, id=eid)
            assert e.data_json() == data, (
                f"seq {seq}: data {data} is not as Event.data_json() writes it: {e.data_json()}"
            )
            assert prev_hash == prev and chain_hash(prev, seq, e, data) == h, f"seq {seq}: hash chain broken"
            prev = h
            checked += 1
    conn.close()
    print(
        f"  spot check: {checked:,} events ({len(starts)} runs of {n}) re-encode with Event.data_json() and re-hash"
        " with recovery.store.chain_hash",
        flush=True,
    )


def top_up(db: Path, args: argparse.Namespace, end: float) -> int:
    """Healthy checks from the last event up to `end`, so the history ends now; folded incrementally."""
    with Store.open(db) as store:
        conn = store.conn
        seq, prev, last_ts = conn.execute("SELECT seq, hash, ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        last = projections.parse_ts(last_ts).timestamp()
        interval = args.days * DAY * per_run(len(APPS), args.sample_every) / args.events
        if end - last < interval:
            return 0
        projections.fold(conn)
        state = {
            r[0]: {"pid": r[1], "restart_time": r[2], "uptime_s": r[3], "sampled_at": r[4]}
            for r in conn.execute("SELECT app, pid, restart_time, uptime_s, sampled_at FROM app_state")
        }
        rng = random.Random(args.seed + int(last))
        w = Writer(conn, seq, prev, f"{rng.getrandbits(64):016x}", progress=False)
        sim = Sim(w, rng, last + interval, end, interval, args.sample_every, incidents=False, state=state)
        sim.run()
        w.close()
        projections.fold(conn)
        return w.seq - seq


def db_size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if not p.name.endswith(".partial"))


# -- timing ------------------------------------------------------------------------------------


@dataclass
class Timed:
    label: str
    argv: list[str]
    walls: list[float] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    first: float = 0.0
    out: str = ""
    err: str = ""


def run_once(argv: list[str]) -> tuple[float, int, str, str]:
    start = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    return time.perf_counter() - start, p.returncode, p.stdout, p.stderr


def recovery_argv() -> list[str]:
    exe = shutil.which("recovery", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "recovery_cli.main"]


def has_command(rec: list[str], name: str) -> tuple[bool, str]:
    """Whether `recovery NAME --help` works, and if not, what it said."""
    _, code, out, err = run_once([*rec, name, "--help"])
    lines = [line.strip(" │╭╮╰╯─") for line in (err or out).splitlines()]
    said = next(
        (line for line in lines if "no such command" in line.lower()), next((line for line in lines if line), "")
    )
    return code == 0, f"`recovery {name} --help` exited {code}: {said}"


def report_summary(text: str) -> str:
    data = json.loads(text)
    apps = data.get("apps") if isinstance(data, dict) else None
    if not isinstance(apps, dict):
        return f"parsed; top-level keys: {sorted(data) if isinstance(data, dict) else type(data).__name__}"
    parts = []
    for name, a in apps.items():
        if not isinstance(a, dict):
            continue
        lat = a.get("latency_ms") or {}
        inc = a.get("incidents")
        parts.append(
            f"{name}: {a.get('availability_percent')}% {len(inc) if isinstance(inc, list) else inc} inc "
            f"{a.get('restarts')} rst mttr {a.get('mttr_s')}s p50 {lat.get('p50')}"
        )
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="timed runs of each command (median reported)")
    parser.add_argument(
        "--db", type=Path, default=DEFAULT_DB, help=f"the store (default {DEFAULT_DB.relative_to(REPO)})"
    )
    parser.add_argument("--fresh", action="store_true", help="generate the store again even if it exists")
    parser.add_argument("--events", type=int, default=10_000_000, help="about how many events to generate")
    parser.add_argument("--days", type=float, default=365.0, help="how much history, ending now")
    parser.add_argument("--sample-every", type=int, default=10, help="a pidfile process.sampled every N healthy runs")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed and --end make the same store")
    parser.add_argument(
        "--end", help="where the generated history ends, ISO 8601 (default: now; later runs top it up to now)"
    )
    parser.add_argument("--cache-mb", type=int, default=1024, help="SQLite page cache while generating")
    parser.add_argument("--verify", action="store_true", help="also time `recovery verify` over the whole chain")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of each timed command")
    parser.add_argument("--no-time", action="store_true", help="generate and fold only")
    args = parser.parse_args()

    db = args.db.resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    config = db.with_name("recovery.toml")
    write_config(config, db)
    rec = recovery_argv()
    end = time.time()
    if args.end:
        when = projections.parse_ts(args.end)
        end = (when if when.tzinfo else when.replace(tzinfo=datetime.UTC)).timestamp()

    if args.fresh or not db.exists():
        for p in db.parent.glob(db.name + "*"):
            if p.name == db.name or p.name[len(db.name) :] in ("-wal", "-shm", "-journal") or ".lock" in p.name:
                p.unlink()
        generate(db, args, end)
        print(f"  db size: {db_size(db) / 1e9:.2f} GB", flush=True)
        wall, code, out, err = run_once([*rec, "rebuild", "--config", str(config)])
        if code != 0:
            print(f"recovery rebuild exited {code}: {err.strip()}", file=sys.stderr)
            return 1
        print(f"fold: `recovery rebuild` took {wall:.1f}s wall ({out.strip()})", flush=True)
    else:
        n = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT max(seq) FROM events").fetchone()[0]
        print(f"reusing {db} ({n:,} events; --fresh to generate it again)", flush=True)
    if args.verify:
        wall, code, out, err = run_once([*rec, "verify", "--config", str(config)])
        print(f"`recovery verify`: exit {code} in {wall:.1f}s: {(out or err).strip()}", flush=True)
        if code != 0:
            return 1
    t = time.perf_counter()
    added = top_up(db, args, time.time())
    print(f"topped up to now: {added:,} events appended and folded in {time.perf_counter() - t:.1f}s", flush=True)
    print(
        f"db size: {db_size(db) / 1e9:.2f} GB ({', '.join(f'{p.name} {p.stat().st_size / 1e6:.0f} MB' for p in sorted(db.parent.glob(db.name + '*')))})"
    )
    if args.no_time:
        return 0

    c = ["--config", str(config)]
    cmds = [
        Timed("python -c pass", [sys.executable, "-c", "pass"]),
        Timed("recovery --help", [*rec, "--help"]),
        Timed("recovery status --json", [*rec, "status", *c, "--json"]),
    ]
    ok, why = has_command(rec, "report")
    if ok:
        cmds += [
            Timed("recovery report --since 7d --json", [*rec, "report", *c, "--since", "7d", "--json"]),
            Timed("recovery report --since 365d --json", [*rec, "report", *c, "--since", "365d", "--json"]),
        ]
    for cmd in cmds:
        cmd.first, _, cmd.out, cmd.err = run_once(cmd.argv)  # warm-up, untimed in the median
    for _ in range(args.n):  # interleaved, so every command sees the same background noise
        for cmd in cmds:
            wall, code, cmd.out, cmd.err = run_once(cmd.argv)
            cmd.walls.append(wall)
            cmd.codes.append(code)
    print(f"\ntimings, {args.n} runs each, fresh processes (ms; first = untimed warm-up run):")
    failed = False
    for cmd in cmds:
        med = statistics.median(cmd.walls) * 1000
        runs = ", ".join(f"{w * 1000:.0f}" for w in cmd.walls)
        print(
            f"  {cmd.label:38s} median {med:7.1f}  runs {runs}  first {cmd.first * 1000:.0f}  exit {sorted(set(cmd.codes))}"
        )
        if cmd.label.startswith("recovery status"):
            try:
                rows = json.loads(cmd.out)["apps"]
                print("      " + ", ".join(f"{r['app']} {r['state']}{' STALE' if r['stale'] else ''}" for r in rows))
            except (ValueError, KeyError, TypeError) as exc:
                print(f"      status JSON did not parse: {exc}: {cmd.out[:200]!r} {cmd.err[:200]!r}")
                failed = True
            if any(code not in (0, 1, 2, 3) for code in cmd.codes):
                failed = True
        elif cmd.label.startswith("recovery report"):
            try:
                print("      " + report_summary(cmd.out)[:1500])
            except ValueError as exc:
                print(f"      report JSON did not parse: {exc}: {cmd.out[:200]!r} {cmd.err[:300]!r}")
                failed = True
            if any(code not in (0, 1, 2) for code in cmd.codes):
                failed = True
        elif any(cmd.codes):
            failed = True
    if not ok:
        print(f"  recovery report: skipped, not in this checkout yet ({why})")
    over = [
        c.label
        for c in cmds
        if c.label.startswith("recovery ") and "--help" not in c.label and statistics.median(c.walls) >= 1.0
    ]
    print(f"target (each under 1 s): {'missed by ' + ', '.join(over) if over else 'met'}")
    if args.profile:
        for cmd in cmds[2:]:
            argv = [sys.executable, "-m", "cProfile", "-s", "cumtime", "-m", "recovery_cli.main", *cmd.argv[len(rec) :]]
            _, _, out, _ = run_once(argv)
            lines = out.splitlines()
            start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
            print(f"\ncProfile of {cmd.label} (top 25 by cumulative time):")
            print("\n".join(lines[max(0, start - 3) : start + 26]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
