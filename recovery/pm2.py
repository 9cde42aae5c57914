"""The PM2 adapter: find the binary, read processes (cheaply from pid files, fully from
`pm2 jlist`), and restart them. Never stores `pm2_env.env`: it holds the app's secrets."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config.schema import Pm2Config
from .errors import Pm2CannotRun, Pm2DaemonUnavailable, Pm2Error, Pm2NotFound
from .observations import ERRORED, RESTARTING, RUNNING, STOPPED, Instance, Pm2Daemon, ProcessView

__all__ = ["ERRORED", "RESTARTING", "RUNNING", "STOPPED", "Instance", "Pm2Daemon", "ProcessView"]

# How long a pm2 read (`pm2 jlist`) may take before the daemon counts as frozen ([pm2] timeout).
READ_TIMEOUT = Pm2Config.timeout
# After a timed-out pm2 call: SIGTERM to its process group, SIGKILL this much later.
KILL_GRACE = 2.0
# The only pm2 commands allowed to start a daemon: every other call first checks that one runs.
SPAWNS_DAEMON = ("resurrect",)
# How long a daemon whose pid file is a few seconds old may take to open its sockets.
STARTING_GRACE = 3.0


# PM2 states, grouped by what the watchdog should do about them.
def _candidates(environ: Mapping[str, str]) -> list[str]:
    """Where pm2 usually lives when it is not on cron's short PATH."""
    home = environ.get("HOME") or os.path.expanduser("~")
    nvm = environ.get("NVM_DIR") or os.path.join(home, ".nvm")
    versions = glob.glob(os.path.join(nvm, "versions", "node", "*", "bin", "pm2"))
    versions.sort(key=_node_version_key, reverse=True)
    return versions + [
        os.path.join(home, ".npm-global", "bin", "pm2"),
        os.path.join(home, ".local", "bin", "pm2"),
        os.path.join(home, ".volta", "bin", "pm2"),
        "/usr/local/bin/pm2",
        "/usr/bin/pm2",
        "/usr/local/lib/node_modules/pm2/bin/pm2",
        "/usr/lib/node_modules/pm2/bin/pm2",
    ]


def _node_version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/v?(\d+)\.(\d+)\.(\d+)/bin/pm2$", path)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def find_pm2(configured: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Resolve the pm2 binary: the configured path or name, else PATH, else the usual folders."""
    environ = os.environ if environ is None else environ
    if configured and ("/" in configured):
        p = Path(configured).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return p
        raise Pm2NotFound(f"pm2 not found: [pm2] bin = {configured!r} is not an executable file")
    name = configured or "pm2"
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if found:
        return Path(found)
    if configured:
        raise Pm2NotFound(f"pm2 not found: [pm2] bin = {configured!r} is not on PATH")
    for c in _candidates(environ):
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return Path(c)
    raise Pm2NotFound(
        "pm2 not found on PATH nor in nvm's or npm's global folders; "
        "install it (npm install -g pm2) or set [pm2] bin in the config"
    )


def pm2_home(environ: Mapping[str, str] | None = None) -> Path:
    """PM2_HOME as pm2 itself resolves it."""
    environ = os.environ if environ is None else environ
    if environ.get("PM2_HOME"):
        return Path(environ["PM2_HOME"])
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".pm2"


