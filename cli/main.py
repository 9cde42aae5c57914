"""The `recovery` command line: parse options, call the `recovery` package, format the answer.

Domain modules are imported inside each command so that `recovery check` loads only what it uses.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from .common import (  # shared by every command module
    UNKNOWN,
    ConfigOption,
    JsonOption,
    WideOption,
    configured_app,
    fail,
    guarded,
    load_config,
    open_store,
    positive_duration,
    store_note,
    terminal,
)

app = typer.Typer(
    rich_markup_mode=None,
    name="recovery",
    help="Self-healing watchdog for Node.js apps under PM2: probe, restart, verify, and remember every step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(rich_markup_mode=None, help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"recovery {version('recovery')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", help="Print the version and exit.", callback=_version, is_eager=True),
    ] = False,
) -> None:
    """Self-healing watchdog for Node.js apps under PM2: probe, restart, verify, and remember every step."""


@app.command()
@guarded
def check(
    config: ConfigOption = None,
    json_out: JsonOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Probe and decide, but restart nothing (the decision is recorded).")
    ] = False,
    only: Annotated[
        Optional[list[str]], typer.Option("--app", help="Check only this app (repeatable).", show_default=False)
    ] = None,
    trigger: Annotated[
        str,
        typer.Option(
            help="What started this run, recorded in check.started: cron, watch or manual.", envvar="RECOVERY_TRIGGER"
        ),
    ] = "manual",
    deadline: Annotated[
        Optional[str],
        typer.Option(
            help="End the whole run by then, restart and verification included (e.g. 55s under Nagios's 60s"
            " plugin timeout); what it cuts short is said and recorded. Default: no limit.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Probe every app, restart a hung one through PM2, verify it, and record each step.

    Exit codes follow the Nagios plugin convention: 0 OK, 1 WARNING (was down, recovered), 2 CRITICAL (down and not recovered, stopped, unknown to PM2), 3 UNKNOWN (bad config, unusable store, pm2 not found).

    Example: recovery check --config /etc/recovery.toml
    """
    from recovery.check import Checker
    from recovery.errors import RecoveryError

    try:
        cfg = load_config(config)
        for name in only or []:
            configured_app(cfg, name, flag="--app ")
        if trigger not in ("cron", "watch", "manual"):
            raise RecoveryError(f"--trigger {trigger!r}: use cron, watch, manual or schedule")
        seconds = deadline_seconds(deadline) if deadline is not None else None
        result = Checker(cfg, trigger=trigger, dry_run=dry_run, apps=only, deadline=seconds).run()
    except RecoveryError as exc:
        plugin_unknown(str(exc), json_out)
    _print_result(result, json_out, after=cfg, fast_exit=True)


@app.command(hidden=True)
@guarded
def publish(config: ConfigOption = None) -> None:
    """Write the metrics textfile and ship new events to the fleet store, as configured: what each
    `recovery check` starts in a detached child once it has answered (recovery/publish.py).

    Example: recovery publish --config /etc/recovery/recovery.toml
    """
    from recovery.publish import publish as run

    problems = run(load_config(config))
    for problem in problems:
        typer.echo(problem, err=True)
    raise typer.Exit(1 if problems else 0)


def deadline_seconds(text: str) -> float:
    """`--deadline`'s seconds; RecoveryError when it is not a duration of at least 5s."""
    from recovery.config import parse_duration
    from recovery.errors import RecoveryError

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise RecoveryError(f"--deadline {text!r}: {exc}") from None
    if seconds < 5:
        raise RecoveryError(f"--deadline {text!r}: at least 5s (the run keeps 2s in hand to record and answer)")
    return seconds


def plugin_unknown(message: str, json_out: bool = False) -> NoReturn:
    """A check that could not run: the Nagios status line on stdout (or the JSON), the one-line
    error on stderr, exit 3."""
    if json_out:
        import json

        typer.echo(json.dumps({"code": UNKNOWN, "status": "UNKNOWN", "apps": [], "problems": [message]}))
    else:
        from recovery.check import nagios_line

        typer.echo(nagios_line(UNKNOWN, message))
    fail(message)


