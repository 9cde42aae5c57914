"""Certificate expiry for https URLs (issue 17 point 5): `cert_warn = "14d"` reads WARNING with the
date, never a restart. A real TLS server on loopback, its certificate signed by a CA made here."""

from __future__ import annotations

import re
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recovery import config as cfg
from recovery.check import OK, WARNING, CheckRun, HttpProber
from recovery.clock import SystemClock
from recovery.store import Recorder, Store
from tests.test_check_flow import FakeApp, FakePm2


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_server(tmp_path):
    """An https server on 127.0.0.1 whose certificate (for IP 127.0.0.1) ends in 10 days."""
    d = tmp_path / "pki"
    d.mkdir()
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
        "-subj",
        "/CN=test CA",
        cwd=d,
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1", cwd=d
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "10",
        "-extfile",
        "san.ext",
        cwd=d,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "srv.pem", d / "srv.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/", d / "ca.pem"
    server.shutdown()
    server.server_close()


def check(tmp_path: Path, url: str, ca: Path, cert_warn: str):
    path = tmp_path / "recovery.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[logs]\nin_check = false\n\n'
        f'[[apps]]\nname = "web"\nurl = "{url}"\nca_file = "{ca}"\ncert_warn = "{cert_warn}"\n'
    )
    config = cfg.load(path)
    pm2, clock = FakePm2(FakeApp()), SystemClock()  # a fake PM2; the probe and its TLS are real
    run = CheckRun(
        config, pm2=pm2, prober=HttpProber(), recorder=Recorder(config.store.path, now=clock.now), clock=clock
    )
    return run.run(), pm2


def test_a_certificate_ending_within_cert_warn_is_a_warning_with_its_date_and_no_restart(tls_server, tmp_path):
    url, ca = tls_server
    result, pm2 = check(tmp_path, url, ca, "14d")
    assert result.code == WARNING and pm2.restarts == []
    assert result.apps[0].state == "DEGRADED"
    assert re.search(
        r"its certificate expires 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in (9d23h|10d00h)\)", result.apps[0].summary
    )
    with Store.open(tmp_path / "recovery.db") as store:
        (probe,) = store.query(app="web", types=["probe.succeeded"])
        (decision,) = store.query(app="web", types=["decision.made"])
    assert probe.data["cert_expires"].endswith("Z") and decision.data["code"] == "cert_expiring"


def test_a_certificate_ending_later_than_cert_warn_is_ok(tls_server, tmp_path):
    url, ca = tls_server
    result, _ = check(tmp_path, url, ca, "5d")
    assert result.code == OK


def test_cert_warn_is_only_for_https_and_ca_file_must_exist(tmp_path):
    path = tmp_path / "recovery.toml"
    path.write_text('[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\ncert_warn = "14d"\nca_file = "nope.pem"\n')
    problems = [str(p) for p in cfg.check_file(path)[1]]
    assert any("apps[0].ca_file: no such file: " in p for p in problems), problems
    assert any("apps[0].cert_warn: only for https URLs (http://127.0.0.1:3000/ is not one)" in p for p in problems), (
        problems
    )
