"""`recovery fleet status`, `fleet report --since 7d` and `fleet verify` on 10, 30 and 100 simulated
hosts x 5 apps x a week of cron history (issue 18 point 6, the views' half).

    .venv/bin/python bench/fleet_scale.py                       # starts its own PostgreSQL (tests/postgres.py)
    .venv/bin/python bench/fleet_scale.py --steps 5,10 --days 2 # a quick trial
    .venv/bin/python bench/fleet_scale.py --url postgresql://u:pw@host/db   # an existing, empty database

History: a few template hosts (`--templates`, 4) are written through `Store.append` (a cron check
every 5 minutes: check.started, then per app probe.succeeded and decision.made, check.finished;
now and then a hang: two failed probes, a PM2 sample, a restart, its verification; now and then a
restart PM2 made on its own) and folded with `projections.fold`, so the read models are the
product's own. Host i is template i % templates with its own event ids and host name, its hash
chain recomputed with `recovery.store.chain_hash` (so `fleet verify` passes), COPYed straight into
the fleet tables (what shipping will write: events byte for byte, the read models as rows).

The hosts are added in steps (`--steps 10,30,100`); after each, the in-process view functions are
timed (fresh connection each run, median of `-n` runs), `fleet verify` once, and at the last step
the commands as fresh processes beside `recovery --version` (the interpreter and Typer alone). The
baseline: `recovery report --since 7d`'s computation on one template host's own SQLite store.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO)]

from recovery import projections  # noqa: E402
from recovery.events import Event, format_ts  # noqa: E402
from recovery.fleet.views import fleet_report, fleet_status, fleet_verify  # noqa: E402
from recovery.report import build_report  # noqa: E402
from recovery.store import GENESIS, Store, chain_hash  # noqa: E402

SCHEMA = REPO / "recovery" / "fleet" / "schema.sql"
APPS = ("web", "api", "shop", "jobs", "admin")
UTC = _dt.UTC
MODELS = {  # fleet table: the columns copied from the host's table of the same name (without fleet_)
    "fleet_app_state": "app, state, since, reason, last_check_at, last_latency_ms, pm2_status, memory, cpu, uptime_s,"
    " restart_time, paused_until, suspended_at, open_incident, last_restart_at, last_ok_at, first_fail_at",
    "fleet_incidents": "id, app, started_at, detected_at, unobserved_s, ended_at, duration_s, restarts, outcome,"
    " first_reason",
    "fleet_restarts": "seq, app, at, by, source, count, reason, outcome, incident_id, code",
    "fleet_rollup_hour": "app, start, probes, failures, up_s, down_s, unobserved_s, latency",
    "fleet_rollup_day": "app, start, probes, failures, up_s, down_s, unobserved_s, latency",
}
HANG = "hung: PM2 says online but 2 failed probes (timeout)"


def template(db: Path, seed: int, end: float, days: float, interval: float) -> int:
    """One host's history in a new store at `db`, folded; the number of events."""
    rng = random.Random(seed)
    t = end - days * 86400
    n = 0
    pm2_restarts = dict.fromkeys(APPS, 0)
    with Store.open(db) as store:
        batch: list[Event] = []
        run = 0
        while t < end:
            run += 1
            rid = f"r{seed}-{run}"
            ts = lambda dt_, t0=t: format_ts(_dt.datetime.fromtimestamp(t0 + dt_, UTC))  # noqa: E731
            k = 0.0
            batch.append(
                Event("check.started", None, rid, {"trigger": "cron", "apps": list(APPS), "dry_run": False}, ts=ts(0))
            )
            for app in APPS:
                url = f"http://127.0.0.1:3000/{app}"
                k += 0.05
                if rng.random() < 2 / (days * 86400 / interval):  # about two hangs per app per week
                    for attempt in (1, 2):
                        batch.append(
                            Event(
                                "probe.failed",
                                app,
                                rid,
                                {
                                    "url": url,
                                    "attempt": attempt,
                                    "latency_ms": 2000,
                                    "error": "timeout",
                                    "phase": "check",
                                },
                                ts=ts(k + attempt * 2),
                            )
                        )
                    k += 4.1
                    sample = {"source": "jlist", "status": "online", "restart_time": pm2_restarts[app], "known": True}
                    batch += [
                        Event("process.sampled", app, rid, sample, ts=ts(k)),
                        Event(
                            "decision.made",
                            app,
                            rid,
                            {"action": "restart", "reason": HANG, "state": "recovering", "code": "hung"},
                            ts=ts(k + 0.01),
                        ),
                        Event("restart.requested", app, rid, {"by": "check", "reason": HANG}, ts=ts(k + 0.02)),
                        Event("restart.succeeded", app, rid, {"exit_code": 0}, ts=ts(k + 0.6)),
                        Event(
                            "probe.succeeded",
                            app,
                            rid,
                            {"url": url, "attempt": 1, "latency_ms": 40, "phase": "verify"},
                            ts=ts(k + 1.6),
                        ),
                        Event("verification.passed", app, rid, {"attempts": 1, "seconds": 1.0}, ts=ts(k + 1.61)),
                    ]
                    pm2_restarts[app] += 1
                    k += 1.7
                    continue
                if rng.random() < 1 / (days * 86400 / interval):  # about one restart of PM2's own per app per week
                    pm2_restarts[app] += 1
                    sample = {"source": "jlist", "status": "online", "restart_time": pm2_restarts[app], "known": True}
                    batch.append(Event("process.sampled", app, rid, sample, ts=ts(k)))
                ms = round(rng.lognormvariate(3.2, 0.35), 1)
                batch.append(
                    Event(
                        "probe.succeeded",
                        app,
                        rid,
                        {"url": url, "attempt": 1, "latency_ms": ms, "phase": "check", "status": 200},
                        ts=ts(k + ms / 1000),
                    )
                )
                batch.append(
                    Event(
                        "decision.made",
                        app,
                        rid,
                        {"action": "none", "reason": "healthy", "state": "healthy", "code": "healthy"},
                        ts=ts(k + 0.04),
                    )
                )
            batch.append(
                Event(
                    "check.finished",
                    None,
                    rid,
                    {"outcome": "ok", "code": 0, "duration_ms": round(k * 1000)},
                    ts=ts(k + 0.01),
                )
            )
            if len(batch) >= 20_000:
                n += len(store.append(batch))
                batch = []
            t += interval
        n += len(store.append(batch))
        projections.fold(store.conn)
    return n


