"""`recovery ingest` and `recovery errors`: registered in main.py as `app.command()(guarded(ingest))`
and `app.add_typer(errors_app, name="errors")`.

Only typer and the standard library are imported here; `recovery.*` inside each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recovery.units import shown_ts

from .common import ConfigOption, JsonOption, guarded

AppOption = Annotated[Optional[str], typer.Option("--app", help="Only this app.", show_default=False)]


# -- recovery ingest ---------------------------------------------------------------------------


def ingest(
    app_name: Annotated[
        Optional[str],
        typer.Option("--app", help="Only this app. Default: every app in the config.", show_default=False),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar (there is none off a terminal).")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Read every new byte of each app's PM2 logs into the store, grouped into error templates.

    The log files are the app's `logs = [...]` in the config, else the paths `pm2 jlist` gives (pm_err_log_path, pm_out_log_path). Each line is read once: the next run starts where this one stopped, across rotations. Everything new is read in one run, 16 MB at a time, each part committed: an interrupted run keeps what it committed and the next one resumes there. A progress bar on a terminal; then one line per app: bytes, lines, entries, new templates, warnings, seconds. Exit 0; exit 3 with one line when the config, the store or pm2 cannot be used.

    Example: recovery ingest --app web
    """
    import sys
    import time

    from recovery import logs

    from .common import configured_app, load_config, open_store

    conf = load_config(config)
    apps = [configured_app(conf, app_name, flag="--app ")] if app_name is not None else list(conf.apps)
    files = logs.log_files(apps, conf.pm2.bin)  # before the store opens: pm2 trouble leaves it untouched
    with open_store(conf) as store:
        for name, paths in files.items():
            if not paths:
                typer.echo(f"{name}: no log files (not in `pm2 jlist`, and no logs = [...] in the config)")
                continue
            t0 = time.monotonic()
            if quiet or not sys.stdout.isatty():
                result = logs.ingest_all(store, name, paths)
            else:
                result = _with_bar(store, name, paths)
            typer.echo(_ingest_text(result, len(paths), time.monotonic() - t0))


def _with_bar(store: Any, name: str, paths: list[str]) -> Any:
    """`ingest_all` under a rich progress bar (rich comes with typer; imported only here)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from recovery import logs

    total = logs.pending_bytes(store, paths)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(name, total=total or None)

        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            bar.update(task, completed=done, total=max(total, done) or None)

        return logs.ingest_all(store, name, paths, progress=advance)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _ingest_text(result: Any, files: int, seconds: float) -> str:
    nbytes = sum(f.bytes for f in result.files)
    parts = [
        f"{nbytes / 1e6:,.1f} MB" if nbytes >= 100_000 else _plural(nbytes, "byte", "bytes"),
        _plural(result.lines, "line", "lines"),
        _plural(result.entries, "entry", "entries"),
        _plural(len(result.new_templates), "new template", "new templates"),
        _plural(len(result.warnings), "warning", "warnings"),
    ]
    line = f"{result.app}: " + ", ".join(parts) + f" from {_plural(files, 'file', 'files')} in {seconds:.1f}s"
    if not result.complete:
        line += " (stopped before the end: see the warnings)"
    return "\n".join([line, *(f"  warning: {w.path}: {w.message}" for w in result.warnings)])


# -- recovery errors ---------------------------------------------------------------------------

errors_app = typer.Typer(
    rich_markup_mode=None,
    help="Error templates mined from the apps' logs (run `recovery ingest` first).",
    invoke_without_command=True,
)


def _reading(config: Path | None, app_name: str | None = None) -> Any:
    """The store, read-only, for one command; `app_name` must be in the config."""
    from .common import configured_app, load_config, open_store

    conf = load_config(config)
    if app_name is not None:
        configured_app(conf, app_name, flag="--app ")
    return open_store(conf, readonly=True)


@errors_app.callback(invoke_without_command=True)
@guarded
def errors(
    ctx: typer.Context,
    since: Annotated[
        Optional[str],
        typer.Option(
            help="The window: a duration back from now (1h, 24h, 7d) or an ISO time; it ends now. Default: 24h, or 30d with --around-incidents.",
            show_default=False,
        ),
    ] = None,
    app_name: AppOption = None,
    top: Annotated[int, typer.Option(help="At most this many templates.")] = 20,
    around_incidents: Annotated[
        bool,
        typer.Option(
            "--around-incidents", help="Templates seen in the --minutes before incidents, against their base rate."
        ),
    ] = False,
    minutes: Annotated[
        float, typer.Option(help="With --around-incidents: how many minutes before each incident count.")
    ] = 10,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: a list with template_id, template, app, count, first_seen, last_seen, example, previous_count, change; with --around-incidents an object with incidents and templates.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Error templates ranked by count in a window, with the change against the window before.

    Per template and app: the count, first and last seen in the window, the count in the previous window of the same length, and one example. With --around-incidents: the templates seen in the N minutes before the incidents of the window, how many incidents each preceded, and how much more often than elsewhere (lift). Subcommands: `show TEMPLATE_ID`, `search TEXT`, `prune`.

    Examples: recovery errors --since 24h --app web --top 10;  recovery errors --around-incidents --since 7d
    """
    if ctx.invoked_subcommand is not None:
        return
    import datetime as dt
    import json

    from recovery.events import parse_ts
    from recovery.logs import queries

    from .common import fail, since_bound

    if top < 1:
        fail("--top must be 1 or more")
    if not 0 < minutes <= 24 * 60:
        fail(f"--minutes {minutes:g}: must be more than 0 and at most 1440")
    now = dt.datetime.now(dt.UTC)
    since_ts = since_bound(since or ("30d" if around_incidents else "24h"), now)
    with _reading(config, app_name) as store:
        if around_incidents:
            found = queries.around(store, parse_ts(since_ts), now, minutes=minutes, app=app_name, top=top)
            typer.echo(json.dumps(found) if json_out else _around_text(found, app_name))
            return
        rows = queries.ranked(store, parse_ts(since_ts), now, app=app_name, top=top)
    typer.echo(json.dumps(rows) if json_out else _ranked_text(rows, since_ts, app_name))


