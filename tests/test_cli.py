"""The command line: help everywhere, and every bad input is one line and exit 3, never a traceback."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from recovery_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()

GOOD_APP = """
[[apps]]
name = "web"
url = "http://127.0.0.1:3000/"
"""


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env or {"RECOVERY_CONFIG": ""})


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recovery.toml"
    p.write_text(text)
    return p


def _commands(group: typer.Typer, prefix: tuple[str, ...] = ()):
    for c in group.registered_commands:
        yield prefix + (c.name or c.callback.__name__,)
    for sub in group.registered_groups:
        yield from _commands(sub.typer_instance, prefix + (sub.name,))


@pytest.mark.parametrize("command", list(_commands(app)), ids=" ".join)
def test_every_command_has_help_text(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    callback = {c.name or c.callback.__name__: c.callback for c in app.registered_commands}.get(command[-1])
    if callback is not None:
        assert (callback.__doc__ or "").strip(), f"{command} has no docstring"


def assert_one_line_exit_3(result, *needles: str):
    """One line on stderr naming the problem, exit 3; `recovery check`, a Nagios plugin, also says
    UNKNOWN and why in its one status line on stdout."""
    assert result.exit_code == 3, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], lines[0]
    out = [line for line in result.stdout.splitlines() if line.strip()]
    assert out == [] or (len(out) == 1 and out[0] == "RECOVERY UNKNOWN - " + lines[0].removeprefix("recovery: ")), out


def test_a_missing_config_file_is_one_line_and_exit_3(tmp_path):
    result = invoke("check", "--config", str(tmp_path / "nope.toml"))
    assert_one_line_exit_3(result, "config file not found", "nope.toml")


def test_malformed_toml_names_file_and_line(tmp_path):
    p = write(tmp_path, "[store]\npath = \n")
    assert_one_line_exit_3(invoke("check", "--config", str(p)), "recovery.toml:2")


def test_an_unknown_key_is_refused_with_its_line(tmp_path):
    p = write(tmp_path, GOOD_APP + 'timeot = "2s"\n')
    assert_one_line_exit_3(invoke("check", "--config", str(p)), ":5:", "timeot", "timeout")


def test_a_bad_duration_is_refused(tmp_path):
    p = write(tmp_path, GOOD_APP + 'timeout = "ten seconds"\n')
    assert_one_line_exit_3(invoke("check", "--config", str(p)), "timeout", "ten seconds")


def test_a_bad_url_is_refused(tmp_path):
    p = write(tmp_path, '[[apps]]\nname = "web"\nurl = "ftp://example"\n')
    assert_one_line_exit_3(invoke("check", "--config", str(p)), "url")


def test_pm2_not_found_is_unknown(tmp_path):
    p = write(tmp_path, '[pm2]\nbin = "/nonexistent/bin/pm2"\n' + GOOD_APP)
    result = invoke("check", "--config", str(p))
    assert result.exit_code == 3, result.output
    assert "pm2 not found" in result.output and "Traceback" not in result.output


def test_the_config_comes_from_recovery_config_when_no_flag_is_given(tmp_path):
    p = write(tmp_path, GOOD_APP + 'retries = "three"\n')
    result = runner.invoke(app, ["config", "validate"], env={"RECOVERY_CONFIG": str(p)})
    assert result.exit_code == 3 and "retries" in result.output


def test_config_validate_reports_every_mistake_with_its_line(tmp_path):
    p = write(tmp_path, '[stor]\npath = "x"\n' + GOOD_APP + 'timeot = "2s"\n')
    result = invoke("config", "validate", str(p))
    assert result.exit_code == 3
    assert ":1:" in result.output and ":7:" in result.output


def test_init_writes_a_sample_that_validates_and_never_overwrites(tmp_path):
    target = tmp_path / "recovery.toml"
    assert invoke("init", str(target), "--name", "shop", "--url", "http://127.0.0.1:4000/").exit_code == 0
    assert invoke("config", "validate", str(target)).exit_code == 0
    assert 'name = "shop"' in target.read_text()
    again = invoke("init", str(target))
    assert again.exit_code != 0 and "exists" in again.output


def test_events_on_a_store_that_does_not_exist_yet_is_one_line(tmp_path):
    p = write(tmp_path, GOOD_APP)
    assert_one_line_exit_3(invoke("events", "--config", str(p)), "no event store")


def test_events_rejects_an_unknown_type(tmp_path):
    p = write(tmp_path, GOOD_APP)
    result = invoke("events", "--config", str(p), "--type", "probe.faild")
    assert_one_line_exit_3(result, "probe.faild")


def test_events_rejects_a_bad_since(tmp_path):
    p = write(tmp_path, GOOD_APP)
    assert_one_line_exit_3(invoke("events", "--config", str(p), "--since", "yesterday-ish"), "--since")


def test_the_installed_entry_point_prints_no_traceback(tmp_path):
    p = write(tmp_path, "not toml at all = = =\n")
    proc = subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "check", "--config", str(p)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert proc.stdout.startswith("RECOVERY UNKNOWN - ") and len(proc.stdout.splitlines()) == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_the_entry_point_runs_check_as_a_named_subcommand():
    proc = subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "check", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and " check [OPTIONS]" in proc.stdout and "Probe every app" in proc.stdout


CLI = Path(__file__).resolve().parent.parent / "cli"


def test_the_cli_imports_no_sqlite3_and_builds_no_events():
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules, names = [a.name for a in node.names], []
            elif isinstance(node, ast.ImportFrom):
                modules, names = [node.module or ""], [a.name for a in node.names]
            else:
                continue
            where = f"{path.name}:{node.lineno}"
            assert not any(m.split(".")[0] == "sqlite3" for m in modules), f"{where} imports sqlite3"
            assert not (modules == ["recovery.events"] and "Event" in names), f"{where} builds events"


NOT_A_DATABASE = GOOD_APP + 'logs = ["app.log"]\n\n[store]\npath = "bad.db"\n'


@pytest.mark.parametrize(
    "command",
    [
        ("pause", "web"),
        ("resume", "web"),
        ("verify",),
        ("rebuild",),
        ("events",),
        ("ingest",),
        ("errors",),
        ("errors", "search", "boom"),
        ("errors", "show", "abc"),
        ("errors", "prune"),
    ],
    ids=" ".join,
)
def test_a_store_that_is_not_a_database_is_one_line_and_exit_3(tmp_path, command):
    p = write(tmp_path, NOT_A_DATABASE)
    (tmp_path / "bad.db").write_bytes(b"this is not SQLite" * 100)
    (tmp_path / "app.log").write_text("Error: boom\n")
    assert_one_line_exit_3(invoke(*command, "--config", str(p)), "recovery: ", "bad.db", "not a SQLite database")
