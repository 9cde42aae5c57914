"""Prometheus metrics from the store's projections (never a scan of raw events). Issue 18, point 1.

CONTRACT (filled by the metrics work): `write_textfile(config)` writes the exposition atomically to
`config.metrics.textfile` (node_exporter's textfile collector convention: a temp file in the same
folder, then rename). Imported only by the commands that need it (prometheus_client is heavy).
"""

from __future__ import annotations

from recovery.config import Config


def write_textfile(config: Config) -> None:
    "Write the metrics exposition to config.metrics.textfile, atomically."
    raise NotImplementedError("recovery metrics: not built yet")
