"""What `recovery errors` asks of the log tables, with the store's errors raised as StoreError.

storage and incidents leave sqlite3 errors to their callers on purpose (a root-cause hint whose
table is missing is skipped); a command wants one line naming the store instead.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sqlite3
from collections.abc import Iterator
from typing import Any

from ..errors import StoreError
from .storage import SCHEMA_VERSION, schema_version, search, template_detail, top_templates


@contextlib.contextmanager
def _reading(store: Any) -> Iterator[sqlite3.Connection]:
    try:
        version = schema_version(store.conn)
        if 0 < version < SCHEMA_VERSION:
            raise StoreError(
                f"the error-log tables in {store.path} are from an older version (schema {version}):"
                " run `recovery ingest` once to upgrade them"
            )
        yield store.conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the error-log tables in {store.path}: {exc}") from exc


def ranked(
    store: Any, since: _dt.datetime, until: _dt.datetime, *, app: str | None = None, top: int = 20
) -> list[dict[str, Any]]:
    """Templates ranked by count in [since, until), one row per (template, app), each with
    `previous_count` (in the window of the same length just before) and `change`."""
    with _reading(store) as conn:
        rows = top_templates(conn, since, app=app, top=top, until=until)
        before = top_templates(conn, since - (until - since), app=app, top=1 << 30, until=since)
    previous = {(r["app"], r["template_id"]): r["count"] for r in before}
    for r in rows:
        r["previous_count"] = previous.get((r["app"], r["template_id"]), 0)
        r["change"] = r["count"] - r["previous_count"]
    return rows


def around(
    store: Any,
    since: _dt.datetime,
    until: _dt.datetime,
    *,
    minutes: float = 10,
    app: str | None = None,
    top: int = 20,
) -> dict[str, Any]:
    """`incidents.around_incidents`, its templates cut to the `top` first."""
    from .incidents import around_incidents

    with _reading(store) as conn:
        found = around_incidents(conn, since, until, minutes=minutes, app=app)
    found["templates"] = found["templates"][:top]
    return found


def detail(store: Any, template_id: str, *, app: str | None = None, examples: int = 5) -> dict[str, Any] | None:
    """`storage.template_detail`: one template, or None when there is no such template."""
    with _reading(store) as conn:
        return template_detail(conn, template_id, app=app, examples=examples)


def find(store: Any, text: str, *, limit: int = 50, app: str | None = None) -> list[dict[str, Any]]:
    """`storage.search`: entries matching `text`, newest first."""
    with _reading(store) as conn:
        return search(conn, text, limit=limit, app=app)
