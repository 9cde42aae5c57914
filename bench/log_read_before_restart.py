"""How long the log read before a restart delays it (issue 16 point 2), on a backlog of PM2's
default, untimestamped error log.

    .venv/bin/python bench/log_read_before_restart.py              # 16 MB backlog, budgets 2MB and 16MB, 5 runs
    .venv/bin/python bench/log_read_before_restart.py --size 4MB -n 3

Before `pm2 restart`, `recovery check` reads the app's new log lines within `[logs] check_budget`,
at most `BEFORE_RESTART_BYTES` (2 MB) (`ingest_in_check(..., before_restart=True)`). Each run
times that call on a fresh store over the backlog (`--size`, default 16 MB) for each budget,
beside the same read without the cap (`ingest(max_bytes=budget)`) and the call when nothing is
new (a stat of each file). Prints the median of `-n` runs and every run, and the entries read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest_logs import make_event, parse_size
from recovery.logs.checkstep import BEFORE_RESTART_BYTES, ingest_in_check
from recovery.logs.ingestion import ingest
from recovery.store import Store


def backlog(path: Path, size: int) -> int:
    """About `size` bytes of Node errors and stderr noise as PM2 writes them by default: no timestamps."""
    import random

    rng = random.Random(1)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            text = "".join(line + "\n" for line in make_event(rng))
            f.write(text)
            written += len(text.encode())
    return written


def uncapped(folder: Path, log: Path, budget: int, i: int) -> float:
    """Seconds of the same read without the cap: `budget` bytes."""
    with Store.open(folder / f"uncapped-{budget}-{i}.db") as store:
        from recovery.logs.storage import ensure_schema

        ensure_schema(store.conn)
        t0 = time.perf_counter()
        ingest(store, "web", [str(log)], max_bytes=budget, run_id="bench")
        return time.perf_counter() - t0


def one_run(folder: Path, log: Path, budget: int, i: int) -> tuple[float, float, int]:
    """(seconds of the read, seconds of the same call once nothing is new, entries read)."""
    app = SimpleNamespace(name="web", logs=(str(log),))
    conf = SimpleNamespace(check_every=60.0, check_budget=budget, keep_stdout=False, first_read="beginning")
    with Store.open(folder / f"run-{budget}-{i}.db") as store:
        from recovery.logs.storage import ensure_schema

        ensure_schema(store.conn)  # as in a store a check has written before
        t0 = time.perf_counter()
        result = ingest_in_check(store, app, conf, run_id="bench", before_restart=True)
        read = time.perf_counter() - t0
        while result is not None and not result.complete:  # read the rest: then nothing is new
            result = ingest_in_check(store, app, conf, run_id="bench", before_restart=True)
        t0 = time.perf_counter()
        nothing = ingest_in_check(store, app, conf, run_id="bench", before_restart=True)
        idle = time.perf_counter() - t0
        assert nothing is None
        entries = store.conn.execute("SELECT count(*) FROM log_entries WHERE ingest_id = 1").fetchone()[0]
    return read, idle, entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="16MB", help="backlog size (default 16MB)")
    ap.add_argument("--budgets", default="2MB,16MB", help="check_budget values to time (default 2MB,16MB)")
    ap.add_argument("-n", type=int, default=5, help="runs per budget (default 5)")
    args = ap.parse_args()
    size = parse_size(args.size)
    budgets = [parse_size(b) for b in args.budgets.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-before-restart-") as tmp:
        folder = Path(tmp)
        log = folder / "web-error.log"
        written = backlog(log, size)
        print(f"backlog: {written / 1e6:.1f} MB of untimestamped PM2 error log; {args.n} runs per budget")
        for budget in budgets:
            runs, plain = [], []
            for i in range(args.n):  # interleaved, so that load on the machine hits both alike
                runs.append(one_run(folder, log, budget, i))
                plain.append(uncapped(folder, log, budget, i))
            reads = [r[0] for r in runs]
            idles = [r[1] for r in runs]
            print(
                f"check_budget {budget / (1 << 20):g} MB: read before the restart"
                f" (at most {min(budget, BEFORE_RESTART_BYTES) / (1 << 20):g} MB) {statistics.median(reads):.3f} s"
                f" (runs {', '.join(f'{x:.3f}' for x in reads)}), {runs[0][2]} entries;"
                f" without the cap {statistics.median(plain):.3f} s (runs {', '.join(f'{x:.3f}' for x in plain)});"
                f" nothing new {statistics.median(idles) * 1000:.2f} ms"
            )


if __name__ == "__main__":
    main()
