"""Observations: the plain values the adapters (probe, pm2) return and the policy reads.

Nothing here does I/O, so the pure core can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUNNING = {"online"}
RESTARTING = {"waiting restart", "one-launch-status"}
# Moving between states (an operator's restart or stop under way, PM2 starting it): never final.
TRANSITION = {"stopping", "launching"}
STOPPED = {"stopped"}
ERRORED = {"errored"}

ERROR_KINDS = ("timeout", "refused", "reset", "status", "body", "tls", "dns", "protocol", "error")


@dataclass(frozen=True)
class Attempt:
    """The outcome of one HTTP request."""

    ok: bool
    attempt: int
    url: str
    latency_ms: float
    status: int | None = None
    error: str | None = None  # one of ERROR_KINDS when not ok
    detail: str | None = None
    # The body's first bytes (up to probe.BODY_CAP), for matching expected text; never recorded.
    body: bytes = field(default=b"", repr=False, compare=False)
    # The connection's client-side port: /proc/net/tcp names the process holding its server side.
    local_port: int | None = field(default=None, compare=False)
    # An https URL's certificate: when it expires (an event timestamp), from the TLS handshake
    cert_expires: str | None = None

    def data(self, **extra: Any) -> dict[str, Any]:
        d: dict[str, Any] = {
            "url": self.url,
            "attempt": self.attempt,
            "latency_ms": round(self.latency_ms, 1),
        }
        if self.status is not None:
            d["status"] = self.status
        if self.error:
            d["error"] = self.error
        if self.detail:
            d["detail"] = self.detail
        if self.local_port is not None and not self.ok:
            d["local_port"] = self.local_port
        if self.cert_expires is not None:
            d["cert_expires"] = self.cert_expires
        d.update(extra)
        return d


@dataclass(frozen=True)
class Instance:
    """One PM2 process (cluster mode has several per name)."""

    name: str
    pm_id: int | None
    pid: int | None
    status: str
    memory: int | None = None  # bytes
    cpu: float | None = None  # percent, as PM2 or /proc reports it
    restart_time: int | None = None
    unstable_restarts: int | None = None
    uptime_s: float | None = None
    since_start_s: float | None = None  # seconds since PM2 last started it, when it is not online
    exit_code: int | None = None
    exec_mode: str | None = None
    max_memory_restart: int | None = None  # bytes, when PM2 restarts it at a memory limit
    # PM2's own metrics (pm2_env.axm_monitor), when @pm2/io runs in the app
    heap_used: int | None = None  # bytes
    heap_total: int | None = None  # bytes
    loop_delay_ms: float | None = None  # event-loop latency, p50
    loop_delay_p95_ms: float | None = None

    def data(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "name"}


@dataclass(frozen=True)
class ProcessView:
    """What PM2 says about one app name; `instances` is empty when PM2 does not know it."""

    name: str
    source: str  # "jlist" or "pidfile"
    instances: tuple[Instance, ...] = field(default_factory=tuple)
    logs: tuple[str, ...] = ()  # the log files PM2 writes for it (jlist only)

    @property
    def known(self) -> bool:
        return bool(self.instances)

    @property
    def status(self) -> str:
        """One status for the app: the most hopeful one that PM2 reports for any instance."""
        statuses = {i.status for i in self.instances}
        if not statuses:
            return "unknown"
        for group in (RUNNING, RESTARTING, TRANSITION, ERRORED, STOPPED):
            hit = statuses & group
            if hit:
                return sorted(hit)[0]
        return sorted(statuses)[0]

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "status": self.status, "known": self.known}
        if len(self.instances) == 1:
            d.update(self.instances[0].data())
        elif self.instances:
            d["instances"] = [i.data() for i in self.instances]
            d["pids"] = [i.pid for i in self.instances]
            mem = [i.memory for i in self.instances if i.memory is not None]
            if mem:
                d["memory"] = sum(mem)
        if self.logs:
            d["logs"] = list(self.logs)
        return d


@dataclass(frozen=True)
class Pm2Daemon:
    """PM2's daemon as its files under PM2_HOME and /proc show it, without a pm2 call.

    `state` is "up", "down" (no live God daemon: a pm2 call would spawn an empty one) or
    "frozen" (it runs but does not answer: a pm2 call timed out, or its sockets are gone).
    """

    state: str
    home: str
    pid: int | None = None
    detail: str = ""  # why, for people
    dump: bool = False  # $PM2_HOME/dump.pm2 exists: what `pm2 resurrect` brings back

    @property
    def sentence(self) -> str:
        """What is wrong with it, for people (a daemon that is not up)."""
        if self.state == "down":
            return f"PM2's daemon is not running ({self.detail})"
        return f"PM2's daemon does not answer ({self.detail})"

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"state": self.state, "home": self.home, "dump": self.dump}
        if self.pid is not None:
            d["pid"] = self.pid
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True)
class Observations:
    """What one check run saw of one app before deciding: its probes and PM2's view of it."""

    attempts: tuple[Attempt, ...]
    view: ProcessView | None  # None when PM2 could not be read
    pm2_problem: str | None = None  # why PM2 could not be read
    daemon: Pm2Daemon | None = None  # set when PM2's daemon was found down or frozen
    # The addresses ('127.0.0.1:3001') the app's processes listen on, read from /proc only when the
    # policy asks (a refused URL that never answered); None when not read or unreadable.
    listening: tuple[str, ...] | None = None
    # PM2's own restarts this run's sample revealed (the history, read before it, lacks them)
    pm2_restarts: int = 0
    # Cluster mode: each worker's share of the probes' failures and its CPU over the probe window
    cluster: ClusterSeen | None = None


@dataclass(frozen=True)
class Worker:
    """One worker of a PM2 cluster as a check's probing saw it."""

    pm_id: int
    pid: int
    cpu_window: float | None = None  # percent of one CPU over the probe window
    failed: int = 0  # failed probes whose server-side socket this worker holds
    answered: int = 0  # answered probes whose server-side socket this worker holds

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pm_id": self.pm_id, "pid": self.pid}
        if self.cpu_window is not None:
            d["cpu_window"] = self.cpu_window
        if self.failed:
            d["failed"] = self.failed
        if self.answered:
            d["answered"] = self.answered
        return d


@dataclass(frozen=True)
class ClusterSeen:
    """What probing every worker of a cluster-mode app found: its workers, and how many failed
    probes could not be tied to one of them (their socket was in PM2's master, or gone)."""

    workers: tuple[Worker, ...]
    unattributed: int = 0
    window_s: float | None = None  # the CPU window's length

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"total": len(self.workers), "workers": [w.data() for w in self.workers]}
        if self.unattributed:
            d["unattributed"] = self.unattributed
        if self.window_s is not None:
            d["window_s"] = self.window_s
        return d
