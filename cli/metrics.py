"""`recovery metrics`: registered in main.py as `app.command()(guarded(metrics))`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ConfigOption


def metrics(
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            help="Write the exposition to this file, atomically (a temporary file in its folder, then a rename), instead of printing it.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print the Prometheus metrics of every configured app, read from the store's projections.

    The text exposition format: recovery_up, recovery_state, recovery_probe_latency_seconds, latency quantiles over 1h and 24h and a histogram, recovery_probes_total, recovery_restarts_total (by check, schedule, operator, pm2), recovery_incidents_total, recovery_incident_open, recovery_availability_ratio (24h and 7d), recovery_last_check_timestamp_seconds, recovery_events_spooled and recovery_store_readable, each with HELP and TYPE. With metrics.textfile in the config every `recovery check` writes the same to that file; `recovery watch --metrics-port` serves it. When the store cannot be read, the output still says so (recovery_store_readable 0), the reason goes to stderr and the exit code is 3.

    Example: recovery metrics --output /var/lib/node_exporter/textfile_collector/recovery.prom
    """
    import sys

    from recovery.metrics import exposition, write_atomically

    from .common import fail, load_config

    text, problem = exposition(load_config(config))
    if output is None:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    else:
        write_atomically(output, text)
    if problem:
        fail(problem)
