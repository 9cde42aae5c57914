"""`recovery alert test`: registered in main.py as `app.add_typer(alert_app, name="alert")`.

Only typer and the standard library at import time; apprise is imported by the command.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import ConfigOption, guarded

alert_app = typer.Typer(help="Alert channels: send a test message through them.", no_args_is_help=True)


def configured_channels(conf: object) -> list[str]:
    """Every distinct channel URL of the config: [alerts] urls, then each app's own, in order."""
    seen: list[str] = []
    for url in [*conf.alerts.urls, *(u for a in conf.apps for u in (a.alerts or ()))]:  # type: ignore[attr-defined]
        if url not in seen:
            seen.append(url)
    return seen


@alert_app.command("test")
@guarded
def test(
    channel: Annotated[
        Optional[int],
        typer.Option(
            "--channel",
            help="Only the Nth channel (1 = the first of [alerts] urls, then the apps' own).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Send a test message through each configured channel and say what happened.

    One line per channel: ✓ or ✗, the channel (secrets redacted), and the error. Each attempt is recorded (`alert.sent` / `alert.failed`, kind `test`). Exit 0 when every channel took it, 1 when one did not, 3 when none is configured.

    Example: recovery alert test --channel 2
    """
    from recovery import alerts
    from recovery.events import Event
    from recovery.store import Store

    from .common import fail, load_config

    conf = load_config(config)
    channels = configured_channels(conf)
    if not channels:
        fail(f'no alert channels in {conf.source}: add [alerts] urls = ["slack://…"]')
    if channel is not None:
        if not 1 <= channel <= len(channels):
            fail(f"--channel {channel}: there {'is' if len(channels) == 1 else 'are'} {len(channels)} channel(s)")
        channels = [channels[channel - 1]]
    host = alerts.hostname(conf.alerts)
    test_alert = alerts.Alert(
        None,
        "test",
        "test",
        f"recovery test alert from {host}",  # type: ignore[arg-type]
        f"This is a test message from recovery on {host}. Alerts for {', '.join(a.name for a in conf.apps)} come here.",
        channels=channels,
    )
    events: list[Event] = []
    deliveries = alerts.deliver(
        [test_alert],
        retries=1,
        budget=max(conf.alerts.timeout, 5.0 * len(channels)),
        emit=lambda d: events.append(Event("alert.sent" if d.ok else "alert.failed", None, None, d.event_data())),
    )
    with Store.open(conf.store.path, busy_timeout=conf.store.busy_timeout) as store:
        store.append(events)
    failed = 0
    for d in deliveries:
        n = channels.index(d.url) + 1 if channel is None else channel
        if d.ok:
            typer.echo(f"✓ #{n} {alerts.redact(d.url)} sent in {d.seconds:.1f}s")
        else:
            failed += 1
            typer.echo(f"✗ #{n} {alerts.redact(d.url)} failed: {d.error}")
    for url in channels[len(deliveries) :]:
        failed += 1
        typer.echo(f"✗ #{channels.index(url) + 1} {alerts.redact(url)} not tried: out of time")
    raise typer.Exit(1 if failed else 0)
