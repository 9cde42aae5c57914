"""Issue 15 points 7 and 8: no value crashes the run, and secrets in an app's URL are never recorded
or printed; a config `recovery init` writes is readable by its owner only."""

from __future__ import annotations

import base64
import http.server
import json
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from recovery.config import load
from recovery.units import DurationTooLong, parse_duration
from recovery.urls import shown_url
from recovery.watch import describe
from tests.test_cli import GOOD_APP, assert_one_line_exit_3, invoke, write


@pytest.mark.parametrize("value", ["3000000d", "99999999d", "999999999999s", 4e12])
def test_a_duration_past_what_a_date_can_hold_is_refused(value):
    with pytest.raises(DurationTooLong, match="at most 36500d"):
        parse_duration(value)
    assert parse_duration("36500d") == 36500 * 86400


def test_a_huge_window_in_the_config_is_refused_with_its_line_and_key(tmp_path):
    conf = write(tmp_path, f'[policy]\nmax_restarts = 3\nwindow = "3000000d"\n{GOOD_APP}')
    result = invoke("config", "validate", str(conf))
    assert result.exit_code != 0
    assert f"{conf}:3: policy.window" in result.output or "recovery.toml:3: policy.window" in result.output
    assert "too long" in result.output and "Traceback" not in result.output
    # Before, it passed validation and every check crashed (so a hung app was never restarted).
    check = invoke("check", "--config", str(conf))
    assert check.exit_code == 3 and "Traceback" not in check.output
    assert "policy.window" in check.output and "too long" in check.output


@pytest.mark.parametrize(
    "args",
    [
        ("report", "--since", "99999999d"),
        ("events", "--since", "99999999d"),
        ("pause", "web", "--for", "99999999d"),
    ],
    ids=["report", "events", "pause"],
)
def test_huge_durations_on_the_command_line_are_one_line_and_exit_3(tmp_path, args):
    conf = write(tmp_path, f'[store]\npath = "{tmp_path / "r.db"}"\n{GOOD_APP}')
    invoke("pause", "web", "--for", "1m", "--config", str(conf))  # a store to read
    assert_one_line_exit_3(invoke(*args, "--config", str(conf)), "99999999d", "too long")


def test_shown_url_hides_the_user_the_password_and_the_query():
    assert shown_url("http://admin:s3cret@127.0.0.1:3000/health") == "http://***@127.0.0.1:3000/health"
    assert shown_url("https://tok@example.test/x?key=abc") == "https://***@example.test/x?…"
    assert shown_url("http://127.0.0.1:3000/") == "http://127.0.0.1:3000/"


class _BasicAuth(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):
        self.seen.append(self.headers.get("Authorization") or "")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_a_url_with_user_and_password_is_recorded_and_printed_redacted(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BasicAuth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        url = f"http://admin:s3cret@127.0.0.1:{port}/health"
        db = tmp_path / "r.db"
        conf = write(
            tmp_path,
            f'[store]\npath = "{db}"\n[pm2]\nbin = "/nonexistent/pm2"\n[[apps]]\nname = "web"\nurl = "{url}"\n',
        )
        result = invoke("check", "--config", str(conf))
        assert result.exit_code == 3  # pm2 is missing: UNKNOWN, but the app was probed and recorded
        # The credentials were used (basic auth), never kept.
        assert _BasicAuth.seen and _BasicAuth.seen[0] == "Basic " + base64.b64encode(b"admin:s3cret").decode()
        assert "s3cret" not in result.output
        rows = sqlite3.connect(db).execute("SELECT data FROM events").fetchall()
        assert rows and not any("s3cret" in r[0] or "admin" in r[0] for r in rows)
        urls = {json.loads(r[0]).get("url") for r in rows} - {None}
        assert urls == {f"http://***@127.0.0.1:{port}/health"}
        assert "s3cret" not in describe(load(conf), 2.0)
        assert "s3cret" not in invoke("status", "--config", str(conf)).output
    finally:
        server.shutdown()
        server.server_close()


def test_init_writes_the_config_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "recovery.toml"
    assert invoke("init", str(path)).exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert invoke("init", str(path), "--force").exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_into_a_new_folder_still_works(tmp_path):
    path = Path(tmp_path / "etc" / "recovery" / "recovery.toml")
    assert invoke("init", str(path)).exit_code == 0 and path.exists()
