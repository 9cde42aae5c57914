"""`recovery setup`: the server set-up script of deploy/, reachable from a pip or pipx install."""

from __future__ import annotations

from typing import Annotated

import typer

SCRIPT = "setup-auto-recovery.sh"


def deploy_dir() -> str:
    """The folder of deploy/'s files as installed (package data of the namespace package
    `recovery_deploy`: deploy/ itself in a checkout, its copy in a pip or pipx install)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("recovery_deploy")
    places = list(spec.submodule_search_locations or []) if spec is not None else []
    return next((p for p in places if os.path.isfile(os.path.join(p, SCRIPT))), places[0] if places else "")


def setup(
    ctx: typer.Context,
    print_path: Annotated[
        bool,
        typer.Option(
            "--print-path", help="Print the folder of the set-up script, its templates and units; run nothing."
        ),
    ] = False,
) -> None:
    """Set up recovery on this server with deploy/setup-auto-recovery.sh, using this installation.

    Every other argument goes to the script (`recovery setup --help-script` for its flags): the cron
    line or systemd timer, the config, PM2's memory limit and log rotation, alerts, the checklist.
    The cron line runs this installation's `recovery` (a pip or pipx install needs no checkout).

    Example: recovery setup --app web --url http://127.0.0.1:3000/ --dry-run
    """
    import os
    import sys
    from pathlib import Path

    from .common import fail

    folder = Path(deploy_dir())
    script = folder / SCRIPT
    if print_path:
        typer.echo(str(folder))
        return
    if not script.is_file():
        fail(f"the set-up script is missing from this installation: {script}")
    args = ["--help" if a == "--help-script" else a for a in ctx.args]
    env = dict(os.environ)
    if (Path(sys.prefix) / "bin" / "recovery").exists():
        env.setdefault("RECOVERY_SETUP_VENV", sys.prefix)  # this install: no venv of its own, no checkout
    sys.stdout.flush()
    os.execvpe("bash", ["bash", str(script), *args], env)
