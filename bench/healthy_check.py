"""Benchmark: wall time and peak RSS of a healthy `recovery check`, as cron runs it.

Starts the demo server under a private PM2 (own PM2_HOME), then times N runs of
`python -c pass` (the floor) and N runs of `recovery check`, each a fresh process.
Prints medians and the ratio. Run: .venv/bin/python bench/healthy_check.py [-n 5]

`--cluster 4` adds a 4-worker cluster-mode app beside the fork-mode one (one check, both apps).
`--gap 61` times runs spaced 61 s apart, as cron runs them: every once-a-minute cadence is due
again. To stay quick, the k-th timed check runs with its wall clock moved k x 61 s forward
(bench/shifted_clock.py), so it finds the record exactly as a check a minute after the previous
one would, and does what that check would do (its pm2 calls, samples, queries); `--real-gap`
sleeps the gap instead (n minutes). Spaced runs use the shifted launcher for both modes.
`--store PATH` runs the checks against a copy-free existing store (e.g. the 10M-event one
bench/big_store.py generates, or `--store-events 1000000` to have big_store.py make one of that
size first): the healthy check's time at 0, 1M and 10M events. The store is written to (each
check appends its events); its projections are brought up to date before timing.
`--metrics` configures `[metrics] textfile`: each check then starts `recovery publish` detached
after its answer, which writes the textfile; besides the check's time, it prints the same check
without [metrics] (interleaved, same store) and how long after the check's exit the textfile was
replaced (polled every 2 ms).
Needs pm2: $PM2, else on PATH (./test.sh or ./demo.sh install one under .cache/).
GNU time (Debian package `time`) gives exact peak RSS; without it the figure is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recovery.demo import SERVER_JS, _wait_healthy, free_port
from recovery.pm2 import find_pm2


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one child process.

    Peak RSS comes from GNU time when present: a child forked straight from this (larger)
    Python would report this process's RSS as its own high-water mark.
    """
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    rss_file = None
    if gnu_time:
        rss_file = tempfile.NamedTemporaryFile(suffix=".rss", delete=False)
        argv = [gnu_time, "-f", "%M", "-o", rss_file.name, *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    rss_mb = usage.ru_maxrss / 1024
    if rss_file is not None:
        rss_mb = int(Path(rss_file.name).read_text().split()[-1]) / 1024
        os.unlink(rss_file.name)
    return wall, rss_mb, os.waitstatus_to_exitcode(status)


def version(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, None when there is none: a rename makes a new one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def textfile_after(path: Path, before: tuple[int, int] | None, exited: float, deadline_s: float = 30.0) -> float:
    """Seconds from `exited` (perf_counter) until `path` is no longer `before`; raises past the deadline."""
    while version(path) == before:
        if time.perf_counter() - exited > deadline_s:
            raise SystemExit(f"the textfile {path} was not written within {deadline_s:g}s of the check")
        time.sleep(0.002)
    return time.perf_counter() - exited


def jlist_samples(db: Path) -> int:
    """How many `pm2 jlist` samples the store holds (each one a Node child of ~0.45 s)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM events WHERE type = 'process.sampled' AND json_extract(data, '$.source') = 'jlist'"
        ).fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="runs of each command (median reported)")
    parser.add_argument(
        "--alerts",
        action="store_true",
        help="with an alert channel configured (nothing is owed, so apprise is not imported)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="with [metrics] textfile configured: also time how long after each check the textfile is replaced",
    )
    parser.add_argument("--cluster", type=int, default=0, metavar="N", help="also an app of N cluster workers")
    parser.add_argument("--gap", type=float, default=0.0, metavar="S", help="runs spaced S seconds apart")
    parser.add_argument("--real-gap", action="store_true", help="sleep the gap instead of moving the clock")
    parser.add_argument("--store", type=Path, help="check against this existing store (default: a new, empty one)")
    parser.add_argument(
        "--store-events",
        type=int,
        default=0,
        metavar="N",
        help="with --store: generate it first with bench/big_store.py --events N when it does not exist",
    )
    args = parser.parse_args()
    store = args.store.resolve() if args.store else None
    if store is not None:
        if not store.exists():
            if not args.store_events:
                print(f"no store at {store} (--store-events N generates one)", file=sys.stderr)
                return 1
            gen = [sys.executable, str(Path(__file__).with_name("big_store.py")), "--db", str(store)]
            subprocess.run([*gen, "--events", str(args.store_events), "--fresh", "--no-time"], check=True)
        events = sqlite3.connect(store).execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        print(
            f"store: {store} ({events:,} events, {sum(p.stat().st_size for p in store.parent.glob(store.name + '*')) / 1e9:.2f} GB)"
        )
    pm2 = find_pm2(os.environ.get("PM2"))
    home = Path(tempfile.mkdtemp(prefix="rbench-", dir="/tmp"))
    env = dict(os.environ, PM2_HOME=str(home / "pm2"))
    # As installed by pip: byte-code compiled once, then read from __pycache__.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PATH"] = os.pathsep.join([str(pm2.parent), env.get("PATH", "")])
    apps = [("bench", free_port(), 0)] + ([("bench-cluster", free_port(), args.cluster)] if args.cluster else [])
    config = home / "recovery.toml"
    textfile = home / "textfile_collector" / "recovery.prom"
    textfile.parent.mkdir(parents=True)
    plain_config = home / "plain.toml"  # the same without [metrics]: the baseline of --metrics
    plain_config.write_text(
        f'[store]\npath = "{store or "recovery.db"}"\n[pm2]\nbin = "{pm2}"\n'
        + "".join(
            f'[[apps]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/"\ntimeout = "2s"\n' for name, port, _ in apps
        )
        + ('[alerts]\nurls = ["json://127.0.0.1:9/never-used"]\n' if args.alerts else "")
    )
    config.write_text(plain_config.read_text() + (f'[metrics]\ntextfile = "{textfile}"\n' if args.metrics else ""))
    try:
        for name, port, workers in apps:
            subprocess.run(
                [str(pm2), "start", str(SERVER_JS), "--name", name, *(["-i", str(workers)] if workers else [])],
                env=dict(env, PORT=str(port)),
                check=True,
                capture_output=True,
            )
            if not _wait_healthy(f"http://127.0.0.1:{port}/", time.monotonic() + 30):
                print(f"the benchmark app {name} did not start", file=sys.stderr)
                return 1
        check = [sys.executable, "-m", "recovery_cli.main", "check", "--config", str(config)]
        exe = shutil.which("recovery", path=str(Path(sys.executable).parent))
        if exe:
            check = [exe, "check", "--config", str(config)]
        if args.gap:
            check = [
                sys.executable,
                str(Path(__file__).with_name("shifted_clock.py")),
                "check",
                "--config",
                str(config),
            ]
        plain = [str(plain_config) if a == str(config) else a for a in check]
        db = store or home / "recovery.db"
        if store is not None:  # bring its projections up to date, untimed (a new fold version rebuilds them)
            started = time.perf_counter()
            rebuilt = subprocess.run(
                [sys.executable, "-m", "recovery_cli.main", "status", "--config", str(config)],
                env=env,
                capture_output=True,
            )
            print(f"store folded in {time.perf_counter() - started:.1f}s (status exit {rebuilt.returncode})")
        timed(check, env)  # warm the page cache and create the store
        jlist_before = jlist_samples(db)
        if args.metrics:
            textfile_after(textfile, None, time.perf_counter())  # the warm-up's textfile, before timing
        floor, runs, after, plain_runs = [], [], [], []
        for k in range(1, args.n + 1):  # interleaved, so both see the same background noise
            floor.append(timed([sys.executable, "-c", "pass"], env))
            if args.gap and args.real_gap:
                time.sleep(args.gap)
            elif args.gap:
                env["RECOVERY_BENCH_SHIFT_S"] = str(k * args.gap)
            if args.metrics and k % 2:  # the baseline first in odd rounds, last in even ones
                plain_runs.append(timed(plain, env))
            before = version(textfile)
            runs.append(timed(check, env))
            if args.metrics:
                after.append(textfile_after(textfile, before, time.perf_counter()))
                if not k % 2:
                    plain_runs.append(timed(plain, env))
        if any(code != 0 for _, _, code in runs + plain_runs):
            print(f"a check did not exit 0: {[c for _, _, c in runs]}", file=sys.stderr)
            return 1
        jlist_calls = jlist_samples(db) - jlist_before
        f_wall = statistics.median(w for w, _, _ in floor)
        c_wall = statistics.median(w for w, _, _ in runs)
        c_rss = statistics.median(r for _, r, _ in runs)
        print(
            f"python -c pass : median {f_wall * 1000:6.1f} ms  peak RSS {statistics.median(r for _, r, _ in floor):5.1f} MB  (n={args.n})"
        )
        what = "fork app" + (f" + {args.cluster}-worker cluster app" if args.cluster else "")
        spacing = (
            f"spaced {args.gap:g} s ({'real' if args.real_gap else 'clock moved'})" if args.gap else "back to back"
        )
        print(
            f"recovery check : median {c_wall * 1000:6.1f} ms  peak RSS {c_rss:5.1f} MB  max {max(r for _, r, _ in runs):5.1f} MB"
            f"  (n={args.n}, healthy {what}, {spacing})"
        )
        print(
            f"ratio          : {c_wall / f_wall:.1f}x python start-up; runs: {', '.join(f'{w * 1000:.0f}' for w, _, _ in runs)} ms"
        )
        if args.metrics:
            p_wall = statistics.median(w for w, _, _ in plain_runs)
            print(
                f"without metrics: median {p_wall * 1000:6.1f} ms  (the same check and store, no [metrics], interleaved);"
                f" runs: {', '.join(f'{w * 1000:.0f}' for w, _, _ in plain_runs)} ms"
            )
            print(
                f"textfile       : replaced a median {statistics.median(after) * 1000:6.1f} ms after the check's exit;"
                f" runs: {', '.join(f'{a * 1000:.0f}' for a in after)} ms"
            )
        print(f"pm2 jlist      : {jlist_calls} full sample(s) recorded by the {args.n} timed runs")
        return 0
    finally:
        subprocess.run([str(pm2), "kill"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
