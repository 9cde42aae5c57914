"""Error-log ingestion: PM2's logs read exactly once, grouped into entries, mined into templates.

    reader    incremental reading that survives rotation, truncation and bad bytes
    grouper   lines -> entries (a message with its stack frames and `{ code: … }` block)
    miner     a small Drain template miner with masks for Node logs
    storage   the append-only log tables and the queries over them (top_templates, search)
    ingest    one run: read, group, mine, store, and record a `log.ingested` event
    prune     the recorded deletion of old raw entries (`log.pruned`)

Imported only by the commands that use it (not on the bare `recovery check` path).
"""

from __future__ import annotations

from .ingest import DEFAULT_MAX_BYTES, FileReport, IngestResult, ingest, stream_of
from .prune import prune
from .reader import FileState, ReadWarning
from .storage import SCHEMA_VERSION, ensure_schema, search, top_templates

__all__ = [
    "DEFAULT_MAX_BYTES", "FileReport", "FileState", "IngestResult", "ReadWarning", "SCHEMA_VERSION",
    "ensure_schema", "ingest", "prune", "search", "stream_of", "top_templates",
]  # fmt: skip
