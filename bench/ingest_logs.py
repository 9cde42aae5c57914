"""Ingest a synthetic PM2 error log (1 GB by default) and time it next to grep.

    .venv/bin/python bench/ingest_logs.py                 # 1 GB in .cache/bench/, reused by later runs
    .venv/bin/python bench/ingest_logs.py --size 50MB     # a quick trial

The log is what PM2 writes for a Next.js app with `--time`: a date prefix on every line, Node
errors with stacks and `{ code: … }` blocks (ECONNREFUSED to the database and Redis, TypeErrors
in pages, Next.js ` ⨯ ` errors with a digest, unhandled rejections, timeouts, Prisma errors),
mixed with warnings and other stderr noise, over the last 6 days. Prints lines/s and MB/s of
`recovery.logs.ingest` beside `grep -ci 'error\\|fatal'`, then `top_templates(since 7d)` and `recovery errors --since 7d` beside
`grep -i 'error\\|fatal' FILE | sort | uniq -c | sort -rn | head`.

    .venv/bin/python bench/ingest_logs.py --size 200MB --cli   # `recovery ingest` as a user runs it

`--cli` times `recovery ingest` (a fresh process, one run) on the log and prints the store's size
before and after, beside the same for the code at `--baseline` (default: main before issue 15,
unpacked with `git archive` into .cache/bench/): how many runs it needed to read the whole log,
their time, and the store it left.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recovery import logs  # noqa: E402
from recovery.store import Store  # noqa: E402


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().rstrip("b")
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


FRAMES = [
    "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)",
    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
    "    at async Page (/srv/app/.next/server/app/orders/[id]/page.js:1:{n})",
    "    at async Promise.all (index {k})",
    "    at Object.findMany (/srv/app/node_modules/@prisma/client/runtime/library.js:123:{n})",
    "    at RedisSocket._onError (/srv/app/node_modules/@redis/client/dist/lib/client/socket.js:{k}:{n})",
    "    at renderToHTMLImpl (/srv/app/node_modules/next/dist/server/render.js:{k}:{n})",
    "    at Layer.handle [as handle_request] (/srv/app/node_modules/express/lib/router/layer.js:95:5)",
]


def _stack(rng: random.Random, depth: int) -> list[str]:
    return [rng.choice(FRAMES).format(n=rng.randrange(1, 9999), k=rng.randrange(1, 400)) for _ in range(depth)]


def make_event(rng: random.Random) -> list[str]:
    """One thing the app wrote to stderr, as lines."""
    r = rng.random()
    ip = f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"
    if r < 0.20:
        port = rng.choice([5432, 6379, 3306])
        return [
            f"Error: connect ECONNREFUSED {ip}:{port}",
            *_stack(rng, 2)[:-1],
            FRAMES[0] + " {",
            "  errno: -111,",
            "  code: 'ECONNREFUSED',",
            "  syscall: 'connect',",
            f"  address: '{ip}',",
            f"  port: {port}",
            "}",
        ]
    if r < 0.32:
        prop = rng.choice(["id", "name", "email", "items", "price"])
        return [
            f"TypeError: Cannot read properties of undefined (reading '{prop}')",
            *_stack(rng, rng.randrange(4, 11)),
        ]
    if r < 0.42:
        return [
            f" ⨯ Error: Failed to load order {rng.randrange(10**6)}",
            *_stack(rng, 5)[:-1],
            "    at async Page (/srv/app/.next/server/app/page.js:1:2345) {",
            f"  digest: '{rng.randrange(10**10)}'",
            "}",
        ]
    if r < 0.48:
        return [
            "Unhandled Rejection at: Promise {",
            f"  <rejected> Error: timeout of {rng.randrange(1000, 30000)}ms exceeded",
            *("  " + f for f in _stack(rng, 6)),
            "}",
        ]
    if r < 0.53:
        return [
            f"PrismaClientKnownRequestError: Invalid `prisma.order.findUnique()` invocation: Timed out fetching a new"
            f" connection from the connection pool. (Current connection pool timeout: 10, connection limit: {rng.randrange(5, 20)})",
            *_stack(rng, 8),
            FRAMES[1] + " {",
            "  code: 'P2024',",
            "  clientVersion: '5.7.1',",
            "  meta: { connection_limit: 9, timeout: 10 }",
            "}",
        ]
    if r < 0.56:
        return [
            f"FATAL: remaining connection slots are reserved for non-replication superuser connections ({rng.randrange(100)})"
        ]
    if r < 0.75:
        return [
            f"(node:{rng.randrange(1000, 99999)}) [DEP0040] DeprecationWarning: The `punycode` module is deprecated."
            " Please use a userland alternative instead.",
            "(Use `node --trace-deprecation ...` to show where the warning was created)",
        ]
    if r < 0.90:
        return [
            f"warn  - slow request GET /api/orders/{rng.randrange(10**6)} took {rng.randrange(1000, 9000)}ms"
            f" req_id={rng.getrandbits(64):016x}"
        ]
    return [f"Redis reconnecting in {rng.randrange(50, 5000)}ms (attempt {rng.randrange(1, 50)})"]


def generate(path: Path, size: int, seed: int = 1) -> tuple[int, int]:
    """Write about `size` bytes of PM2 error log; return (bytes, lines)."""
    rng = random.Random(seed)
    end = _dt.datetime.now(_dt.UTC).replace(microsecond=0) - _dt.timedelta(minutes=5)
    start = end - _dt.timedelta(days=6)
    # Spread events evenly: estimate ~330 bytes per event.
    n_events = max(1, size // 330)
    step = (end - start).total_seconds() / n_events
    written = lines = 0
    t = start.timestamp()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", buffering=1 << 22) as f:
        buf: list[str] = []
        last_sec, prefix = -1, ""
        while written < size:
            t += step
            sec = int(t)
            if sec != last_sec:
                prefix = time.strftime("%Y-%m-%dT%H:%M:%S: ", time.gmtime(sec))
                last_sec = sec
            for line in make_event(rng):
                s = prefix + line + "\n"
                buf.append(s)
                written += len(s.encode()) if not s.isascii() else len(s)
                lines += 1
            if len(buf) > 20000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
    tmp.rename(path)
    return written, lines


def _has_dbstat(conn) -> bool:
    try:
        conn.execute("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except Exception:
        return False


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _store_bytes(db: Path) -> int:
    """The store's bytes on disk, its WAL checkpointed first (what stays)."""
    import sqlite3

    if db.exists():
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def _baseline_tree(rev: str, into: Path) -> Path:
    """The code at `rev`, unpacked once (with `recovery_cli` pointing at its cli/, as installed)."""
    tree = into / f"baseline-{rev}"
    if not (tree / "recovery").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        (tree / "recovery_cli").symlink_to("cli")
    return tree


