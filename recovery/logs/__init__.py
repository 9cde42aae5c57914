"""Error-log ingestion: PM2's logs read exactly once, grouped into entries, mined into templates.

reader    incremental reading that survives rotation, truncation and bad bytes
grouper   lines -> entries (a message with its stack frames and `{ code: … }` block)
miner     a small Drain template miner with masks for Node logs
storage   the append-only log tables (texts in compressed blocks), their migration (sqlite-utils,
          once per old store) and the queries over them
ingestion one run: read, group, mine, store, and record a `log.ingested` event; which files;
          `ingest_all`, every new byte in committed chunks (`recovery ingest`)
queries   what `recovery errors` asks, with the store's errors raised as StoreError
pruning   the recorded deletion of old raw entries (`log.pruned`)
checkstep the small, rate-limited ingestion at the end of `recovery check`
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolved on first use (PEP 562), so that `recovery check` pays only for the modules it
# needs: its log step imports `checkstep` and `storage`, and the rest only when there is work.
_WHERE = {
    "DEFAULT_MAX_BYTES": "ingestion",
    "FileReport": "ingestion",
    "IngestResult": "ingestion",
    "ingest": "ingestion",
    "ingest_all": "ingestion",
    "pending_bytes": "ingestion",
    "log_files": "ingestion",
    "pm2_log_paths": "ingestion",
    "stream_of": "ingestion",
    "prune": "pruning",
    "count_before": "pruning",
    "FileState": "reader",
    "ReadWarning": "reader",
    "SCHEMA_VERSION": "storage",
    "ensure_schema": "storage",
    "search": "storage",
    "top_templates": "storage",
    "entries": "storage",
    "entry_texts": "storage",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
