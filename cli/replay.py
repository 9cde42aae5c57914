"""`recovery replay`: registered in main.py as `app.command()(guarded(replay))`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import ConfigOption, JsonOption


def replay(
    settings: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            help="A setting to replay with, KEY=VALUE, keys as in an app's or the policy's config: timeout=1s, retries=2, "
            "retry_delay=0s, expect_status=200-299, slow_threshold=500ms, max_restarts=1, window=30m, "
            "restart_grace=30s (repeatable).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str, typer.Option(help="Replay the history since: a duration back from now (30d) or an ISO date.")
    ] = "30d",
    app_name: Annotated[
        Optional[str],
        typer.Option("--app", help="Only this app. Default: every app in the config.", show_default=False),
    ] = None,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Re-run the recorded history through the policy with other settings: what would have differed.

    At each point where a recorded check decided, the policy decides again from the same observations (a recorded probe slower than a tightened timeout counts as a timeout) and from the history the replayed decisions make. Per app: recorded vs replayed failed probes, restarts, incidents and downtime, and every decision that differs. After the first decision that differs the replay is no longer exact: the recorded world did not see the replayed restarts.

    Example: recovery replay --since 7d --set timeout=500ms --set max_restarts=2
    """
    import datetime as dt
    import json

    from recovery.render import replay_text
    from recovery.replay import parse_settings, replay_store

    from .common import configured_app, load_config, open_store, since_bound

    changes = parse_settings(settings or [])
    since_ts = since_bound(since, dt.datetime.now(dt.UTC))
    conf = load_config(config)
    apps = [configured_app(conf, app_name, flag="--app ")] if app_name else list(conf.apps)
    with open_store(conf, readonly=True) as store:
        result = replay_store(store, apps, changes, since_ts)
    typer.echo(json.dumps(result.to_dict(), indent=2) if json_out else replay_text(result))