def _runs_until_done(log: Path, workdir: Path, src: Path) -> tuple[int, float, int, int, str]:
    """`recovery ingest` from `src` until the log is read whole: (runs, seconds, store bytes before, after, last line)."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "recovery.db"
    conf = workdir / "recovery.toml"
    conf.write_text(
        f'[store]\npath = "{db}"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\nlogs = ["{log}"]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(src), "RECOVERY_CONFIG": ""}
    subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "status", "--config", str(conf)], env=env, capture_output=True
    )
    before = _store_bytes(db)
    runs, seconds, line = 0, 0.0, ""
    while True:
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "recovery_cli.main", "ingest", "--config", str(conf)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=workdir,
        ).stdout
        seconds += time.perf_counter() - t0
        runs += 1
        line = out.strip().splitlines()[0]
        if "more waiting" not in out or runs >= 1000:
            return runs, seconds, before, _store_bytes(db), line


def cli_compare(log: Path, args: argparse.Namespace) -> None:
    nbytes = log.stat().st_size
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-cli-", dir=args.dir) as tmp:
        rows = []
        if args.baseline:
            src = _baseline_tree(args.baseline, args.dir)
            rows.append((f"before ({args.baseline})", *_runs_until_done(log, Path(tmp) / "before", src)))
        rows.append(("after (this tree)", *_runs_until_done(log, Path(tmp) / "after", REPO)))
    print(f"`recovery ingest` of {log.name} ({nbytes / 1e6:.0f} MB), each run a fresh process:")
    for name, runs, seconds, before, after, line in rows:
        print(
            f"  {name:22} {runs:3d} run(s) {seconds:7.1f}s  store {before / 1e6:6.2f} MB -> {after / 1e6:7.1f} MB"
            f" ({after / nbytes:.2f}x the log)"
        )
        print(f"  {'':22} last run said: {line[:120]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GB", help="size of the synthetic log (default 1GB; e.g. 50MB for a trial)")
    ap.add_argument("--dir", type=Path, default=REPO / ".cache" / "bench", help="where the log is kept")
    ap.add_argument("--fresh", action="store_true", help="regenerate the log even if one of that size exists")
    ap.add_argument("--max-bytes", default="64MB", help="byte budget per ingest call (several calls work off the file)")
    ap.add_argument("--profile", action="store_true", help="cProfile the ingestion")
    ap.add_argument("--cli", action="store_true", help="time `recovery ingest` runs and the store size, before/after")
    ap.add_argument("--baseline", default="b8c4cc2", help="with --cli: the git revision for 'before' ('' to skip)")
    args = ap.parse_args()
    size = parse_size(args.size)
    args.dir.mkdir(parents=True, exist_ok=True)
    log = args.dir / f"pm2-error-{args.size.lower()}.log"
    if args.fresh or not log.exists():
        print(f"generating {log} ({size / 1e6:.0f} MB) ...", flush=True)
        seconds, _ = timed(lambda: generate(log, size))
        print(f"  generated in {seconds:.1f}s", flush=True)
    nbytes = log.stat().st_size
    nlines = int(subprocess.run(["wc", "-l", str(log)], capture_output=True, text=True).stdout.split()[0])
    print(f"log: {log} {nbytes / 1e6:.1f} MB, {nlines:,} lines")
    if args.cli:
        cli_compare(log, args)
        return

    # Read the file once so neither side pays for a cold page cache.
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)
    g_s, g_out = timed(
        lambda: subprocess.run(["grep", "-ci", r"error\|fatal", str(log)], capture_output=True, text=True)
    )
    print(f"grep -ci 'error\\|fatal':        {g_s:7.2f}s  ({g_out.stdout.strip()} matching lines)")

    with tempfile.TemporaryDirectory(prefix="bench-logs-", dir=args.dir) as tmp:
        with Store.open(Path(tmp) / "recovery.db") as store:
            budget = parse_size(args.max_bytes)
            calls = entries = 0

            def run() -> None:
                nonlocal calls, entries
                while True:
                    r = logs.ingest(store, "web", [(str(log), "err")], max_bytes=budget)
                    calls += 1
                    entries += r.entries
                    if r.complete:
                        return

            if args.profile:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                i_s, _ = timed(lambda: prof.runcall(run))
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            else:
                i_s, _ = timed(run)
            templates = store.conn.execute("SELECT count(*) FROM log_templates").fetchone()[0]
            print(
                f"recovery.logs.ingest:           {i_s:7.2f}s  {nlines / i_s:,.0f} lines/s  {nbytes / 1e6 / i_s:.1f} MB/s"
                f"  ({entries:,} entries, {templates} templates, {calls} calls of {args.max_bytes})"
            )
            print(
                f"  vs grep -ci: {i_s / g_s:.1f}x grep's time; target >= 50,000 lines/s:"
                f" {'met' if nlines / i_s >= 50_000 else 'NOT met'}"
            )
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db_mb = (Path(tmp) / "recovery.db").stat().st_size / 1e6
            sizes = (
                dict(
                    store.conn.execute(
                        "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 6"
                    ).fetchall()
                )
                if _has_dbstat(store.conn)
                else {}
            )
            print(
                f"  store size: {db_mb:.0f} MB ({db_mb / (nbytes / 1e6):.2f}x the log)"
                + "".join(f"; {k} {v / 1e6:.0f} MB" for k, v in sizes.items())
            )

            since = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=7)
            q_s, top = timed(lambda: logs.top_templates(store.conn, since, top=10))
            q_s = min(q_s, *(timed(lambda: logs.top_templates(store.conn, since, top=10))[0] for _ in range(4)))
            pipeline = f"grep -i 'error\\|fatal' {log} | sort | uniq -c | sort -rn | head"
            p_s, p_out = timed(
                lambda: subprocess.run(
                    ["sh", "-c", pipeline], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
                )
            )
            # The command a user types, as a fresh process (start-up included), median of 5.
            conf = Path(tmp) / "recovery.toml"
            conf.write_text(
                f'[store]\npath = "{Path(tmp) / "recovery.db"}"\n\n[[apps]]\nname = "web"\n'
                'url = "http://127.0.0.1:3000/"\n'
            )
            command = [sys.executable, "-m", "recovery_cli.main", "errors", "--since", "7d", "--config", str(conf)]
            runs = sorted(timed(lambda: subprocess.run(command, capture_output=True, check=True))[0] for _ in range(5))
            c_s = runs[len(runs) // 2]
            print(f"top_templates(since 7d):        {q_s * 1000:7.1f}ms  (in process, best of 5)")
            print(f"recovery errors --since 7d:     {c_s * 1000:7.1f}ms  (a fresh process, median of 5)")
            print(
                f"grep | sort | uniq -c | sort:   {p_s * 1000:7.1f}ms  -> {p_s / c_s:,.0f}x the command's time,"
                f" {p_s / q_s:,.0f}x the query's (target >= 10x)"
            )
            print("top templates:")
            for t in top:
                print(f"  {t['count']:>9,}  {t['template'][:100]}")
            print("grep's top lines (every line differs by its timestamp, so nothing groups):")
            for line in p_out.stdout.splitlines()[:3]:
                print("  " + line[:110])


if __name__ == "__main__":
    main()
