"""URLs as they are recorded and printed: without the secrets they may carry."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def shown_url(url: str) -> str:
    """A URL as it is stored and printed: without what may be secret in it. A user and password
    become `***@`, a query `?…`; scheme, host, port and path stay (`http://***@127.0.0.1:3000/health`)."""
    try:
        parts = urlsplit(url)
        where = _host_port(parts)
    except ValueError:
        return "(unparsable url)"
    user = "***@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{user}{where}{parts.path}{'?…' if parts.query else ''}"


def shown_dsn(url: str) -> str:
    """A postgresql:// URL as it is printed and stored: the password (and the query, which may hold
    one) hidden, the user kept (`postgresql://user:***@host:5432/db`). The one redaction of the fleet's URL."""
    try:
        parts = urlsplit(url)
        where = _host_port(parts)
    except ValueError:
        return "(unparsable url)"
    user = parts.username or ""
    if parts.password is not None:
        user += ":***"
    return f"{parts.scheme}://{user + '@' if user else ''}{where}{parts.path}{'?…' if parts.query else ''}"


def _host_port(parts: SplitResult) -> str:
    "`host:port` of a split URL (an IPv6 host in brackets); ValueError for a port out of range."
    port = f":{parts.port}" if parts.port else ""
    host = parts.hostname or ""
    return (f"[{host}]" if ":" in host else host) + port
