"""Benchmark: time from a hang to answering again under `recovery watch`, beside cron's, and slow-app safety.

Starts the demo server under a private PM2 (own PM2_HOME in /tmp, default kill_timeout, as a user
would), then:
  1. watch: `recovery watch` at its defaults; N times: wait until the app is healthy and the watch
     steady, GET /__control/hang (a busy loop), poll GET / every 50 ms until a new process answers
     200; prints each time and the median, and checks that PM2's restart_time grew.
  2. cron (--cron-hangs, 0 to skip): the same, while a simulated cron starts `recovery check`
     (app defaults: timeout 10s, retries 3, retry_delay 5s) every 60 s.
  3. slow app (--slow-minutes, 0 to skip): the app answers in 80% of the watch timeout for M minutes
     under `recovery watch`; prints restarts (must be 0) and failed probes.
The hang falls at evenly spread points of the watch interval (or cron minute), so the median is
not biased by when the bench happens to look. Each hang is measured as a first incident: restart
loop protection ([policy]) is turned off in the bench's config.

Run: .venv/bin/python bench/watch_mttr.py [--hangs 5] [--cron-hangs 5] [--slow-minutes 10]
Try other [watch] values with --interval/--timeout/--retries/--retry-delay (written to the config).
Needs pm2: $PM2, else on PATH (./test.sh or ./demo.sh install one under .cache/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
POLL = 0.05  # how often the bench asks the app whether it answers again


def recovery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "recovery_cli.main", *args]


class Bench:
    def __init__(self, pm2: Path, home: Path, port: int) -> None:
        self.pm2 = pm2
        self.home = home
        self.url = f"http://127.0.0.1:{port}/"
        self.env = dict(os.environ, PM2_HOME=str(home / "pm2"))
        self.env["PATH"] = os.pathsep.join([str(pm2.parent), self.env.get("PATH", "")])
        self.port = port
        self.store = home / "recovery.db"
        self.failed = False  # a check that must hold did not

    def pm2_run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.pm2), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    def restart_time(self) -> int:
        procs = parse_jlist(self.pm2_run("jlist").stdout)
        return sum(p["pm2_env"].get("restart_time", 0) for p in procs if p.get("name") == APP)

    def write_config(self, name: str, watch: dict[str, str]) -> Path:
        path = self.home / name
        text = f'[store]\npath = "{self.store}"\n\n[pm2]\nbin = "{self.pm2}"\n\n'
        # Every hang is measured as a first incident: loop protection would (rightly) hold back
        # a second restart within restart_grace and stop after max_restarts.
        text += '[policy]\nmax_restarts = 1000\nrestart_grace = "0s"\n\n'
        # Each watch step is read from the record (wait_steady, slow_mode): no batching of steady steps.
        watch = {"batch": '"0s"', **watch}
        text += "[watch]\n" + "".join(f"{k} = {v}\n" for k, v in watch.items()) + "\n"
        text += f'[[apps]]\nname = "{APP}"\nurl = "{self.url}"\n'
        path.write_text(text)
        return path

    def pid(self, timeout: float = 0.2) -> int | None:
        """The pid of the process that answers GET / with 200, or None."""
        try:
            r = httpx.get(self.url, timeout=timeout, trust_env=False)
        except httpx.HTTPError:
            return None
        return r.json().get("pid") if r.status_code == 200 else None

    def events(self, *types: str, after: int = 0) -> list[Any]:
        with Store.open(self.store, readonly=True) as s:
            return s.query(types=list(types), after_seq=after)

    def last_seq(self) -> int:
        if not self.store.exists():
            return 0
        with Store.open(self.store, readonly=True) as s:
            return s.last_seq()

    def wait_steady(self, deadline: float) -> tuple[int, float]:
        """Wait until the app answers and the last two watch steps were OK: (its pid, last step's start)."""
        while time.monotonic() < deadline:
            pid = self.pid(timeout=1.0)
            if pid is not None and self.store.exists():
                recent = self.events("check.started", "check.finished", after=max(0, self.last_seq() - 50))
                done = [e for e in recent if e.type == "check.finished"]
                if len(done) >= 2 and all(e.data.get("outcome") == "OK" for e in done[-2:]):
                    started = [e for e in recent if e.type == "check.started"][-1]
                    return pid, parse_ts(started.ts).timestamp()
            time.sleep(0.1)
        raise RuntimeError("the app and the watch did not settle")


def median_line(label: str, times: list[float]) -> str:
    runs = ", ".join(f"{t:.2f}" for t in times)
    return f"{label}: median {statistics.median(times):6.2f} s  (n={len(times)}; runs: {runs} s)"


def breakdown(b: Bench, seq: int, t0_wall: float) -> str:
    """Where the time went, from the events of the run that restarted the app."""
    events = b.events("restart.requested", "restart.succeeded", after=seq)
    at = {e.type: parse_ts(e.ts).timestamp() - t0_wall for e in events}
    if "restart.requested" not in at or "restart.succeeded" not in at:
        return "no restart event"
    return (
        f"restart requested at +{at['restart.requested']:.2f} s, pm2 restart took "
        f"{at['restart.succeeded'] - at['restart.requested']:.2f} s"
    )


def measure_hang(
    b: Bench,
    label: str,
    old_pid: int,
    start: float,
    phase: float,
    period: float,
    idle: Callable[[], None] = lambda: None,
) -> float:
    """Hang the app `phase` seconds into a period (they begin at wall time `start`, one every `period`);
    seconds until a new process answers 200, checked to be a restart by PM2."""
    before, seq = b.restart_time(), b.last_seq()
    at = start + phase
    while at < time.time() + 0.01:
        at += period
    while time.time() < at:
        idle()
        time.sleep(min(POLL, max(0.0, at - time.time())))
    t0_wall, t0 = time.time(), time.monotonic()
    httpx.get(b.url + "__control/hang", timeout=5, trust_env=False).raise_for_status()
    while True:
        idle()
        tick = time.monotonic()
        pid = b.pid(timeout=0.2)
        if pid is not None and pid != old_pid:
            seconds = time.monotonic() - t0
            break
        if tick - t0 > 300:
            raise RuntimeError(f"{label}: the app did not answer again within 300 s")
        time.sleep(max(0.0, tick + POLL - time.monotonic()))
    after = b.restart_time()
    if after <= before:
        raise RuntimeError(f"{label}: the app answers again but PM2's restart_time did not grow")
    print(
        f"  {label}: answering again after {seconds:.2f} s (restart_time {before} -> {after}; "
        f"{breakdown(b, seq, t0_wall)})",
        flush=True,
    )
    return seconds


def watch_mode(b: Bench, interval: float, hangs: int) -> list[float]:
    times = []
    for i in range(hangs):
        old_pid, step_start = b.wait_steady(time.monotonic() + 120)
        phase = interval * (i + 0.5) / hangs  # evenly spread over the watch interval
        label = f"watch hang {i + 1}, {phase:.2f} s into a step"
        times.append(measure_hang(b, label, old_pid, step_start, phase, interval))
    return times


def cron_mode(b: Bench, config: Path, hangs: int, period: float = 60.0) -> list[float]:
    """Hangs while a simulated cron starts `recovery check` every `period` seconds, start to start."""
    argv = recovery_argv("check", "--trigger", "cron", "--config", str(config))
    runs: list[subprocess.Popen[bytes]] = []
    times = []
    epoch = time.time()

    def tick() -> None:  # cron starts a run on schedule, whether or not the last one ended
        while time.time() >= epoch + period * len(runs):
            runs.append(subprocess.Popen(argv, env=b.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        for i in range(hangs):
            while any(r.poll() is None for r in runs) or b.pid(timeout=1.0) is None:
                tick()
                time.sleep(0.1)
            old_pid = b.pid(timeout=1.0)
            assert old_pid is not None
            phase = period * (i + 0.5) / hangs  # evenly spread over the cron minute
            label = f"cron hang {i + 1}, {phase:.0f} s into the minute"
            times.append(measure_hang(b, label, old_pid, epoch, phase, period, tick))
    finally:
        for r in runs:
            if r.poll() is None:
                r.wait(timeout=180)
    return times


def store_bytes(b: Bench) -> int:
    return sum(p.stat().st_size for p in b.store.parent.glob(b.store.name + "*") if p.is_file())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (and its waited-for children) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def slow_mode(b: Bench, timeout: float, minutes: float, watcher: int) -> str:
    """Restarts (must be 0) and failed probes while the app answers in 80% of the watch timeout."""
    ms = round(timeout * 1000 * 0.8)
    b.wait_steady(time.monotonic() + 120)
    before, seq, size, cpu = b.restart_time(), b.last_seq(), store_bytes(b), cpu_seconds(watcher)
    httpx.get(b.url + "__control/slow", params={"ms": ms}, timeout=5, trust_env=False).raise_for_status()
    try:
        time.sleep(minutes * 60)
    finally:
        httpx.get(b.url + "__control/slow", params={"ms": 0}, timeout=5, trust_env=False)
    cpu = (cpu_seconds(watcher) - cpu) / (minutes * 60)
    restarts = b.restart_time() - before
    probes = [e for e in b.events("probe.succeeded", "probe.failed", after=seq) if e.data.get("phase") == "check"]
    failed = sum(1 for e in probes if e.type == "probe.failed")
    ours = len(b.events("restart.requested", after=seq))
    steps = len(b.events("check.started", after=seq))
    grown = (store_bytes(b) - size) / 1e6
    if restarts or ours:
        b.failed = True
    return (
        f"slow app ({ms} ms answers, {minutes:g} min under watch): {restarts} restarts ({ours} requested), "
        f"{failed} failed of {len(probes)} probes; {steps} steps, {b.last_seq() - seq} events, "
        f"store +{grown:.2f} MB ({grown / minutes * 60 * 24 / 1000:.2f} GB/day at this rate); "
        f"recovery watch used {cpu:.1%} of a CPU"
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 120) -> int:
    """SIGTERM, then the exit code (the watch finishes its step first)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"recovery watch did not exit within {timeout:.0f}s of SIGTERM") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hangs", type=int, default=5, help="hangs measured under recovery watch")
    parser.add_argument("--cron-hangs", type=int, default=5, help="hangs measured under a simulated cron (0: skip)")
    parser.add_argument("--slow-minutes", type=float, default=10, help="minutes of a slow app under watch (0: skip)")
    for key in ("interval", "timeout", "retries", "retry-delay"):
        parser.add_argument(
            f"--{key}",
            help=f"[watch] {key.replace('-', '_')} to write to the config (default: none, the built-in default)",
        )
    args = parser.parse_args()
    watch_table = {
        k.replace("-", "_"): v
        for k in ("interval", "timeout", "retries", "retry-delay")
        if (v := getattr(args, k.replace("-", "_"))) is not None
    }
    watch_table = {k: (v if k == "retries" else json.dumps(v)) for k, v in watch_table.items()}

    pm2 = find_pm2(os.environ.get("PM2")).absolute()
    home = Path(tempfile.mkdtemp(prefix="rbench-", dir="/tmp"))
    b = Bench(pm2, home, free_port())
    watch_config = b.write_config("watch.toml", watch_table)
    cron_config = b.write_config("cron.toml", {})
    conf = load(watch_config)
    probe = watched(conf).apps[0]
    settings = (
        f"interval {format_duration(conf.watch.interval)}, timeout {format_duration(probe.timeout)}, "
        f"retries {probe.retries}, retry_delay {format_duration(probe.retry_delay)}"
    )
    watcher: subprocess.Popen[bytes] | None = None
    try:
        # As a user would start it: PM2's default kill_timeout (1.6 s before SIGKILL of a busy loop).
        started = b.pm2_run("start", str(SERVER_JS), "--name", APP, PORT=str(b.port), HOST="127.0.0.1")
        if started.returncode != 0 or not _wait_healthy(b.url, time.monotonic() + 30):
            print(f"the benchmark app did not start: {started.stderr[-500:]}", file=sys.stderr)
            return 1
        print(
            f"watch settings: {settings}; PM2 {b.pm2_run('--version').stdout.strip()}, "
            f"node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        log = (home / "watch.log").open("wb")
        watcher = subprocess.Popen(
            recovery_argv("watch", "--config", str(watch_config)), env=b.env, stdout=log, stderr=subprocess.STDOUT
        )
        results = []
        if args.hangs:
            times = watch_mode(b, conf.watch.interval, args.hangs)
            results.append(median_line("watch mode, hang -> answering", times))
            print(results[-1], flush=True)
        if args.slow_minutes:
            results.append(slow_mode(b, probe.timeout, args.slow_minutes, watcher.pid))
            print(results[-1], flush=True)
        exit_code = stop(watcher)
        watcher = None
        results.append(f"recovery watch exit code after SIGTERM: {exit_code}")
        b.failed |= exit_code != 0
        if args.cron_hangs:
            times = cron_mode(b, cron_config, args.cron_hangs)
            results.append(median_line("cron mode (every 60s, check defaults), hang -> answering", times))
            print(results[-1], flush=True)
        print("\n" + "\n".join(results))
        return 1 if b.failed else 0
    except Exception:
        watch_log = home / "watch.log"
        if watch_log.exists():
            print(
                "recovery watch's output (last lines):\n" + "\n".join(watch_log.read_text().splitlines()[-20:]),
                file=sys.stderr,
            )
        raise
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        b.pm2_run("kill")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
