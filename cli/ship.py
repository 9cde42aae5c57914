"""`recovery ship`: registered in main.py as `app.command()(guarded(ship))`."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .common import ConfigOption, JsonOption


def ship(
    config: ConfigOption = None,
    budget: Annotated[
        Optional[str],
        typer.Option(
            help="Stop after this long (30s, 5m); what is left ships next time. Default: no limit, ship everything.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Ship the events not yet in the fleet store ([fleet] postgres) now, and the read models they changed.

    Each `recovery check` (in a child, after its answer) and `recovery watch` (after each step) already do this within [fleet] budget; run it by hand after PostgreSQL was down a long time, or to see that shipping works. Prints what was shipped and the backlog (events still to ship); a progress bar on a terminal. A second ship adds nothing: events are idempotent on their id.

    Exits 3 with one line (the URL shown without its password) when PostgreSQL cannot be reached.

    Example: recovery ship --budget 5m
    """
    import sys

    from recovery.fleet.ship import ship as run

    from .common import fail, load_config, positive_duration

    seconds = positive_duration("--budget", budget) if budget is not None else None
    conf = load_config(config)
    if conf.fleet.postgres is None:
        fail(f"no [fleet] postgres in {conf.source}: nothing to ship to")
    with _progress(sys.stdout.isatty() and not json_out) as progress:
        result = run(conf, budget=seconds, wait=True, progress=progress)
    if json_out:
        import json

        typer.echo(json.dumps(result.to_dict()))
        return
    models = ", ".join(f"{n} {t.removeprefix('fleet_')}" for t, n in result.models.items() if n)
    typer.echo(
        f"shipped {result.events} new event(s) of host {result.host} to {result.target}"
        f" ({result.sent} sent in {result.rounds} round(s), {result.seconds:.1f}s; up to seq {result.last_seq})"
    )
    if models:
        typer.echo(f"read models: {models}")
    typer.echo(f"backlog: {result.backlog} event(s) not shipped" + (" (the budget ran out)" if result.backlog else ""))


class _progress:
    "A rich progress bar on a terminal (the callback `ship` calls after each round); None elsewhere."

    def __init__(self, shown: bool) -> None:
        self.shown = shown
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if not self.shown:
            return None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        self.task = self.bar.add_task("shipping", total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=max(total, 1))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
