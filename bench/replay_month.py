"""Benchmark: `recovery replay` over a month of 1-minute cron history for 5 apps.

Generates (or reuses, unless --fresh) a store at --db: a check run every minute for 30 days,
each with a probe, a cheap PM2 sample and a decision per app, and a hang with its restart and
verification every few hours per app. Then times, median of -n runs:
  - the replay in this process (load + replay) with `max_restarts=1` (the usual case: healthy
    checks stay healthy and are replayed without the policy) and with `timeout=100ms` (the worst
    case: every answer slower than 100 ms becomes a failure, so half the decisions are taken again);
  - `recovery replay --since 31d --set ... --json` as a fresh process, for both;
  - `python -c pass`, the floor of a fresh process.

Run: .venv/bin/python bench/replay_month.py [-n 5] [--fresh] [--days 30] [--apps 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from recovery import config as cfg
from recovery import projections
from recovery.events import Event, format_ts
from recovery.replay import parse_settings, replay_store
from recovery.store import Store

REPO = Path(__file__).resolve().parent.parent


def generate(db: Path, days: float, apps: list[str], seed: int) -> int:
    rng = random.Random(seed)
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    start = end - dt.timedelta(days=days)
    hang_at = {a: {rng.randrange(int(days * 1440)) for _ in range(int(days * 6))} for a in apps}
    total = 0
    with Store.open(db) as store:
        batch: list[Event] = []
        for minute in range(int(days * 1440)):
            t = start + dt.timedelta(minutes=minute)
            run = uuid.uuid4().hex

            def ev(
                type_: str,
                app: str | None,
                data: dict,
                offset_ms: int = 0,
                run: str = run,
                t: dt.datetime = t,
                batch: list[Event] = batch,
            ) -> None:
                batch.append(Event(type_, app, run, data, ts=format_ts(t + dt.timedelta(milliseconds=offset_ms))))

            ev("check.started", None, {"trigger": "cron", "apps": apps, "dry_run": False})
            for i, app in enumerate(apps):
                url = f"http://127.0.0.1:{3000 + i}/"
                if minute in hang_at[app]:
                    for n in (1, 2, 3):
                        ev(
                            "probe.failed",
                            app,
                            {
                                "url": url,
                                "attempt": n,
                                "latency_ms": 2000.0,
                                "error": "timeout",
                                "phase": "check",
                                "of": 3,
                            },
                        )
                    ev(
                        "process.sampled",
                        app,
                        {"source": "jlist", "status": "online", "known": True, "pid": 1000 + minute},
                    )
                    ev(
                        "decision.made",
                        app,
                        {"action": "restart", "code": "hung", "state": "recovering", "reason": "hung", "inputs": {}},
                        10,
                    )
                    ev(
                        "restart.requested",
                        app,
                        {"by": "check", "code": "hung", "reason": "hung", "command": ["pm2", "restart", app]},
                        11,
                    )
                    ev("restart.succeeded", app, {"command": ["pm2", "restart", app], "exit_code": 0}, 300)
                    ev("verification.passed", app, {"attempts": 2, "seconds": 0.6}, 900)
                else:
                    latency = round(rng.uniform(40, 160), 1)
                    ev(
                        "probe.succeeded",
                        app,
                        {"url": url, "attempt": 1, "latency_ms": latency, "status": 200, "phase": "check", "of": 3},
                    )
                    ev("process.sampled", app, {"source": "pidfile", "status": "online", "known": True, "pid": 1000})
                    ev(
                        "decision.made",
                        app,
                        {"action": "none", "code": "healthy", "state": "healthy", "reason": "healthy", "inputs": {}},
                        5,
                    )
            ev("check.finished", None, {"outcome": "OK", "code": 0, "duration_ms": 80.0}, 50)
            if len(batch) > 50_000:
                total += len(store.append(batch))
                batch.clear()
        total += len(store.append(batch))
    return total


def median_ms(fn, n: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--db", type=Path, default=REPO / ".cache" / "bench" / "replay-month.db")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    apps = [f"app{i}" for i in range(args.apps)]
    if args.fresh and args.db.exists():
        args.db.unlink()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    if not args.db.exists():
        t = time.perf_counter()
        n = generate(args.db, args.days, apps, args.seed)
        print(f"generated {n:,} events in {time.perf_counter() - t:.1f}s ({args.db.stat().st_size / 1e6:.0f} MB)")
    config = args.db.with_suffix(".toml")
    config.write_text(
        f'[store]\npath = "{args.db}"\n\n'
        + "".join(
            f'[[apps]]\nname = "{a}"\nurl = "http://127.0.0.1:{3000 + i}/"\nretries = 3\n\n' for i, a in enumerate(apps)
        )
    )
    conf = cfg.load(config)
    with Store.open(args.db) as store:  # the check folds at the end of every run; a generated store once here
        t = time.perf_counter()
        folded = projections.fold(store.conn)
        if folded:
            print(f"folded {folded:,} events into the projections in {time.perf_counter() - t:.1f}s")
    since = format_ts(dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days + 1))
    for pair in ("max_restarts=1", "timeout=100ms"):
        settings = parse_settings([pair])
        found: list[Any] = []

        def in_process(settings: dict[str, Any] = settings, found: list[Any] = found) -> None:
            with Store.open(args.db, readonly=True) as store:
                found[:] = [replay_store(store, list(conf.apps), settings, since)]

        ms, runs = median_ms(in_process, args.n)
        decisions = sum(a.decisions for a in found[0].apps)
        changed = sum(len(a.changed) for a in found[0].apps)
        print(
            f"replay {pair}, in-process: {ms:.0f} ms median of {args.n} ({', '.join(f'{r:.0f}' for r in runs)});"
            f" {decisions:,} decisions, {changed:,} differ"
        )
        cmd = [sys.executable, "-m", "recovery_cli.main", "replay", "--since", f"{args.days + 1:g}d", "--set", pair]
        cmd += ["--json", "--config", str(config)]
        ms_cli, runs_cli = median_ms(lambda cmd=cmd: subprocess.run(cmd, check=True, capture_output=True), args.n)
        print(
            f"recovery replay --set {pair} (fresh process): {ms_cli:.0f} ms median ({', '.join(f'{r:.0f}' for r in runs_cli)})"
        )
    ms_floor, _ = median_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.n)
    print(f"python -c pass: {ms_floor:.0f} ms median")


if __name__ == "__main__":
    main()
