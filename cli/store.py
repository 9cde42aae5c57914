"""`recovery verify` and `recovery archive`: registered in main.py as `app.command()(guarded(verify))` and
`app.command()(guarded(archive))`."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import ConfigOption, JsonOption


def verify(
    config: ConfigOption = None,
    full: Annotated[
        bool, typer.Option("--full", help="SQLite's integrity_check instead of the faster quick_check.")
    ] = False,
    all_segments: Annotated[
        bool,
        typer.Option("--all", help="Check every archived segment too, the links between them, and into the store."),
    ] = False,
) -> None:
    """Check the event store's file (SQLite's quick_check) and its hash chain.

    Exits 2 with one line per problem: pages SQLite finds damaged, the first event that was edited, deleted or inserted out of band, and with --all a segment missing, damaged or not linking to the one before it.

    Example: recovery verify --all
    """
    from recovery.segments import verify_record
    from recovery.store import IMMUTABLE_NOTE

    from .common import load_config

    conf = load_config(config)
    path = conf.store.path
    result = verify_record(path, full=full, all_segments=all_segments, busy_timeout=conf.store.busy_timeout)
    if result.immutable:
        typer.echo(f"note: {path}: {IMMUTABLE_NOTE}", err=True)
    if not result.ok:
        for line in result.problems or []:
            typer.echo(f"recovery: {line}", err=True)
        raise typer.Exit(2)
    check = "integrity_check" if full else "quick_check"
    segs = ""
    if result.segments is not None:
        segs = f", {len(result.segments)} segment(s) linked"
    elif result.unchecked:
        segs = f"; {result.unchecked} segment(s) not checked (use --all)"
    typer.echo(f"OK {path}: file sound ({check}), hash chain intact, {result.events} events{segs}")


def archive(
    before: Annotated[
        str,
        typer.Option(
            help="Archive the whole months that ended before this: a duration back from now (90d) or an ISO date."
        ),
    ] = "90d",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would move, and move nothing.")] = False,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Move old raw events into sealed monthly segment files beside the store (recovery.2026-08.segment.db).

    Only whole months are moved, oldest first. The hash chain continues across segments (`recovery verify --all` checks it), the move is recorded as a store.archived event, and rollups, incidents, restarts and error templates stay in the store. `recovery serve` shows the segments too.

    Example: recovery archive --before 90d --dry-run
    """
    import datetime as dt
    import json

    from recovery.archive import archive as do_archive
    from recovery.projections import parse_ts

    from .common import fail, load_config, open_store, since_bound

    now = dt.datetime.now(dt.UTC)
    cut = parse_ts(since_bound(before, now, "--before"))
    conf = load_config(config)
    if not conf.store.path.exists():
        fail(f"no event store at {conf.store.path} (a `recovery check` run creates it)")
    with open_store(conf) as store:
        result = do_archive(store, cut, dry_run=dry_run, now=now)
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
        return
    for line in result.lines():
        typer.echo(line)
