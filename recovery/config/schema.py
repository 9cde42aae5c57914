"""The configuration's shape: frozen dataclasses and the constants they use, without I/O.

A field's default here is the only place that default is written: the loader fills in keys a
file leaves out from `defaults()`, and `recovery init`'s sample prints them.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from recovery.expect import JsonExpectation, body_problem

DEFAULT_FILENAME = "recovery.toml"
ENV_VAR = "RECOVERY_CONFIG"

RESTART_COMMANDS = ("restart", "reload")
ALERT_KINDS = ("down", "recovered", "failed", "suspended", "pm2_restarts", "leak", "reminder")

# The metadata of a field that no TOML key sets (the loader derives it).
_NOT_A_KEY = {"key": False}


@dataclass(frozen=True)
class StoreConfig:
    # Relative to the config file's folder, not the cwd: the loader resolves it.
    path: Path = Path("data/recovery.db")
    busy_timeout: float = 5.0
    # A new store (and its WAL and SHM) is created 0600; with a group, 0640 and owned by that group.
    group: str | None = None
    # When the store file grows past this, a check archives its oldest whole months; None: never.
    max_size: int | None = None


@dataclass(frozen=True)
class Pm2Config:
    bin: str | None = None  # None: found automatically
    # How long a pm2 read (`pm2 jlist`) may take before PM2's daemon counts as frozen.
    timeout: float = 10.0


@dataclass(frozen=True)
class PolicyConfig:
    "Restart-loop protection; an [[apps]] table may repeat any of these keys."

    max_restarts: int = 3
    window: float = 1800.0
    restart_grace: float = 60.0


_POLICY = PolicyConfig()


@dataclass(frozen=True)
class AppConfig:
    name: str
    url: str
    timeout: float = 10.0
    retries: int = 3
    retry_delay: float = 5.0
    expect_status: tuple[tuple[int, int], ...] = ((200, 399),)
    # What the body must hold (recovery.expect): a substring, a regular expression, a JSON value.
    expect_body: str | None = None
    expect_body_regex: str | None = None
    expect_json: JsonExpectation | None = None
    # https: the CA file to verify the certificate with (a private CA), and how long before the
    # certificate expires the app reads degraded (WARNING, never a restart)
    ca_file: str | None = None
    cert_warn: float | None = None
    verify_timeout: float = 60.0
    restart_command: str = "restart"
    # Loop protection ([policy], overridable per app) and the degraded threshold.
    max_restarts: int = _POLICY.max_restarts
    window: float = _POLICY.window
    restart_grace: float = _POLICY.restart_grace
    slow_threshold: float | None = None
    # Log files to ingest (absolute paths); empty: the paths `pm2 jlist` gives.
    logs: tuple[str, ...] = ()
    # Alert channels (apprise URLs) for this app; None: [alerts] urls.
    alerts: tuple[str, ...] | None = None
    # Keys the app's own table set, so `recovery watch` knows which probe settings it may tighten.
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False, metadata=_NOT_A_KEY)

    def for_watch(self, watch: WatchConfig) -> AppConfig:
        "This app as `recovery watch` probes it: [watch] probe settings unless the app set its own."
        changes = {k: getattr(watch, k) for k in ("timeout", "retries", "retry_delay") if k not in self.explicit}
        return replace(self, **changes) if changes else self

    def attempt_spacing(self) -> float:
        """The least time between the starts of two probe attempts when the first timed out.

        A CPU burst shorter than the timeout can fail only the attempts whose time span
        [start, start + timeout) it overlaps: if the first and the last attempt start
        2 x timeout apart, the burst has ended before the last one starts, and that one answers.
        """
        return 2 * self.timeout / (self.retries - 1) if self.retries > 1 else 0.0

    def status_ok(self, code: int) -> bool:
        "Whether an HTTP status code counts as healthy for this app."
        return any(low <= code <= high for low, high in self.expect_status)

    def body_problem(self, body: bytes) -> str | None:
        "What is wrong with an answer's body for this app's expectations; None when it holds them (or none are set)."
        if self.expect_body is None and self.expect_body_regex is None and self.expect_json is None:
            return None
        return body_problem(body, text=self.expect_body, regex=self.expect_body_regex, json_expect=self.expect_json)


@dataclass(frozen=True)
class WatchConfig:
    "How `recovery watch` probes: detection in seconds, not cron's minutes."

    interval: float = 2.0
    # 1s, not 2s: a hang to answering again in ~6.6 s median (bench/watch_mttr.py; 5.8 s before the
    # second attempt waited for AppConfig.attempt_spacing, 2 s after the first began), under 8 s.
    timeout: float = 1.0
    retries: int = 2
    retry_delay: float = 0.0
    # A steady healthy app's checks are written as one `probe.batched` event per this much time
    # (recovery.batching): ~1.5 MB a day per app, not ~130 MB. A SIGKILL loses at most that much of
    # healthy probes; 0s writes every check's events, as `recovery check` does.
    batch: float = 60.0


@dataclass(frozen=True)
class LogsConfig:
    "Error-log ingestion: how long raw entries are kept (templates and counts are kept for good)."

    keep_raw: float = 30 * 86400.0
    in_check: bool = True  # `recovery check` ingests too, after its probe work
    check_budget: int = 2 << 20  # bytes per app a check reads at most (the rest waits for the next run)
    check_every: float = 60.0  # a check ingests an app's logs at most this often (watch steps are seconds apart)
    first_read: str = "beginning"  # a file seen for the first time: "beginning" or "end"
    keep_stdout: bool = False  # store every stdout line, not only those that look like errors


@dataclass(frozen=True)
class AlertsConfig:
    "Where and what to alert; every URL is an apprise URL, a secret, never printed or stored whole."

    urls: tuple[str, ...] = ()
    off: frozenset[str] = frozenset()  # kinds switched off
    remind_every: float = 0.0  # 0: no reminders while an incident stays open
    timeout: float = 10.0  # all deliveries of one run together
    retries: int = 3  # attempts per alert and channel within a run (owed ones are retried next run)
    heartbeat_url: str | None = None
    heartbeat_fail_url: str | None = None  # default: heartbeat_url + "/fail"
    host: str | None = None  # the name messages give this server; default: the hostname

    def channels(self, app: AppConfig) -> tuple[str, ...]:
        return self.urls if app.alerts is None else app.alerts


@dataclass(frozen=True)
class MetricsConfig:
    "Prometheus metrics: the node_exporter textfile each check refreshes (after its answer, in a child process), and the port `recovery watch` serves /metrics on."

    textfile: Path | None = None  # e.g. /var/lib/node_exporter/textfile_collector/recovery.prom, written atomically
    port: int | None = None  # `recovery watch` serves /metrics on it (--metrics-port overrides); None: not served
    host: str = "127.0.0.1"  # the address watch serves /metrics on (--metrics-host overrides)


@dataclass(frozen=True)
class FleetConfig:
    "The fleet store: this host's events shipped to PostgreSQL after each check (never before its answer)."

    postgres: str | None = None  # postgresql://user[:password]@host:port/db; a secret, never printed whole
    host: str | None = None  # this host's name in the fleet; default: the hostname
    budget: float = 10.0  # seconds one ship may take before it stops (the rest ships next time)
    batch: int = 5000  # events per COPY batch


@dataclass(frozen=True)
class Config:
    source: Path | None = field(metadata=_NOT_A_KEY)
    store: StoreConfig
    pm2: Pm2Config
    apps: tuple[AppConfig, ...]
    policy: PolicyConfig = PolicyConfig()
    watch: WatchConfig = WatchConfig()
    logs: LogsConfig = LogsConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    fleet: FleetConfig = FleetConfig()

    @property
    def publishes(self) -> bool:
        "Whether something follows each check's answer (recovery/publish.py): a metrics textfile, fleet shipping."
        return self.metrics.textfile is not None or self.fleet.postgres is not None

    def app(self, name: str) -> AppConfig | None:
        return next((a for a in self.apps if a.name == name), None)


def keys(table: type[Any]) -> tuple[str, ...]:
    "The keys a TOML table read into the dataclass `table` may hold, in field order."
    return tuple(f.name for f in fields(table) if f.metadata.get("key", True))


def defaults(table: type[Any]) -> dict[str, Any]:
    "The keys of `table` a file may leave out, with the value each then takes."
    return {f.name: f.default for f in fields(table) if f.default is not MISSING and f.metadata.get("key", True)}


@dataclass(frozen=True)
class Problem:
    "One thing wrong with a configuration file, where it is, and what to do about it."

    line: int | None
    key: str
    message: str
    path: Path | None = None

    def __str__(self) -> str:
        parts = []
        if self.path is not None:
            parts.append(str(self.path) + (f":{self.line}" if self.line is not None else ""))
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.key:
            parts.append(self.key)
        parts.append(self.message)
        return ": ".join(parts)
