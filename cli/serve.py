"""`recovery serve`: registered in main.py as `app.command(name="serve")(guarded(serve))`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ConfigOption


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on. Anything but loopback needs --root or --insecure.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)] = 8001,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the dashboard in your web browser.")] = False,
    root: Annotated[
        bool,
        typer.Option(
            "--root", help="Require signing in as Datasette's root actor, through a one-time link printed at start."
        ),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow a non-loopback --host with no access control: anyone who reaches it reads the whole store.",
        ),
    ] = False,
    print_command: Annotated[
        bool,
        typer.Option(
            "--print-command",
            help="Print the equivalent `datasette serve …` command line (for PM2 or systemd) and exit.",
        ),
    ] = False,
    store_path: Annotated[
        Optional[Path],
        typer.Option("--store", help="The event store to serve. Default: the config's store.path.", show_default=False),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Browse, chart and question the record in a browser: Datasette on the event store, read-only.

    Serves the store with its tables documented, canned queries (restarts and who made them, incidents, availability per day, why an app restarted at a time, slowest probes, top errors, memory before restarts, alerts) and a dashboard at /-/dashboards/recovery. Nothing can be written through it. Listens on 127.0.0.1 unless told otherwise; any other address needs --root or --insecure. Ctrl-C or SIGTERM stops it.

    Example: recovery serve --port 8001 --open
    """
    from recovery import serve as srv

    from .common import fail, load_config

    if root and insecure:
        fail("use either --root or --insecure")
    store = Path(store_path if store_path is not None else load_config(config).store.path)
    rule = srv.access_rule(host, root=root, insecure=insecure)
    if print_command:
        typer.echo(srv.datasette_command(store, host, port, root=root))
        note = srv.command_note(store)
        if note:
            typer.echo(f"# {note}", err=True)
        return
    prepared = srv.prepare(store)
    try:
        if prepared.note:
            typer.echo(
                f"recovery: {prepared.note}" if not prepared.immutable else f"note: {store}: {prepared.note}", err=True
            )
        server = srv.start(prepared.path, host, port, root=root, immutable=prepared.immutable)
        typer.echo(f"serving {store} read-only at {server.url} (dashboard: {server.dashboard}); {rule}")
        if server.sign_in:
            typer.echo(f"sign in as root: {server.sign_in}")
        if open_browser:
            import webbrowser

            webbrowser.open(server.dashboard)  # the socket already listens: the browser's request waits for it
        sys.stdout.flush()
        srv.serve(server.ds, server.sock)
    finally:
        prepared.close()
