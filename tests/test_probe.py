"""Probes against real loopback servers: each failure gets the error kind a person can act on."""

from __future__ import annotations

import socket

import httpx
import pytest

from recovery.probe import make_client, probe_once


def ok_2xx(code: int) -> bool:
    return 200 <= code < 400


@pytest.fixture
def silent_socket():
    """Accepts connections and never answers: what a blocked event loop looks like from outside."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"http://127.0.0.1:{s.getsockname()[1]}/"
    s.close()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def test_an_expected_status_is_a_success_with_its_latency(http_server):
    url, _ = http_server
    with make_client(url, 2) as c:
        a = probe_once(c, url, 1, ok_2xx)
    assert a.ok and a.status == 200 and a.latency_ms > 0


def test_an_unexpected_status_is_a_status_failure(http_server):
    url, state = http_server
    state["status"] = 503
    with make_client(url, 2) as c:
        a = probe_once(c, url, 1, ok_2xx)
    assert not a.ok and a.error == "status" and a.status == 503


def test_a_server_that_accepts_but_never_answers_is_a_timeout(silent_socket):
    with make_client(silent_socket, 0.3) as c:
        a = probe_once(c, silent_socket, 1, ok_2xx)
    assert not a.ok and a.error == "timeout"


def test_nothing_listening_is_refused():
    url = closed_port_url()
    with make_client(url, 1) as c:
        a = probe_once(c, url, 1, ok_2xx)
    assert not a.ok and a.error == "refused"


def test_a_connection_closed_without_an_answer_is_a_reset():
    # A real server cannot cheaply be made to drop mid-request on cue; the transport can.
    def handler(request):
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    url = "http://127.0.0.1:9/"
    with make_client(url, 1, transport=httpx.MockTransport(handler)) as c:
        a = probe_once(c, url, 1, ok_2xx)
    assert not a.ok and a.error == "reset"
