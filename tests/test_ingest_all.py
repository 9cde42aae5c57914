"""`recovery ingest` reads every new byte in one run, in committed parts, and stores entries compactly."""

from __future__ import annotations

import datetime as dt
import os
import pty
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from recovery import logs
from recovery.logs import storage
from recovery.store import Store

from .conftest import wait_until

OLD_CAP = 16 << 20  # what one `recovery ingest` read at most before


def write_log(path: Path, size: int, seed: int = 1) -> int:
    """About `size` bytes of a PM2 error log with `--time` (ECONNREFUSED with its `{ code }` block,
    TypeErrors with stacks, slow-request warnings), one entry a second; returns how many entries."""
    rng = random.Random(seed)
    start = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    out: list[str] = []
    written = n = 0
    with path.open("w", encoding="utf-8") as f:
        while written < size:
            prefix = (start + dt.timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S: ")
            ip = f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"
            if n % 3 == 0:
                lines = [
                    f"Error: connect ECONNREFUSED {ip}:5432",
                    "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {",
                    "  errno: -111,",
                    "  code: 'ECONNREFUSED',",
                    "  syscall: 'connect',",
                    f"  address: '{ip}',",
                    "  port: 5432",
                    "}",
                ]
            elif n % 3 == 1:
                lines = [f"TypeError: Cannot read properties of undefined (reading '{rng.choice(['id', 'name'])}')"]
                lines += [
                    f"    at {rng.choice(['handler', 'render', 'Page'])} (/srv/app/.next/server/app/page.js:1:{rng.randrange(9999)})"
                    for _ in range(rng.randrange(3, 7))
                ]
            else:
                lines = [
                    f"warn  - slow request GET /api/orders/{rng.randrange(10**6)} took {rng.randrange(1000, 9000)}ms"
                ]
            text = "".join(prefix + line + "\n" for line in lines)
            out.append(text)
            written += len(text)
            n += 1
            if len(out) >= 5000:
                f.write("".join(out))
                out.clear()
        f.write("".join(out))
    return n


def write_config(tmp_path: Path, log: Path) -> Path:
    conf = tmp_path / "recovery.toml"
    conf.write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[[apps]]\nname = "web"\n'
        f'url = "http://127.0.0.1:9/"\nlogs = ["{log}"]\n'
    )
    return conf


def ingest_cli(conf: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "ingest", "--config", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "RECOVERY_CONFIG": ""},
        **kw,
    )


def count_entries(db: Path) -> tuple[int, int]:
    """(entries, distinct file offsets): equal when no entry was stored twice."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT source || ':' || offset) FROM log_entries").fetchone()


def on_a_terminal(argv: list[str]) -> str:
    """Run `argv` with stdout and stderr on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    env = {**os.environ, "RECOVERY_CONFIG": "", "TERM": "xterm", "COLUMNS": "100"}
    proc = subprocess.Popen(argv, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, out[-2000:]
    return out.decode("utf-8", "replace")


def test_a_log_bigger_than_the_old_per_run_cap_is_read_whole_in_one_run(tmp_path):
    log = tmp_path / "web-error.log"
    n = write_log(log, OLD_CAP + (1 << 20))
    conf = write_config(tmp_path, log)

    first = ingest_cli(conf)
    assert first.returncode == 0, first.stderr
    (line,) = first.stdout.splitlines()  # piped: the summary alone, no progress bar
    assert "\x1b" not in first.stdout and "━" not in first.stdout
    lines = log.read_bytes().count(b"\n")
    assert line.startswith(f"web: {log.stat().st_size / 1e6:,.1f} MB, {lines:,} lines, {n:,} entries, "), line
    with Store.open(tmp_path / "recovery.db", readonly=True) as store:
        (event1, event2) = store.query(types=["log.ingested"])
    assert event1.data["lines"] + event2.data["lines"] == lines  # an error cut by the first part: counted once
    assert sum(f["bytes"] for e in (event1, event2) for f in e.data["files"]) == log.stat().st_size
    assert count_entries(tmp_path / "recovery.db") == (n, n)

    again = ingest_cli(conf)
    assert again.returncode == 0 and again.stdout.startswith("web: 0 bytes, 0 lines, 0 entries"), again.stdout


def test_an_interrupted_run_resumes_from_its_last_committed_part(tmp_path):
    log = tmp_path / "web-error.log"
    n = write_log(log, 3 * OLD_CAP)  # three parts of 16 MB: several seconds of work
    conf = write_config(tmp_path, log)
    db = tmp_path / "recovery.db"

    def parts_committed() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT count(*) FROM log_ingests").fetchone()[0]
        except sqlite3.Error:
            return 0

    proc = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "ingest", "--config", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "RECOVERY_CONFIG": ""},
    )
    try:
        wait_until(lambda: parts_committed() >= 1, timeout=120, interval=0.02, message="a first part committed")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    stored, distinct = count_entries(db)
    assert 0 < stored < n and stored == distinct  # killed midway: what was committed is whole

    resumed = ingest_cli(conf)
    assert resumed.returncode == 0, resumed.stderr
    assert f", {n - stored:,} entries, " in resumed.stdout, resumed.stdout
    assert count_entries(db) == (n, n)


