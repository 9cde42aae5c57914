"""The fleet store: each host's events shipped to PostgreSQL (`ship`), and the views over every
host (`views`). The local SQLite store stays the source of truth: recovery never waits for this.

Importing this package costs nothing: psycopg is imported by `connect` only. The one way to reach
PostgreSQL (`connect`) and the one way its URL is shown (`recovery.urls.shown_dsn`, and `scrub` for
error texts) live here, for shipping and the views alike.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from recovery.errors import FleetError
from recovery.units import one_line
from recovery.urls import shown_dsn

__all__ = ["NOT_INSTALLED", "FleetError", "connect", "scrub", "shown_dsn"]

NOT_INSTALLED = "fleet.postgres is set but psycopg is not installed: pip install 'recovery[fleet]'"
CONNECT_TIMEOUT_S = 30.0  # without a budget: how long connecting may take


def scrub(text: str, url: str) -> str:
    """`text` (an error message) with the URL shown redacted and its password (as written, decoded,
    or as a `password=` query parameter) never shown."""
    text = text.replace(url, shown_dsn(url))
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""] + [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    except ValueError:
        secrets = []
    for secret in {s for p in secrets if p for s in (p, unquote(p))}:
        text = text.replace(secret, "***")
    return text


def _reason(exc: BaseException, url: str) -> str:
    """PostgreSQL's reason on one line, without the password: libpq's message spans lines (the
    failure, then a tab-indented hint), all of it kept."""
    return one_line(scrub(str(exc).strip() or type(exc).__name__, url), 300)


def connect(
    url: str, timeout: float | None = None, *, autocommit: bool = False, application_name: str = "recovery"
) -> Any:
    """A psycopg connection to the fleet store that gives up within `timeout` seconds (connecting,
    and a black-holed network through tcp_user_timeout), or FleetError in one line: psycopg
    missing, PostgreSQL unreachable or refusing; the password never in it."""
    try:
        import psycopg
    except ImportError:
        raise FleetError(NOT_INSTALLED) from None
    wait = CONNECT_TIMEOUT_S if timeout is None else max(1.0, timeout)
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=max(2, math.ceil(wait)),
            tcp_user_timeout=int(wait * 1000),
            application_name=application_name,
        )
    except psycopg.Error as exc:
        raise FleetError(f"cannot reach the fleet store {shown_dsn(url)}: {_reason(exc, url)}") from None