def load_host(pg: Any, db: Path, host: str, index: int) -> int:
    """Copy template store `db` into the fleet tables as host `host`: new event ids, the chain re-hashed."""
    import sqlite3

    local = sqlite3.connect(db)
    prefix = f"{index:08x}"
    n = 0
    try:
        with pg.cursor().copy(
            "COPY fleet_events (host, seq, id, ts, event_host, app, type, run_id, data, prev_hash, hash) FROM STDIN"
        ) as copy:
            prev = GENESIS
            for seq, id_, ts, app, type_, run_id, data in local.execute(
                "SELECT seq, id, ts, app, type, run_id, data FROM events ORDER BY seq"
            ):
                new_id = prefix + id_[8:]
                h = chain_hash(prev, seq, Event(type_, app, run_id, ts=ts, host=host, id=new_id), data)
                copy.write_row((host, seq, new_id, ts, host, app, type_, run_id, data, prev, h))
                prev = h
                n += 1
        for table, columns in MODELS.items():
            with pg.cursor().copy(f"COPY {table} (host, {columns}) FROM STDIN") as copy:
                for row in local.execute(f"SELECT {columns} FROM {table.removeprefix('fleet_')}"):
                    copy.write_row((host, *row))
        first, last, last_ts = local.execute("SELECT min(seq), max(seq), max(ts) FROM events").fetchone()
        check = local.execute("SELECT max(last_check_at) FROM app_state").fetchone()[0]
        pg.execute(
            "INSERT INTO fleet_hosts (host, first_seq, last_seq, last_event_at, last_check_at, events)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (host, first, last, last_ts, check, n),
        )
    finally:
        local.close()
    pg.commit()
    return n


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, float, Any]:
    """Median, min and max seconds of `runs` calls; the last answer."""
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), max(times), out


