"""Benchmark: `recovery archive --before 90d` on a generated year of history, and what it keeps.

Generates a store with bench/big_store.py (--events, default 1M: a year of check runs over 10 apps),
then, as fresh processes: `recovery report --since 365d --json` before, `recovery archive --before 90d`,
`recovery verify` and `recovery verify --all`, the report again (its numbers must not change),
`recovery rebuild` (the segments' events are folded first) and the report once more. Prints wall
times, the store's file and used bytes before and after, the segments' total size, and whether the
report's numbers stayed the same.

Run: .venv/bin/python bench/archive_store.py [--events 1000000] [--db /tmp/archive-bench/recovery.db]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from big_store import REPO, recovery_argv, run_once, write_config

DEFAULT_DB = REPO / ".cache" / "bench" / "archive" / "recovery.db"


def used_and_file(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        pages, free, size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
    finally:
        conn.close()
    return (pages - free) * size, db.stat().st_size


def numbers(report_json: str) -> dict[str, tuple]:
    apps = json.loads(report_json)["apps"]
    keys = ("availability_percent", "probes", "failures", "restarts", "mttr_s", "latency_ms")
    return {
        name: tuple(len(a[k]) if isinstance(a.get(k), list) else a.get(k) for k in (*keys, "incidents"))
        for name, a in apps.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="about how many events to generate")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="where the store goes (its folder is emptied)")
    args = parser.parse_args()
    db = args.db.resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    for p in db.parent.iterdir():
        if p.name.startswith(db.stem):
            p.chmod(0o600)
            p.unlink()
    gen = [sys.executable, str(REPO / "bench" / "big_store.py"), "--db", str(db), "--events", str(args.events)]
    print(f"generating {args.events:,} events with big_store.py ...", flush=True)
    subprocess.run([*gen, "--fresh", "--no-time"], check=True, stdout=subprocess.DEVNULL)
    config = db.with_name("recovery.toml")
    write_config(config, db)
    rec, c = recovery_argv(), ["--config", str(config)]

    def step(label: str, *argv: str) -> tuple[float, str]:
        wall, code, out, err = run_once([*rec, *argv, *c])
        line = (out.strip().splitlines() or [""])[-1] if not out.startswith("{") else "(json)"
        print(f"  {label:34s} {wall:6.2f} s  exit {code}  {line[:110]}{' ' + err.strip()[:200] if code else ''}")
        if code not in (0,):
            raise SystemExit(f"{label} failed: {err.strip()}")
        return wall, out

    used0, file0 = used_and_file(db)
    events0 = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"store: {events0:,} events, file {file0 / 1e6:.0f} MB, pages in use {used0 / 1e6:.0f} MB")
    _, before = step("report --since 365d (before)", "report", "--since", "365d", "--json")
    step("archive --before 90d --dry-run", "archive", "--before", "90d", "--dry-run")
    step("archive --before 90d", "archive", "--before", "90d")
    step("verify (store only)", "verify")
    step("verify --all", "verify", "--all")
    _, after = step("report --since 365d (after)", "report", "--since", "365d", "--json")
    step("rebuild (segments, then store)", "rebuild")
    _, rebuilt = step("report --since 365d (rebuilt)", "report", "--since", "365d", "--json")
    used1, file1 = used_and_file(db)
    segs = sorted(db.parent.glob(f"{db.stem}.*.segment.db"))
    events1 = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT count(*) FROM events").fetchone()[0]
    print(
        f"store after: {events1:,} events, file {file1 / 1e6:.0f} MB (SQLite reuses freed pages),"
        f" pages in use {used1 / 1e6:.0f} MB; {len(segs)} segments, {sum(p.stat().st_size for p in segs) / 1e6:.0f} MB"
    )
    same = numbers(before) == numbers(after) == numbers(rebuilt)
    print(
        f"report --since 365d numbers (availability, probes, failures, restarts, MTTR, latency, incidents) unchanged by archive and rebuild: {same}"
    )
    if not same:
        for name in numbers(before):
            print(
                f"  {name}: before {numbers(before)[name]} after {numbers(after).get(name)} rebuilt {numbers(rebuilt).get(name)}"
            )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