@dataclass(frozen=True)
class CommandResult:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool = False

    def tail(self, text: str, lines: int = 8, chars: int = 1000) -> str:
        text = _ANSI.sub("", text)
        return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def parse_jlist(text: str) -> list[dict[str, Any]]:
    """The process array from `pm2 jlist` output, which may carry banners or warnings around it."""
    text = _ANSI.sub("", text)
    try:
        data = json.loads(text)
        if isinstance(data, list):
            return data
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\[", text):
        try:
            data, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(data, list) and all(isinstance(x, dict) for x in data):
            return data
    raise Pm2Error(f"pm2 jlist did not print a process list: {text.strip()[:160]!r}")


def log_paths(entries: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The log files PM2 writes for these jlist entries (every instance of a cluster), each once."""
    out: list[str] = []
    for entry in entries:
        env = entry.get("pm2_env") or {}
        for key in ("pm_err_log_path", "pm_out_log_path"):
            p = env.get(key)
            if isinstance(p, str) and p and p != "/dev/null" and p not in out:
                out.append(p)
    return tuple(out)


def instance_from_jlist(entry: Mapping[str, Any], now_ms: float | None = None) -> Instance:
    env = entry.get("pm2_env") or {}
    monit = entry.get("monit") or {}
    status = str(env.get("status") or "unknown")
    uptime = None
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    if status == "online" and isinstance(env.get("pm_uptime"), (int, float)):
        uptime = round(max(0.0, (now_ms - env["pm_uptime"]) / 1000), 1)
    since_start = None  # between two crashes of a crash loop PM2 shows `stopped` for a moment
    if status != "online" and isinstance(env.get("pm_uptime"), (int, float)):
        since_start = round(max(0.0, (now_ms - env["pm_uptime"]) / 1000), 1)
    pid = entry.get("pid")
    exit_code = env.get("exit_code")
    return Instance(
        name=str(entry.get("name") or env.get("name") or ""),
        pm_id=_int(entry.get("pm_id", env.get("pm_id"))),
        pid=_int(pid) or None,
        status=status,
        memory=_int(monit.get("memory")),
        cpu=monit.get("cpu") if isinstance(monit.get("cpu"), (int, float)) else None,
        restart_time=_int(env.get("restart_time")),
        unstable_restarts=_int(env.get("unstable_restarts")),
        uptime_s=uptime,
        since_start_s=since_start,
        exit_code=_int(exit_code) if exit_code not in (None, "") else None,
        exec_mode=env.get("exec_mode"),
        max_memory_restart=_int(env.get("max_memory_restart")) or None,
        **axm_metrics(env.get("axm_monitor")),
    )


# axm_monitor names (as @pm2/io reports them) -> (Instance field, factor to bytes or ms)
_AXM = {
    "Used Heap Size": ("heap_used", 1048576),
    "Heap Size": ("heap_total", 1048576),
    "Event Loop Latency": ("loop_delay_ms", 1),
    "Event Loop Latency p95": ("loop_delay_p95_ms", 1),
}
_UNITS = {
    "b": 1,
    "kib": 1024,
    "kb": 1024,
    "mib": 1048576,
    "mb": 1048576,
    "gib": 1 << 30,
    "gb": 1 << 30,
    "ms": 1,
    "s": 1000,
}


def axm_metrics(monitor: Any) -> dict[str, Any]:
    """Heap and event-loop latency from PM2's `axm_monitor`, when the app reports them."""
    out: dict[str, Any] = {}
    if not isinstance(monitor, dict):
        return out
    for name, (key, default) in _AXM.items():
        metric = monitor.get(name)
        if not isinstance(metric, dict):
            continue
        try:
            value = float(metric["value"])
        except (KeyError, TypeError, ValueError):
            continue
        factor = _UNITS.get(str(metric.get("unit") or "").lower(), default)
        if key.endswith("_ms"):
            out[key] = round(value * factor, 2)
        else:
            out[key] = int(value * factor)
    return out


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


class Pm2:
    """Runs the pm2 CLI with a PATH on which `node` is found, even under cron."""

    def __init__(
        self,
        bin: Path,
        environ: Mapping[str, str] | None = None,
        timeout: float = 90.0,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.bin = Path(bin)
        env = dict(os.environ if environ is None else environ)
        # nvm installs node beside pm2; cron's PATH knows neither.
        env["PATH"] = os.pathsep.join([str(self.bin.parent), env.get("PATH", os.defpath)])
        self.env = env
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.home = pm2_home(env)
        self.unavailable: Pm2DaemonUnavailable | None = None  # once seen, for the rest of the run

    def daemon(self) -> Pm2Daemon:
        """PM2's daemon from its pid file, sockets and /proc: no pm2 call."""
        return daemon_state(self.home)

    def require_daemon(self) -> None:
        """Raise Pm2DaemonUnavailable unless PM2's daemon runs: any pm2 call but `resurrect`
        would otherwise spawn a fresh, empty one (or hang on a frozen one)."""
        if self.unavailable is None:
            daemon = self.daemon()
            deadline = time.monotonic() + STARTING_GRACE
            while daemon.state == "frozen" and GONE in daemon.detail and _just_started(self.home):
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)  # a daemon starting (another run's resurrect) writes its pid before its sockets
                daemon = self.daemon()
            if daemon.state != "up":
                self.unavailable = Pm2DaemonUnavailable(daemon.sentence, daemon)
        if self.unavailable is not None:
            raise self.unavailable

    def run(self, args: Sequence[str], timeout: float | None = None) -> CommandResult:
        """Run pm2 with `args`; a call that outlives `timeout` is ended with its whole process group."""
        if not args or args[0] not in SPAWNS_DAEMON:
            self.require_daemon()
        argv = [str(self.bin), *args]
        limit = timeout or self.timeout
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C meant for `recovery watch` must not cut a restart short,
                # and a call that times out is ended with every process it started.
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            if self.bin.is_file():
                problem = "the interpreter its first line (#!) names is missing"
                raise Pm2CannotRun(f"cannot run pm2 at {self.bin}: {problem}") from exc
            raise Pm2NotFound(f"pm2 not found: {self.bin} ({exc.strerror})") from exc
        except OSError as exc:
            # Not executable, a bad interpreter line, not a program (ENOEXEC), a folder...
            raise Pm2CannotRun(f"cannot run pm2 at {self.bin}: {exc.strerror or exc}") from exc
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            out, err = end_group(proc, KILL_GRACE)
            ms = (time.perf_counter() - start) * 1000
            return CommandResult(argv, -1, out, err + f"\n(timed out after {limit:g}s)", ms, timed_out=True)
        ms = (time.perf_counter() - start) * 1000
        return CommandResult(argv, proc.returncode, out, err, ms)

    def jlist(self) -> list[dict[str, Any]]:
        r = self.run(["jlist"], timeout=self.read_timeout)
        if r.timed_out:
            daemon = self.daemon()
            if daemon.state == "up":
                detail = f"pm2 jlist did not answer within {self.read_timeout:g}s"
                daemon = Pm2Daemon("frozen", daemon.home, daemon.pid, detail, daemon.dump)
            self.unavailable = Pm2DaemonUnavailable(daemon.sentence, daemon)
            raise self.unavailable
        if r.exit_code != 0:
            raise Pm2Error(f"pm2 jlist exited {r.exit_code}: {r.tail(r.stderr or r.stdout, 2)}")
        return parse_jlist(r.stdout)

    def resurrect(self) -> CommandResult:
        """`pm2 resurrect`: start PM2's daemon with the processes of its saved list (dump.pm2)."""
        result = self.run(["resurrect"])
        self.unavailable = None
        return result

    def view(self, name: str) -> ProcessView:
        """The full sample: every instance PM2 has under `name`."""
        now = time.time() * 1000
        entries = [e for e in self.jlist() if e.get("name") == name]
        instances = [instance_from_jlist(e, now) for e in entries]
        return ProcessView(name, "jlist", tuple(instances), log_paths(entries))

    def restart(self, name: str, command: str = "restart") -> CommandResult:
        if command not in ("restart", "reload"):
            raise Pm2Error(f"unknown restart command {command!r} (use restart or reload)")
        return self.run([command, name])

    def quick_view(self, name: str) -> ProcessView | None:
        """The cheap sample: pid files and /proc, no pm2 call; None when that is not enough."""
        return pidfile_view(name, self.home)

    def cpu_mark(self, name: str) -> CpuMark | None:
        return cpu_mark(name, self.home)

    def cpu_window(self, mark: CpuMark | None) -> dict[str, Any]:
        return cpu_window(mark)

    def workers(self, mark: CpuMark | None) -> dict[int, int]:
        """pid -> pm_id of the app's live processes when `mark` was taken (no I/O)."""
        return dict(mark.pm_ids) if mark is not None else {}

    def cpu_by_pid(self, mark: CpuMark | None) -> dict[int, float]:
        return cpu_by_pid(mark)

    def restart_worker(self, pm_id: int) -> CommandResult:
        """`pm2 restart PM_ID`: one worker of a cluster; the others keep serving."""
        return self.run(["restart", str(int(pm_id))])


def end_group(proc: subprocess.Popen[str], grace: float) -> tuple[str, str]:
    """End a timed-out call and everything it started (its process group): SIGTERM, then
    SIGKILL after `grace` seconds for what is left; returns what it printed."""
    pgid = proc.pid  # start_new_session made the child the leader of its own group
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader: a zombie does not count as left
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
    try:
        return proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        # Something that left the group (its own session) still holds the pipes: stop reading.
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        return "", ""


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies waiting to be reaped do not count)."""
    if not _signal_group(pgid, 0):
        return False
    try:
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return True
    return any((fields := _stat_fields(pid)) is not None and fields[2] == str(pgid) for pid in pids)


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False once nothing is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- PM2's daemon, from its files under PM2_HOME and /proc ---------------------------------

GOD_TITLE = "God Daemon"  # PM2's daemon sets its process title to "PM2 vX.Y.Z: God Daemon (HOME)"
GONE = "is gone from PM2_HOME"


def daemon_state(home: Path) -> Pm2Daemon:
    """Whether PM2's daemon runs, from `pm2.pid`, /proc and the `rpc.sock`/`pub.sock` sockets.

    A pid that runs but is not a God daemon, or started well after the pid file was written,
    is a reused pid: the daemon is down.
    """
    # `pm2 resurrect` falls back on the previous save when the last one is gone.
    dump = (home / "dump.pm2").is_file() or (home / "dump.pm2.bak").is_file()
    pidfile = home / "pm2.pid"

    def down(detail: str, pid: int | None = None) -> Pm2Daemon:
        return Pm2Daemon("down", str(home), pid, detail, dump)

    try:
        text = pidfile.read_text().strip()
        written = pidfile.stat().st_mtime
    except FileNotFoundError:
        return down(f"no {pidfile}")
    except OSError as exc:
        return down(f"cannot read {pidfile}: {exc.strerror}")
    try:
        pid = int(text)
    except ValueError:
        return down(f"{pidfile} holds {text[:20]!r}, not a pid")
    fields = _stat_fields(pid)
    if fields is None:
        return down(f"pid {pid} from {pidfile} is not running", pid)
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        title = ""
    boot = _boot_time()
    started = boot + int(fields[19]) / _CLK_TCK if boot is not None else None
    # The title ends with the daemon's PM2_HOME: a God daemon of another home is not ours.
    other = re.search(r"God Daemon \((.+)\)$", title)
    if other and os.path.realpath(other.group(1)) != os.path.realpath(home):
        return down(f"pid {pid} from {pidfile} is the daemon of {other.group(1)}", pid)
    if GOD_TITLE not in title or (started is not None and started > written + 10):
        return down(f"pid {pid} from {pidfile} is another process now ({title[:60]!r})", pid)
    if fields[0] in ("T", "t"):
        return Pm2Daemon("frozen", str(home), pid, f"pid {pid} is stopped: SIGSTOP, `kill -CONT {pid}`", dump)
    missing = [name for name in ("rpc.sock", "pub.sock") if not (home / name).exists()]
    if missing:
        detail = f"pid {pid} runs, but {' and '.join(missing)} {GONE} ({home})"
        return Pm2Daemon("frozen", str(home), pid, detail, dump)
    return Pm2Daemon("up", str(home), pid, "", dump)


def _just_started(home: Path) -> bool:
    try:
        return time.time() - (home / "pm2.pid").stat().st_mtime < 10
    except OSError:
        return False


# -- the cheap sample: PM2's pid files and /proc, no Node start-up ------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None for a gone or zombie pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK if fields else None


def sched_seconds(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds waiting for one) of the process's main thread — Node's event
    loop — from /proc/PID/schedstat; None where the kernel does not keep scheduler stats."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            run, wait = f.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return None


def pidfile_pids(name: str, home: Path) -> list[int]:
    """The pids in `$PM2_HOME/pids/NAME-ID.pid`, unchecked (the files may be stale)."""
    pattern = re.compile(re.escape(re.sub(r"[^A-Za-z0-9.-]", "-", name)) + r"-(\d+)\.pid")
    pids = []
    try:
        for entry in os.scandir(home / "pids"):
            if pattern.fullmatch(entry.name):
                pids.append(int(Path(entry.path).read_text().strip()))
    except (OSError, ValueError):
        return []
    return pids


def proc_instance(name: str, pm_id: int, pid: int, pidfile_mtime: float) -> Instance | None:
    """An `online` instance read from /proc, or None if the pid is gone or was reused.

    It has what /proc knows (pid, RSS, CPU averaged over its life, uptime); PM2's
    counters (restart_time, unstable_restarts) stay unknown (None), never 0."""
    fields = _stat_fields(pid)
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    if not fields:
        return None
    cpu_s = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    boot = _boot_time()
    uptime = cpu = None
    if boot is not None:
        started = boot + int(fields[19]) / _CLK_TCK
        if started > pidfile_mtime + 10:
            return None  # the pid now belongs to a newer process
        uptime = max(0.0, time.time() - started)
        cpu = round(100 * cpu_s / uptime, 1) if uptime > 0 else 0.0
    return Instance(
        name=name,
        pm_id=pm_id,
        pid=pid,
        status="online",
        memory=rss_pages * _PAGE,
        cpu=cpu,
        uptime_s=round(uptime, 1) if uptime is not None else None,
    )


def pidfile_view(name: str, home: Path) -> ProcessView | None:
    """Live instances of `name` from `$PM2_HOME/pids/NAME-ID.pid`; None when that is not enough."""
    # PM2 writes `pids/NAME-PM_ID.pid`, with characters outside [A-Za-z0-9.-] turned into '-'.
    pattern = re.compile(re.escape(re.sub(r"[^A-Za-z0-9.-]", "-", name)) + r"-(\d+)\.pid")
    instances = []
    try:
        entries = list(os.scandir(home / "pids"))
    except OSError:
        return None
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if not m:
            continue
        try:
            pid = int(Path(entry.path).read_text().strip())
            mtime = entry.stat().st_mtime
        except (OSError, ValueError):
            return None
        inst = proc_instance(name, int(m.group(1)), pid, mtime)
        if inst is None:
            return None  # stale pid file: only jlist can say what happened
        instances.append(inst)
    if not instances:
        return None
    instances.sort(key=lambda i: i.pm_id or 0)
    return ProcessView(name, "pidfile", tuple(instances))


# -- CPU during the probes ----------------------------------------------------------------


@dataclass(frozen=True)
class CpuMark:
    """What the app's processes had used when the probes began: CPU seconds, and the event-loop
    thread's (run, wait) scheduler seconds."""

    at: float
    used: dict[int, float]
    sched: dict[int, tuple[float, float]]
    pm_ids: dict[int, int] = field(default_factory=dict)  # pid -> pm_id, from the pid files


def pidfile_workers(name: str, home: Path) -> dict[int, int]:
    """pid -> pm_id from `$PM2_HOME/pids/NAME-ID.pid`, unchecked (the files may be stale)."""
    pattern = re.compile(re.escape(re.sub(r"[^A-Za-z0-9.-]", "-", name)) + r"-(\d+)\.pid")
    out: dict[int, int] = {}
    try:
        for entry in os.scandir(home / "pids"):
            m = pattern.fullmatch(entry.name)
            if m:
                out[int(Path(entry.path).read_text().strip())] = int(m.group(1))
    except (OSError, ValueError):
        return {}
    return out


def cpu_mark(name: str, home: Path) -> CpuMark | None:
    """Read before probing: a few /proc reads, no pm2 call."""
    pm_ids = pidfile_workers(name, home)
    used = {pid: s for pid in pm_ids if (s := cpu_seconds(pid)) is not None}
    sched = {pid: t for pid in used if (t := sched_seconds(pid)) is not None}
    live = {pid: pm_ids[pid] for pid in used}
    return CpuMark(time.monotonic(), used, sched, live) if used else None


def cpu_by_pid(mark: CpuMark | None) -> dict[int, float]:
    """Each process's CPU since `mark`, in percent of one CPU: the larger of the time it ran and
    the time its event-loop thread ran or waited for a CPU (a loop spinning on a busy host still
    reads near 100). A process gone since the mark is left out."""
    if mark is None:
        return {}
    seconds = time.monotonic() - mark.at
    if seconds <= 0:
        return {}
    out: dict[int, float] = {}
    for pid, before in mark.used.items():
        now = cpu_seconds(pid)
        if now is None or now < before:
            continue
        share = 100 * (now - before) / seconds
        s0, s1 = mark.sched.get(pid), sched_seconds(pid)
        if s0 is not None and s1 is not None and s1[0] >= s0[0]:
            share = max(share, min(100.0, 100 * ((s1[0] - s0[0]) + (s1[1] - s0[1])) / seconds))
        out[pid] = round(share, 1)
    return out


def cpu_window(mark: CpuMark | None) -> dict[str, Any]:
    """The CPU of the app's busiest process since `mark`, taken right after the probes: it tells
    a blocked event loop (near 100) from a stalled one (near 0).

    `cpu_window` is the share of the time it ran; `cpu_demand` adds the time its event-loop
    thread waited for a CPU, so a loop spinning on a busy host still reads near 100.
    """
    if mark is None:
        return {}
    seconds = time.monotonic() - mark.at
    if seconds <= 0.05:
        return {}
    ran, wanted = [], []
    for pid, before in mark.used.items():
        now = cpu_seconds(pid)
        if now is not None and now >= before:
            ran.append(100 * (now - before) / seconds)
        s0, s1 = mark.sched.get(pid), sched_seconds(pid)
        if s0 is not None and s1 is not None and s1[0] >= s0[0]:
            wanted.append(100 * ((s1[0] - s0[0]) + (s1[1] - s0[1])) / seconds)
    out: dict[str, Any] = {}
    if ran:
        out.update(cpu_window=round(max(ran), 1), cpu_window_s=round(seconds, 2))
    if wanted:
        out["cpu_demand"] = round(min(100.0, max(wanted)), 1)
    return out
