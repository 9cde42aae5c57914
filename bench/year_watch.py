"""Benchmark: `recovery report --since 365d` and `--since 7d` over a year of `recovery watch` history.

1. Generates (or reuses, unless --fresh) a store at --db (default .cache/bench/year.db) and a config
   beside it: a year ending now of 2 s `watch` probes for 5 apps, written as the contract's
   `probe.batched` events (one per app per minute: 30 probes' offsets and latencies), a full PM2
   sample per app per hour, and, seeded, a hang every few days per app (three 10 s timeouts, a
   restart, its verification) as `recovery check` records them. Rows are exactly what
   Store.append writes (bench/big_store.py's Writer: same encoding, hash chain).
2. Folds the projections once (`recovery rebuild`: minute/hour/day rollups) and prints the time,
   the store's size and the rollups' size (dbstat).
3. Times `recovery report --since 365d --json` and `--since 7d --json` as fresh processes, N runs
   each (median), beside `python -c pass`: warm (page cache kept) and cold (the OS page cache
   dropped before each run with `echo 3 > /proc/sys/vm/drop_caches`, which needs root; says so
   when it cannot).

Run: .venv/bin/python bench/year_watch.py [-n 5] [--fresh] [--days 365] [--apps 5]
A quick trial: .venv/bin/python bench/year_watch.py --db /tmp/year-small.db --days 10 --fresh -n 3
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from big_store import Writer, db_size, fast_connection, recovery_argv, report_summary, run_once

from recovery.store import GENESIS, Store

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DB = REPO / ".cache" / "bench" / "year.db"
APPS = [("web", 35.0), ("api", 18.0), ("shop", 45.0), ("blog", 25.0), ("auth", 12.0)]
DAY = 86400.0
HANG = "hung: PM2 says online but 3 failed probes (timeout)"


def write_config(path: Path, db: Path, n_apps: int) -> None:
    apps = "".join(
        f'[[apps]]\nname = "{name}"\nurl = "http://127.0.0.1:{3001 + i}/"\n'
        for i, (name, _) in enumerate(APPS[:n_apps])
    )
    path.write_text(f'[store]\npath = "{db}"\n\n{apps}')


def generate(db: Path, args: argparse.Namespace, end: float) -> int:
    """Writes the year; returns how many hangs it holds."""
    rng = random.Random(args.seed)
    partial = db.with_name(db.name + ".partial")
    for p in db.parent.glob(partial.name + "*"):
        p.unlink()
    Store.open(partial).close()
    conn = fast_connection(partial, 256)
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.close()
    w = Writer(None, 0, GENESIS, f"{rng.getrandbits(64):016x}", path=partial)
    apps = APPS[: args.apps]
    at_ms = "[" + ",".join(str(2000 * i) for i in range(30)) + "]"
    pools = {}  # per app: 200 minutes of latencies, pre-encoded (lognormal around the app's median)
    for name, median in apps:
        pools[name] = [
            "[" + ",".join(f"{median * rng.lognormvariate(0, 0.25):.1f}" for _ in range(30)) + "]" for _ in range(200)
        ]
    start = (int(end - args.days * DAY) // 60) * 60
    minutes = int(args.days * DAY // 60)
    hangs = {name: {int(rng.uniform(0, minutes)) for _ in range(int(args.days / args.hang_every))} for name, _ in apps}
    pids = {name: 1000 + i for i, (name, _) in enumerate(apps)}
    restart_time = dict.fromkeys(pids, 0)
    n_hangs, runs = 0, 0
    for m in range(minutes):
        t = start + 60.0 * m
        for i, (name, _) in enumerate(apps):
            url = f"http://127.0.0.1:{3001 + i}/"
            if m % 60 == i:  # a full PM2 sample once an hour
                runs += 1
                mem = 60_000_000 + (m % 1440) * 1000
                w.emit(
                    t + 0.5 + i / 10,
                    name,
                    "process.sampled",
                    f"w{runs}",
                    {
                        "source": "jlist",
                        "known": True,
                        "status": "online",
                        "pid": pids[name],
                        "memory": mem,
                        "cpu": 1.5,
                        "restart_time": restart_time[name],
                        "unstable_restarts": 0,
                        "uptime_s": 3600.0,
                    },
                )
            if m in hangs[name]:
                n_hangs += 1
                runs += 1
                rid = f"h{runs}"
                t0 = t + 1 + i / 10
                w.emit(t0, None, "check.started", rid, {"apps": [name], "dry_run": False, "trigger": "watch"})
                for k in range(3):
                    w.emit(
                        t0 + 10 * (k + 1),
                        name,
                        "probe.failed",
                        rid,
                        {"attempt": k + 1, "error": "timeout", "latency_ms": 10000.0, "phase": "check", "url": url},
                    )
                d = t0 + 30.2
                w.emit(
                    d - 0.1,
                    name,
                    "process.sampled",
                    rid,
                    {"source": "jlist", "known": True, "status": "online", "pid": pids[name], "cpu": 99.5},
                )
                w.emit(
                    d,
                    name,
                    "decision.made",
                    rid,
                    {"action": "restart", "code": "hung", "reason": HANG, "state": "recovering"},
                )
                command = ["pm2", "restart", name]
                w.emit(
                    d,
                    name,
                    "restart.requested",
                    rid,
                    {"by": "check", "code": "hung", "command": command, "reason": HANG},
                )
                w.emit(
                    d + 1, name, "restart.succeeded", rid, {"command": command, "duration_ms": 900.0, "exit_code": 0}
                )
                pids[name] += 10
                restart_time[name] += 1
                w.emit(
                    d + 2.5,
                    name,
                    "probe.succeeded",
                    rid,
                    {"attempt": 1, "latency_ms": 40.0, "phase": "verify", "url": url},
                )
                w.emit(d + 2.5, name, "verification.passed", rid, {"attempts": 1, "latency_ms": 40.0, "seconds": 2.5})
                w.emit(
                    d + 2.6, None, "check.finished", rid, {"code": 1, "duration_ms": 33000.0, "outcome": "RECOVERED"}
                )
                continue
            first = w.ts(t + i / 10)
            data = (
                f'{{"at_ms":{at_ms},"latency_ms":{pools[name][rng.randrange(200)]},"phase":"check",'
                f'"pid":{pids[name]},"start":"{first}","status":200,"url":"{url}"}}'
            )
            w.emit(t + 58.5 + i / 10, name, "probe.batched", "", data)
    w.close()
    conn = fast_connection(partial, 256)
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    partial.replace(db)
    return n_hangs


def table_bytes(db: Path, prefix: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(
            conn.execute("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE ?", (prefix + "%",)).fetchone()[0]
        )
    except sqlite3.Error:
        return -1
    finally:
        conn.close()


def drop_caches() -> bool:
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="timed runs of each command, warm and cold (median reported)")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="the store")
    parser.add_argument("--fresh", action="store_true", help="generate the store again even if it exists")
    parser.add_argument("--days", type=float, default=365.0, help="how much history, ending now")
    parser.add_argument("--apps", type=int, default=5, help="how many apps (at most 5)")
    parser.add_argument("--hang-every", type=float, default=3.0, help="a hang every N days per app, on average")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    db = args.db.resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    config = db.with_name(db.stem + ".toml")
    write_config(config, db, args.apps)
    rec = recovery_argv()
    if args.fresh or not db.exists():
        for p in db.parent.glob(db.name + "*"):
            p.unlink()
        t = time.perf_counter()
        hangs = generate(db, args, time.time())
        n = sqlite3.connect(db).execute("SELECT max(seq) FROM events").fetchone()[0]
        print(f"generated {n:,} events ({hangs} hangs) in {time.perf_counter() - t:.0f}s: {db_size(db) / 1e9:.2f} GB")
        wall, code, out, err = run_once([*rec, "rebuild", "--config", str(config)])
        if code != 0:
            print(f"recovery rebuild exited {code}: {err.strip()}", file=sys.stderr)
            return 1
        print(f"fold: `recovery rebuild` took {wall:.0f}s ({out.strip()})")
    else:
        n = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT max(seq) FROM events").fetchone()[0]
        print(f"reusing {db} ({n:,} events; --fresh to generate it again)")
    sizes = {p: table_bytes(db, p) for p in ("rollup_minute", "rollup_hour", "rollup_day", "events")}
    print("dbstat: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    c = ["--config", str(config)]
    cmds = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("recovery report --since 365d --json", [*rec, "report", *c, "--since", "365d", "--json"]),
        ("recovery report --since 7d --json", [*rec, "report", *c, "--since", "7d", "--json"]),
    ]
    outs = {}
    for label, argv in cmds:  # warm-up; the first report also folds what the rebuild left
        _, code, outs[label], err = run_once(argv)
        if code not in (0, 1, 2):
            print(f"{label} exited {code}: {err.strip()[:300]}", file=sys.stderr)
            return 1
    can_drop = drop_caches()
    for mode in ("warm", "cold"):
        if mode == "cold" and not can_drop:
            print("cold: skipped, cannot write /proc/sys/vm/drop_caches (not root?)")
            continue
        walls: dict[str, list[float]] = {label: [] for label, _ in cmds}
        for _ in range(args.n):  # interleaved, so every command sees the same background noise
            for label, argv in cmds:
                if mode == "cold":
                    drop_caches()
                wall, _, _, _ = run_once(argv)
                walls[label].append(wall)
        print(
            f"\n{mode} ({'page cache dropped before each run' if mode == 'cold' else 'page cache kept'}), n={args.n}:"
        )
        for label, ws in walls.items():
            med = statistics.median(ws)
            runs = ", ".join(f"{x * 1000:.0f}" for x in ws)
            target = (
                ""
                if label.startswith("python")
                else ("  (target <= 1 s: met)" if med <= 1 else "  (target <= 1 s: MISSED)")
            )
            print(f"  {label:38s} median {med * 1000:7.1f} ms  runs {runs}{target}")
    for label, _ in cmds[1:]:
        print(f"\n{label}: {report_summary(outs[label])[:600]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
