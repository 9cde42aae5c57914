"""HTTP probes with httpx: one attempt, classified into an error kind a person can act on."""

from __future__ import annotations

import errno
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

# httpx's package __init__ imports its command-line client (rich, click, pygments: ~70 ms)
# when they are installed, as they are beside typer. The probe never needs it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpx  # noqa: E402

from .observations import ERROR_KINDS, Attempt  # noqa: E402

__all__ = ["ERROR_KINDS", "Attempt", "classify", "make_client", "probe_once"]


def classify(exc: Exception) -> str:
    """Map an httpx exception to an error kind."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt in chain or len(chain) > 8:
            break
        chain.append(nxt)  # type: ignore[arg-type]
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return "tls"
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return "refused"
        if isinstance(e, ConnectionResetError) or getattr(e, "errno", None) in (errno.ECONNRESET, errno.EPIPE):
            return "reset"
    text = str(exc).lower()
    if "name or service not known" in text or "nodename nor servname" in text or "temporary failure in name" in text:
        return "dns"
    if "refused" in text:
        return "refused"
    if "reset" in text:
        return "reset"
    if "ssl" in text or "certificate" in text:
        return "tls"
    if isinstance(exc, httpx.RemoteProtocolError):
        # The server closed the connection without an answer: a crashing or restarting app.
        return "reset" if "disconnected" in text else "protocol"
    if isinstance(exc, httpx.ProtocolError):
        return "protocol"
    return "error"


def make_client(url: str, timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client for probing `url`: no proxies from the environment, no redirects followed."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        # No TLS context (and no CA bundle load) unless the URL needs one.
        verify=url.lower().startswith("https:"),
        transport=transport,
        headers={"User-Agent": "recovery-probe/0.1", "Cache-Control": "no-cache"},
    )


def probe_once(
    client: httpx.Client,
    url: str,
    attempt: int,
    status_ok: Callable[[int], bool],
    *,
    timeout: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Attempt:
    """One GET of `url`. A slow answer is a success with its latency: slow is not down."""
    start = clock()
    try:
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout)
        response = client.get(url, **kwargs)
    except httpx.HTTPError as exc:
        ms = (clock() - start) * 1000
        return Attempt(False, attempt, url, ms, error=classify(exc), detail=_short(exc))
    ms = (clock() - start) * 1000
    if status_ok(response.status_code):
        return Attempt(True, attempt, url, ms, status=response.status_code)
    return Attempt(
        False,
        attempt,
        url,
        ms,
        status=response.status_code,
        error="status",
        detail=f"HTTP {response.status_code} {response.reason_phrase}".strip(),
    )


def _short(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
