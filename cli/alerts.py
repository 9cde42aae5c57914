"""`recovery alert test`: registered in main.py as `app.add_typer(alert_app, name="alert")`.

Only typer and the standard library at import time; apprise is imported by the command.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .common import ConfigOption, guarded

alert_app = typer.Typer(
    rich_markup_mode=None, help="Alert channels: send a test message through them.", no_args_is_help=True
)


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

    from .common import fail, load_config, open_store

    conf = load_config(config)
    urls = alerts.channels(conf)
    if not urls:
        fail(f'no alert channels in {conf.source}: add [alerts] urls = ["slack://…"]')
    if channel is not None and not 1 <= channel <= len(urls):
        fail(f"--channel {channel}: there {'is' if len(urls) == 1 else 'are'} {len(urls)} channel(s)")
    with open_store(conf) as store:
        deliveries = alerts.send_test(conf, store, channel)
    numbered = [(channel, urls[channel - 1])] if channel is not None else list(enumerate(urls, 1))
    lines = _lines(numbered, deliveries, alerts.redact)
    for line in lines:
        typer.echo(line)
    raise typer.Exit(1 if any(not line.startswith("✓") for line in lines) else 0)


def _lines(numbered: list[tuple[int, str]], deliveries: list[Any], redact: Any) -> list[str]:
    """One line per channel, in order: its delivery, or that the time ran out before it."""
    done = {d.url: d for d in deliveries}
    out = []
    for n, url in numbered:
        d = done.get(url)
        if d is None:
            out.append(f"✗ #{n} {redact(url)} not tried: out of time")
        elif d.ok:
            out.append(f"✓ #{n} {redact(url)} sent in {d.seconds:.1f}s")
        else:
            out.append(f"✗ #{n} {redact(url)} failed: {d.error}")
    return out
