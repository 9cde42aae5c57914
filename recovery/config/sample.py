"""The commented configuration `recovery init` writes: every key, with the schema's defaults."""

from __future__ import annotations

import os
from pathlib import Path

from recovery.units import format_duration

from .loading import format_size, format_status_ranges, toml_string
from .schema import AppConfig, LogsConfig, Pm2Config, PolicyConfig, StoreConfig, WatchConfig


def sample(url: str = "http://127.0.0.1:3000/", name: str = "web") -> str:
    "A commented configuration with every key and its default, for `recovery init` to write."
    store, policy, watch, logs = StoreConfig(), PolicyConfig(), WatchConfig(), LogsConfig()
    pm2 = Pm2Config()
    app = AppConfig(name=name, url=url)
    # Keys without a default (bin, urls, heartbeat_url, slow_threshold, logs) show an example instead.
    rows = [
        ("[store]", ""),
        (f"path = {toml_string(store.path.as_posix())}", "the event store; relative to this file's folder"),
        (f"busy_timeout = {_duration(store.busy_timeout)}", "how long to wait for a locked database"),
        ('# group = "adm"', "create the store 0640 for this group (default 0600: its owner only)"),
        ('# max_size = "2GB"', "past this, a check archives the oldest whole months (`recovery archive`)"),
        ("", ""),
        ("[pm2]", ""),
        ('# bin = "pm2"', "pm2 name or path; leave out to find it automatically"),
        (f"timeout = {_duration(pm2.timeout)}", "a `pm2 jlist` slower than this means PM2's daemon is frozen"),
        ("", ""),
        ("[policy]", "restart-loop protection; an [[apps]] table may repeat any of these"),
        (f"max_restarts = {policy.max_restarts}", "restarts allowed inside `window`; then the app is suspended"),
        (f"window = {_duration(policy.window)}", "the window restarts are counted in"),
        (
            f"restart_grace = {_seconds(policy.restart_grace)}",
            "warm-up after a restart: failures inside it restart nothing",
        ),
        ("", ""),
        ("[watch]", "how `recovery watch` probes apps that set no timeout/retries of their own"),
        (f"interval = {_duration(watch.interval)}", "from the start of one check to the next"),
        (f"timeout = {_duration(watch.timeout)}", "per attempt"),
        (f"retries = {watch.retries}", "failed attempts before the app counts as down"),
        (f"retry_delay = {_duration(watch.retry_delay)}", "pause between attempts"),
        (
            f"# batch = {_duration(watch.batch)}",
            "a steady healthy app's checks are written as one event per this much time (0s: every check)",
        ),
        ("", ""),
        ("# [logs]", "error-log ingestion (`recovery ingest`, `recovery errors`)"),
        (
            f"# keep_raw = {_duration(logs.keep_raw)}",
            "`recovery errors prune` deletes raw entries older than this; templates and counts stay",
        ),
        (f"# in_check = {_boolean(logs.in_check)}", "`recovery check` ingests new log lines too, after its probe work"),
        (
            f"# check_budget = {toml_string(format_size(logs.check_budget))}",
            "at most this much per app and check; a backlog is worked off over runs",
        ),
        (f"# check_every = {_duration(logs.check_every)}", "a check ingests an app's logs at most this often"),
        (f"# first_read = {toml_string(logs.first_read)}", 'a log file seen for the first time: "beginning" or "end"'),
        (
            f"# keep_stdout = {_boolean(logs.keep_stdout)}",
            "store every stdout line, not only those that look like errors",
        ),
        ("", ""),
        ("# [alerts]", "who is told, once per incident (`recovery alert test` tries the channels)"),
        ('# urls = ["slack://TokenA/TokenB/TokenC"]', "apprise URLs: slack://, discord://, mailtos://, json://, ..."),
        ('# remind_every = "1h"', "while an incident stays open; 0s: never"),
        ('# heartbeat_url = "https://hc-ping.com/UUID"', "pinged after every run (/fail when it ended CRITICAL)"),
        ("", ""),
        ("# [metrics]", "Prometheus: `recovery metrics`; a node_exporter textfile after each check"),
        ('# textfile = "/var/lib/node_exporter/textfile_collector/recovery.prom"', "its folder must exist"),
        ("# port = 9464", "`recovery watch --metrics-port` serves /metrics (127.0.0.1)"),
        ("", ""),
        ("# [fleet]", "ship events to PostgreSQL for `recovery fleet status|report|verify`"),
        ('# postgres = "postgresql://recovery@db:5432/fleet"', "password in ~/.pgpass or PGPASSFILE"),
        ('# host = "web-1"', "this host's name in the fleet (default: the hostname)"),
        ("", ""),
        ("[[apps]]", "one table per PM2 process to watch"),
        (f"name = {toml_string(app.name)}", "the PM2 process name"),
        (f"url = {toml_string(app.url)}", "what to probe (http or https)"),
        (f"# timeout = {_duration(app.timeout)}", "per attempt"),
        (f"# retries = {app.retries}", "failed attempts before the app counts as down"),
        (f"# retry_delay = {_duration(app.retry_delay)}", "pause between attempts"),
        (
            f"# expect_status = {toml_string(format_status_ranges(app.expect_status))}",
            'healthy status codes, e.g. "200" or "200-299,301"',
        ),
        (
            f"# verify_timeout = {_seconds(app.verify_timeout)}",
            "how long to wait for the app to answer after a restart",
        ),
        (
            f"# restart_command = {toml_string(app.restart_command)}",
            '"restart", or "reload" for zero-downtime cluster mode',
        ),
        ('# slow_threshold = "2s"', "answers slower than this mark the app degraded (exit 1)"),
        ('# logs = ["logs/web-error.log"]', "log files to ingest; leave out to use the paths PM2 reports"),
    ]
    width = max(len(code) for code, comment in rows if comment)
    lines = [
        "# recovery configuration (TOML). Durations: 500ms, 30s, 5m, 1h, 7d.",
        "# Copy the [[apps]] table once per app to watch more than one. Commented keys show",
        "# the defaults; an app that sets timeout/retries/retry_delay keeps them in `recovery watch`.",
        "",
    ]
    for code, comment in rows:
        lines.append(f"{code:<{width}}  # {comment}" if comment else code)
    return "\n".join(lines) + "\n"


def write_sample(path: Path, text: str) -> None:
    """Write a config file readable by its owner only (0600): it will hold alert URLs and SMTP
    passwords. An existing file (`init --force`) is replaced and its mode set to 0600 too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _duration(seconds: float) -> str:
    return toml_string(format_duration(seconds))


def _seconds(seconds: float) -> str:
    # The warm-up and verification waits read "60s" (as in the README), not format_duration's "1m".
    return toml_string(f"{seconds:g}s")


def _boolean(value: bool) -> str:
    return "true" if value else "false"
