"""`recovery check` as a Nagios plugin (issue 17 point 1): a first line `RECOVERY <STATE> - <the worst
apps> | <perfdata>`, a line per app after it, exit 3 with a status line for every usage or config error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from recovery.check import CRITICAL, OK, UNKNOWN, WARNING, AppResult, CheckResult

RECOVERY = Path(sys.executable).parent / "recovery"
# The plugin guidelines' perfdata: 'label'=value[UOM];[warn];[crit];[min];[max], space-separated.
PERF = re.compile(r"^('[^'=]+'|[^ '=]+)=(-?[\d.]+|U)(s|%|B|KB|MB|TB|c)?(;[\d.]*){0,4}$")


def result(*apps: AppResult, problems: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult("run", list(apps), list(problems))


def healthy(name: str, ms: float = 12.0) -> AppResult:
    return AppResult(name, OK, "OK", f"{ms:.0f}ms", ms)


def test_the_first_line_names_the_worst_apps_not_the_first_ones():
    recovered = AppResult(
        "api",
        WARNING,
        "RECOVERED",
        "restarted after 3 failed probes (timeout), healthy again in 4.2s",
        30.0,
        True,
        "restart",
        3,
    )
    down = AppResult(
        "shop", CRITICAL, "CRITICAL", "hung: 3 failed probes (timeout); restart failed", None, True, "restart", 3
    )
    lines = result(healthy("web"), recovered, down).lines()
    assert lines[0].startswith("RECOVERY CRITICAL - shop CRITICAL hung: 3 failed probes (timeout); restart failed | ")
    assert lines[1:] == ["web OK 12ms", recovered.line(), down.line()]
    warning = result(healthy("web"), recovered).lines()[0]
    assert warning.startswith("RECOVERY WARNING - api RECOVERED restarted after 3 failed probes")


def test_all_healthy_says_how_many():
    assert result(healthy("web"), healthy("api")).lines()[0].startswith("RECOVERY OK - 2 apps OK | ")
    assert result(healthy("web")).lines()[0].startswith("RECOVERY OK - web OK 12ms | ")


def test_perfdata_has_each_apps_latency_in_seconds_failed_probes_and_restarts():
    slow = AppResult("shop", WARNING, "DEGRADED", "answered in 2400ms", 2400.0, failed=0, slow_ms=2000.0)
    down = AppResult("api", CRITICAL, "CRITICAL", "down", None, True, "restart", 3)
    perf = result(healthy("web"), slow, down).lines()[0].split(" | ", 1)[1].split(" ")
    assert all(PERF.match(p) for p in perf), perf
    assert perf == [
        "web_latency=0.012s;;;0",
        "web_failed=0;;;0",
        "web_restarts=0;;;0",
        "shop_latency=2.400s;2;;0",
        "shop_failed=0;;;0",
        "shop_restarts=0;;;0",
        "api_latency=U;;;0",
        "api_failed=3;;;0",
        "api_restarts=1;;;0",
    ]


def test_a_problem_makes_it_unknown_and_a_pipe_never_breaks_the_perfdata():
    first = result(healthy("web"), problems=("event store unusable: disk | full",)).lines()[0]
    assert first.startswith("RECOVERY UNKNOWN - event store unusable: disk / full | web_latency=")
    assert first.count("|") == 1


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RECOVERY), *args], capture_output=True, text=True, timeout=60)


def test_a_mistyped_flag_is_unknown_with_a_status_line():
    done = run("check", "--jsn")
    assert done.returncode == UNKNOWN
    assert done.stdout == "RECOVERY UNKNOWN - No such option: --jsn (Possible options: --json)\n"
    assert "No such option: --jsn" in done.stderr


def test_every_command_exits_3_on_a_usage_error():
    for args in (("status", "--bogus"), ("report", "--since"), ("check", "--app")):
        assert run(*args).returncode == UNKNOWN, args


def test_a_bad_config_is_unknown_on_stdout_and_stderr(tmp_path):
    config = tmp_path / "recovery.toml"
    config.write_text('[[apps]]\nname = "web"\nurl = "ftp://x/"\n')
    done = run("check", "--config", str(config))
    assert done.returncode == UNKNOWN
    (line,) = done.stdout.splitlines()
    assert line.startswith("RECOVERY UNKNOWN - ") and "recovery.toml:3" in line and "ftp://x/" in line
    assert done.stderr == "recovery: " + line.removeprefix("RECOVERY UNKNOWN - ") + "\n"
