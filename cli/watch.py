"""`recovery watch`: registered in main.py as `app.command(name="watch")(guarded(watch))`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import ConfigOption


def watch(
    config: ConfigOption = None,
    interval: Annotated[
        Optional[str],
        typer.Option(
            help="From the start of one check to the start of the next, e.g. 2s or 500ms. Default: the config's watch.interval.",
            show_default=False,
        ),
    ] = None,
    only: Annotated[
        Optional[list[str]], typer.Option("--app", help="Watch only this app (repeatable).", show_default=False)
    ] = None,
    metrics_port: Annotated[
        Optional[int],
        typer.Option(
            help="Serve the Prometheus metrics (those of `recovery metrics`) at http://HOST:PORT/metrics while watching, read from the store at each scrape. Default: the config's metrics.port; none when unset. 0: any free port.",
            min=0,
            max=65535,
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        Optional[str],
        typer.Option(
            help="The address to serve the metrics on. Default: the config's metrics.host, 127.0.0.1 (this machine only).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check the apps in a loop, every few seconds, until SIGTERM or Ctrl-C.

    The same check as `recovery check` (recorded with trigger "watch"), probing with the config's watch.timeout, watch.retries and watch.retry_delay unless an app sets its own. Prints a step's lines only when an app's state changes or is not OK. Alerts and the heartbeat go out from a thread of their own, so a slow channel never delays a step. SIGTERM and SIGINT finish the step in progress (a restart is never cut short), give that thread up to 2s, then exit 0.

    With --metrics-port (or metrics.port in the config), Prometheus can scrape the metrics of `recovery metrics` at /metrics meanwhile.

    Example: recovery watch --interval 5s --metrics-port 9464
    """
    import threading

    from recovery.watch import Journal, describe, run_watch, stop_on_signals

    from .common import configured_app, load_config, positive_duration

    cfg = load_config(config)
    for name in only or []:
        configured_app(cfg, name, flag="--app ")
    seconds = cfg.watch.interval if interval is None else positive_duration("--interval", interval)
    stop = threading.Event()
    stop_on_signals(stop)
    journal = Journal()
    port = cfg.metrics.port if metrics_port is None else metrics_port
    server = None
    if port is not None:
        from recovery.metrics import MetricsServer

        server = MetricsServer(cfg, metrics_host or cfg.metrics.host, port).start()
    journal.say(describe(cfg, seconds, only))
    if server is not None:
        host, bound = server.address
        journal.say(f"serving metrics on http://{host}:{bound}/metrics")
    try:
        code = run_watch(cfg, interval=seconds, stop=stop, apps=only, on_result=journal)
    finally:
        if server is not None:
            server.close()
    journal.say("stopped")
    raise typer.Exit(code)
