"""The Datasette side of `recovery serve` (loaded with `--plugins-dir`): read-only connections,
readable times and JSON, and an optional actor requirement for servers off loopback."""

from __future__ import annotations

import json
import re

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