def ms(t: tuple[float, float, float, Any]) -> str:
    return f"{t[0] * 1000:.0f} ms ({t[1] * 1000:.0f}-{t[2] * 1000:.0f})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="an empty PostgreSQL database to fill (default: start one with tests/postgres.py)")
    p.add_argument("--steps", default="10,30,100", help="host counts to time at (default 10,30,100)")
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--interval", type=float, default=300.0, help="seconds between cron checks (default 300)")
    p.add_argument("--templates", type=int, default=4, help="distinct simulated histories (default 4)")
    p.add_argument("-n", "--runs", type=int, default=5, help="timed runs per view (median)")
    p.add_argument("--profile", action="store_true", help="cProfile one fleet report at the last step")
    args = p.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    import psycopg

    server = None
    url = args.url
    if url is None:
        sys.path.insert(0, str(REPO))
        from tests.postgres import PostgresServer

        server = PostgresServer()
        url = server.url()
    work = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    try:
        end = time.time()
        t = time.perf_counter()
        dbs = [work / f"template-{k}.db" for k in range(args.templates)]
        counts = [template(db, k, end, args.days, args.interval) for k, db in enumerate(dbs)]
        print(
            f"{args.templates} template hosts x {len(APPS)} apps x {args.days:g} days, a check every"
            f" {args.interval:g}s: {min(counts):,}-{max(counts):,} events each, written and folded in"
            f" {time.perf_counter() - t:.1f}s"
        )
        now = _dt.datetime.now(UTC)
        since = format_ts(now - _dt.timedelta(days=7))
        with Store.open(dbs[0]) as store:
            base = timed(lambda: build_report(store, list(APPS), since, now), args.runs)
        print(f"baseline: `recovery report --since 7d` computed on one host's SQLite store: {ms(base)}")
        with psycopg.connect(url) as pg:
            pg.execute(SCHEMA.read_text())
            pg.commit()
        print()
        print("| hosts | events | load | fleet status | fleet report --since 7d | fleet verify | verify rate |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        loaded = 0
        total = 0
        for step in steps:
            t = time.perf_counter()
            with psycopg.connect(url) as pg:
                while loaded < step:
                    total += load_host(pg, dbs[loaded % len(dbs)], f"host-{loaded:03d}", loaded)
                    loaded += 1
                pg.execute("ANALYZE")
            load_s = time.perf_counter() - t

            def status() -> Any:
                with psycopg.connect(url) as c:
                    return fleet_status(c, _dt.datetime.now(UTC))

            def report() -> Any:
                with psycopg.connect(url) as c:
                    return fleet_report(c, since, now=now)

            st = timed(status, args.runs)
            rp = timed(report, args.runs)
            with psycopg.connect(url) as c:
                vt = timed(lambda: fleet_verify(c), 1)
            assert vt[3].ok, [h.bad[:1] for h in vt[3].hosts if not h.ok]
            assert len(rp[3].hosts) == step and all(len(h.apps) == len(APPS) for h in rp[3].hosts)
            print(
                f"| {step} | {total:,} | {load_s:.0f} s | {ms(st)} | {ms(rp)} | {vt[0]:.1f} s |"
                f" {total / vt[0] / 1000:.0f}k events/s |",
                flush=True,
            )
        if args.profile:
            import cProfile
            import pstats

            with psycopg.connect(url) as c:
                prof = cProfile.Profile()
                prof.runcall(fleet_report, c, since, now=now)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
        with psycopg.connect(url) as c:
            size = c.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
            events = c.execute("SELECT pg_size_pretty(pg_total_relation_size('fleet_events'))").fetchone()[0]
            hours = c.execute("SELECT count(*) FROM fleet_rollup_hour").fetchone()[0]
        print(f"\ndatabase {size} (fleet_events with its indexes {events}); {hours:,} hour rollup rows")
        cli_times(url, work, args.runs)
    finally:
        if server is not None:
            server.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


def cli_times(url: str, work: Path, runs: int) -> None:
    """The commands as fresh processes (what a user waits for), beside `recovery --version`."""
    recovery = str(Path(sys.executable).parent / "recovery")
    cfg = work / "recovery.toml"
    cfg.write_text(
        f'[store]\npath = "{work / "local.db"}"\n[fleet]\npostgres = "{url}"\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n'
    )
    env = {**os.environ, "RECOVERY_CONFIG": ""}

    def run(*a: str) -> Callable[[], Any]:
        return lambda: subprocess.run([recovery, *a], env=env, capture_output=True, check=False)

    print(f"\nas fresh processes (median of {runs}):")
    print(f"  recovery --version                         {ms(timed(run('--version'), runs))}")
    for a in (("status", "--json"), ("report", "--since", "7d", "--json")):
        r = timed(run("fleet", *a, "--config", str(cfg)), runs)
        print(f"  recovery fleet {' '.join(a):<28} {ms(r)}  (exit {r[3].returncode}, {len(r[3].stdout):,} bytes)")
    r = timed(run("fleet", "verify", "--config", str(cfg)), 1)
    print(f"  recovery fleet verify                      {r[0]:.1f} s  (exit {r[3].returncode})")


if __name__ == "__main__":
    raise SystemExit(main())
