"""What `recovery serve` gives Datasette: metadata.yml (titles, descriptions, canned queries,
dashboards) and plugins/ (a `--plugins-dir`). Installed as the package `recovery_datasette`."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
METADATA = HERE / "metadata.yml"
PLUGINS_DIR = HERE / "plugins"
DATABASE = "recovery"  # the name the metadata, canned queries and dashboards use for the store