def _ranked_text(rows: list[dict[str, Any]], since_ts: str, app_name: str | None) -> str:
    if not rows:
        return f"no errors since {since_ts}" + (f" for {app_name}" if app_name else "")
    lines = []
    for r in rows:
        lines.append(
            f"{r['template_id']}  {r['app']}  {r['count']}×  {_change(r['count'], r['previous_count'])}"
            f"  first {shown_ts(r['first_seen'])}  last {shown_ts(r['last_seen'])}"
        )
        lines.append(f"    {_template(r)}")
        if r.get("example"):
            lines.append(f"    e.g. {_short(r['example'])}")
        if r.get("stack_top"):
            lines.append(f"         {_short(r['stack_top'])}")
    return "\n".join(lines)


def _around_text(found: dict[str, Any], app_name: str | None) -> str:
    n, m = len(found["incidents"]), found["minutes"]
    who = f" of {app_name}" if app_name else ""
    head = f"{n} incident{'' if n == 1 else 's'}{who} since {found['since']}"
    if found.get("pruned_before") and found["pruned_before"] > found["since"]:
        head += f" (raw entries before {found['pruned_before']} were pruned: older incidents left out)"
    if not n:
        return head + "; nothing to compare"
    if not found["templates"]:
        return head + f"; no error entries in the {m:g} minutes before any of them"
    lines = [head + f"; error templates in the {m:g} minutes before them, against their rate elsewhere:"]
    for r in found["templates"]:
        lift = (
            "never seen elsewhere" if r["lift"] is None else f"{r['lift']:g}× its base rate of {r['base_per_hour']:g}/h"
        )
        line = (
            f"{r['template_id']}  {r['app']}  before {r['incidents_preceded']} of {r['incidents']} incidents"
            f"  {r['before_incidents']}×  ({lift})"
        )
        if r["appeared_before_incident"] is not None:
            line += f"  first seen {shown_ts(r['first_seen'])}, just before incident {r['appeared_before_incident']}"
        if r.get("bounded"):
            line += f"  ({r['bounded']} timed by an upper bound: no timestamp in the line)"
        lines.append(line)
        lines.append(f"    {_template(r)}")
        if r.get("example"):
            lines.append(f"    e.g. {_short(r['example'])}")
    return "\n".join(lines)


def _change(count: int, previous: int) -> str:
    if previous == 0:
        return "(new)"
    pct = (count - previous) * 100 / previous
    return f"({count - previous:+d}, {pct:+.0f}% vs previous window)"


def _when(entry: dict[str, Any]) -> str:
    """An entry's time; for a line without a timestamp of its own, the bounds it is known within."""
    if not entry.get("ts_bounded"):
        return shown_ts(entry["ts"], ms=True)
    if entry.get("ts_from"):
        return f"between {shown_ts(entry['ts_from'], ms=True)} and {shown_ts(entry['ts'], ms=True)}"
    return f"≤ {shown_ts(entry['ts'], ms=True)}"


TEMPLATE_WIDTH = 200  # a template longer than this is cut in lists; `errors show` prints it whole


