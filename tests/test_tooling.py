"""The code stays linted, formatted and typed: ruff and mypy, configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PATHS = ["recovery", "cli", "tests", "bench", "data"]


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", *PATHS], ["ruff", "format", "--check", *PATHS], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_the_code_passes(command):
    tool = BIN / command[0]
    r = subprocess.run([str(tool), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