AppArgument = Annotated[str, typer.Argument(help="The app's name, as in the config.", show_default=False)]


@app.command()
@guarded
def restart(
    name: AppArgument,
    reason: Annotated[
        str, typer.Option(help="Why: recorded with the restart and shown in reports.")
    ] = "operator request",
    by: Annotated[str, typer.Option(help="Who asks: operator, or schedule (a nightly cron line).")] = "operator",
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Restart an app through PM2 now, recorded with who and why, and verified like any other.

    Use it instead of a bare `pm2 restart`, e.g. in a nightly cron line, so the record knows who restarted the app. Exit 0 when the app answers again, 2 when it does not.

    Example: recovery restart web --by schedule --reason nightly
    """
    from recovery.check import Checker

    if by not in ("operator", "schedule"):
        fail(f"--by {by!r}: use operator or schedule")
    conf = load_config(config)
    configured_app(conf, name)
    result = Checker(conf, trigger=by, apps=[name]).restart_now(name, by=by, reason=reason)
    _print_result(result, json_out)


def _print_result(result: Any, json_out: bool, after: Any = None, fast_exit: bool = False) -> NoReturn:
    """Print a check's result and exit with its code; with `after` (the config), first start what
    follows a check (recovery/publish.py: metrics textfile, fleet shipping) in a detached child.

    `fast_exit` (the check, run every few minutes): main(), the console script, then flushes the
    output and leaves through os._exit (never in-process callers such as tests' CliRunner),
    skipping the interpreter's teardown of every loaded module (~50 ms on each healthy check,
    measured beside a normal exit). Safe there: the run has closed its store (every event
    committed), no thread is left, and nothing is registered with atexit."""
    if json_out:
        import json

        typer.echo(json.dumps(result.to_dict()))
    else:
        for line in result.lines():
            typer.echo(line)
    if after is not None and after.publishes:
        from recovery.publish import spawn

        spawn(after)
    if fast_exit:
        global _FAST_EXIT
        _FAST_EXIT = True
    raise typer.Exit(result.code)


_FAST_EXIT = False  # set by a check that printed its result: main() leaves through os._exit


@app.command()
@guarded
def pause(
    name: AppArgument,
    duration: Annotated[
        str, typer.Option("--for", help="How long: 15m, 1h. Recovery resumes by itself afterwards.")
    ] = "15m",
    reason: Annotated[str, typer.Option(help="Why, e.g. deploy.")] = "maintenance",
    config: ConfigOption = None,
) -> None:
    """Pause recovery for an app (a deploy): probes are still recorded, nothing is restarted.

    While paused, `recovery check` exits 0 with PAUSED in the app's line.

    Example: recovery pause web --for 15m --reason deploy
    """
    from recovery.maintenance import pause as do_pause

    seconds = positive_duration("--for", duration)
    conf = load_config(config)
    configured_app(conf, name)
    with open_store(conf) as store:
        typer.echo(do_pause(store, name, seconds=seconds, reason=reason).message)


@app.command()
@guarded
def resume(
    name: AppArgument,
    reason: Annotated[str, typer.Option(help="Why, recorded with the event.")] = "operator resume",
    config: ConfigOption = None,
) -> None:
    """End a pause, and lift a restart-loop suspension, so that the app is restarted again when it hangs.

    Example: recovery resume web
    """
    from recovery.maintenance import resume as do_resume

    conf = load_config(config)
    configured_app(conf, name)
    with open_store(conf) as store:
        typer.echo(do_resume(store, name, reason=reason).message)


@app.command()
@guarded
def status(config: ConfigOption = None, json_out: JsonOption = False, wide: WideOption = False) -> None:
    """One row per app: state and since when, last check, latency, PM2's view, restarts in 24h, open incident.

    In cluster mode WORKERS shows the workers' health, e.g. `3/4 (#2 hung)`: online and not hung of all, then the failed ones by pm_id (`--json`: workers, with each worker's pid, status, memory, CPU and PM2's own restarts of it in 24h).

    A last check older than twice the usual interval is flagged STALE (is cron still running?). Exit codes as `recovery check`, for the worst app; STALE counts as UNKNOWN.

    The table fits the terminal ($COLUMNS): the least useful columns (PID, WORKERS, PM2, CPU, ...) are left out first; --wide shows all. States are coloured on a terminal, unless $NO_COLOR is set.

    With [fleet] postgres, a last line says how many events are not shipped yet, when the last ship was, and since when shipping fails and why (`--json`: fleet).

    Example: recovery status --json
    """
    from recovery.fleet.ship import backlog
    from recovery.reading import open_folded
    from recovery.render import status_table
    from recovery.status import status as app_status

    conf = load_config(config)
    with open_folded(conf.store.path, busy_timeout=conf.store.busy_timeout) as store:
        store_note(store)
        rows = app_status(store, conf)
        fleet = backlog(store.conn, conf)
    if json_out:
        import json

        out: dict[str, Any] = {"apps": [r.to_dict() for r in rows], "code": max((r.code for r in rows), default=0)}
        if fleet is not None:
            out["fleet"] = fleet.to_dict()
        typer.echo(json.dumps(out))
    else:
        from recovery.render import fleet_line

        width, colour = terminal(wide)
        typer.echo(status_table(rows, width=width, colour=colour))
        if fleet is not None:
            typer.echo(fleet_line(fleet, width=width))
    raise typer.Exit(max((r.code for r in rows), default=0))


@app.command()
@guarded
def rebuild(config: ConfigOption = None) -> None:
    """Drop the projections (app_state, incidents, restarts, rollups) and fold every event again.

    They are derived from `events`; the answers are the same before and after.

    Example: recovery rebuild
    """
    import time

    from recovery import projections

    conf = load_config(config)
    start = time.perf_counter()
    with open_store(conf) as store:
        n = projections.rebuild(store.conn)
    typer.echo(f"rebuilt the projections from {n} events in {time.perf_counter() - start:.1f}s")


@app.command()
@guarded
def events(
    config: ConfigOption = None,
    since: Annotated[
        Optional[str],
        typer.Option(help="Only events newer than this: a duration (1h, 7d) or an ISO time.", show_default=False),
    ] = None,
    app_name: Annotated[
        Optional[str], typer.Option("--app", help="Only this app's events.", show_default=False)
    ] = None,
    types: Annotated[
        Optional[list[str]],
        typer.Option(
            "--type",
            help="Only this event type, e.g. probe.failed (repeatable; 'restart.*' matches a family).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many (the newest). 0 for all.")] = 100,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing events as they arrive (Ctrl-C stops).")
    ] = False,
    expand: Annotated[
        bool,
        typer.Option(
            "--expand",
            help="Show each probe of a probe.batched event (recovery watch's steady minutes) as a probe.succeeded"
            " at its own time; --limit counts stored events.",
        ),
    ] = False,
) -> None:
    """Show the audit trail, newest last.

    Example: recovery events --since 1h --app web --type probe.failed
    """
    import json

    from recovery.batching import expanded, query_types
    from recovery.events import TYPES
    from recovery.render import format_event
    from recovery.report import since_to_ts

    conf = load_config(config)
    try:
        since_ts = since_to_ts(since) if since else None
    except ValueError as exc:
        fail(f"--since {since!r}: {exc}")
    if limit < 0:
        fail("--limit must be 0 or more")
    wanted = _expand_types(types or [], TYPES)
    with open_store(conf, readonly=True) as store:
        store_note(store)
        found = _tail(
            store, follow, app=app_name, types=query_types(wanted, expand), since=since_ts, limit=limit or None
        )
        for e in expanded(found) if expand else found:
            typer.echo(json.dumps(e.to_dict(), sort_keys=True) if json_out else format_event(e))


def _tail(store: Any, follow: bool, *, limit: int | None, **where: Any) -> Iterator[Any]:
    """The newest `limit` matching events; with `follow`, then each new one as it arrives, until Ctrl-C."""
    import time

    from recovery.segments import query_all

    rows = query_all(store, **where, limit=limit)  # reaching back before the store: its segments too
    yield from rows
    if not follow:
        return
    last = rows[-1].seq if rows else store.last_seq()
    try:
        while True:
            for e in store.query(**where, after_seq=last):
                yield e
                last = e.seq or last
            sys.stdout.flush()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def _expand_types(types: list[str], known: dict[str, str]) -> list[str]:
    out: list[str] = []
    for t in types:
        if t.endswith(".*") or t.endswith("*"):
            prefix = t.rstrip("*")
            matches = [k for k in known if k.startswith(prefix)]
            if not matches:
                fail(f"--type {t!r} matches no event type (known: {', '.join(known)})")
            out.extend(matches)
        elif t in known or t.startswith("log."):
            out.append(t)
        else:
            fail(f"--type {t!r} is not an event type (known: {', '.join(known)})")
    return out


@app.command()
@guarded
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the sample config.")] = Path("recovery.toml"),
    url: Annotated[str, typer.Option(help="The URL to probe.")] = "http://127.0.0.1:3000/",
    name: Annotated[str, typer.Option(help="The PM2 process name.")] = "web",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented sample configuration.

    Example: recovery init --name web --url http://127.0.0.1:3000/
    """
    from recovery import config as cfg

    if path.exists() and not force:
        fail(f"{path} exists; not overwriting it (use --force, or edit it and run `recovery config validate`)", 1)
    text = cfg.sample(url=url, name=name)
    try:
        cfg.write_sample(path, text)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", 1)
    problems = cfg.check_file(path)[1]
    if problems:
        fail(f"wrote {path}, but it does not validate: {problems[0]}", 1)
    typer.echo(f"wrote {path}; check it with: recovery config validate {path}")


@config_app.command("path")
@guarded
def config_path(config: ConfigOption = None) -> None:
    """Print the config file the commands use and why that one (exit 3 when there is none).

    The order: --config, $RECOVERY_CONFIG, ./recovery.toml, $XDG_CONFIG_HOME/recovery/recovery.toml
    (~/.config/recovery/recovery.toml), /etc/recovery/recovery.toml.

    Example: cd /; recovery config path
    """
    from recovery import config as cfg

    choice = cfg.locate_config(config)
    if not choice.found:
        looked = ", ".join(str(p) for p in choice.tried)
        fail(f"no config file found; looked at {looked} (pass --config, set RECOVERY_CONFIG, or run `recovery init`)")
    exists = "" if choice.path.is_file() else " (it does not exist)"
    typer.echo(f"{choice.path}: {choice.reason}{exists}")
    if not choice.path.is_file():
        raise typer.Exit(UNKNOWN)


@config_app.command("validate")
@guarded
def config_validate(
    path: Annotated[
        Optional[Path],
        typer.Argument(
            help="The file to check. Default: $RECOVERY_CONFIG, else the first of ./recovery.toml, ~/.config/recovery/recovery.toml, /etc/recovery/recovery.toml (`recovery config path` says which).",
            show_default=False,
        ),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Also try each app's URL once and say whether it answered (status, latency) or how it"
            " failed; exit 2 if any failed.",
        ),
    ] = False,
) -> None:
    """Check a config file and name the key and line of every mistake (exit 3 if any).

    With --probe, each app's URL is tried once, as a check would (exit 2 if any does not answer):
    a wrong URL is found before it pages anyone.

    Example: recovery config validate /etc/recovery.toml --probe
    """
    from recovery import config as cfg

    target = cfg.find_config_path(path)
    conf, problems = cfg.check_file(target)
    for p in problems:
        typer.echo(str(p), err=True)
    if problems:
        raise typer.Exit(UNKNOWN)
    assert conf is not None
    from recovery import alerts

    channels = alerts.channels(conf)
    unknown = [(n, url) for n, url in enumerate(channels, 1) if not alerts.known(url)]  # imports apprise
    for n, url in unknown:
        typer.echo(
            f"{target}: alert channel #{n} {alerts.redact(url)}: apprise does not understand this URL"
            " (see https://github.com/caronc/apprise/wiki)",
            err=True,
        )
    if unknown:
        raise typer.Exit(UNKNOWN)
    names = ", ".join(a.name for a in conf.apps)
    alerting = f"; {len(channels)} alert channel(s)" if channels else ""
    typer.echo(f"OK {target}: {len(conf.apps)} app(s): {names}; store {conf.store.path}{alerting}")
    if probe:
        from recovery.check import CRITICAL, try_urls
        from recovery.urls import shown_url

        failed = 0
        for app_conf, a in try_urls(conf):
            if a.ok:
                typer.echo(f"{app_conf.name} {shown_url(app_conf.url)} answered {a.status} in {a.latency_ms:.0f}ms")
            else:
                failed += 1
                detail = f" ({a.detail})" if a.detail else ""
                typer.echo(f"{app_conf.name} {shown_url(app_conf.url)} did not answer: {a.error}{detail}", err=True)
        if failed:
            raise typer.Exit(CRITICAL)


