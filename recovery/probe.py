"""HTTP probes with httpx: one attempt, classified into an error kind a person can act on.

An attempt is bounded as a whole: connect, TLS, headers and body end by its deadline (the
timeout), and at most BODY_CAP bytes of the body are read. httpx's timeouts bound each socket
operation, not their sum: a server that sends a byte a second never trips them. So the probe's
transport hands every socket operation (httpcore's NetworkStream: connect, start_tls, read,
write) the time left until the attempt's deadline instead; past it, the operation fails as a
timeout. No thread races the request and nothing is left running after the attempt.
"""

from __future__ import annotations

import contextvars
import errno
import ssl
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

# httpx's package __init__ imports its command-line client (rich, click, pygments: ~70 ms)
# when they are installed, as they are beside typer. The probe never needs it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpcore  # noqa: E402
import httpx  # noqa: E402

from .observations import ERROR_KINDS, Attempt  # noqa: E402
from .units import format_ts  # noqa: E402
from .urls import shown_url  # noqa: E402

__all__ = ["BODY_CAP", "ERROR_KINDS", "Attempt", "classify", "make_client", "probe_burst", "probe_once"]

# The most of a body an attempt reads (and keeps on its Attempt): enough for any health page and
# for matching expected text; a larger body is cut there, unread, and the connection dropped.
BODY_CAP = 1 << 20

# The most probes of a burst in flight at once (threads, connections): a burst for 64 workers
# runs in waves rather than opening 128 connections at the same moment.
BURST_CONCURRENCY = 32

# (deadline on time.monotonic(), the attempt's timeout) while an attempt runs in this context.
_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar("probe_deadline", default=None)
# The running attempt's connection facts (its client-side port), written when it connects.
_CONN: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("probe_conn", default=None)
# Where connections closed during a burst are parked, still open, until the caller releases them:
# the server side of a timed-out probe stays in the worker that holds it while attribution reads /proc.
_HOLD: contextvars.ContextVar[list[httpcore.NetworkStream] | None] = contextvars.ContextVar("probe_hold", default=None)


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """The time a socket operation may take: its own timeout, cut to what is left of the attempt."""
    bound = _DEADLINE.get()
    if bound is None:
        return timeout
    left = bound[0] - time.monotonic()
    if left <= 0:
        raise expired(f"no complete answer within {bound[1]:.3g}s")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the running attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self.stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        held = _HOLD.get()
        if held is not None:
            held.append(self.stream)
            return
        self.stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self.stream.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        conn = _CONN.get()
        ssl_object = tls.get_extra_info("ssl_object")
        if conn is not None and ssl_object is not None:
            cert = ssl_object.getpeercert() or {}  # parsed only when verified, as the probe does
            if cert.get("notAfter"):
                conn["cert_not_after"] = cert["notAfter"]
        return _BoundedStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, with connections bounded by the running attempt's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self.backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        stream = self.backend.connect_tcp(host, port, timeout, local_address, socket_options)
        conn = _CONN.get()
        if conn is not None:
            try:
                conn["local_port"] = stream.get_extra_info("client_addr")[1]
            except (TypeError, IndexError, OSError):
                pass
        return _BoundedStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self.backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.backend.sleep(seconds)


def _bounded_transport(verify: Any) -> httpx.HTTPTransport:
    """httpx's own transport, its connection pool given the bounded backend (httpcore's public
    `network_backend` seam; httpx does not pass one through, so it is set on its pool)."""
    transport = httpx.HTTPTransport(verify=verify, trust_env=False)
    pool = transport._pool
    pool._network_backend = _BoundedBackend(pool._network_backend)
    return transport


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


def make_client(
    url: str, timeout: float, transport: httpx.BaseTransport | None = None, ca_file: str | None = None
) -> httpx.Client:
    """A client for probing `url`: no proxies from the environment, no redirects followed, each
    attempt bounded as a whole (`transport` replaces the bounded one, for tests). `ca_file`: the
    certificate authorities an https URL is verified with instead of the public ones."""
    # No TLS context (and no CA bundle load) unless the URL needs one.
    verify: Any = url.lower().startswith("https:")
    if verify and ca_file:
        verify = ssl.create_default_context(cafile=ca_file)
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        verify=verify,
        transport=transport or _bounded_transport(verify),
        # identity: the body read (up to BODY_CAP) is the body sent, never a decompression's output.
        headers={"User-Agent": "recovery-probe/0.1", "Cache-Control": "no-cache", "Accept-Encoding": "identity"},
    )


