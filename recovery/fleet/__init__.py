"""The fleet store: each host's events shipped to PostgreSQL (`ship`), and the views over every
host (`views`). The local SQLite store stays the source of truth: recovery never waits for this.

Importing this package costs nothing: psycopg is imported by `connect` only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from recovery.errors import RecoveryError
from recovery.units import one_line

CONNECT_TIMEOUT_S = 5  # a fleet command waits no longer for PostgreSQL to answer


class FleetError(RecoveryError):
    "The fleet store cannot be reached, read or written (its message never holds the password)."


def redact_url(url: str) -> str:
    """The PostgreSQL URL as it may be shown: the password (in the URL or its query) as ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
        netloc = parts.netloc
        if password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:***@{host}"
        query = urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "postgresql://***"


def scrub(text: str, url: str) -> str:
    """`text` (an error message) with the URL's password, and the URL itself, never shown."""
    text = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""] + [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    except ValueError:
        secrets = []
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def connect(url: str, **kwargs: Any) -> Any:
    """A psycopg connection to the fleet store, or FleetError in one line (psycopg missing, PostgreSQL
    unreachable or refusing): the password never in it."""
    try:
        import psycopg
    except ImportError:
        raise FleetError(
            "the fleet store needs psycopg, which is not installed: pip install 'recovery[fleet]'"
        ) from None
    try:
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)
    except psycopg.Error as exc:
        raise FleetError(
            f"cannot connect to the fleet store {redact_url(url)}: {one_line(scrub(str(exc), url), 300)}"
        ) from None
