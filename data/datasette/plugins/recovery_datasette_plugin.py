"""The Datasette side of `recovery serve` (loaded with `--plugins-dir`): read-only connections,
readable times and JSON, the dashboard's SQL functions (recovery.dashboard: recovery_hint, event_text,
incident_timeline), and an optional actor requirement for servers off loopback."""

from __future__ import annotations

import json
import re
import threading
import zlib
from functools import lru_cache

from datasette import hookimpl  # type: ignore[attr-defined]
from markupsafe import Markup, escape

from recovery import dashboard

# The one stored form of a time (recovery.events.format_ts), and hours in rollup_hour / log_counts.
ISO_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z$")
JSON_COLUMNS = {"data", "evidence", "latency", "params"}


_keepers: dict[str, dashboard.HintKeeper] = {}
_keepers_lock = threading.Lock()


def _keeper(datasette, database):
    """The hints kept for the store served as `database` (one thread per store file)."""
    db = datasette.databases.get(database)
    if db is None or not db.path:
        return None
    with _keepers_lock:
        keeper = _keepers.get(db.path)
        if keeper is None:
            keeper = _keepers[db.path] = dashboard.HintKeeper(db.path, immutable=not db.is_mutable)
            keeper.start()
    return keeper


@hookimpl
def startup(datasette):
    # Start reading the hints as soon as the server serves (its first request), not when the
    # dashboard is first opened: on a dense store they take ~0.3 s to compute.
    if "recovery" in datasette.databases:
        _keeper(datasette, "recovery")


@hookimpl
def prepare_connection(conn, database, datasette):
    # Every connection Datasette opens on a served file, read or write, refuses writes: no plugin,
    # canned query or future API can change the store through this server. (Datasette's own
    # in-memory `_internal` catalogue must stay writable.)
    if database != "_internal":
        conn.execute("PRAGMA query_only = 1")
        conn.create_function("log_text", 3, log_text, deterministic=True)
        dashboard.register(conn, _keeper(datasette, database) if database == "recovery" else None)


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
    if column == "timeline" and isinstance(value, int):
        # An incident's id, in the canned queries that list incidents: a link to its timeline.
        return Markup(f'<a href="/recovery/incident_timeline?id={value}">timeline of #{value}</a>')
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
