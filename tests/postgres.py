"""A real PostgreSQL for the fleet tests, from Debian's packages, in a temp folder.

`PostgresServer` runs `initdb` and `pg_ctl` as an unprivileged user (`nobody` when the tests run
as root, since PostgreSQL refuses to run as root; the current user otherwise), listens on a free
port on 127.0.0.1 with a unix socket in its own folder, and asks a password of TCP clients
(scram-sha-256), so the URL the tests hand to recovery carries a secret that must never be
printed. `stop()` and `start()` let a test take it away and bring it back; `close()` stops it and
removes the folder. tests/conftest.py wraps it in the `postgres` (one per session) and
`postgres_server` (one per test) fixtures; `fresh_database()` gives each test its own database.

The binaries are found as `initdb` on PATH, else the newest /usr/lib/postgresql/*/bin; test.sh
installs Debian's `postgresql` package when neither exists.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from recovery.demo import free_port


def bindir() -> Path | None:
    "The folder of PostgreSQL's server binaries (initdb, pg_ctl), or None when not installed."
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name), reverse=True
    )
    return versions[0].parent if versions else None


class PostgresServer:
    "One PostgreSQL cluster in a temp folder, on 127.0.0.1:<free port>."

    def __init__(self) -> None:
        found = bindir()
        if found is None:
            raise RuntimeError(
                "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
            )
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix="recovery-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.user = "postgres"
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            self._as = {"user": "nobody", "group": "nogroup", "extra_groups": []}
        self.root.chmod(0o755)
        self.sockets.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as:
            shutil.chown(self.root, "nobody", "nogroup")
            shutil.chown(self.sockets, "nobody", "nogroup")
            shutil.chown(pwfile, "nobody", "nogroup")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        self.start()

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOME": str(self.root), "LC_ALL": "C"}
        r = subprocess.run(
            [str(self.bin / tool), *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **self._as,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{tool} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-2000:]}")
        return r

    def start(self) -> None:
        "Start it (again) on the same port, and wait until it accepts connections (pg_ctl -w)."
        options = f"-h 127.0.0.1 -p {self.port} -k {self.sockets} -F -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        "Stop it (fast shutdown: open sessions are ended)."
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        "The URL recovery is given: password included (a secret the tests check is never shown)."
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        "A new empty database; its URL."
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        "Stop it if running and remove its folder."
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