def test_ingest_all_commits_each_part_so_a_stop_between_parts_loses_nothing(tmp_path):
    log = tmp_path / "web-error.log"
    n = write_log(log, 400_000)
    with Store.open(tmp_path / "recovery.db") as store:
        calls = []

        def stop_after_two(nbytes: int) -> None:
            calls.append(nbytes)
            if len(calls) == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            logs.ingest_all(store, "web", [log], chunk_bytes=64 << 10, progress=stop_after_two)
        first = store.conn.execute("SELECT count(*) FROM log_entries").fetchone()[0]
        assert 0 < first < n
        rest = logs.ingest_all(store, "web", [log], chunk_bytes=64 << 10)
        assert rest.complete and first + rest.entries == n
        assert [e["offset"] for e in storage.entries(store.conn)] == sorted(
            {e["offset"] for e in storage.entries(store.conn)}
        )
        assert len(store.query(types=["log.ingested"])) == len(calls) + len(rest.files)


def test_a_terminal_gets_a_progress_bar_and_quiet_or_a_pipe_does_not(tmp_path):
    log = tmp_path / "web-error.log"
    n = write_log(log, 200_000)
    conf = write_config(tmp_path, log)
    argv = [sys.executable, "-m", "recovery_cli.main", "ingest", "--config", str(conf)]

    shown = on_a_terminal(argv)
    assert "━" in shown and f"/{log.stat().st_size / 1e3:.1f} kB" in shown, shown[-500:]  # done/total bytes
    assert f"web: {log.stat().st_size / 1e6:.1f} MB, " in shown and f", {n:,} entries, " in shown

    log.write_text(log.read_text() + "2026-11-29T00:00:00: Error: one more\n")
    quiet = on_a_terminal([*argv, "--quiet"])
    assert "━" not in quiet and "\x1b" not in quiet and ", 1 entry, 1 new template, " in quiet, quiet


def test_entries_take_less_room_than_the_log_and_come_back_whole(tmp_path):
    log = tmp_path / "web-error.log"
    n = write_log(log, 2 << 20)
    db = tmp_path / "recovery.db"
    with Store.open(db) as store:
        assert logs.ingest_all(store, "web", [log]).entries == n
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = sum(p.stat().st_size for p in tmp_path.glob("recovery.db*"))
        assert size < log.stat().st_size, (size, log.stat().st_size)  # it was 1.8 times the log

        first = storage.entries(store.conn)[0]
        lines = log.read_text().splitlines()[:8]
        assert first["message"] == lines[0].split(": ", 1)[1]
        assert first["detail"] == "\n".join(line.split(": ", 1)[1] for line in lines[1:])
        assert first["stack_top"] == "at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)"
        assert first["params"] == [first["message"].split()[-1]]
        (hit,) = logs.search(store.conn, f'"{first["message"]}"', limit=5)
        assert hit["message"] == first["message"] and hit["file"] == str(log) and hit["offset"] == 0


def test_the_datasette_queries_read_entry_texts_from_their_blocks(tmp_path):
    import asyncio

    from recovery import serve

    log = tmp_path / "web-error.log"
    write_log(log, 50_000)
    with Store.open(tmp_path / "recovery.db") as store:
        logs.ingest_all(store, "web", [log])
        newest = storage.entries(store.conn)[-1]
    ds = serve.make_datasette(tmp_path / "recovery.db")
    got = asyncio.run(ds.client.get("/recovery/error_examples.json?_shape=array&template_id=")).json()
    assert (got[0]["message"], got[0]["stack_top"], got[0]["file"]) == (
        newest["message"],
        newest["stack_top"],
        str(log),
    )
    top = asyncio.run(ds.client.get("/recovery/top_error_templates.json?_shape=array")).json()
    assert all(row["example"] for row in top) and newest["message"] in {row["example"] for row in top}
