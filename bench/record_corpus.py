"""Record the labelled corpus: real runs of each failure shape, kept as fixtures (issue 16 point 8).

Each shape starts its own PM2 daemon (own PM2_HOME under /tmp, `pm2 kill` for that home at the
end, never by name; bench/fault_campaign.py's `Lab`), an app (the demo server
recovery/demo/server.js, a small script, or a real Next.js app), and runs the real CLI as cron
does (`recovery check` subprocesses, a few seconds apart). Where days or an hour must pass,
each run of `recovery` sees its wall clock moved forward (bench/shifted_clock.py) and the
fixture says so in `compressed`. Then the store is VACUUMed and written, gzipped, to
<out>/<shape>/recovery.db.gz beside expected.json (the corpus contract: checkpoints with the
expected top hint and the hints that must not appear; the forecast's truth where a leak hit the
limit). At each checkpoint the hints the current rules give are printed beside the expected
ones: that is the live measurement of the issue's "done when".

Run: .venv/bin/python bench/record_corpus.py [--only SHAPE ...] [--out tests/corpus]
Needs pm2 ($PM2, else on PATH) and node; nextjs_prisma installs next, react and react-dom into
.cache/nextjs with npm once.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.diagnosis import evaluate_at
from bench.fault_campaign import CRASHER_JS, Lab, lab
from recovery.demo import free_port
from recovery.pm2 import find_pm2
from recovery.reading import open_folded
from recovery.units import format_ts, parse_ts

ROOT = Path(__file__).resolve().parent.parent
SHIFTED = ROOT / "bench" / "shifted_clock.py"
APP = "web"
# cron-like checks tightened to seconds: 1 s probes, 2 attempts, a 10 s verify; every check reads
# the app's logs (check_every 1s), and a restart loop is not cut short inside a fixture.
CONFIG = (
    'timeout = "1s"\nretries = 2\nretry_delay = "0s"\nverify_timeout = "10s"\n'
    'restart_grace = "3s"\nmax_restarts = 20\nwindow = "30m"\n'
)
LOGS = '[logs]\ncheck_every = "1s"\n'
ALL = ["memory_leak", "event_loop_blocked", "stalled_on_io", "database_trouble", "crash_loop", "schedule"]

# Answers every probe while it leaks 1 MB every 250 ms by itself: PM2 restarts it at
# max_memory_restart again and again, and it never hangs.
LEAKER_JS = """
const http = require('http');
const kept = [];
setInterval(() => { kept.push(Buffer.alloc(1048576, 1)); }, 250);
http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ ok: true, pid: process.pid, rss: process.memoryUsage().rss }));
}).listen(Number(process.env.PORT), '127.0.0.1');
"""


@dataclass
class Recording:
    """What a shape hands back: its checkpoints (now, top, absent, note) and how time was compressed."""

    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    compressed: str | None = None
    forecast: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


class Rec:
    """A Lab plus the recorder's moves: checks (optionally with a moved clock) and app controls."""

    def __init__(self, lb: Lab) -> None:
        self.lb = lb
        self.url = ""
        self.shift = 0.0  # seconds every `recovery` run's wall clock is moved forward

    def start(self, script: Path | None = None, *, wait: bool = True, max_memory: str | None = None) -> str:
        args = ["--max-memory-restart", max_memory] if max_memory else []
        port = free_port()
        self.lb.run_pm2(
            "start", str(script or ROOT / "recovery" / "demo" / "server.js"), "--name", APP, "--kill-timeout", "500", *args,
            env={"PORT": str(port)},
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{port}/"
        if wait:
            self.wait_answering()
        self.lb.write_config(f'name = "{APP}"\nurl = "{self.url}"\n{CONFIG}', extra=LOGS)
        return self.url

    def wait_answering(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{APP} did not answer on {self.url}")

    def control(self, action: str, **params: Any) -> None:
        httpx.get(self.url + "__control/" + action, params=params, timeout=5)
        time.sleep(0.3)  # the control acts ~50 ms after it answers

    def check(self) -> str:
        """One `recovery check` as cron runs it; returns its decision code."""
        cmd = [*self.lb.recovery] if not self.shift else [sys.executable, str(SHIFTED)]
        env = dict(self.lb.env, RECOVERY_BENCH_SHIFT_S=str(self.shift)) if self.shift else self.lb.env
        subprocess.run(
            [*cmd, "check", "--config", str(self.lb.config)], env=env, capture_output=True, text=True, timeout=300
        )
        codes = self.lb.decisions()
        return codes[-1] if codes else "-"

    def checks(self, n: int, gap: float = 2.0, between: Callable[[], None] | None = None) -> list[str]:
        out = []
        for _ in range(n):
            out.append(self.check())
            if between:
                between()
            time.sleep(gap)
        return out

    def last_ts(self) -> str:
        return self.lb.events()[-1]["ts"]

    def incidents(self) -> list[dict[str, Any]]:
        """The decisions that opened incidents: not healthy (nor degraded) after one that was, in order."""
        out, up = [], True
        for e in self.lb.events("decision.made"):
            if not e["app"]:
                continue
            ok = (e["data"] or {}).get("code") in ("healthy", "degraded")
            if up and not ok:
                out.append(e)
            up = ok
        return out

    def first_incident_plus(self, seconds: float = 5.0) -> str:
        """The first incident's detection (the decision that opened it) + `seconds`."""
        return self.incident_plus(0, seconds)

    def incident_plus(self, index: int, seconds: float = 5.0) -> str:
        """The detection of the incident `index` (0: the first) + `seconds`, or the last event when that is sooner."""
        detected = parse_ts(self.incidents()[index]["ts"]) + _dt.timedelta(seconds=seconds)
        return min(format_ts(detected), self.last_ts())


def cp(now: str, top: str | None, absent: list[str], note: str) -> dict[str, Any]:
    return {"now": now, "top": top, "absent": absent, "note": note}


# -- shapes ---------------------------------------------------------------------------------------


def hang_after(rec: Rec, action: str, healthy: int = 4, **params: Any) -> None:
    """A few healthy checks, then `action`, then the check that finds it, then two more."""
    rec.checks(healthy)
    rec.control(action, **params)
    rec.check()
    rec.checks(3)


def one_hang(rec: Rec, action: str, top: str, other: str, what: str) -> Recording:
    """The app made to hang by `action`: `top` expected, `other` (the other CPU rule) never."""
    rec.start()
    hang_after(rec, action)
    absent = [other, "database_trouble", "memory_leak", "schedule"]
    return Recording(
        [
            cp(rec.first_incident_plus(), top, absent, f"first {what}, just detected"),
            cp(rec.last_ts(), top, absent, "after the restart and three healthy checks"),
        ]
    )


def busy_loop(rec: Rec) -> Recording:
    return one_hang(rec, "hang", "event_loop_blocked", "stalled_on_io", "busy loop")


def idle_stall(rec: Rec) -> Recording:
    return one_hang(rec, "stall", "stalled_on_io", "event_loop_blocked", "idle stall")


def _leak_checks(rec: Rec, n: int, gets: int) -> None:
    def feed() -> None:  # each answered GET / keeps `mb` more
        for _ in range(gets):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(rec.url, timeout=2)

    rec.checks(n, gap=1.5, between=feed)


def leak_then_stall(rec: Rec) -> Recording:
    rec.start(max_memory="1G")
    rec.checks(2)
    rec.control("leak", mb=2)
    _leak_checks(rec, 10, gets=4)  # ~8 MB more per check, ~80 MB in all, far below 1 GB
    rec.control("stall")
    rec.check()
    rec.checks(1)
    return Recording(
        [
            cp(
                rec.first_incident_plus(),
                "stalled_on_io",
                ["event_loop_blocked", "database_trouble", "schedule"],
                "idle stall after a steady leak far below max_memory_restart 1G: the leak did not cause it",
            ),
        ],
        notes=["memory_leak may appear as its own finding beside stalled_on_io, never on top"],
    )


def leak_to_limit(rec: Rec) -> Recording:
    rec.lb.env["PM2_WORKER_INTERVAL"] = "1000"  # PM2 checks max_memory_restart every second, not every 30 s
    rec.start(max_memory="200M")
    rec.checks(2)
    rec.control("leak", mb=1)
    leak_from = rec.last_ts()
    before = rec.lb.restart_time()
    deadline = time.monotonic() + 360
    while rec.lb.restart_time() == before and time.monotonic() < deadline:
        _leak_checks(rec, 1, gets=2)  # ~1 MB/s: the limit is hit a few minutes in
    hit = _memory_restart_at(rec)
    rec.checks(3)  # PM2 restarted it; the leak setting is gone with the old process
    absent = ["event_loop_blocked", "stalled_on_io", "database_trouble", "crash_loop", "schedule"]
    return Recording(
        [cp(rec.last_ts(), "memory_leak", absent, "PM2 restarted it at max_memory_restart 200M")],
        forecast={"limit_hit_at": hit, "since": leak_from, "max_memory_restart": 200 * 1048576,
                  "how": "limit_hit_at: the start of the process PM2 started in its place (pm2 jlist pm_uptime)"},
        notes=["PM2_WORKER_INTERVAL=1000 (PM2 reads memory every second)"],
    )  # fmt: skip


def _memory_restart_at(rec: Rec) -> str:
    """When PM2 restarted the app: the new process's start time from `pm2 jlist` (pm_uptime, ms)."""
    from recovery.pm2 import parse_jlist

    procs = parse_jlist(rec.lb.run_pm2("jlist").stdout)
    ms = max(int(p["pm2_env"].get("pm_uptime") or 0) for p in procs if p.get("name") == APP)
    return format_ts(_dt.datetime.fromtimestamp(ms / 1000, _dt.UTC))


def pm2_memory_restarts(rec: Rec) -> Recording:
    rec.lb.env["PM2_WORKER_INTERVAL"] = "1000"
    script = rec.lb.home / "leaker.js"
    script.write_text(LEAKER_JS)
    rec.start(script, max_memory="150M")
    deadline = time.monotonic() + 110
    while time.monotonic() < deadline:
        rec.checks(1, gap=2.5)
    absent = ["event_loop_blocked", "stalled_on_io", "database_trouble", "crash_loop", "schedule"]
    return Recording(
        [
            cp(
                rec.last_ts(),
                "memory_leak",
                absent,
                f"PM2 restarted it {rec.lb.restart_time()} times at 150M; never hung",
            )
        ],
        notes=["leaker.js leaks 4 MB/s by itself and answers every probe; PM2_WORKER_INTERVAL=1000"],
    )


def _db_errors_then(rec: Rec, action: str) -> None:
    rec.start()
    rec.checks(3)
    rec.control("error", n=5)  # five `connect ECONNREFUSED 127.0.0.1:543x` errors on stderr, untimestamped
    time.sleep(1)
    rec.control(action)
    rec.check()
    rec.checks(3)


def db_errors_then_stall(rec: Rec) -> Recording:
    _db_errors_then(rec, "stall")
    absent = ["event_loop_blocked", "memory_leak", "schedule"]
    around = _around(rec)
    return Recording(
        [
            cp(
                rec.first_incident_plus(),
                "database_trouble",
                absent,
                "five DB errors then an idle stall, just detected",
            ),
            cp(rec.last_ts(), "database_trouble", absent, "after the restart and three healthy checks"),
        ],
        notes=[f"errors --around-incidents: {around}"],
    )


def db_errors_then_busy_loop(rec: Rec) -> Recording:
    _db_errors_then(rec, "hang")
    absent = ["stalled_on_io", "memory_leak", "schedule"]
    return Recording(
        [
            cp(
                rec.first_incident_plus(),
                "event_loop_blocked",
                absent,
                "five DB errors then a busy loop: errors are context",
            ),
            cp(rec.last_ts(), "event_loop_blocked", absent, "after the restart and three healthy checks"),
        ]
    )


def _around(rec: Rec) -> str:
    """What `recovery errors --around-incidents` says (first lines), as an operator would read it."""
    p = subprocess.run(
        [*rec.lb.recovery, "errors", "--config", str(rec.lb.config), "--around-incidents", "--since", "1h"],
        env=rec.lb.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    text = (p.stdout + p.stderr).strip()
    return " | ".join(line.strip() for line in text.splitlines()[:6])[:300]


def crash_loop(rec: Rec) -> Recording:
    script = rec.lb.home / "crasher.js"
    script.write_text(CRASHER_JS)
    rec.start(script, wait=False)
    rec.checks(4, gap=2)
    absent = ["stalled_on_io", "event_loop_blocked", "memory_leak", "schedule"]
    return Recording(
        [
            cp(
                rec.first_incident_plus(), "crash_loop", absent, "exits 1 within a second of each start: first incident"
            ),
            cp(rec.last_ts(), "crash_loop", absent, "after four checks"),
        ]
    )


def _night_start(day: int, minute_offset: float) -> _dt.datetime:
    today = _dt.datetime.now(_dt.UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    return today + _dt.timedelta(days=day, minutes=minute_offset)


def nightly_cluster(rec: Rec) -> Recording:
    rec.start()
    offsets = [-3.0, 2.0, -5.0, 1.0]  # stalls at 02:57, 03:02, 02:55, 03:01 (UTC), one night each
    checkpoints = []
    for day, off in enumerate(offsets, start=1):
        rec.shift = _night_start(day, off).timestamp() - time.time()
        rec.checks(2)
        rec.control("stall")
        rec.check()
        rec.checks(1)
        now = rec.incident_plus(day - 1)
        if day < 3:
            checkpoints.append(
                cp(
                    now,
                    "stalled_on_io",
                    ["schedule", "event_loop_blocked", "database_trouble", "memory_leak"],
                    f"idle stalls near 03:00 UTC on {day} day(s): not yet a schedule",
                )
            )
        else:
            checkpoints.append(
                cp(
                    now,
                    "schedule",
                    ["event_loop_blocked", "database_trouble", "memory_leak"],
                    f"idle stalls near 03:00 UTC on {day} different days",
                )
            )
    return Recording(
        checkpoints,
        compressed="four nights in ~2 minutes: each night's `recovery` runs see their wall clock moved forward "
        "to that day's 02:55-03:02 UTC (bench/shifted_clock.py); PM2 and the app run in real time",
    )  # fmt: skip


def same_day_bursts(rec: Rec) -> Recording:
    rec.start()
    rec.checks(2)
    absent = ["schedule", "event_loop_blocked", "database_trouble", "memory_leak"]
    checkpoints = []
    for k in range(3):
        rec.control("stall")
        rec.check()
        rec.checks(2)
        note = f"idle stall {k + 1} of 3, all within a few minutes of one day"
        checkpoints.append(cp(rec.incident_plus(k), "stalled_on_io", absent, note))
    return Recording(checkpoints)


def healthy_hour(rec: Rec) -> Recording:
    rec.start()
    t0 = time.time()
    checkpoints = []
    for k in range(60):
        rec.shift = t0 + 60 * k - time.time()  # the k-th check runs at t0 + k minutes
        rec.check()
        if k % 15 == 14:
            checkpoints.append(cp(rec.last_ts(), None, ALL, f"healthy for {k + 1} minutes: a check a minute"))
    return Recording(
        checkpoints,
        compressed="an hour in ~1 minute: the k-th `recovery check` sees its wall clock moved forward to "
        "start + k minutes (bench/shifted_clock.py); PM2 and the app run in real time",
    )


def slow_alive_bursts(rec: Rec) -> Recording:
    rec.start()
    rec.control("slow", ms=800)  # 80 % of the 1 s probe timeout
    rec.control("bursts", ms=900, every=5000)
    before = rec.lb.restart_time()
    checkpoints = []
    for k in range(3):
        rec.checks(10, gap=1.0)
        checkpoints.append(
            cp(rec.last_ts(), None, ALL, f"800 ms answers, 900 ms CPU bursts every 5 s: {10 * (k + 1)} checks")
        )
    made = rec.lb.restart_time() - before
    return Recording(checkpoints, notes=[f"PM2 restarts during the run: {made} (wanted 0)"])


# -- nextjs_prisma -------------------------------------------------------------------------------

NEXT_DIR = ROOT / ".cache" / "nextjs"
NEXT_ROUTE = """
// Health route of a real Next.js app. POST-free control: GET /api/health?break=1 logs Prisma's real
// connection error (P1001) five times, as a route using a PrismaClient would, then stalls every
// request: awaiting a pool that never hands out a connection.
export const dynamic = 'force-dynamic';
const state = globalThis.__corpus || (globalThis.__corpus = { broken: false });
const P1001 = "PrismaClientInitializationError: \\nInvalid `prisma.user.findMany()` invocation:\\n\\n" +
  "Can't reach database server at `127.0.0.1:5432`\\n\\n" +
  "Please make sure your database server is running at `127.0.0.1:5432`.";
export async function GET(request) {
  const url = new URL(request.url);
  if (url.searchParams.get('break')) {
    for (let i = 0; i < 5; i += 1) {
      const err = new Error(P1001);
      err.name = 'PrismaClientInitializationError';
      err.errorCode = 'P1001';
      console.error(err);
    }
    state.broken = true;
    return Response.json({ ok: true, broken: true });
  }
  if (state.broken) await new Promise(() => {});
  return Response.json({ ok: true, pid: process.pid });
}
"""


def _next_app(folder: Path) -> Path:
    """A minimal Next.js app (one route) built with `next build` in `folder`; returns its folder."""
    if not (NEXT_DIR / "node_modules" / "next").exists():
        NEXT_DIR.mkdir(parents=True, exist_ok=True)
        if not (NEXT_DIR / "package.json").exists():
            (NEXT_DIR / "package.json").write_text('{"name": "corpus-next", "private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "next", "react", "react-dom"],
            cwd=NEXT_DIR, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    app = folder / "next-app"
    (app / "app" / "api" / "health").mkdir(parents=True)
    (app / "app" / "api" / "health" / "route.js").write_text(NEXT_ROUTE)
    (app / "app" / "layout.js").write_text(
        "export default function RootLayout({ children }) { return <html><body>{children}</body></html>; }\n"
    )
    (app / "app" / "page.js").write_text("export default function Page() { return <p>ok</p>; }\n")
    (app / "package.json").write_text('{"name": "corpus-next-app", "private": true}\n')
    (app / "node_modules").symlink_to(NEXT_DIR / "node_modules")
    env = dict(os.environ, NEXT_TELEMETRY_DISABLED="1")
    subprocess.run(
        # webpack: Turbopack will not resolve `next` through the symlinked node_modules
        ["node", str(NEXT_DIR / "node_modules" / "next" / "dist" / "bin" / "next"), "build", "--webpack"],
        cwd=app, env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return app


def nextjs_prisma(rec: Rec) -> Recording:
    app = _next_app(rec.lb.home)
    port = free_port()
    nxt = NEXT_DIR / "node_modules" / "next" / "dist" / "bin" / "next"
    rec.lb.run_pm2(
        "start", str(nxt), "--name", APP, "--cwd", str(app), "--kill-timeout", "500", "--", "start", "-p", str(port),
        "-H", "127.0.0.1", env={"NEXT_TELEMETRY_DISABLED": "1"},
    )  # fmt: skip
    rec.url = f"http://127.0.0.1:{port}/api/health"
    rec.wait_answering(120)
    rec.lb.write_config(f'name = "{APP}"\nurl = "{rec.url}"\n{CONFIG}', extra=LOGS)
    rec.checks(3)
    httpx.get(rec.url, params={"break": "1"}, timeout=10)
    rec.check()
    rec.checks(3)
    absent = ["event_loop_blocked", "memory_leak", "schedule"]
    return Recording(
        [
            cp(
                rec.first_incident_plus(),
                "database_trouble",
                absent,
                "Next.js route logs P1001 five times, then stalls",
            ),
            cp(rec.last_ts(), "database_trouble", absent, "after the restart and three healthy checks"),
        ],
        notes=[f"next {_next_version()} (next start under PM2); Prisma's P1001 text, no Prisma package"],
    )


def _next_version() -> str:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((NEXT_DIR / "node_modules" / "next" / "package.json").read_text())["version"]
    return "?"


SHAPES: dict[str, Callable[[Rec], Recording]] = {
    "leak_to_limit": leak_to_limit,
    "leak_then_stall": leak_then_stall,
    "busy_loop": busy_loop,
    "idle_stall": idle_stall,
    "db_errors_then_stall": db_errors_then_stall,
    "db_errors_then_busy_loop": db_errors_then_busy_loop,
    "crash_loop": crash_loop,
    "pm2_memory_restarts": pm2_memory_restarts,
    "nightly_cluster": nightly_cluster,
    "same_day_bursts": same_day_bursts,
    "healthy_hour": healthy_hour,
    "slow_alive_bursts": slow_alive_bursts,
    "nextjs_prisma": nextjs_prisma,
}

# -- keeping a recording ----------------------------------------------------------------------------


def recorded_with() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if sha:
            return f"recovery {sha}"
    return "recovery (unknown commit)"


def keep(store: Path, target: Path) -> int:
    """VACUUM `store` into one file and write it gzipped to `target`; returns the gzipped size."""
    conn = sqlite3.connect(store, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("VACUUM")
    finally:
        conn.close()
    target.parent.mkdir(parents=True, exist_ok=True)
    with store.open("rb") as src, target.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as dst:
        shutil.copyfileobj(src, dst)
    return target.stat().st_size


def live(store: Path, checkpoints: list[dict[str, Any]]) -> list[str]:
    """The hints the current rules give at each checkpoint, beside the expected ones."""
    lines = []
    with contextlib.closing(open_folded(store)) as st:
        for c in checkpoints:
            got = evaluate_at(st.conn, APP, c["now"])
            top = got[0].kind if got else None
            bad = [h.kind for h in got if h.kind in c["absent"]]
            ok = top == c["top"] and not bad
            others = ", ".join(f"{h.kind} {h.confidence:.2f}" for h in got) or "no hint"
            lines.append(
                f"  {'ok ' if ok else 'NO '} at {c['now']}: expected {c['top'] or 'none':20} got {others}"
                + (f"  FORBIDDEN {','.join(bad)}" if bad else "")
            )
    return lines


def record(name: str, pm2: Path, out: Path) -> bool:
    start = time.monotonic()
    with lab(pm2) as lb:
        rec = Rec(lb)
        recording = SHAPES[name](rec)
        codes = lb.decisions()
        target = out / name
        size = keep(lb.store, target / "recovery.db.gz")
        # the live print reads the kept (VACUUMed) store, as the tests will
        lines = live(lb.store, recording.checkpoints)
    spec = {
        "shape": name,
        "app": APP,
        "recorded_with": recorded_with(),
        "compressed": recording.compressed,
        "checkpoints": recording.checkpoints,
        "forecast": recording.forecast,
    }
    (target / "expected.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    runs: list[list[Any]] = []  # the decisions in order, repeats folded: healthy x4, hung, healthy x3
    for code in codes:
        if runs and runs[-1][0] == code:
            runs[-1][1] += 1
        else:
            runs.append([code, 1])
    seq = ", ".join(f"{c} x{n}" if n > 1 else c for c, n in runs)
    print(f"## {name} ({time.monotonic() - start:.0f}s, {size / 1024:.0f} KB gz; decisions {seq})")
    for note in recording.notes:
        print(f"  note: {note}")
    print("\n".join(lines))
    sys.stdout.flush()
    return all(line.lstrip().startswith("ok") for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SHAPES), help="record only this shape")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "corpus", help="the corpus folder")
    args = parser.parse_args()
    pm2 = find_pm2(os.environ.get("PM2"))
    wrong = 0
    for name in args.only or list(SHAPES):
        try:
            wrong += not record(name, pm2, args.out)
        except Exception as exc:  # a shape that cannot be recorded is reported, the others still run
            wrong += 1
            print(f"## {name}: not recorded: {type(exc).__name__}: {exc}"[:300])
            sys.stdout.flush()
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
