"""`recovery man` (issue 17 point 4): a manual page made from the commands' own help, valid roff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from recovery_cli.main import app

RECOVERY = Path(sys.executable).parent / "recovery"


def test_the_manual_renders_without_warnings_and_names_every_command():
    page = subprocess.run([str(RECOVERY), "man"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert page.startswith(".TH RECOVERY 1 ")
    shown = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    root = typer.main.get_command(app)
    names = [n for n, c in root.commands.items() if not getattr(c, "commands", None)]  # type: ignore[attr-defined]
    for name in [*names, "config path", "errors show", "alert test"]:
        assert f".SS recovery {name.replace('-', chr(92) + '-')}\n" in page, name
    for section in ("EXIT STATUS", "FILES", "ENVIRONMENT", "EXAMPLES"):
        assert f".SH {section}\n" in page
