"""`recovery report` and `recovery why`: registered in main.py as `app.command()(guarded(report))` and `app.command()(guarded(why))`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import ConfigOption, SinceOption, WideOption, terminal


def report(
    since: SinceOption = "7d",
    app_name: Annotated[
        Optional[str],
        typer.Option("--app", help="Only this app. Default: every app in the config.", show_default=False),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON: since, until, generated_at, and apps.<name>.")
    ] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print a Markdown document: a heading and tables per app.")
    ] = False,
    config: ConfigOption = None,
    wide: WideOption = False,
) -> None:
    """Availability, incidents, restarts and latency per app over a period.

    Per app: availability, probes and failures, incidents (start, duration, restarts, how they ended, the worker of a cluster it was about), restarts by who made them (check, schedule, operator, pm2; and of which worker), MTTR, MTBF, probe latency p50/p95/p99, and what stands out.

    Availability is the share of observed time the app answered: the time between two checks counts for the state the app was in, gaps over 15 minutes (nobody looking) count for neither, and whole UTC hours are counted (the hour --since falls in, entirely). MTTR is the mean duration of the incidents that ended in the period with a recovery (restarted and verified, or answering again by itself). MTBF is the up time in the period divided by the number of incidents that began in it (none: not shown). Latency percentiles are over check probes that got an answer. "What stands out" compares with the period of the same length just before, e.g. restarts doubled.

    Example: recovery report --since 7d --app web --markdown > report.md
    """
    import datetime as dt
    import json

    from recovery.render import report_markdown, report_text
    from recovery.report import build_report, open_store

    from .common import fail, load_config, since_bound, store_note

    if json_out and markdown:
        fail("use either --json or --markdown")
    now = dt.datetime.now(dt.UTC)
    since_ts = since_bound(since, now)
    conf = load_config(config)
    names = [a.name for a in conf.apps]
    if app_name is not None:
        if app_name not in names:
            fail(f"--app {app_name!r} is not in {conf.source} (apps: {', '.join(names)})")
        names = [app_name]
    store = open_store(conf.store.path, conf.store.busy_timeout)
    try:
        store_note(store)
        result = build_report(store, names, since_ts, now)
    finally:
        store.close()
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
    elif markdown:
        typer.echo(report_markdown(result), nl=False)
    else:
        typer.echo(report_text(result, width=terminal(wide)[0]))


def why(
    name: Annotated[str, typer.Argument(help="The app's name, as in the config.", show_default=False)],
    incident: Annotated[
        Optional[int],
        typer.Option(
            help="The incident's id (#N in `recovery status` and `recovery report`). Default: the app's last.",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print JSON: the incident, its events with offset_s and facts, and how it ended."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """The timeline of an app's last incident, or of incident N.

    Every event of the app from the check run that opened the incident to the one that closed it (or the newest, while it is open), in order, with its time from the incident's start and its key facts (what the policy decided and why, probe errors and latencies, restarts, verification; in cluster mode the worker by pm_id and pid). The decision that opened the incident is +0.0s; the failed probes that led to it come just before. Ends with how it ended: outcome, duration, restarts, or still open. Exit 0, also when the app has had no incident; exit 3 for an unknown incident id.

    Example: recovery why web --incident 12
    """
    import json

    from recovery.render import timeline_dict, timeline_text
    from recovery.report import open_store
    from recovery.report import why as timeline

    from .common import fail, load_config, store_note

    conf = load_config(config)
    store = open_store(conf.store.path, conf.store.busy_timeout)
    try:
        store_note(store)
        result = timeline(store, name, incident)
    finally:
        store.close()
    if result is None:
        if conf.app(name) is None:
            fail(f"app {name!r} is not in {conf.source} (apps: {', '.join(a.name for a in conf.apps)})")
        if json_out:
            typer.echo(json.dumps({"app": name, "incident": None, "events": [], "ending": None}))
        else:
            typer.echo(f"{name}: no incident recorded")
        return
    typer.echo(json.dumps(timeline_dict(result)) if json_out else timeline_text(result, width=terminal()[0]))
