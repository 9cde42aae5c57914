"""`recovery --version` and shell completion (issue 17 point 4), through the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

RECOVERY = Path(sys.executable).parent / "recovery"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RECOVERY), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_version_prints_the_installed_version():
    for flag in ("--version", "-V"):
        done = run(flag)
        assert (done.returncode, done.stdout) == (0, f"recovery {version('recovery')}\n")


def test_bash_completion_completes_commands_and_subcommands():
    script = run("--show-completion", "bash")
    assert script.returncode == 0 and "complete -o default -F _recovery_completion recovery" in script.stdout
    words = run(_RECOVERY_COMPLETE="complete_bash", COMP_WORDS="recovery sta", COMP_CWORD="1")
    assert words.stdout.split() == ["status"]
    words = run(_RECOVERY_COMPLETE="complete_bash", COMP_WORDS="recovery config ", COMP_CWORD="2")
    assert words.stdout.split() == ["path", "validate"]


def test_help_keeps_config_table_names_in_square_brackets():
    # rich's markup read "[fleet]" or "[alerts]" as a style tag and dropped it from the help text
    for args, wanted in (
        (["ship", "--help"], "within [fleet] budget"),
        (["alert", "test", "--help"], "[alerts] urls"),
        (["errors", "prune", "--help"], "older than [logs] keep_raw"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "recovery_cli.main", *args], capture_output=True, text=True, timeout=60
        ).stdout
        assert wanted in " ".join(out.split()), (args, out)
