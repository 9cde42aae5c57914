"""Benchmark: one hung worker of 4 (PM2 cluster mode) under `recovery watch` at its defaults.

Starts the demo server with `-i 4` under a private PM2 (own PM2_HOME in /tmp, PM2's default
kill_timeout, as a user would), and `recovery watch` at its defaults (loop protection off, so each
hang is a first incident). N times, in turn on workers 0..3: wait until the watch is steady, put one
worker in a busy loop (`--kind hang`, GET /__control/hang?pid=...) or stall it (`--kind stall`), then
time, from the events: detection (the `worker_hung` decision), the restart of that worker, and
every worker answering again (`verification.passed`). Checks that exactly that worker's pid
changed. Prints each run and the medians.

Run: .venv/bin/python bench/cluster_watch.py [--hangs 5] [--kind hang|stall]
Needs pm2: $PM2, else on PATH (./test.sh or ./demo.sh install one under .cache/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from recovery.config import format_duration, load
from recovery.demo import SERVER_JS, _wait_healthy, free_port
from recovery.events import parse_ts
from recovery.pm2 import find_pm2, parse_jlist
from recovery.store import Store
from recovery.watch import watched

APP = "bench"
WORKERS = 4


class Bench:
    def __init__(self, pm2: Path, home: Path, port: int) -> None:
        self.pm2 = pm2
        self.home = home
        self.url = f"http://127.0.0.1:{port}/"
        self.env = dict(os.environ, PM2_HOME=str(home / "pm2"))
        self.env["PATH"] = os.pathsep.join([str(pm2.parent), self.env.get("PATH", "")])
        self.port = port
        self.store = home / "recovery.db"

    def pm2_run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.pm2), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    def pids(self) -> list[int]:
        """pid per worker, in pm_id order."""
        procs = [p for p in parse_jlist(self.pm2_run("jlist").stdout) if p.get("name") == APP]
        return [int(p.get("pid") or 0) for p in sorted(procs, key=lambda p: p.get("pm_id", 0))]

    def write_config(self) -> Path:
        path = self.home / "watch.toml"
        text = f'[store]\npath = "{self.store}"\n\n[pm2]\nbin = "{self.pm2}"\n\n'
        text += '[policy]\nmax_restarts = 1000\nrestart_grace = "0s"\n\n'
        text += '[watch]\nbatch = "0s"\n\n'  # each watch step is read from the record: no batching
        text += f'[[apps]]\nname = "{APP}"\nurl = "{self.url}"\n'
        path.write_text(text)
        return path

    def events(self, *types: str, after: int = 0) -> list[Any]:
        with Store.open(self.store, readonly=True) as s:
            return s.query(types=list(types), after_seq=after)

    def last_seq(self) -> int:
        if not self.store.exists():
            return 0
        with Store.open(self.store, readonly=True) as s:
            return s.last_seq()

    def wait_steady(self, deadline: float) -> None:
        """Until the last two watch steps were OK after everything before `now`."""
        seq = self.last_seq()
        while time.monotonic() < deadline:
            if self.store.exists():
                done = self.events("check.finished", after=seq)
                if len(done) >= 2 and all(e.data.get("outcome") == "OK" for e in done[-2:]):
                    return
            time.sleep(0.1)
        raise RuntimeError("the watch did not settle")

    def on_worker(self, action: str, pid: int) -> None:
        for _ in range(10 * WORKERS):
            r = httpx.get(f"{self.url}__control/{action}", params={"pid": pid}, timeout=5, trust_env=False)
            if not r.json().get("skipped"):
                return
        raise RuntimeError(f"PM2 never handed /__control/{action} to pid {pid}")


def one(b: Bench, kind: str, pm_id: int, label: str) -> tuple[float, float]:
    """(seconds to the worker_hung decision, seconds to every worker answering again)."""
    b.wait_steady(time.monotonic() + 120)
    before, seq = b.pids(), b.last_seq()
    t0 = time.time()
    b.on_worker(kind, before[pm_id])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        passed = b.events("verification.passed", after=seq)
        if passed:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"{label}: no verification.passed within 120 s")
    decision = next(e for e in b.events("decision.made", after=seq) if e.data.get("action") == "restart")
    requested = b.events("restart.requested", after=seq)[0]
    after = b.pids()
    changed = [i for i in range(WORKERS) if after[i] != before[i]]
    if decision.data["code"] != "worker_hung" or changed != [pm_id] or requested.data.get("pm_id") != pm_id:
        raise RuntimeError(f"{label}: decided {decision.data['code']}, pids changed at {changed}, not only {pm_id}")
    detect = parse_ts(decision.ts).timestamp() - t0
    done = parse_ts(passed[0].ts).timestamp() - t0
    evidence = decision.data["inputs"]["worker"]["evidence"]
    restart = parse_ts(b.events("restart.succeeded", after=seq)[0].ts).timestamp() - parse_ts(requested.ts).timestamp()
    print(
        f"  {label}: worker {pm_id} named by {evidence} after {detect:.2f} s, pm2 restart {pm_id} took "
        f"{restart:.2f} s, every worker answering after {done:.2f} s; other pids unchanged",
        flush=True,
    )
    return detect, done


def median_line(label: str, times: list[float]) -> str:
    runs = ", ".join(f"{t:.2f}" for t in times)
    return f"{label}: median {statistics.median(times):6.2f} s  (n={len(times)}; runs: {runs} s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hangs", type=int, default=5, help="hung workers measured")
    parser.add_argument("--kind", choices=("hang", "stall"), default="hang", help="busy loop or stall")
    args = parser.parse_args()
    pm2 = find_pm2(os.environ.get("PM2")).absolute()
    home = Path(tempfile.mkdtemp(prefix="rbench-", dir="/tmp"))
    b = Bench(pm2, home, free_port())
    config = b.write_config()
    conf = load(config)
    probe = watched(conf).apps[0]
    watcher: subprocess.Popen[bytes] | None = None
    try:
        started = b.pm2_run(
            "start", str(SERVER_JS), "--name", APP, "-i", str(WORKERS), PORT=str(b.port), HOST="127.0.0.1"
        )
        if started.returncode != 0 or not _wait_healthy(b.url, time.monotonic() + 30):
            print(f"the benchmark app did not start: {started.stderr[-500:]}", file=sys.stderr)
            return 1
        print(
            f"{WORKERS} workers, {args.kind}; watch interval {format_duration(conf.watch.interval)}, timeout "
            f"{format_duration(probe.timeout)}, retries {probe.retries}; PM2 {b.pm2_run('--version').stdout.strip()}, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        log = (home / "watch.log").open("wb")
        watcher = subprocess.Popen(
            [sys.executable, "-m", "recovery_cli.main", "watch", "--config", str(config)],
            env=b.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        detect, done = [], []
        for i in range(args.hangs):
            d, r = one(b, args.kind, i % WORKERS, f"{args.kind} {i + 1}")
            detect.append(d)
            done.append(r)
        print()
        print(median_line(f"one {args.kind} worker of {WORKERS}: detected (worker_hung decided)", detect))
        print(median_line(f"one {args.kind} worker of {WORKERS}: every worker answering again", done))
        return 0
    except Exception:
        watch_log = home / "watch.log"
        if watch_log.exists():
            print("recovery watch's output (last lines):\n" + "\n".join(watch_log.read_text().splitlines()[-20:]))
        raise
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.send_signal(signal.SIGTERM)
            try:
                watcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()
        b.pm2_run("kill")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
