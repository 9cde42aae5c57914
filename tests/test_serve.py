"""`recovery serve`: Datasette on a real store, in-process (datasette.client) and in a real browser."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
import recovery_datasette
import yaml
from recovery_cli.main import app
from typer.testing import CliRunner

from recovery import serve as srv
from recovery.store import Store

from .conftest import REPO, free_port, wait_until

sys.path.insert(0, str(REPO / "bench"))
import week_store

METADATA = yaml.safe_load(recovery_datasette.METADATA.read_text())
QUERIES = sorted(METADATA["databases"]["recovery"]["queries"])
DASHBOARD = METADATA["plugins"]["datasette-dashboards"]["recovery"]
CHARTS = sorted(name for name, chart in DASHBOARD["charts"].items() if chart["library"] == "vega-lite")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    """Two days of history for 10 apps (a check every 5 minutes), with a hang, PM2's own restarts,
    a nightly scheduled restart, alerts and ingested error logs."""
    path = tmp_path_factory.mktemp("serve") / "recovery.db"
    week_store.build(path, days=2, interval=300, log_mb=0.3, quiet=True)
    return path


@pytest.fixture(scope="module")
def ds(store_path):
    return srv.make_datasette(store_path)


def get(ds, path: str, **kwargs) -> httpx.Response:
    return asyncio.run(ds.client.get(path, **kwargs))


def rows(ds, path: str) -> list[dict]:
    response = get(ds, path)
    assert response.status_code == 200, response.text[:500]
    return response.json()


# -- in-process -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", QUERIES)
def test_every_canned_query_runs_on_a_populated_store_and_returns_rows(ds, name):
    assert rows(ds, f"/recovery/{name}.json?_shape=array"), name


def test_why_restart_shows_the_events_around_the_given_time(ds):
    restart = [r for r in rows(ds, "/recovery/restarts_last_7_days.json?_shape=array") if r["source"] == "recovery"][-1]
    around = rows(ds, f"/recovery/why_restart.json?_shape=array&app={restart['app']}&time={restart['at']}")
    assert {"restart.requested"} <= {r["type"] for r in around}
    assert all(abs(r["seconds_from_time"]) <= 600 for r in around)
    assert {r["app"] for r in around} <= {restart["app"], None}


def test_the_alerts_query_runs_on_a_store_without_alerts(tmp_path):
    path = tmp_path / "recovery.db"
    Store.open(path).close()
    assert rows(srv.make_datasette(path), "/recovery/alerts.json?_shape=array") == []


def test_the_dashboard_renders_and_every_chart_query_returns_rows(ds):
    page = get(ds, "/-/dashboards/recovery")
    assert page.status_code == 200
    for name in DASHBOARD["charts"]:
        assert f'id="chart-{name}"' in page.text
    for name in CHARTS:
        chart = DASHBOARD["charts"][name]
        assert rows(ds, "/recovery.json?" + str(httpx.QueryParams(sql=chart["query"], _shape="array"))), name


def test_the_first_panel_shows_each_app_now_with_its_last_incident(ds, store_path):
    assert DASHBOARD["layout"][0] == ["now", "now"]
    now = rows(ds, "/recovery.json?" + str(httpx.QueryParams(sql=DASHBOARD["charts"]["now"]["query"], _shape="array")))
    with sqlite3.connect(store_path) as conn:
        apps = [a for (a,) in conn.execute("SELECT app FROM app_state ORDER BY app")]
        last = dict(conn.execute("SELECT app, max(id) FROM incidents GROUP BY app").fetchall())
    assert [r["app"] for r in now] == apps and len(apps) == 10
    for r in now:
        assert r["state"] == "healthy" or " since " in r["state"] or r["state"].startswith("paused until ")
        assert (
            (r["last_incident"] or "").startswith(f"#{last[r['app']]} at ")
            if r["app"] in last
            else r["last_incident"] is None
        )
    assert any(r["last_incident"] for r in now)


def test_no_canned_query_writes():
    assert not [name for name, q in METADATA["databases"]["recovery"]["queries"].items() if q.get("write")]


def test_writes_are_refused_however_they_are_asked(ds, store_path):
    before = sqlite3.connect(store_path).execute("SELECT count(*), max(hash) FROM events").fetchone()
    response = get(ds, "/recovery.json?" + str(httpx.QueryParams(sql="DELETE FROM events")))
    assert response.status_code == 400
    database = ds.get_database("recovery")
    for sql in ("DELETE FROM projection_meta", "INSERT INTO log_prunes (ts, before_ts, entries) VALUES ('a', 'b', 0)"):
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            asyncio.run(database.execute_write(sql))  # what a plugin could try: the connection is query_only
    assert sqlite3.connect(store_path).execute("SELECT count(*), max(hash) FROM events").fetchone() == before
    with Store.open(store_path, readonly=True) as store:
        assert store.verify().ok


def test_times_and_json_render_readably(ds):
    page = get(ds, "/recovery/events?_size=20&type=decision.made").text
    assert '<time class="recovery-ts" datetime="' in page and "toLocaleString" in page
    assert '<pre class="recovery-json"' in page


def test_tables_and_columns_are_described(ds):
    described = METADATA["databases"]["recovery"]["tables"]
    with Store.open(ds.get_database("recovery").path, readonly=True) as store:
        tables = {
            r[0]
            for r in store.conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE '%fts%' AND name != 'log_meta'"
            )
        }
    assert tables <= set(described), tables - set(described)
    assert "probe.succeeded" in described["events"]["description_html"]


def test_with_root_required_nothing_is_shown_until_root_signs_in(store_path):
    guarded = srv.make_datasette(store_path, require_actor="root")
    assert get(guarded, "/recovery/incidents_with_durations.json").status_code == 403
    assert get(guarded, "/-/dashboards/recovery").status_code == 403
    cookie = {"ds_actor": guarded.sign({"a": {"id": "root"}}, "actor")}
    assert get(guarded, "/recovery/incidents_with_durations.json", cookies=cookie).status_code == 200


# -- the command ------------------------------------------------------------------------------

runner = CliRunner()


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recovery: ") and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_non_loopback_host_needs_an_access_control(store_path):
    one_line_error(
        runner.invoke(app, ["serve", "--store", str(store_path), "--host", "0.0.0.0"]), "--root", "--insecure"
    )


def test_the_command_says_which_access_control_applies():
    assert "loopback only" in srv.access_rule("127.0.0.1", root=False, insecure=False)
    assert "loopback only" in srv.access_rule("::1", root=False, insecure=False)
    assert "NO access control" in srv.access_rule("0.0.0.0", root=False, insecure=True)
    assert "root" in srv.access_rule("10.0.0.5", root=True, insecure=False)


def test_start_binds_a_free_port_and_makes_the_one_time_root_link(store_path):
    server = srv.start(store_path, "127.0.0.1", 0, root=True)
    try:
        port = server.sock.getsockname()[1]
        assert port and server.url == f"http://127.0.0.1:{port}/"
        assert server.dashboard == f"http://127.0.0.1:{port}/-/dashboards/recovery"
        assert server.sign_in == f"http://127.0.0.1:{port}/-/auth-token?token={server.ds._root_token}"
    finally:
        server.sock.close()
    plain = srv.start(store_path, "127.0.0.1", 0)
    plain.sock.close()
    assert plain.sign_in is None


def test_a_store_not_named_recovery_db_gets_a_note_with_the_printed_command(tmp_path):
    assert srv.command_note(tmp_path / "recovery.db") is None
    assert "recovery.db" in (srv.command_note(tmp_path / "events.db") or "")


def test_root_and_insecure_together_are_refused(store_path):
    one_line_error(
        runner.invoke(app, ["serve", "--store", str(store_path), "--root", "--insecure"]), "--root", "--insecure"
    )


def test_print_command_prints_the_plain_datasette_command_line(store_path):
    result = runner.invoke(app, ["serve", "--store", str(store_path), "--port", "8123", "--print-command"])
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert " serve " in line and str(store_path) in line and "--port 8123" in line
    assert str(recovery_datasette.METADATA) in line and str(recovery_datasette.PLUGINS_DIR) in line
    assert "sql_time_limit_ms 1000" in line
    root = runner.invoke(app, ["serve", "--store", str(store_path), "--host", "0.0.0.0", "--root", "--print-command"])
    assert root.output.startswith(f"{srv.REQUIRE_ACTOR_ENV}=root ") and root.output.strip().endswith("--root")


def test_a_missing_store_is_one_line(tmp_path):
    one_line_error(runner.invoke(app, ["serve", "--store", str(tmp_path / "nope.db")]), "no event store", "nope.db")


def test_a_file_that_is_not_a_store_is_one_line(tmp_path):
    bad = tmp_path / "recovery.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    one_line_error(runner.invoke(app, ["serve", "--store", str(bad)]), "not a SQLite database")


def test_a_port_in_use_is_one_line(store_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_line_error(
            runner.invoke(app, ["serve", "--store", str(store_path), "--port", str(port)]), f"port {port}", "in use"
        )


def test_recovery_check_imports_nothing_of_datasette():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "recovery_cli.main", "check", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if "datasette" in m or m.startswith(("uvicorn", "yaml", "recovery.serve"))}


# -- in a real browser ------------------------------------------------------------------------


class Chromium:
    """Headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self, profile: Path) -> None:
        import websocket

        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            pytest.fail("chromium is not installed (./test.sh installs the Debian package)", pytrace=False)
        self.proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={profile}",
                "--window-size=1400,1800",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        port = wait_until(
            lambda: port_file.exists() and port_file.read_text().split("\n")[0],
            60,
            message="chromium's DevToolsActivePort",
        )
        pages = wait_until(
            lambda: [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"],
            30,
            message="a chromium page",
        )
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


CHART_SIZES = """
JSON.stringify(%s.map(function (name) {
  var el = document.querySelector('#chart-' + name + ' canvas, #chart-' + name + ' svg.marks');
  if (!el) return null;
  var r = el.getBoundingClientRect();
  return [r.width, r.height];
}))
"""


def test_the_dashboard_draws_its_charts_in_a_real_browser(store_path, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "serve", "--store", str(store_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    browser = None
    try:
        url = f"http://127.0.0.1:{port}/-/dashboards/recovery"
        wait_until(lambda: server.poll() is None and httpx.get(url).status_code == 200, 60, message=f"{url} to answer")
        browser = Chromium(profile)
        browser.send("Page.navigate", url=url)
        sizes = wait_until(
            lambda: (
                (s := json.loads(browser.evaluate(CHART_SIZES % json.dumps(CHARTS)) or "[]"))
                and all(size and size[0] > 0 and size[1] > 0 for size in s)
                and s
            ),
            60,
            0.2,
            "every chart to draw",
        )
        assert len(sizes) == len(CHARTS)
        assert browser.evaluate("document.querySelectorAll('#chart-questions a').length") >= 8
        wait_until(
            lambda: browser.evaluate("document.querySelectorAll('#chart-now tbody tr').length") == 10,
            60,
            0.2,
            "the first panel's row per app",
        )
        shot = tmp_path / "dashboard.png"
        shot.write_bytes(
            base64.b64decode(browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        if browser is not None:
            browser.close()
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "read-only" in out and "Traceback" not in err
    with pytest.raises(httpx.TransportError):  # stopping `recovery serve` stopped Datasette
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    if os.environ.get("RECOVERY_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["RECOVERY_KEEP_SCREENSHOT"])
