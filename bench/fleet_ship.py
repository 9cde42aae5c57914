"""Benchmark: shipping a big store to the fleet's PostgreSQL (issue 18, point 6, first half).

Copies the store (default `.cache/bench/big1m.db`, 1,010,555 events, folded; the original is
never written: shipping writes its cursor and folds), starts a PostgreSQL of its own (Debian's
packages, tests/postgres.py; or `--url`), then prints:
  - the first ship of every event, in one `recovery.fleet.ship.ship` without a budget: events/s,
    and the read models it upserted (app_state, incidents, restarts, rollup hours and days);
  - beside it, the floor: reading the same rows from SQLite alone;
  - an incremental ship of `--incremental` (300) new events (healthy check runs appended to the
    store), median of `--runs` (5), beside an empty ship (nothing new) measured in the same run;
  - the fleet tables' size in PostgreSQL.
Run: .venv/bin/python bench/fleet_ship.py [--store PATH] [--batch 5000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recovery import config as cfg  # noqa: E402
from recovery.events import Event, format_ts  # noqa: E402
from recovery.fleet.ship import ship  # noqa: E402
from recovery.store import Store  # noqa: E402


def append_runs(db: Path, events: int) -> int:
    "Append healthy check runs (4 events each) after the store's newest event; how many events."
    with Store.open(db) as store:
        last = store.conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()[0]
        app = store.conn.execute("SELECT app FROM app_state ORDER BY app LIMIT 1").fetchone()[0]
        t0 = dt.datetime.fromisoformat(last.replace("Z", "+00:00"))
        rows: list[Event] = []
        n = 0
        while len(rows) < events:
            n += 1
            rid = f"bench-{time.time_ns()}-{n}"
            at = t0 + dt.timedelta(seconds=60 * n)
            for i, (type_, who, data) in enumerate(
                [
                    ("check.started", None, {"trigger": "cron"}),
                    ("probe.succeeded", app, {"phase": "check", "latency_ms": 20.0, "attempt": 1}),
                    ("decision.made", app, {"action": "none", "reason": "healthy", "state": "healthy"}),
                    ("check.finished", None, {}),
                ]
            ):
                rows.append(Event(type_, who, rid, data, ts=format_ts(at + dt.timedelta(milliseconds=100 * i))))
        store.append(rows[:events])
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=ROOT / ".cache/bench/big1m.db", help="the store to ship (copied)")
    parser.add_argument("--url", help="a PostgreSQL URL (default: start one with tests/postgres.py)")
    parser.add_argument("--batch", type=int, default=5000, help="[fleet] batch: events per COPY round")
    parser.add_argument("--incremental", type=int, default=300, help="events in each incremental ship")
    parser.add_argument("--runs", type=int, default=5, help="incremental ships (median reported)")
    args = parser.parse_args()
    if not args.store.exists():
        print(f"no store at {args.store} (bench/big_store.py --events 1000000 makes one)", file=sys.stderr)
        return 1
    home = Path(tempfile.mkdtemp(prefix="rfleet-"))
    server = None
    try:
        db = home / "recovery.db"
        started = time.perf_counter()
        with sqlite3.connect(f"file:{args.store}?mode=ro", uri=True) as src, sqlite3.connect(db) as dst:
            src.backup(dst)  # a consistent copy, the original only read
        events = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0]
        print(
            f"store: {args.store} copied ({events:,} events, {db.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - started:.1f}s"
        )
        url = args.url
        if url is None:
            from tests.postgres import PostgresServer

            server = PostgresServer()
            url = server.fresh_database()
        path = home / "recovery.toml"
        path.write_text(
            f'[store]\npath = "{db}"\n[fleet]\npostgres = "{url}"\nhost = "bench"\nbatch = {args.batch}\n'
            '[[apps]]\nname = "bench"\nurl = "http://127.0.0.1:9/"\n'
        )
        config = cfg.load(path)

        started = time.perf_counter()
        with sqlite3.connect(db) as conn:
            n = sum(
                1
                for _ in conn.execute(
                    "SELECT seq, id, ts, host, app, type, run_id, data, prev_hash, hash FROM events ORDER BY seq"
                )
            )
        floor = time.perf_counter() - started
        print(f"floor          : reading the {n:,} events from SQLite alone: {floor:.1f}s ({n / floor:,.0f} events/s)")

        first = ship(config, budget=None)
        models = ", ".join(f"{k.removeprefix('fleet_')} {v:,}" for k, v in first.models.items())
        print(
            f"first ship     : {first.events:,} events in {first.seconds:.1f}s = {first.events / first.seconds:,.0f} events/s"
            f" ({first.rounds} rounds of {args.batch}; with the read models: {models})"
        )

        empty, incremental = [], []
        for _ in range(args.runs):  # interleaved, so both see the same background noise
            empty.append(ship(config, budget=None).seconds)
            append_runs(db, args.incremental)
            r = ship(config, budget=None)
            assert r.events == args.incremental and r.backlog == 0, r
            incremental.append(r.seconds)
        print(
            f"incremental    : {args.incremental} new events: median {statistics.median(incremental) * 1000:.0f} ms"
            f" (runs {', '.join(f'{s * 1000:.0f}' for s in incremental)} ms)"
        )
        print(
            f"empty ship     : nothing new: median {statistics.median(empty) * 1000:.0f} ms"
            f" (connect, schema check, the fold and cursor reads; runs {', '.join(f'{s * 1000:.0f}' for s in empty)} ms)"
        )
        import psycopg

        with psycopg.connect(url) as pg:
            rows = pg.execute(
                "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname LIKE 'fleet_%%'"
                " AND relkind = 'r' ORDER BY 2 DESC"
            ).fetchall()
        print("PostgreSQL     : " + ", ".join(f"{name} {size / 1e6:,.0f} MB" for name, size in rows if size > 1e6))
        return 0
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
