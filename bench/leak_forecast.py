"""Benchmark: how right is the memory-leak forecast? Signed error against a real PM2 memory limit.

Records a real run: a private PM2 (own PM2_HOME under /tmp) runs the demo server with
`--max-memory-restart`; `recovery check` runs in this process every `--every` seconds; after
`--warm` flat checks the demo leaks `--mb` MB per answered request (each check's probe is one),
until PM2 restarts it at its limit. Then every check before the limit is diagnosed as the store
stood at that moment (`projections.hint_input(conn, app, now)`) and its forecast scored with
`hints.forecast_errors`: error = forecast - actual, so positive means optimistic (the limit came
sooner than said). `--score DB` only scores an existing store (e.g. one kept with `--keep`), so
the same run can be scored by two versions of the rules.

Run: .venv/bin/python bench/leak_forecast.py [--runs 2] [--every 3] [--warm 10] [--mb 4] [--limit 200]
Needs pm2: $PM2, else on PATH (./test.sh or ./demo.sh install one under .cache/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from recovery import config as cfg
from recovery import hints, projections
from recovery.check import Checker
from recovery.demo import SERVER_JS, _wait_healthy, free_port
from recovery.pm2 import find_pm2
from recovery.units import parse_ts

MB = 1048576


@contextlib.contextmanager
def private_pm2(pm2: Path) -> Iterator[dict[str, str]]:
    home = tempfile.mkdtemp(prefix="rpm2-leak-", dir="/tmp")
    env = {**os.environ, "PM2_HOME": home}
    try:
        yield env
    finally:
        subprocess.run([str(pm2), "kill"], env=env, capture_output=True, timeout=60, check=False)
        shutil.rmtree(home, ignore_errors=True)


def record(pm2: Path, db: Path, args: argparse.Namespace) -> None:
    """One real run into `db`: flat, then leaking until PM2 restarts the app at its memory limit."""
    with private_pm2(pm2) as env:
        port = free_port()
        subprocess.run(
            [str(pm2), "start", str(SERVER_JS), "--name", "web", "--max-memory-restart", f"{args.limit}M"],
            env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
            capture_output=True,
            check=True,
            timeout=60,
        )
        url = f"http://127.0.0.1:{port}/"
        if not _wait_healthy(url, time.monotonic() + 30):
            raise RuntimeError(f"the demo server did not answer on {url}")
        config = db.parent / "recovery.toml"
        config.write_text(
            f'[store]\npath = "{db}"\n[pm2]\nbin = "{pm2}"\n[logs]\nin_check = false\n'
            f'[[apps]]\nname = "web"\nurl = "{url}"\ntimeout = "1s"\nretries = 1\nretry_delay = "0s"\n'
        )
        checker = Checker(cfg.load(config), environ=env)
        import httpx

        for k in range(args.max_checks):
            began = time.monotonic()
            if k == args.warm:
                httpx.get(f"{url}__control/leak", params={"mb": args.mb}, timeout=5).raise_for_status()
            checker.run()
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT 1 FROM events WHERE type = 'process.restarted'").fetchone():
                    break
            time.sleep(max(0.0, args.every - (time.monotonic() - began)))


def limit_hit_at(conn: sqlite3.Connection) -> str | None:
    """When the app reached its limit: the first sample at or above it, else PM2's restart at the limit."""
    rows = conn.execute("SELECT type, ts, data FROM events WHERE app = 'web' ORDER BY seq").fetchall()
    limit = None  # the cheap samples (pid files and /proc) do not carry it: the last full sample's
    for type_, ts, data in rows:
        d = json.loads(data)
        limit = d.get("max_memory_restart") or limit
        if type_ == "process.sampled" and limit and (d.get("memory") or 0) >= limit:
            return str(ts)
        if type_ == "process.restarted":
            return str(ts)
    return None


def score(db: Path) -> list[tuple[str, float, float]]:
    """(now, forecast_s, actual_s) at each sample before the limit, as the store stood then."""
    conn = sqlite3.connect(db)
    projections.fold(conn)
    hit = limit_hit_at(conn)
    if hit is None:
        raise RuntimeError(f"{db}: the app never reached its memory limit")
    nows = [
        ts
        for (ts,) in conn.execute("SELECT ts FROM events WHERE app = 'web' AND type = 'process.sampled' ORDER BY seq")
        if ts < hit
    ]
    models = [projections.hint_input(conn, "web", parse_ts(ts)) for ts in nows]
    conn.close()
    return hints.forecast_errors(models, hit)


def report(name: str, rows: list[tuple[str, float, float]]) -> None:
    if not rows:
        print(f"{name}: no forecast")
        return
    errors = [f - a for _, f, a in rows]
    first = rows[0]
    print(
        f"{name}: {len(rows)} forecasts; first {first[1]:.0f}s vs actual {first[2]:.0f}s (error {errors[0]:+.0f}s,"
        f" {errors[0] / first[2]:+.0%}); median error {statistics.median(errors):+.0f}s;"
        f" median |error|/actual {statistics.median(abs(e) / a for e, (_, _, a) in zip(errors, rows, strict=True)):.0%}"
    )
    for now, f, a in rows:
        print(f"    {now}  forecast {f:6.0f}s  actual {a:6.0f}s  error {f - a:+6.0f}s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--every", type=float, default=3.0, help="seconds between checks")
    p.add_argument("--warm", type=int, default=10, help="flat checks before the leak starts")
    p.add_argument("--mb", type=int, default=4, help="MB kept per answered request")
    p.add_argument("--limit", type=int, default=200, help="max_memory_restart, MB")
    p.add_argument("--max-checks", type=int, default=200)
    p.add_argument("--keep", type=Path, help="keep each run's store in this folder")
    p.add_argument("--score", type=Path, nargs="*", help="only score these stores")
    args = p.parse_args()
    if args.score:
        for db in args.score:
            report(str(db), score(db))
        return
    pm2 = find_pm2(os.environ.get("PM2"))
    for k in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "recovery.db"
            record(pm2, db, args)
            rows = score(db)
            report(f"run {k + 1}", rows)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(db, args.keep / f"leak-run{k + 1}.db")


if __name__ == "__main__":
    main()
