"""Fixtures that run the demo server under a real PM2.

PM2 is installed from npm once into a cache folder (see ``pm2_bin``) and every
test gets its own throw-away PM2 daemon (see ``pm2``).

PM2 hygiene: PM2 starts a daemon under ~/.pm2 whenever PM2_HOME is unset, even
for ``pm2 --version``, and ``pm2 kill`` with no daemon running first spawns
one. So every pm2 call made here has PM2_HOME pointing at a short temp dir
(PM2's unix sockets must stay under ~100 characters, which rules out pytest's
tmp_path), and teardown only talks to a daemon that exists. Processes are
never killed by name: only pids this sandbox recorded, and only after checking
that they carry our PM2_HOME.

Environment overrides:
  RECOVERY_TEST_PM2          path to an existing pm2 binary (no install)
  RECOVERY_TEST_PM2_VERSION  pm2 version to install (default PM2_VERSION)
  RECOVERY_TEST_PM2_CACHE    cache root; pm2 goes to <root>/<version>/
                             (default <repo>/.cache/pm2)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

# The product's own helpers: the same port picking and the same tolerant jlist parsing
# (the first pm2 call of a sandbox prints the daemon banner before the JSON).
from recovery.demo import SERVER_JS, free_port
from recovery.pm2 import parse_jlist

PM2_VERSION = "7.0.4"  # newest on npm when written; the tool supports PM2 5.x+
REPO = Path(__file__).resolve().parent.parent
MARKER_KINDS = ("hang", "stall", "crash")


@pytest.fixture(autouse=True)
def private_spool_fallbacks(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool's fallback folders ($XDG_STATE_HOME/recovery/, /var/tmp/recovery-<uid>/) in a temp
    folder of the test, so a test whose store folder is unusable never writes the machine's
    /var/tmp; CLI subprocesses inherit XDG_STATE_HOME (tried before /var/tmp)."""
    root = tmp_path_factory.mktemp("spool-fallbacks")
    monkeypatch.setenv("XDG_STATE_HOME", str(root / "state"))
    monkeypatch.setattr("recovery.store.SPOOL_TMP", root / "var-tmp")


