"""Fault campaign: issue 13's "done when" measured against a real PM2, with the real CLI.

Each scenario starts its own PM2 daemon (own PM2_HOME under /tmp), a demo app (or a small
script made to fail one way), a config and a store, runs `recovery check` or `recovery watch`
as cron or an operator would, and prints what it measured beside what is wanted. Everything is
torn down by `pm2 kill` for the scenario's own home; nothing is killed by name.

Run: .venv/bin/python bench/fault_campaign.py [--only NAME ...] [--minutes 3]
Needs pm2: $PM2, else on PATH (./test.sh or ./demo.sh install one under .cache/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from recovery.demo import SERVER_JS, _wait_healthy, free_port
from recovery.pm2 import find_pm2, parse_jlist
from recovery.store import spool_events, spool_files, spool_path

# Exits 1 within a second of every start, before it listens, as an app with a bad environment does.
CRASHER_JS = """
setTimeout(() => { console.error('error: missing DATABASE_URL'); process.exit(1); }, 400);
"""


class Lab:
    """One scenario's PM2 daemon, app, config and store, under a temp folder."""

    def __init__(self, pm2: Path) -> None:
        self.pm2 = pm2
        self.home = Path(tempfile.mkdtemp(prefix="rcamp-", dir="/tmp"))
        self.env = dict(os.environ, PM2_HOME=str(self.home / "pm2"))
        self.env["PATH"] = os.pathsep.join([str(pm2.parent), self.env.get("PATH", "")])
        self.env.pop("RECOVERY_CONFIG", None)
        self.config = self.home / "recovery.toml"
        self.store = self.home / "recovery.db"
        exe = shutil.which("recovery", path=str(Path(sys.executable).parent))
        self.recovery = [exe] if exe else [sys.executable, "-m", "recovery_cli.main"]

    def run_pm2(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.pm2), *args], env=dict(self.env, **(env or {})), capture_output=True, text=True, timeout=120
        )

    def start(self, name: str = "web", script: Path = SERVER_JS, *, wait: bool = True, **env: str) -> str:
        port = free_port()
        self.run_pm2("start", str(script), "--name", name, "--kill-timeout", "500", env={"PORT": str(port), **env})
        url = f"http://127.0.0.1:{port}/"
        if wait and not _wait_healthy(url, time.monotonic() + 30):
            raise RuntimeError(f"{name} did not start on {url}")
        return url

    def write_config(self, app: str, extra: str = "") -> None:
        # Each watch step is read from the record: no batching of steady steps.
        watch = '[watch]\nbatch = "0s"\n'
        self.config.write_text(
            f'[store]\npath = "{self.store}"\n[pm2]\nbin = "{self.pm2}"\n{watch}{extra}[[apps]]\n{app}'
        )

    def restart_time(self, name: str = "web") -> int:
        procs = parse_jlist(self.run_pm2("jlist").stdout)
        return sum(int(p["pm2_env"].get("restart_time") or 0) for p in procs if p.get("name") == name)

    def check(self, *args: str, timeout: float = 300) -> tuple[int, str, float]:
        start = time.monotonic()
        p = subprocess.run(
            [*self.recovery, "check", "--config", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return p.returncode, (p.stdout + p.stderr).strip(), time.monotonic() - start

    def events(self, *types: str) -> list[dict[str, Any]]:
        """Events from the store (read-only), plus any spooled ones, in order."""
        out: list[dict[str, Any]] = []
        with contextlib.suppress(sqlite3.Error):
            conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True)
            try:
                for ts, app, type_, run_id, data in conn.execute(
                    "select ts, app, type, run_id, data from events order by seq"
                ):
                    out.append({"ts": ts, "app": app, "type": type_, "run_id": run_id, "data": json.loads(data)})
            finally:
                conn.close()
        for e in spool_events(spool_files(spool_path(self.store))):  # every location, fallbacks too
            out.append({"ts": e.ts, "app": e.app, "type": e.type, "run_id": e.run_id, "data": e.data})
        return [e for e in out if not types or e["type"] in types]

    def top_hint(self, app: str = "web") -> Any:
        """The strongest hint for `app` as the store stands now (None: no hint)."""
        import datetime as dt

        from recovery import hints, projections
        from recovery.store import Store

        with Store.open(self.store) as store:
            return hints.strongest(projections.hint_input(store.conn, app, dt.datetime.now(dt.UTC)))

    def decisions(self) -> list[str]:
        return [(e["data"] or {}).get("code", "?") for e in self.events("decision.made") if e["app"]]

    def close(self) -> None:
        pid_file = self.home / "pm2" / "pm2.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGCONT)
            self.run_pm2("kill")
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.contextmanager
def lab(pm2: Path) -> Iterator[Lab]:
    lb = Lab(pm2)
    try:
        yield lb
    finally:
        lb.close()


def serve(handler: Callable[[socket.socket], None]) -> tuple[int, threading.Event]:
    """A loopback TCP server running `handler` per connection in a thread; returns (port, stop)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=handler, args=(conn,), daemon=True).start()
        srv.close()

    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1], stop


def drip(conn: socket.socket) -> None:
    """Headers at once, then one byte a second, for ever."""
    with contextlib.suppress(OSError):
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100000):
            conn.sendall(b"x")
            time.sleep(1)


def blackhole(conn: socket.socket) -> None:
    """Accepts, reads, never answers."""
    with contextlib.suppress(OSError):
        conn.settimeout(600)
        while conn.recv(4096):
            pass


FAST = 'timeout = "1s"\nretries = 2\nretry_delay = "0s"\nverify_timeout = "10s"\n'

# -- scenarios: each returns rows of (what, measured, wanted, ok) ----------------------------


def never_answered(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    with lab(pm2) as lb:
        url = lb.start()
        real_port = url.rsplit(":", 1)[1].strip("/")
        wrong = free_port()
        lb.write_config(f'name = "web"\nurl = "http://127.0.0.1:{wrong}/"\n{FAST}')
        before = lb.restart_time()
        rc, out, _ = lb.check()
        codes = lb.decisions()
        return [
            ("exit code", str(rc), "2", rc == 2),
            ("decision code", ",".join(codes), "never_answered", codes == ["never_answered"]),
            ("PM2 restarts made", str(lb.restart_time() - before), "0", lb.restart_time() == before),
            ("names the real port", out.splitlines()[0][:110], real_port, real_port in out),
        ]


def slow_bursts(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    rows = []
    with lab(pm2) as lb:
        url = lb.start()
        lb.write_config(f'name = "web"\nurl = "{url}"\n')
        import httpx

        httpx.get(url + "__control/slow", params={"ms": 800}, timeout=5)  # 80 % of watch's 1 s timeout
        httpx.get(url + "__control/bursts", params={"ms": 900, "every": 5000}, timeout=5)
        before = lb.restart_time()
        watch = subprocess.Popen(
            [*lb.recovery, "watch", "--config", str(lb.config)],
            env=lb.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(args.minutes * 60)  # the measurement window itself
        finally:
            watch.send_signal(signal.SIGTERM)
            watch.wait(timeout=60)
        steps = len(lb.events("check.started"))
        restarts = lb.restart_time() - before
        failed = len(lb.events("probe.failed"))
        incidents = sum(1 for c in lb.decisions() if c not in ("healthy", "degraded"))
        rows += [
            (f"watch {args.minutes:g} min: steps", str(steps), "> 0", steps > 0),
            ("watch: PM2 restarts", str(restarts), "0", restarts == 0),
            ("watch: failed probes", str(failed), "(context)", True),
            ("watch: non-healthy decisions", str(incidents), "0", incidents == 0),
        ]
        # check defaults (10 s timeout, so the same shape scaled: 8 s answers, 9 s bursts every 50 s)
        httpx.get(url + "__control/slow", params={"ms": 8000}, timeout=5)
        httpx.get(url + "__control/bursts", params={"ms": 9000, "every": 50000}, timeout=5)
        before = lb.restart_time()
        codes = []
        for _ in range(3):
            lb.check()
            codes.append(lb.decisions()[-1])
        rows.append(
            ("check defaults x3: decisions", ",".join(codes), "healthy/degraded", set(codes) <= {"healthy", "degraded"})
        )
        rows.append(("check defaults: PM2 restarts", str(lb.restart_time() - before), "0", lb.restart_time() == before))
    return rows


def crash_loop(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    with lab(pm2) as lb:
        script = lb.home / "crasher.js"
        script.write_text(CRASHER_JS)
        url = lb.start(script=script, wait=False)
        lb.write_config(f'name = "web"\nurl = "{url}"\n{FAST}')
        codes: list[str] = []
        lb.check()
        top = lb.top_hint()  # as the first incident's alert, sent at the end of that run, read it
        for _ in range(2):
            lb.check()
        codes = lb.decisions()
        # A restart once PM2 gave up (errored) is ours to make; one while PM2 still cycles is not.
        ours = [e for e in lb.events("restart.requested") if (e["data"] or {}).get("code") != "errored"]
        named = [
            what
            for what, word in (("exit code", "exit code 1"), ("count", "restarted it"), ("error", "DATABASE_URL"))
            if top is not None and word in top.message
        ]
        return [
            (
                "first decision code",
                codes[0] if codes else "-",
                "crash_loop|errored",
                bool(codes) and codes[0] in ("crash_loop", "errored"),
            ),
            ("decision codes x3", ",".join(codes), "no hung", "hung" not in codes),
            ("our restarts while PM2 cycles", str(len(ours)), "0", not ours),
            (
                "top hint, first incident",
                top.kind if top else "-",
                "crash_loop",
                top is not None and top.kind == "crash_loop",
            ),
            ("the hint names", "+".join(named) or "-", "exit code+count+error", len(named) == 3),
        ]


def pm2_down(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    with lab(pm2) as lb:
        url = lb.start()
        lb.write_config(f'name = "web"\nurl = "{url}"\n{FAST}')
        lb.run_pm2("save")
        lb.run_pm2("kill")
        rc, out, seconds = lb.check()
        codes = lb.decisions()
        answers = _wait_healthy(url, time.monotonic() + 5)
        return [
            ("decision code", ",".join(codes), "pm2_down", "pm2_down" in codes),
            ("answers again", str(answers), "True", answers),
            ("check took", f"{seconds:.1f}s", "(context)", True),
            ("exit code / line", f"{rc} {out.splitlines()[0][:90] if out else ''}", "1 (recovered)", rc in (0, 1)),
        ]


def pm2_missing(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    with lab(pm2) as lb:
        url = lb.start()
        lb.write_config(f'name = "web"\nurl = "{url}"\n{FAST}')
        lb.config.write_text(lb.config.read_text().replace(f'bin = "{pm2}"', 'bin = "/nonexistent/pm2"'))
        import httpx

        httpx.get(url + "__control/hang", timeout=5)
        rc, out, _ = lb.check()
        failed = len(lb.events("probe.failed"))
        return [
            ("exit code", str(rc), "3", rc == 3),
            ("probe.failed recorded", str(failed), ">= 1", failed >= 1),
            ("output", out.replace("\n", " | ")[:110], "one line naming pm2", "pm2" in out and "Traceback" not in out),
        ]


def drip_url(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    with lab(pm2) as lb:
        lb.start()
        port, stop = serve(drip)
        try:
            lb.write_config(
                f'name = "web"\nurl = "http://127.0.0.1:{port}/"\ntimeout = "2s"\nretries = 2\nverify_timeout = "3s"\n'
            )
            try:
                rc, out, seconds = lb.check(timeout=120)
                measured = f"{seconds:.1f}s (exit {rc})"
            except subprocess.TimeoutExpired:
                seconds, measured = 120.0, "> 120s (killed)"
        finally:
            stop.set()
        return [("check on a drip server", measured, "< 20s", seconds < 20)]


def garbage_store(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    with lab(pm2) as lb:
        marker = lb.home / "hang.marker"
        url = lb.start(HANG_ON_START_FILE=str(marker))
        lb.store.write_bytes(os.urandom(64 * 1024))
        marker.touch()
        import httpx

        httpx.get(url + "__control/hang", timeout=5)
        lb.write_config(f'name = "web"\nurl = "{url}"\n{FAST}restart_grace = "1s"\nmax_restarts = 3\n')
        before = lb.restart_time()
        rcs = [lb.check()[0] for _ in range(6)]
        made = lb.restart_time() - before
        return [
            ("PM2 restarts over 6 runs", str(made), "<= 3 (max_restarts)", made <= 3),
            ("exit codes", ",".join(map(str, rcs)), "3 (store unusable)", all(rc == 3 for rc in rcs)),
        ]


def locked_store(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    with lab(pm2) as lb:
        url = lb.start()
        lb.write_config(f'name = "web"\nurl = "{url}"\n{FAST}')
        lb.check()  # creates the store
        holder = sqlite3.connect(lb.store, timeout=1, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        import httpx

        httpx.get(url + "__control/hang", timeout=5)
        before = lb.restart_time()
        try:
            procs = [
                subprocess.Popen(
                    [*lb.recovery, "check", "--config", str(lb.config)],
                    env=lb.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(5)
            ]
            rcs = [p.wait(timeout=300) for p in procs]
        finally:
            holder.rollback()
            holder.close()
        made = lb.restart_time() - before
        return [
            ("PM2 restarts by 5 concurrent checks", str(made), "1", made == 1),
            ("exit codes", ",".join(map(str, rcs)), "3 (store locked)", True),
        ]


def watch_blackhole(pm2: Path, args: argparse.Namespace) -> list[tuple[str, str, str, bool]]:
    with lab(pm2) as lb:
        url = lb.start()
        port, stop = serve(blackhole)
        lb.write_config(f'name = "web"\nurl = "{url}"\n', extra=f'[alerts]\nurls = ["json://127.0.0.1:{port}/"]\n')
        watch = subprocess.Popen(
            [*lb.recovery, "watch", "--config", str(lb.config)],
            env=lb.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import httpx

        try:
            deadline = time.monotonic() + 30
            while len(lb.events("check.started")) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            httpx.get(url + "__control/hang", timeout=5)
            hung_at = time.monotonic()
            time.sleep(1.5)  # let the hang take hold before polling for the answer
            back = _wait_healthy(url, hung_at + 60)
            recovered = time.monotonic() - hung_at
            time.sleep(20)  # a window of healthy cycles, with a down and a recovered alert owed
            steps = [e["ts"] for e in lb.events("check.started")]
        finally:
            t0 = time.monotonic()
            watch.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                watch.wait(timeout=60)
            exit_s = time.monotonic() - t0
            stop.set()
        from recovery.units import parse_ts

        times = [parse_ts(t) for t in steps[-8:]]
        gaps = sorted((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))
        median_gap = gaps[len(gaps) // 2] if gaps else float("nan")
        return [
            ("hang to answering again", f"{recovered:.1f}s" if back else "never", "< 10s", back and recovered < 10),
            ("healthy cycle interval (median of last 7)", f"{median_gap:.1f}s", "~2s (the interval)", median_gap < 3),
            ("watch exit after SIGTERM", f"{exit_s:.1f}s", "bounded", exit_s < 30),
        ]


SCENARIOS: dict[str, Callable[[Path, argparse.Namespace], list[tuple[str, str, str, bool]]]] = {
    "never_answered": never_answered,
    "slow_bursts": slow_bursts,
    "crash_loop": crash_loop,
    "pm2_down": pm2_down,
    "pm2_missing": pm2_missing,
    "drip_url": drip_url,
    "garbage_store": garbage_store,
    "locked_store": locked_store,
    "watch_blackhole": watch_blackhole,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only this scenario")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long slow_bursts watches (default 3)")
    args = parser.parse_args()
    pm2 = find_pm2(os.environ.get("PM2"))
    failed = 0
    for name in args.only or list(SCENARIOS):
        start = time.monotonic()
        try:
            rows = SCENARIOS[name](pm2, args)
        except Exception as exc:  # a scenario that cannot run is a failed measurement, not a crash
            rows = [("scenario error", f"{type(exc).__name__}: {exc}"[:110], "-", False)]
        print(f"## {name} ({time.monotonic() - start:.0f}s)")
        for what, measured, wanted, ok in rows:
            failed += not ok
            print(f"  {'ok ' if ok else 'NO '} {what:42} {measured:50} wanted {wanted}")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