@app.command()
@guarded
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the demo's PM2 daemon and app running afterwards.")
    ] = False,
    workdir: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder for the demo's PM2_HOME, config and store. Default: a new temp folder.", show_default=False
        ),
    ] = None,
) -> None:
    """Run the whole story on a demo app under its own PM2.

    The app is checked while healthy, made to hang, detected, restarted, verified, and the event trail is shown. Needs node and pm2 ($PM2 or on PATH); uses its own PM2_HOME, so no other PM2 is touched.

    Example: recovery demo
    """
    from recovery.demo import run_demo

    raise typer.Exit(run_demo(workdir=workdir, keep=keep, echo=typer.echo))


# Command modules of their own; they use `fail` and `load_config` above.
from .alerts import alert_app  # noqa: E402
from .errors import errors_app, ingest  # noqa: E402
from .fleet import fleet_app  # noqa: E402
from .man import man  # noqa: E402
from .metrics import metrics  # noqa: E402
from .replay import replay  # noqa: E402
from .reports import report, why  # noqa: E402
from .serve import serve  # noqa: E402
from .setup import setup  # noqa: E402
from .ship import ship  # noqa: E402
from .store import archive, verify  # noqa: E402
from .watch import watch  # noqa: E402

app.command()(guarded(report))
app.command()(guarded(why))
app.command()(guarded(replay))
app.command()(guarded(ingest))
app.add_typer(errors_app, name="errors")
app.add_typer(alert_app, name="alert")
app.add_typer(fleet_app, name="fleet")
app.command(name="watch")(guarded(watch))
app.command(name="serve")(guarded(serve))
app.command()(guarded(verify))
app.command()(guarded(archive))
app.command()(guarded(man))
app.command()(guarded(ship))
app.command()(guarded(metrics))
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(guarded(setup))