def _template(r: dict[str, Any]) -> str:
    text = " ".join(str(r["template"] or "").split())
    if len(text) <= TEMPLATE_WIDTH:
        return text
    return f"{text[: TEMPLATE_WIDTH - 1]}… ({len(text)} characters; `recovery errors show {r['template_id']}` prints it whole)"


def _short(text: str) -> str:
    from recovery.report import one_line

    return one_line(text)


@errors_app.command("show")
@guarded
def show(
    template_id: Annotated[
        str, typer.Argument(help="The template's id, as `recovery errors` prints it.", show_default=False)
    ],
    app_name: AppOption = None,
    examples: Annotated[int, typer.Option(help="How many recent examples to show.")] = 5,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """One template: its text, entries per day, and recent examples with their stack top.

    Day counts are kept for good; examples only while raw entries are kept ([logs] keep_raw).

    Example: recovery errors show aaeca99a8bf5
    """
    import json

    from recovery.logs import queries

    from .common import fail

    if examples < 0:
        fail("--examples must be 0 or more")
    with _reading(config) as store:
        detail = queries.detail(store, template_id, app=app_name, examples=examples)
    if detail is None:
        fail(f"no error template {template_id!r} in the store (see `recovery errors --since 30d`)")
    typer.echo(json.dumps(detail) if json_out else _detail_text(detail, examples))


def _detail_text(detail: dict[str, Any], examples: int) -> str:
    lines = [
        f"{detail['template_id']}  {detail['template']}",
        f"  {detail['count']} entries, first {shown_ts(detail['first_seen'])}, last {shown_ts(detail['last_seen'])}",
    ]
    if len(detail["versions"]) > 1:
        lines.append(f"  first seen as: {detail['first_text']}")
    lines.append("per day (UTC):")
    lines += [f"  {d['day']}  {d['app']}  {d['count']}" for d in detail["days"]]
    lines.append("recent examples:")
    for e in detail["examples"][:examples]:
        head = f"  {_when(e)}  {e['app']}  " if e.get("ts") else "  "
        lines.append(head + _short(e["message"]))
        if e.get("stack_top"):
            lines.append(f"      {_short(e['stack_top'])}")
    return "\n".join(lines)


@errors_app.command("search")
@guarded
def search(
    text: Annotated[
        str,
        typer.Argument(
            help='Words to find (all of them), or an FTS5 query: "exact phrase", OR, NOT, prefix*.', show_default=False
        ),
    ],
    limit: Annotated[int, typer.Option(help="At most this many entries (the newest).")] = 50,
    app_name: AppOption = None,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Full-text search over the stored error entries, newest first.

    Searches each entry's message and first stack frame.

    Example: recovery errors search ECONNREFUSED --limit 20
    """
    import json

    from recovery.logs import queries

    from .common import fail

    if limit < 1:
        fail("--limit must be 1 or more")
    if not text.strip():
        fail("give some text to search for")
    with _reading(config) as store:
        rows = queries.find(store, text, limit=limit, app=app_name)
    if json_out or not rows:
        typer.echo(json.dumps(rows) if json_out else f"no entries match {text!r}")
        return
    for r in rows:
        typer.echo(f"{_when(r)}  {r['app']}  {r['template_id']}  {_short(r['message'])}")
        if r.get("stack_top"):
            typer.echo(f"    {_short(r['stack_top'])}")


@errors_app.command("prune")
@guarded
def prune(
    keep: Annotated[
        Optional[str],
        typer.Option(
            help="Keep raw entries this recent (30d, 12h). Default: [logs] keep_raw from the config (30d).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say how many entries would go; delete nothing.")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete raw error entries older than [logs] keep_raw, as a recorded step (a `log.pruned` event).

    Templates, their versions and the hourly counts are kept for good, so `recovery errors` still ranks and counts old errors; only their examples and full-text search go. Run it daily from cron (deploy/ does).

    Example: recovery errors prune --keep 14d
    """
    import datetime as dt

    from recovery import logs
    from recovery.events import format_ts
    from recovery.units import format_duration

    from .common import load_config, open_store, positive_duration

    conf = load_config(config)
    seconds = positive_duration("--keep", keep) if keep is not None else conf.logs.keep_raw
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    with open_store(conf) as store:
        n = logs.count_before(store, before) if dry_run else logs.prune(store, before)
    what = f"{n} entr{'y' if n == 1 else 'ies'} older than {format_ts(before)} (keep {format_duration(seconds)})"
    if dry_run:
        typer.echo(f"would prune {what}")
    else:
        typer.echo(f"pruned {what}" + ("; recorded as log.pruned" if n else ""))