@pytest.fixture(autouse=True)
def private_config_search(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config search path's user and system places ($XDG_CONFIG_HOME/recovery/,
    /etc/recovery/) in a temp folder of the test, so a config on the machine never leaks into a
    test that expects none (CLI subprocesses inherit XDG_CONFIG_HOME)."""
    root = tmp_path_factory.mktemp("config-search")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "xdg"))
    monkeypatch.setattr("recovery.config.loading.SYSTEM_DIR", root / "etc-recovery")


# --------------------------------------------------------------------------
# helpers


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 30,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that.

    Exceptions from the predicate count as "not yet" (a server that is
    starting refuses connections), but the last one is shown on timeout.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; last result: {last!r}")
        time.sleep(interval)


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies count as dead: they only wait for reaping)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _belongs_to(pid: int, pm2_home: Path) -> bool:
    """Guard against pid reuse: our daemon and apps carry PM2_HOME=<home>."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"PM2_HOME={pm2_home}".encode() in environ.split(b"\0")


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Pm2CommandError(subprocess.CalledProcessError):
    """A failed pm2 call whose message includes what pm2 printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{(self.stdout or '')[-3000:]}\nstderr:\n{(self.stderr or '')[-3000:]}"


# --------------------------------------------------------------------------
# PM2 installation


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the PM2 tests need Node.js 18+ and npm installed", pytrace=False)
    return path


def _install_pm2(version: str, cache_root: Path) -> Path:
    """Install pm2@version into <cache_root>/<version> once; return the prefix.

    npm installs into a temp folder next to the target, which is then renamed
    into place: a killed install leaves only a temp folder, never a half one.
    """
    target = cache_root / version
    if (target / "node_modules" / ".bin" / "pm2").exists():
        return target
    npm = _require_tool("npm")
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".install-{version}-", dir=cache_root))
    try:
        cmd = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(tmp), f"pm2@{version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not (tmp / "node_modules" / ".bin" / "pm2").exists():
            pytest.fail(
                f"installing pm2@{version} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
                pytrace=False,
            )
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        try:
            tmp.rename(target)
        except OSError:
            # Another test run won the race (target exists and is not empty).
            if not (target / "node_modules" / ".bin" / "pm2").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def pm2_bin() -> Path:
    """Path of a pm2 binary: $RECOVERY_TEST_PM2, or one installed from npm."""
    _require_tool("node")  # pm2's launcher is `#!/usr/bin/env node`
    override = os.environ.get("RECOVERY_TEST_PM2")
    if override:
        path = Path(override)
        if not path.exists():
            pytest.fail(f"RECOVERY_TEST_PM2={override} does not exist", pytrace=False)
        return path
    version = os.environ.get("RECOVERY_TEST_PM2_VERSION", PM2_VERSION)
    cache_root = Path(os.environ.get("RECOVERY_TEST_PM2_CACHE", REPO / ".cache" / "pm2"))
    return _install_pm2(version, cache_root) / "node_modules" / ".bin" / "pm2"


# --------------------------------------------------------------------------
# sandbox


class DemoApp:
    """A demo server (recovery/demo/server.js) started under PM2."""

    def __init__(self, sandbox: Pm2Sandbox, name: str, port: int):
        self.sandbox = sandbox
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"

    def __repr__(self) -> str:
        return f"DemoApp({self.name!r}, port={self.port})"

    def get(self, path: str = "", timeout: float = 2.0) -> httpx.Response:
        """GET url+path (no leading slash needed) with a fresh connection."""
        return httpx.get(self.url + path.lstrip("/"), timeout=timeout)

    def control(self, action: str, **params: Any) -> httpx.Response:
        """GET /__control/<action>; the server acts ~50 ms after answering."""
        response = httpx.get(f"{self.url}__control/{action}", params=params, timeout=5.0)
        response.raise_for_status()
        return response

    def marker(self, kind: str) -> Path:
        """Marker file that makes the server hang/stall/crash at its next start.

        start_app always points HANG_ON_START_FILE etc. at these paths; they
        only take effect once a test creates the file (``.touch()``).
        """
        if kind not in MARKER_KINDS:
            raise ValueError(f"marker kind must be one of {MARKER_KINDS}, not {kind!r}")
        return self.sandbox.markers_dir / f"{self.name}.{kind}"

    def processes(self) -> list[dict]:
        """This app's entries in ``pm2 jlist``, in pm_id order."""
        procs = [p for p in self.sandbox.jlist() if p.get("name") == self.name]
        return sorted(procs, key=lambda p: p.get("pm_id", 0))

    def pids(self) -> list[int]:
        """pid per instance from jlist (PM2 reports 0 for stopped/errored)."""
        return [int(p.get("pid") or 0) for p in self.processes()]

    def status(self) -> list[str]:
        """pm2_env.status per instance: online, stopping, stopped, errored, ..."""
        return [p.get("pm2_env", {}).get("status", "?") for p in self.processes()]

    def wait_until(
        self, predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.1, message: str | None = None
    ) -> Any:
        return wait_until(
            predicate, timeout, interval, message or f"{self!r}: {getattr(predicate, '__name__', 'condition')}"
        )

    def answers(self, timeout: float = 1.0) -> bool:
        """True if GET / answers 200 within ``timeout``."""
        try:
            return self.get(timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False


class Pm2Sandbox:
    """One PM2 daemon with its own PM2_HOME in a short /tmp dir."""

    def __init__(self, pm2_bin: Path):
        self.bin = pm2_bin
        self.home = Path(tempfile.mkdtemp(prefix="rpm2-", dir="/tmp"))
        self.markers_dir = self.home / "markers"
        self.markers_dir.mkdir()
        node_dir = str(Path(shutil.which("node") or "/usr/bin/node").parent)
        self.env = dict(os.environ)
        self.env["PM2_HOME"] = str(self.home)
        self.env["PATH"] = os.pathsep.join([str(pm2_bin.parent), node_dir, self.env.get("PATH", "")])
        self.apps: list[DemoApp] = []
        self.seen_pids: set[int] = set()  # every app pid jlist ever showed

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run pm2 with this sandbox's PM2_HOME (``env`` adds variables)."""
        cmd = [str(self.bin), *map(str, args)]
        proc = subprocess.run(
            cmd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise Pm2CommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def jlist(self) -> list[dict]:
        procs = parse_jlist(self.run("jlist").stdout)
        self.seen_pids.update(int(p["pid"]) for p in procs if p.get("pid"))
        return procs

    def start_app(
        self,
        name: str = "web",
        *,
        port: int | None = None,
        instances: int = 1,
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        wait: bool = True,
        timeout: float = 30,
    ) -> DemoApp:
        """``pm2 start server.js`` and (if ``wait``) poll until GET / answers 200.

        PM2 hands the CLI's environment to the app, so PORT, HOST and the
        marker variables go into the environment of the ``pm2 start`` call.
        ``instances`` > 1 means cluster mode (``-i N``); 1 is fork mode.
        """
        app = DemoApp(self, name, port or free_port())
        app_env = {"HOST": "127.0.0.1", "PORT": str(app.port)}
        for kind in MARKER_KINDS:
            app_env[f"{kind.upper()}_ON_START_FILE"] = str(app.marker(kind))
        app_env.update(env or {})
        args = ["start", str(SERVER_JS), "--name", name, "--kill-timeout", "500"]
        if instances != 1:
            args += ["-i", str(instances)]
        self.run(*args, *extra_args, env=app_env)
        self.apps.append(app)
        self.jlist()  # record pids for teardown
        if wait:
            app.wait_until(app.answers, timeout=timeout, message=f"{app!r} to answer 200 on GET /")
            self.jlist()
        return app

    def close(self) -> None:
        """pm2 kill, then SIGKILL whatever of ours survived, then remove home."""
        daemon_pid = self._daemon_pid()
        if daemon_pid and _alive(daemon_pid):
            # Only when a daemon runs: `pm2 kill` would otherwise spawn one.
            try:
                self.jlist()
            except Exception:
                pass
            try:
                self.run("kill", check=False, timeout=30)
            except subprocess.TimeoutExpired:
                pass
        leftovers = [p for p in {daemon_pid or 0, *self.seen_pids} if _alive(p) and _belongs_to(p, self.home)]
        for pid in leftovers:
            _sigkill(pid)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in leftovers) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.home, ignore_errors=True)

    def _daemon_pid(self) -> int | None:
        try:
            return int((self.home / "pm2.pid").read_text().strip())
        except (OSError, ValueError):
            return None


@pytest.fixture
def pm2(pm2_bin: Path) -> Iterator[Pm2Sandbox]:
    """A private PM2 daemon for one test; killed and removed at teardown."""
    sandbox = Pm2Sandbox(pm2_bin)
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture
def http_server():
    """A real HTTP server whose answer (status, body) each test sets."""
    state: dict = {"status": 200, "body": b"ok"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", state
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------
# PostgreSQL (the fleet store): tests/postgres.py


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One real PostgreSQL for the session (tests/postgres.py); take `postgres.fresh_database()`
    per test. A test that stops the server uses `postgres_server` instead."""
    from tests.postgres import PostgresServer

    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL of this test's own, which it may stop and start again."""
    from tests.postgres import PostgresServer

    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()
