"""Benchmark: how much `recovery watch` at its defaults writes per app per day on a healthy app.

Starts the demo server under a private PM2 (own PM2_HOME in /tmp), then `recovery watch` at its
defaults (2 s) on it. After a warm-up (the watch's first, full step and its first batch) the store
is measured (projections folded, SQLite's `dbstat` over every table and index); after `--minutes`
the watch is stopped with SIGTERM and the store measured again. Prints the growth extrapolated to a
day, where it went (by table and index), the events written, and the probes the app answered (its
own count, GET /__count) beside the probe count of `recovery report --json`.

The hourly full PM2 sample (`pm2 jlist`, a whole step's events) falls outside a 10-minute window
after the warm-up: it is printed on its own, as measured on the watch's first step. And a page of
SQLite is 0.6 MB/day over 10 minutes: so a simulated day follows (`--day`, on by default), the same
watch steps (`CheckRun` through the watch's `Batcher`) on a fake clock, with a fake PM2 and app,
into a real store: its whole size after 24 h of 2 s steps, hourly full samples and B-tree slack
included.

Run: .venv/bin/python bench/watch_bytes.py [--minutes 10] [--no-day]
Needs pm2: $PM2, else on PATH (./test.sh or ./demo.sh install one under .cache/).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from recovery import projections
from recovery.demo import _wait_healthy, free_port
from recovery.pm2 import find_pm2

APP = "bench"
# The demo server of this checkout (it counts the requests it answered): also when `recovery`
# itself is imported from another checkout (PYTHONPATH), to measure that code.
SERVER_JS = Path(__file__).resolve().parents[1] / "recovery" / "demo" / "server.js"
DAY = 86400.0


class _SteadyPm2:
    """PM2 for the simulated day: one process, always online, the same pid."""

    def _view(self, name: str, source: str) -> Any:
        from recovery.observations import Instance, ProcessView

        inst = Instance(name, 0, 4242, "online", memory=61 << 20, cpu=0.3, restart_time=0, uptime_s=3600.0)
        return ProcessView(name, source, (inst,))

    def view(self, name: str) -> Any:
        return self._view(name, "jlist")

    def quick_view(self, name: str) -> Any:
        return self._view(name, "pidfile")

    def cpu_mark(self, name: str) -> Any:
        return None

    def cpu_window(self, mark: Any) -> dict[str, Any]:
        return {}


class _SteadyProber:
    """The app for the simulated day: every probe answered 200 in 0.8 to 6 ms."""

    def __init__(self) -> None:
        self.random = random.Random(15)

    def attempt(self, app: Any, n: int, timeout: float | None = None) -> Any:
        from recovery.observations import Attempt

        return Attempt(True, n, app.url, self.random.uniform(0.8, 6.0), status=200)

    def close(self) -> None:
        pass


def simulated_day(home: Path, interval: float) -> tuple[int, int, int]:
    """A day of `recovery watch` steps on a steady app: (store bytes, events, probes)."""
    from recovery.batching import Batcher
    from recovery.check import CheckRun
    from recovery.clock import FakeClock
    from recovery.config import load

    store = home / "day.db"
    config = home / "day.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n\n[logs]\nin_check = false\n\n'  # the fake PM2 names no log files
        f'[[apps]]\nname = "{APP}"\nurl = "http://127.0.0.1:9/"\n'
    )
    conf = load(config)
    clock, pm2, prober = FakeClock(), _SteadyPm2(), _SteadyProber()
    batcher = Batcher(store, span_s=conf.watch.batch)
    steps = int(DAY / interval)
    for _ in range(steps):
        run = CheckRun(
            conf,
            pm2=pm2,  # type: ignore[arg-type]
            prober=prober,  # type: ignore[arg-type]
            recorder=batcher.recorder(now=clock.now),
            clock=clock,
            trigger="watch",
            deliver=False,
        )
        run.run()
        clock.advance(interval)
    batcher.close(now=clock.now)
    sizes, _, events = measure(store)
    return sum(sizes.values()), events, steps


def recovery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "recovery_cli.main", *args]


def measure(store: Path) -> tuple[dict[str, int], int, int]:
    """Bytes per table and index (dbstat's pages, projections folded first), the bytes used in
    those pages (pages less their unused bytes: not rounded to whole pages), and the events stored."""
    conn = sqlite3.connect(store, timeout=30, isolation_level=None)
    try:
        projections.fold(conn)
        sizes = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
        used = conn.execute("SELECT sum(pgsize - unused) FROM dbstat").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    return sizes, used, events


def answered(url: str) -> int:
    """How many GET / the demo app answered (its own count)."""
    return int(httpx.get(url + "__count", timeout=5, trust_env=False).json()["answered"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10, help="minutes measured after the warm-up")
    parser.add_argument("--warmup", type=float, default=75, help="seconds before the first measurement")
    parser.add_argument("--no-day", dest="day", action="store_false", help="skip the simulated day")
    args = parser.parse_args()

    pm2 = find_pm2(os.environ.get("PM2")).absolute()
    home = Path(tempfile.mkdtemp(prefix="rbench-bytes-", dir="/tmp"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    store = home / "recovery.db"
    env = dict(os.environ, PM2_HOME=str(home / "pm2"))
    env["PATH"] = os.pathsep.join([str(pm2.parent), env.get("PATH", "")])
    config = home / "recovery.toml"
    config.write_text(f'[store]\npath = "{store}"\n\n[pm2]\nbin = "{pm2}"\n\n[[apps]]\nname = "{APP}"\nurl = "{url}"\n')

    def pm2_run(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(pm2), *argv],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    watcher: subprocess.Popen[bytes] | None = None
    try:
        started = pm2_run("start", str(SERVER_JS), "--name", APP, PORT=str(port), HOST="127.0.0.1")
        if started.returncode != 0 or not _wait_healthy(url, time.monotonic() + 30):
            print(f"the benchmark app did not start: {started.stderr[-500:]}", file=sys.stderr)
            return 1
        import recovery

        print(f"recovery from {Path(recovery.__file__).parent}; PM2 {pm2_run('--version').stdout.strip()}", flush=True)
        base_count = answered(url)
        log = (home / "watch.log").open("wb")
        watcher = subprocess.Popen(recovery_argv("watch", "--config", str(config)), env=env, stdout=log, stderr=log)
        time.sleep(args.warmup)
        first_sizes, first_used, first_events = measure(store)
        t0 = time.monotonic()
        time.sleep(args.minutes * 60)
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(timeout=60)
        watcher = None
        elapsed = time.monotonic() - t0
        made = answered(url) - base_count
        sizes, used, events = measure(store)
        out = subprocess.run(
            recovery_argv("report", "--config", str(config), "--since", "1d", "--json"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        reported = json.loads(out.stdout)["apps"][APP]["probes"] if out.returncode == 0 else None
        with sqlite3.connect(store) as conn:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            types = conn.execute("SELECT type, count(*) FROM events GROUP BY type ORDER BY 2 DESC").fetchall()
            full = conn.execute(
                "SELECT sum(length(data) + length(id) + length(ts) + length(hash) * 2 + coalesce(length(run_id), 0))"
                " FROM events WHERE run_id = (SELECT run_id FROM events WHERE type = 'check.started' ORDER BY seq"
                " LIMIT 1)"
            ).fetchone()[0]
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        pm2_run("kill")

    grown = {name: sizes.get(name, 0) - first_sizes.get(name, 0) for name in sizes}
    total = sum(grown.values())
    print(f"measured {elapsed / 60:.1f} min after a {args.warmup:.0f} s warm-up; watch exit code {code} (SIGTERM)")
    print(f"store growth: {total} bytes -> {total / elapsed * DAY / 1e6:.2f} MB per app per day (dbstat, all tables)")
    grown_used = used - first_used
    print(
        f"  bytes used in pages: {grown_used} -> {grown_used / elapsed * DAY / 1e6:.2f} MB per app per day"
        f" (the page count moves {page / elapsed * DAY / 1e6:.2f} MB/day a page)"
    )
    for name, n in sorted(grown.items(), key=lambda kv: -kv[1]):
        if n:
            print(f"  {name:<28} {n / elapsed * DAY / 1e6:8.3f} MB/day")
    print(
        f"events written: {events - first_events} in the window ({(events - first_events) / elapsed * 60:.1f}/min),"
        f" {events} in all: " + ", ".join(f"{t} {n}" for t, n in types)
    )
    print(f"a full step (the first, with its pm2 jlist sample; hourly): ~{full} bytes of event text")
    print(f"probes made (the app's own count): {made}; report's probe count: {reported}")
    if args.day:
        day_start = time.monotonic()
        size, n_events, steps = simulated_day(home, 2.0)
        print(
            f"simulated day ({steps} steps 2 s apart, fake clock, PM2 and app; {time.monotonic() - day_start:.0f} s):"
            f" the store is {size / 1e6:.2f} MB (dbstat, all tables and indexes), {n_events} events"
        )
    shutil.rmtree(home, ignore_errors=True)
    return 0 if reported == made and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
