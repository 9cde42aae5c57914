"""Benchmark: `recovery watch` with an alert channel that accepts connections and never answers.

Starts the demo server under a private PM2 (own PM2_HOME in /tmp) and a TCP server on 127.0.0.1
that accepts every connection and never answers (the channel `json://127.0.0.1:PORT/`), then runs
`recovery watch` at its defaults and:
  1. hangs the app (GET /__control/hang): an incident, whose `down` and `recovered` alerts are now
     owed to the channel; prints the time to answering again;
  2. counts the watch steps (`check.started`, trigger watch) over --window seconds and their gaps,
     beside what the interval gives;
  3. waits until the channel takes a new attempt, hangs the app again at once, and prints the time
     to answering again and whether the attempt was still held then;
  4. sends SIGTERM and prints how long the watch took to exit.
Hang 2 comes after --window seconds, past the default restart_grace (60 s).

Run: .venv/bin/python bench/watch_blackhole.py [--window 70]
Needs pm2: $PM2, else on PATH (./test.sh or ./demo.sh install one under .cache/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from recovery.demo import SERVER_JS, _wait_healthy, free_port
from recovery.events import parse_ts
from recovery.pm2 import find_pm2


class Blackhole:
    """Accepts every connection, reads what comes, never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[dict[str, bool]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            entry = {"open": True}
            self.conns.append(entry)
            threading.Thread(target=self._drain, args=(conn, entry), daemon=True).start()

    def _drain(self, conn: socket.socket, entry: dict[str, bool]) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        entry["open"] = False

    def held(self) -> int:
        return sum(1 for c in self.conns if c["open"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=70.0, help="seconds of healthy steps to count")
    args = parser.parse_args()

    pm2 = find_pm2(os.environ.get("PM2"))
    home = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))
    env = dict(os.environ, PM2_HOME=str(home / "pm2"))
    env["PATH"] = os.pathsep.join([str(pm2.parent), env.get("PATH", "")])
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    hole = Blackhole()
    config = home / "recovery.toml"
    config.write_text(
        f'[store]\npath = "recovery.db"\n\n[pm2]\nbin = "{pm2}"\n\n'
        '[watch]\nbatch = "0s"\n\n'  # each watch step is read from the record: no batching
        f'[[apps]]\nname = "bench"\nurl = "{url}"\n\n'
        f'[alerts]\nurls = ["json://127.0.0.1:{hole.port}/"]\nhost = "bench"\n'
    )

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=0.5, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def hang_to_answer() -> float:
        t0 = time.monotonic()
        httpx.get(url + "__control/hang", timeout=2, trust_env=False)
        while answers():  # the hang takes a moment to start
            time.sleep(0.05)
        while not answers():
            time.sleep(0.05)
        return time.monotonic() - t0

    def watch_starts(since: float, until: float) -> list[float]:
        conn = sqlite3.connect(f"file:{home / 'recovery.db'}?mode=ro", uri=True)
        rows = conn.execute(
            "SELECT ts FROM events WHERE type = 'check.started' AND json_extract(data, '$.trigger') = 'watch'"
        ).fetchall()
        conn.close()
        return [t for (ts,) in rows if since <= (t := parse_ts(ts).timestamp()) <= until]

    subprocess.run(
        [str(pm2), "start", str(SERVER_JS), "--name", "bench"],
        env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
        check=True,
        capture_output=True,
    )
    watch = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "watch", "--config", str(config)],
        env=env,
        stdout=(home / "watch.out").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(url, time.monotonic() + 30)
        time.sleep(6)  # a few healthy steps first
        print(f"hang 1: answering again after {hang_to_answer():.1f}s (its alerts now owed to the channel)")
        w0 = time.time()
        time.sleep(args.window)
        starts = watch_starts(w0, time.time())
        gaps = sorted(b - a for a, b in zip(starts, starts[1:]))
        print(
            f"{args.window:.0f}s window: {len(starts)} watch steps ({args.window / 2:.0f} at the 2s interval);"
            f" gaps median {gaps[len(gaps) // 2]:.2f}s, max {gaps[-1]:.2f}s"
        )
        n = len(hole.conns)
        while len(hole.conns) == n:
            time.sleep(0.05)
        seconds = hang_to_answer()
        print(f"hang 2, as the channel took an attempt: answering again after {seconds:.1f}s; held: {hole.held()}")
        t0 = time.monotonic()
        watch.send_signal(signal.SIGTERM)
        code = watch.wait(timeout=120)
        print(
            f"SIGTERM: exit {code} after {time.monotonic() - t0:.1f}s; connections the channel took: {len(hole.conns)}"
        )
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        subprocess.run([str(pm2), "kill"], env=env, capture_output=True)
        hole.server.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
