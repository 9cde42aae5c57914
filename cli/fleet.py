"""`recovery fleet status|report|verify`: the views over every host's shipped history, from the
`[fleet] postgres` store. Registered in main.py as `app.add_typer(fleet_app, name="fleet")`."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .common import ConfigOption, JsonOption, SinceOption, WideOption, fail, guarded, load_config, terminal

fleet_app = typer.Typer(
    rich_markup_mode=None,
    help="Every host's apps, reports and hash chains, from the fleet store on PostgreSQL (the config's fleet.postgres).",
    no_args_is_help=True,
)


def _url(config: Any) -> str:
    conf = load_config(config)
    if conf.fleet.postgres is None:
        fail(f'no fleet store configured: add [fleet] postgres = "postgresql://..." to {conf.source}')
    return str(conf.fleet.postgres)


@fleet_app.command()
@guarded
def status(
    config: ConfigOption = None,
    json_out: JsonOption = False,
    wide: WideOption = False,
    stale_after: Annotated[
        str,
        typer.Option(
            help="Flag a host STALE when its newest shipped check is older than this (is the host, its cron or its shipping down?)."
        ),
    ] = "15m",
) -> None:
    """One row per host and app: state and since when, last check, latency, PM2's view, open incident.

    Read from the read models each host ships (fleet_app_state), so it answers as fast for a hundred hosts as for one. A host whose newest shipped check is older than --stale-after is flagged STALE; a host that shipped but has no app is listed as NO APPS. Exit codes as `recovery status`, for the worst app of every host; a STALE host, one without apps, or no host at all counts as UNKNOWN (3).

    Example: recovery fleet status --json
    """
    import datetime as dt
    import json

    from recovery.fleet.views import fleet_status, opened, status_text

    from .common import positive_duration

    seconds = positive_duration("--stale-after", stale_after)
    url = _url(config)
    now = dt.datetime.now(dt.UTC)
    with opened(url) as conn:
        result = fleet_status(conn, now, seconds)
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
    else:
        typer.echo(status_text(result, now, width=terminal(wide)[0]))
    raise typer.Exit(result.code)


@fleet_app.command()
@guarded
def report(
    since: SinceOption = "7d",
    config: ConfigOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON: since, until, generated_at, and hosts.<host>.apps.<app>.")
    ] = False,
    wide: WideOption = False,
) -> None:
    """`recovery report` across hosts: per host and app availability (and worst), incidents, restarts by who, MTTR, MTBF, latency p50/p95/p99, what stands out.

    The definitions are `recovery report`'s. Read from the rollups, incidents and restarts each host ships (never the raw events), with whole UTC hours at the period's edges: the hour --since falls in counts entirely. Error templates and likely causes stay on each host: `recovery report` there.

    Example: recovery fleet report --since 7d --json
    """
    import datetime as dt
    import json

    from recovery.fleet.views import fleet_report, opened, report_text

    from .common import since_bound

    now = dt.datetime.now(dt.UTC)
    since_ts = since_bound(since, now)
    url = _url(config)
    with opened(url) as conn:
        result = fleet_report(conn, since_ts, now=now)
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
    else:
        typer.echo(report_text(result, width=terminal(wide)[0]))


@fleet_app.command()
@guarded
def verify(
    config: ConfigOption = None,
    json_out: JsonOption = False,
    host: Annotated[
        Optional[list[str]],
        typer.Option("--host", help="Only this host's chain (repeatable). Default: every host.", show_default=False),
    ] = None,
) -> None:
    """Check every host's shipped hash chain centrally, as `recovery verify` does on the host.

    Each event's hash is recomputed over fleet_events in seq order (streamed, never loaded whole). Exits 0 when every chain holds; exits 2 with one line per bad event, naming the host, the seq and the event id: an event edited (its contents do not match its hash), a link broken (its prev_hash is not its predecessor's hash), or events missing (a gap in seq, also before the first or after the last seq the host shipped).

    Example: recovery fleet verify --host web-1
    """
    import json

    from recovery.fleet.views import fleet_verify, opened, verify_lines

    url = _url(config)
    with opened(url) as conn:
        result = fleet_verify(conn, hosts=host)
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
    elif result.ok:
        n = sum(h.events for h in result.hosts)
        typer.echo(f"OK: {len(result.hosts)} host(s), {n} events, every hash chain intact")
    for line in verify_lines(result):
        typer.echo(f"recovery: {line}", err=True)
    if not result.ok:
        raise typer.Exit(2)
