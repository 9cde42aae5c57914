"""Generate a store with a week of realistic history, through the product's own APIs.

    .venv/bin/python bench/week_store.py                      # .cache/bench/week/recovery.db, 7 days ending now
    .venv/bin/python bench/week_store.py --db /tmp/x/recovery.db --days 2 --interval 300

The history is bench/big_store.py's simulation (10 apps: hangs, night-time stalls of `web`, a
memory leak in `media` that PM2 restarts on its own, restart loops, crash loops, deploys under
maintenance pauses, a nightly scheduled restart of `jobs`, operator restarts, watcher gaps), plus
one hang of `web` in the middle of the period, so even a short store has an incident, and an
alert (`alert.sent`, now and then `alert.failed`) after every automatic restart. Every event goes
through `Store.append` (ids, encoding and hash chain are the product's: `recovery verify` passes),
the projections are folded with `projections.fold`, and PM2 error logs over the last 6 days
(bench/ingest_logs.py's generator) are read with `recovery.logs.ingest`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

import big_store  # noqa: E402
import ingest_logs  # noqa: E402

from recovery import logs, projections  # noqa: E402
from recovery.events import Event, format_ts  # noqa: E402
from recovery.store import Store  # noqa: E402

DEFAULT_DB = REPO / ".cache" / "bench" / "week" / "recovery.db"
UTC = _dt.UTC


class StoreWriter:
    """The writer big_store.Sim emits to, appending through `Store.append` in batches."""

    def __init__(self, store: Store, rng: random.Random, batch: int = 5000) -> None:
        self.store, self.rng, self.batch = store, rng, batch
        self.buffer: list[Event] = []
        self.written = 0

    def ts(self, t: float) -> str:
        return format_ts(_dt.datetime.fromtimestamp(t, UTC))

    def emit(self, t: float, app: str | None, type_: str, run_id: str, data: dict[str, Any] | str) -> str:
        ts = self.ts(t)
        data = json.loads(data) if isinstance(data, str) else dict(data)
        self.buffer.append(Event(type=type_, app=app, run_id=run_id, data=data, ts=ts, host=big_store.HOST))
        if type_ == "restart.requested" and data.get("by") == "check":
            # What issue 6's alerts record: the channel with its secret redacted.
            failed = self.rng.random() < 0.15
            alert = {"channel": "slacks://T0***/B0***/***", "kind": "restarted", "reason": data.get("reason")}
            if failed:
                alert["error"] = "HTTP 503 from hooks.slack.com"
            self.buffer.append(
                Event(
                    type="alert.failed" if failed else "alert.sent",
                    app=app,
                    run_id=run_id,
                    data=alert,
                    ts=self.ts(t + 0.2),
                    host=big_store.HOST,
                )
            )
        if len(self.buffer) >= self.batch:
            self.flush()
        return ts

    def flush(self) -> None:
        # Sim emits in time order except an alert, stamped 0.2 s after its restart: keep seq in time order.
        events, self.buffer = sorted(self.buffer, key=lambda e: e.ts), []
        self.written += len(self.store.append(events))


def build(
    db: Path,
    *,
    days: float = 7.0,
    interval: float = 60.0,
    seed: int = 7,
    log_mb: float = 4.0,
    end: float | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Write the history into a new store at `db` (which must not exist); return what was made."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    if db.exists():
        raise SystemExit(f"{db} exists; remove it first (or give another --db)")
    db.parent.mkdir(parents=True, exist_ok=True)
    end = time.time() if end is None else end
    start = end - days * big_store.DAY
    rng = random.Random(seed)
    started = time.perf_counter()
    with Store.open(db) as store:
        w = StoreWriter(store, rng)
        sim = big_store.Sim(w, rng, start, end, interval, sample_every=1)  # type: ignore[arg-type]
        web = sim.app("web")
        web.pending = sorted([*web.pending, (start + (end - start) / 2, "hang")], reverse=True)
        runs = sim.run()
        w.flush()
        say(
            f"{w.written:,} events ({runs:,} check runs of {len(sim.apps)} apps, {days:g} days) in"
            f" {time.perf_counter() - started:.1f}s"
        )
        t = time.perf_counter()
        projections.fold(store.conn)
        say(f"projections folded in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        entries = 0
        with tempfile.TemporaryDirectory() as tmp:
            for i, app in enumerate(("web", "api", "shop")):
                path = Path(tmp) / f"{app}-error.log"
                ingest_logs.generate(path, int(log_mb * 1e6 / (i + 1)), seed=seed + i)
                entries += logs.ingest(store, app, [path]).entries
        say(f"{entries:,} error-log entries ingested in {time.perf_counter() - t:.1f}s")
        counts = dict(store.conn.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall())
    return {"events": w.written, "runs": runs, "log_entries": entries, "types": counts}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"where to write the store (default {DEFAULT_DB})")
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument(
        "--interval", type=float, default=60.0, help="seconds between check runs (default 60: cron every minute)"
    )
    p.add_argument("--log-mb", type=float, default=4.0, help="size of the largest generated error log")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--fresh", action="store_true", help="delete the store first")
    args = p.parse_args()
    if args.fresh:
        for f in args.db.parent.glob(args.db.name + "*"):
            f.unlink()
    made = build(args.db, days=args.days, interval=args.interval, seed=args.seed, log_mb=args.log_mb)
    print(json.dumps(made["types"], sort_keys=True))
    print(f"wrote {args.db} ({args.db.stat().st_size / 1e6:.0f} MB); serve it: recovery serve --store {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
