"""The Datasette side of `recovery serve` (loaded with `--plugins-dir`): read-only connections,
readable times and JSON, and an optional actor requirement for servers off loopback."""

from __future__ import annotations

import json
import re
import zlib
from functools import lru_cache

from datasette import hookimpl  # type: ignore[attr-defined]
from markupsafe import Markup, escape

# The one stored form of a time (recovery.events.format_ts), and hours in rollup_hour / log_counts.
ISO_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z$")
JSON_COLUMNS = {"data", "evidence", "latency", "params"}


@hookimpl
def prepare_connection(conn, database):
    # Every connection Datasette opens on a served file, read or write, refuses writes: no plugin,
    # canned query or future API can change the store through this server. (Datasette's own
    # in-memory `_internal` catalogue must stay writable.)
    if database != "_internal":
        conn.execute("PRAGMA query_only = 1")
        conn.create_function("log_text", 3, log_text, deterministic=True)


@lru_cache(maxsize=64)
def _block(data: bytes) -> list:
    return json.loads(zlib.decompress(data).decode("utf-8"))


_TEXT_KEYS = {"message": 0, "stack_top": 1, "params": 2, "detail": 3}


def log_text(data, slot, key):
    """`log_text(log_blocks.data, log_entries.id - log_blocks.first_entry, 'message')`: one text of an
    error entry (message, stack_top, params as JSON, detail) from its compressed block (recovery.logs.storage)."""
    if data is None or slot is None or key not in _TEXT_KEYS:
        return None
    try:
        value = _block(bytes(data))[int(slot)][_TEXT_KEYS[key]]
    except (zlib.error, ValueError, IndexError, TypeError):
        return None
    return json.dumps(value, ensure_ascii=False) if key == "params" and value is not None else value


@hookimpl
def render_cell(value, column):
    if isinstance(value, str) and ISO_TS.match(value):
        # UTC in the markup (and the title); the script below shows it in the browser's local time.
        shown = value.replace("T", " ").rstrip("Z")
        return Markup(f'<time class="recovery-ts" datetime="{value}" title="{value} (UTC)">{shown} UTC</time>')
    if column in JSON_COLUMNS and isinstance(value, str) and value[:1] in "{[" and len(value) > 2:
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        text = json.dumps(parsed, indent=1, sort_keys=True, ensure_ascii=False)
        return Markup(
            f'<pre class="recovery-json" style="margin:0;white-space:pre-wrap;font-size:0.85em">{escape(text)}</pre>'
        )
    return None


@hookimpl
def extra_body_script():
    return """
document.querySelectorAll('time.recovery-ts').forEach(function (el) {
  var d = new Date(el.getAttribute('datetime'));
  if (!isNaN(d)) { el.textContent = d.toLocaleString(undefined, {hour12: false}); }
});
"""


@hookimpl
def permission_allowed(datasette, actor, action):
    # `recovery serve --root` on a non-loopback address: only the signed-in actor sees anything.
    required = (datasette.plugin_config("recovery") or {}).get("require_actor")
    if required and action == "view-instance" and (actor or {}).get("id") != required:
        return False
    return None
