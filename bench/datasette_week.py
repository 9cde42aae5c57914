"""Time `recovery serve` on a week of history: the dashboard and every canned query, over real HTTP.

    .venv/bin/python bench/datasette_week.py            # makes .cache/bench/week/recovery.db first if missing
    .venv/bin/python bench/datasette_week.py -n 9 --db .cache/bench/big.db

Starts `recovery serve --store DB` on a free loopback port, waits until its hint keeper has read the
store (the first panel's hints and the memory chart's default week: what a server that has run a
minute holds), and GETs, N times each after one untimed warm-up: the dashboard page, the dashboard
as a browser loads it (the page plus the JSON of every chart, fetched in parallel as the page's
script does), each chart's JSON (with no filter, and filtered to one app and the last 3 days), and
each canned query's JSON. Prints the median and the slowest run of each, then checks the issue's
target: every chart's and canned query's median under 200 ms. Items that return no rows on this
store (a store without error logs or alerts) are marked.
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
    p.add_argument("--target-ms", type=float, default=200.0, help="each chart's and query's median (default 200)")
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

        empty: set[str] = set()

        def fetch(path: str, params: dict | None = None, label: str = "") -> None:
            r = client.get(path, params=params)
            r.raise_for_status()
            if path.endswith(".json") and not (r.json()["rows"] if isinstance(r.json(), dict) else r.json()):
                empty.add(label or path)

        app = (
            __import__("sqlite3")
            .connect(f"file:{args.db}?mode=ro", uri=True)
            .execute(  # the app with the most incidents, so the filtered charts have something to show
                "SELECT s.app FROM app_state s LEFT JOIN incidents i ON i.app = s.app"
                " GROUP BY s.app ORDER BY count(i.id) DESC, s.app LIMIT 1"
            )
            .fetchone()[0]
        )
        since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3 * 86400))
        filtered = {"app": app, "since": since}

        def chart(name: str, params: dict | None = None) -> None:
            label = f"chart {name}" + (" (filtered)" if params else "")
            fetch("/recovery.json", {"sql": charts[name]["query"], "_shape": "objects", **(params or {})}, label)

        # The server's hint keeper reads the store once it has started: wait for it, as a server
        # that has run a minute would have (its first reading is timed separately below).
        t = time.perf_counter()
        chart("now")
        first_now = time.perf_counter() - t

        def dashboard_loaded() -> None:
            fetch("/-/dashboards/recovery")
            with concurrent.futures.ThreadPoolExecutor(len(charts)) as pool:
                list(pool.map(chart, charts))

        items = [
            ("dashboard page (HTML)", lambda: fetch("/-/dashboards/recovery")),
            ("dashboard loaded (HTML + every chart's JSON)", dashboard_loaded),
        ]
        items += [(f"chart {name}", (lambda n=name: chart(n))) for name in charts]
        items += [(f"chart {name} (filtered)", (lambda n=name: chart(n, filtered))) for name in charts]
        items += [
            (f"query {name}", (lambda n=name: fetch(f"/recovery/{n}.json", {"_shape": "array"}, f"query {n}")))
            for name in queries
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
    print(f"  first view of the now panel after start (hints computed then) {first_now * 1000:7.1f}")
    for label, ts in times.items():
        note = "   (no rows on this store)" if label in empty else ""
        print(f"  {label:48s} median {statistics.median(ts) * 1000:7.1f}   max {max(ts) * 1000:7.1f}{note}")
    timed = {k: v for k, v in times.items() if k.startswith(("chart ", "query "))}
    slowest = max(timed, key=lambda k: statistics.median(timed[k]))
    worst = statistics.median(timed[slowest]) * 1000
    met = worst <= args.target_ms
    print(
        f"slowest chart or query: {slowest}, median {worst:.0f} ms;"
        f" target each median under {args.target_ms:.0f} ms: {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
