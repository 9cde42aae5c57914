"""Time `recovery serve` on a week of history: the dashboard and every canned query, over real HTTP.

    .venv/bin/python bench/datasette_week.py            # makes .cache/bench/week/recovery.db first if missing
    .venv/bin/python bench/datasette_week.py -n 9 --db /path/to/recovery.db

Starts `recovery serve --store DB` on a free loopback port and GETs, N times each after one
untimed warm-up: the dashboard page, the dashboard as a browser loads it (the page plus the JSON
of every chart, fetched in parallel as the page's script does), each chart's JSON, and each
canned query's JSON. Prints the median and the slowest run of each, then the slowest item
against the issue's target (each under a second).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import recovery_datasette  # noqa: E402
import week_store  # noqa: E402

from recovery.demo import free_port  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", type=Path, default=week_store.DEFAULT_DB)
    p.add_argument("-n", type=int, default=5, help="timed runs per item (default 5)")
    args = p.parse_args()
    if not args.db.exists():
        print(f"no store at {args.db}: generating a week of history", flush=True)
        week_store.build(args.db)
    events = (
        __import__("sqlite3")
        .connect(f"file:{args.db}?mode=ro", uri=True)
        .execute("SELECT count(*) FROM events")
        .fetchone()[0]
    )
    metadata = yaml.safe_load(recovery_datasette.METADATA.read_text())
    charts = {
        k: c for k, c in metadata["plugins"]["datasette-dashboards"]["recovery"]["charts"].items() if "query" in c
    }
    queries = metadata["databases"]["recovery"]["queries"]

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "serve", "--store", str(args.db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(base_url=base, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.get("/-/versions.json").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print("recovery serve did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)

        def fetch(path: str, params: dict | None = None) -> None:
            r = client.get(path, params=params)
            r.raise_for_status()
            if path.endswith(".json") and not r.json():
                raise RuntimeError(f"{path}: no rows")

        def chart(name: str) -> None:
            fetch("/recovery.json", {"sql": charts[name]["query"], "_shape": "objects"})

        def dashboard_loaded() -> None:
            fetch("/-/dashboards/recovery")
            with concurrent.futures.ThreadPoolExecutor(len(charts)) as pool:
                list(pool.map(chart, charts))

        items = [
            ("dashboard page (HTML)", lambda: fetch("/-/dashboards/recovery")),
            ("dashboard loaded (HTML + every chart's JSON)", dashboard_loaded),
        ]
        items += [(f"chart {name}", (lambda n=name: chart(n))) for name in charts]
        items += [
            (f"query {name}", (lambda n=name: fetch(f"/recovery/{n}.json", {"_shape": "array"}))) for name in queries
        ]
        times: dict[str, list[float]] = {label: [] for label, _ in items}
        for _, fn in items:
            fn()  # warm-up (also checks every answer has rows)
        for _ in range(args.n):
            for label, fn in items:
                t = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.db}: {events:,} events, {args.db.stat().st_size / 1e6:.0f} MB; {args.n} runs each over HTTP (ms)")
    for label, ts in times.items():
        print(f"  {label:48s} median {statistics.median(ts) * 1000:7.1f}   max {max(ts) * 1000:7.1f}")
    slowest = max(times, key=lambda k: max(times[k]))
    worst = max(times[slowest])
    print(
        f"slowest: {slowest}, {worst * 1000:.0f} ms (max of {args.n}); target each under 1 s: {'met' if worst < 1 else 'MISSED'}"
    )
    return 0 if worst < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
