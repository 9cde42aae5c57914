"""What every command module shares: options, one-line errors, loading the config and opening the store.

Only typer and the standard library at import time: `recovery check` starts from here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from recovery.store import Store

UNKNOWN = 3

ConfigOption = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        "-c",
        help="Config file. Default: $RECOVERY_CONFIG, else the first of ./recovery.toml, ~/.config/recovery/recovery.toml, /etc/recovery/recovery.toml (`recovery config path` says which).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def fail(message: str, code: int = UNKNOWN) -> NoReturn:
    typer.echo(f"recovery: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the domain's errors into one line on stderr and exit 3: the one place that formats them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from recovery.errors import RecoveryError

        try:
            return fn(*args, **kwargs)
        except RecoveryError as exc:
            fail(str(exc))

    return wrapper


def load_config(path: Path | None) -> Any:
    from recovery import config as cfg

    return cfg.load(cfg.find_config_path(path))


def open_store(conf: Any, *, readonly: bool = False) -> Store:
    """The configured event store, with its busy timeout: the one way a command opens it."""
    from recovery.store import Store

    group = None if readonly else conf.store.group
    return Store.open(conf.store.path, busy_timeout=conf.store.busy_timeout, readonly=readonly, group=group)


def configured_app(conf: Any, name: str, flag: str = "app ") -> Any:
    """The app's config, or a one-line error naming the apps there are."""
    app_conf = conf.app(name)
    if app_conf is None:
        fail(f"{flag}{name!r} is not in {conf.source} (apps: {', '.join(a.name for a in conf.apps)})")
    return app_conf


def positive_duration(flag: str, text: str) -> float:
    """Seconds in a duration option, or a one-line error."""
    from recovery.config import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        fail(f"{flag} {text!r}: {exc}")
    if seconds <= 0:
        fail(f"{flag} {text!r}: must be longer than 0")
    return seconds


def since_bound(value: str, now: Any, flag: str = "--since") -> str:
    """The event-timestamp bound of a --since (or `flag`) option: a duration back from now, or an ISO time."""
    from recovery.projections import format_ts
    from recovery.report import since_to_ts

    try:
        since_ts = since_to_ts(value, now)
    except ValueError as exc:
        fail(f"{flag} {value!r}: {exc}")
    if since_ts >= format_ts(now):
        fail(f"{flag} {value!r} is not in the past")
    return since_ts


def store_note(store: Store) -> None:
    """Say once, on stderr, how a read-only store was read (an immutable snapshot, a folded copy)."""
    from recovery.store import IMMUTABLE_NOTE

    note = store.note or (IMMUTABLE_NOTE if store.immutable else None)
    if note:
        typer.echo(f"note: {store.path}: {note}", err=True)


WideOption = Annotated[bool, typer.Option("--wide", help="Every column, whatever the terminal's width.")]
SinceOption = Annotated[
    str,
    typer.Option(
        help="Start of the period: a duration back from now (24h, 7d, 365d) or an ISO date; the period ends now."
    ),
]


def terminal(wide: bool = False) -> tuple[int | None, bool]:
    """(width, colour) for tables on stdout: the width from $COLUMNS, else the terminal's when stdout
    is one (None: no limit, for pipes and --wide); colour on a terminal only, never with $NO_COLOR."""
    import os
    import shutil
    import sys

    tty = sys.stdout.isatty()
    colour = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    if wide:
        return None, colour
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns), colour
    return (shutil.get_terminal_size().columns if tty else None), colour