def _only(name: str) -> typer.Typer | None:
    """A group holding just the command `name`: Typer builds the Click tree of every registered
    command on each start, and `recovery check` runs every few minutes on small servers."""
    info = next((c for c in app.registered_commands if (c.name or getattr(c.callback, "__name__", None)) == name), None)
    if info is None:
        return None
    single = typer.Typer(
        rich_markup_mode=None,
        name="recovery",
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    single.callback()(lambda: None)  # a group, so that `recovery check ...` still names its command
    single.registered_commands.append(info)
    return single


def main() -> None:
    """Console-script entry point; every command is `guarded`, so domain errors are one line there.
    A usage error (an unknown option, a bad value) exits 3, UNKNOWN, as Nagios wants of a plugin;
    for `recovery check` its status line says so on stdout too."""
    # typer (pinned < 0.29) carries its own click as typer._click; BadParameter is its UsageError's child
    from typer._click.exceptions import UsageError

    UsageError.exit_code = UNKNOWN  # click's default, 2, would read as CRITICAL
    args = sys.argv[1:]
    target = (_only(args[0]) if args and args[0] == "check" else None) or app
    try:
        if target is app:
            target()
            return
        try:
            code = target(standalone_mode=False)
        except UsageError as exc:
            from recovery.check import nagios_line

            typer.echo(nagios_line(UNKNOWN, exc.format_message()))
            exc.show()
            sys.exit(UNKNOWN)
        except typer.Abort:
            sys.exit(130)
        if _FAST_EXIT:
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)
        sys.exit(code or 0)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
