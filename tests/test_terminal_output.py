"""Tables that fit the terminal, colour on a terminal only (issue 17 point 3)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from recovery.store import Store
from tests.test_projections import Timeline

RECOVERY = Path(sys.executable).parent / "recovery"
APPS = ["web", "api", "admin-dashboard", "worker-queue", "storefront"]


@pytest.fixture
def five_apps(tmp_path) -> Path:
    """A config and a store of five apps: healthy ones, and one that hung and was restarted (a hint)."""
    config = tmp_path / "recovery.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path}/recovery.db"\n'
        + "".join(f'\n[[apps]]\nname = "{a}"\nurl = "http://127.0.0.1:{3000 + n}/"\n' for n, a in enumerate(APPS))
    )
    with Store.open(tmp_path / "recovery.db") as store:
        tl = Timeline(store)
        for k in range(3):
            for a in APPS:
                tl.healthy(60 * k, app=a)
        tl.hang_recovered(200, app="storefront")
    return config


def status(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    return subprocess.run(
        [str(RECOVERY), "status", "--config", str(config), *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_at_100_columns_no_line_is_longer_and_every_app_is_there(five_apps):
    wide = status(five_apps, "--wide").stdout.splitlines()
    assert max(len(line) for line in wide) > 100  # the whole table does not fit: something must give
    lines = status(five_apps, COLUMNS="100").stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)
    head = lines[0].split()
    assert head[:2] == ["APP", "STATE"] and "PID" not in head
    assert [line.split()[0] for line in lines[1:6]] == APPS


def test_wide_keeps_every_column(five_apps):
    head = status(five_apps, "--wide", COLUMNS="100").stdout.splitlines()[0]
    for column in ("PID", "WORKERS", "PM2", "CPU", "MEMORY", "UPTIME", "RESTARTS 24H", "INCIDENT", "HINT"):
        assert column in head


def test_a_pipe_gets_every_column_and_no_colour(five_apps):
    out = status(five_apps).stdout
    assert "PID" in out.splitlines()[0] and "\033[" not in out


def on_a_terminal(config: Path, **env: str) -> str:
    """`recovery status` with its stdout on a pseudo-terminal, as a person runs it."""
    main, child = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    proc = subprocess.Popen(
        [str(RECOVERY), "status", "--config", str(config)],
        stdout=child,
        stderr=subprocess.DEVNULL,
        env={**environ, "TERM": "xterm", "COLUMNS": "120", **env},
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(main)
    return b"".join(chunks).decode()


def test_states_are_coloured_on_a_terminal_unless_no_color(five_apps):
    assert "\033[32mHEALTHY\033[0m" in on_a_terminal(five_apps)
    plain = on_a_terminal(five_apps, NO_COLOR="1")
    assert "\033[" not in plain and "HEALTHY" in plain


def run(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    return subprocess.run(
        [str(RECOVERY), *args, "--config", str(config)],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_report_and_why_fit_100_columns_and_wide_keeps_the_report_whole(five_apps):
    wide = run(five_apps, "report", "--since", "90d", "--wide", COLUMNS="100").stdout
    assert "P99" in wide.splitlines()[2] and max(len(line) for line in wide.splitlines()) > 100
    report = run(five_apps, "report", "--since", "90d", COLUMNS="100").stdout.splitlines()
    assert max(len(line) for line in report) <= 100 and report[2].split()[:2] == ["APP", "AVAILABILITY"]
    why = run(five_apps, "why", "storefront", COLUMNS="100").stdout.splitlines()
    assert why[0].startswith("storefront incident #1") and max(len(line) for line in why) <= 100, why
