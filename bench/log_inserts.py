"""Bulk inserts of error-log entry rows: `executemany` (what ingestion uses) beside sqlite-utils' `insert_all`.

    .venv/bin/python bench/log_inserts.py            # 60,000 rows, median of 5 runs each
    .venv/bin/python bench/log_inserts.py --rows 200000

Each run inserts the rows, in one transaction, into a fresh in-memory database with the log
tables of a new store (indexes included); the rows are built before the clock starts (as tuples
for executemany, as dicts for insert_all).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recovery.logs import storage  # noqa: E402

COLUMNS = ["id", "ingest_id", "app", "stream", "ts", "template_id", "code", "lines", "source", "offset", "block"]


def rows(n: int) -> list[tuple]:
    return [
        (i, 1, "web", "err", f"2026-11-28T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
         f"{i % 40:012x}", "ECONNREFUSED" if i % 3 == 0 else None, 1 + i % 9, 1, i * 330, i // storage.BLOCK + 1)
        for i in range(1, n + 1)
    ]  # fmt: skip


def fresh() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    storage.ensure_schema(conn)
    return conn


def with_executemany(data: list[tuple]) -> float:
    conn = fresh()
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO log_entries VALUES ({', '.join('?' * len(COLUMNS))})", data)
    conn.execute("COMMIT")
    return time.perf_counter() - t0


def with_insert_all(data: list[dict], batch_size: int) -> float:
    import sqlite_utils

    conn = fresh()
    db = sqlite_utils.Database(conn, recursive_triggers=False)
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    db.table("log_entries").insert_all(data, batch_size=batch_size)
    conn.execute("COMMIT")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("-n", type=int, default=5, help="runs of each (the median is printed)")
    args = ap.parse_args()
    data = rows(args.rows)
    dicts = [dict(zip(COLUMNS, r)) for r in data]
    base = statistics.median(with_executemany(data) for _ in range(args.n))
    print(f"{args.rows:,} log_entries rows, median of {args.n}:")
    print(f"  executemany                 {base * 1000:7.0f} ms")
    for batch in (100, 1000):
        t = statistics.median(with_insert_all(dicts, batch) for _ in range(args.n))
        print(f"  insert_all(batch_size={batch:<4}) {t * 1000:7.0f} ms  ({t / base:.1f}x)")


if __name__ == "__main__":
    main()