def probe_once(
    client: httpx.Client,
    url: str,
    attempt: int,
    status_ok: Callable[[int], bool],
    *,
    timeout: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    body_check: Callable[[bytes], str | None] | None = None,
) -> Attempt:
    """One GET of `url`, ended by `timeout` (else the client's) as a whole, its body read up to
    BODY_CAP. A slow answer is a success with its latency: slow is not down. An answer whose
    status is right but whose body fails `body_check` (it says what is wrong) fails as `body`."""
    limit = timeout if timeout is not None else client.timeout.read
    shown = shown_url(url)  # what is recorded: no user, password or query
    start = clock()
    bound = _DEADLINE.set(None if limit is None else (time.monotonic() + limit, limit))
    conn: dict[str, Any] = {}
    conn_token = _CONN.set(conn)
    try:
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout)
        with client.stream("GET", url, **kwargs) as response:
            body = _read_capped(response.iter_bytes(), BODY_CAP)
    except httpx.HTTPError as exc:
        ms = (clock() - start) * 1000
        error = classify(exc)
        port = conn.get("local_port")
        if error == "timeout" and limit is not None:
            detail = f"no complete answer within {limit:.3g}s"
            return Attempt(False, attempt, shown, ms, error=error, detail=detail, local_port=port)
        return Attempt(False, attempt, shown, ms, error=error, detail=_short(exc), local_port=port)
    finally:
        _DEADLINE.reset(bound)
        _CONN.reset(conn_token)
    ms = (clock() - start) * 1000
    port = conn.get("local_port")
    problem: str | None
    expires = _expiry(conn.get("cert_not_after"))
    if not status_ok(response.status_code):
        error, problem = "status", f"HTTP {response.status_code} {response.reason_phrase}".strip()
    else:
        error, problem = "body", body_check(body) if body_check is not None else None
        if problem is None:
            return Attempt(
                True, attempt, shown, ms, status=response.status_code, body=body, local_port=port, cert_expires=expires
            )
    return Attempt(
        False, attempt, shown, ms, status=response.status_code, error=error, detail=problem, body=body, local_port=port
    )


def probe_burst(
    url: str,
    count: int,
    status_ok: Callable[[int], bool],
    *,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
    first: int = 1,
    body_check: Callable[[bytes], str | None] | None = None,
    ca_file: str | None = None,
) -> tuple[list[Attempt], Callable[[], None]]:
    """`count` concurrent GETs of `url`, each on a fresh connection of its own client (so PM2's
    cluster master hands each to a worker in turn), numbered from `first`.

    Returns the attempts in order and a `release` that closes their connections: until it is
    called they stay open, so the server side of one that timed out is still held by the process
    that took it (a stalled worker would otherwise see the close and drop it)."""
    from concurrent.futures import ThreadPoolExecutor

    held: list[httpcore.NetworkStream] = []

    def one(n: int) -> Attempt:
        token = _HOLD.set(held)
        client = make_client(url, timeout, transport, ca_file)
        try:
            return probe_once(client, url, n, status_ok, timeout=timeout, body_check=body_check)
        finally:
            client.close()
            _HOLD.reset(token)

    def release() -> None:
        for stream in {id(s): s for s in held}.values():
            try:
                stream.close()
            except Exception:  # a socket already gone is closed enough
                pass
        held.clear()

    try:
        with ThreadPoolExecutor(max_workers=min(count, BURST_CONCURRENCY), thread_name_prefix="probe") as pool:
            attempts = list(pool.map(one, range(first, first + count)))
    except BaseException:
        release()
        raise
    return attempts, release


def _expiry(not_after: str | None) -> str | None:
    """OpenSSL's notAfter ('Jun  1 12:00:00 2027 GMT') as an event timestamp."""
    if not not_after:
        return None
    import datetime as _dt

    try:
        return format_ts(_dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), _dt.UTC))
    except ValueError:
        return None


def _read_capped(chunks: Iterable[bytes], cap: int) -> bytes:
    """The first `cap` bytes of a body; the rest is never read (closing drops the connection)."""
    kept: list[bytes] = []
    size = 0
    for chunk in chunks:
        kept.append(chunk[: cap - size])
        size += len(kept[-1])
        if size >= cap:
            break
    return b"".join(kept)


def _short(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
