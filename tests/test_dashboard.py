"""The dashboard of `recovery serve` in a real headless Chromium: every chart drawn, no error, the
filters change what the charts show, the first panel's top hints and the incident timeline in words.

Screenshots are saved under the test's tmp dir (their paths are printed; `pytest -s` shows them)."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
import yaml
from recovery_datasette import METADATA

from recovery import dashboard, projections, render
from recovery.hints import strongest

from .conftest import free_port, wait_until
from .test_serve import Chromium, week_store

DASHBOARD = yaml.safe_load(METADATA.read_text())["plugins"]["datasette-dashboards"]["recovery"]
VEGA_CHARTS = sorted(name for name, chart in DASHBOARD["charts"].items() if chart["library"] == "vega-lite")
QUERY_CHARTS = sorted(name for name, chart in DASHBOARD["charts"].items() if "query" in chart)

# Before any script of the page runs: keep what every chart fetched (its rows, or the HTTP error),
# and every uncaught error, where the test can read them.
WATCH_FETCHES = """
window.__fetched = []; window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('unhandledrejection', function (e) { window.__errors.push(String(e.reason)); });
(function () {
  var real = window.fetch;
  window.fetch = async function (url, opts) {
    var r = await real(url, opts);
    var copy = r.clone();
    var entry = {url: String(url), status: r.status, rows: null, error: null};
    try { var body = await copy.json(); entry.rows = body.rows; entry.error = body.error || null; }
    catch (e) { entry.error = 'not JSON: ' + e; }
    window.__fetched.push(entry);  // once read: the test counts the answers it can check
    return r;
  };
})();
"""

# The marks each vega chart drew (its lines, bars, points and ticks, in the SVG vega-embed renders):
# not the axes, grid, labels or legend, nor invisible helpers; -1 before the chart has an SVG.
MARKS = """
JSON.stringify(%s.map(function (name) {
  var svg = document.querySelector('#chart-' + name + ' svg.marks');
  if (!svg) return -1;
  return [...svg.querySelectorAll('g.role-mark > path')].filter(function (p) {
    return (p.getAttribute('d') || '').length > 8 && p.getAttribute('opacity') !== '0';
  }).length;
}))
"""

CHART_DATA = """
JSON.stringify(window.__fetched.filter(function (f) { return f.url.indexOf('/recovery.json?sql=') >= 0; })
  .map(function (f) { return {sql: new URL(f.url).searchParams.get("sql"), status: f.status,
                              error: f.error, rows: f.rows}; }))
"""


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    """Two days of 10 apps (a check every 5 minutes): a hang of web, PM2's own restarts, alerts, error logs."""
    path = tmp_path_factory.mktemp("dashboard") / "recovery.db"
    week_store.build(path, days=2, interval=300, log_mb=0.3, quiet=True)
    return path


@pytest.fixture
def served(store_path, tmp_path):
    """`recovery serve` on the store, and a headless Chromium that watches what the page fetches."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "serve", "--store", str(store_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    browser = None
    try:
        wait_until(
            lambda: server.poll() is None and httpx.get(base + "/-/versions.json").status_code == 200,
            60,
            message=f"{base} to answer",
        )
        browser = Chromium(Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)))
        browser.send("Page.enable")
        browser.send("Page.addScriptToEvaluateOnNewDocument", source=WATCH_FETCHES)
        yield base, browser
    finally:
        if browser is not None:
            browser.close()
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "Traceback" not in err, err


def load(browser: Chromium, url: str) -> None:
    browser.send("Page.navigate", url=url)
    wait_until(
        lambda: browser.evaluate("location.href") == url and browser.evaluate("document.readyState") == "complete",
        60,
        0.1,
        f"{url} to load",
    )


def charts_drawn(browser: Chromium) -> tuple[list[int], list[dict]]:
    """Wait until every chart has fetched its rows and every vega chart has drawn marks."""

    seen: list = []

    def drawn():
        fetched = json.loads(browser.evaluate(CHART_DATA))
        marks = json.loads(browser.evaluate(MARKS % json.dumps(VEGA_CHARTS)))
        rows = browser.evaluate("document.querySelectorAll('#chart-now tbody tr').length")
        seen[:] = [dict(zip(VEGA_CHARTS, marks, strict=True)), rows, len(fetched)]
        done = len(fetched) == len(QUERY_CHARTS) and all(m > 0 for m in marks) and rows > 0
        return done and (marks, fetched)

    try:
        return wait_until(drawn, 60, 0.2, "every chart to draw its marks")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; marks per chart, table rows, chart queries fetched: {seen}") from None


def no_errors(browser: Chromium, fetched: list[dict]) -> None:
    """No chart query failed, no script error, no error text in any chart's card."""
    assert [f for f in fetched if f["status"] != 200 or f["error"]] == []
    assert browser.evaluate("JSON.stringify(window.__errors)") == "[]"
    assert browser.evaluate("document.querySelectorAll('.dashboard-card').length") == len(DASHBOARD["charts"])
    assert browser.evaluate("document.querySelectorAll('.dashboard-card [class*=error]').length") == 0


def rows_of(fetched: list[dict], chart: str) -> list[dict]:
    sql = DASHBOARD["charts"][chart]["query"]
    return next(f["rows"] for f in fetched if f["sql"] == sql)


def screenshot(browser: Chromium, path: Path) -> Path:
    data = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
    path.write_bytes(base64.b64decode(data))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    print(f"screenshot: {path}")
    return path


def expected_hints(store_path: Path) -> dict[str, str | None]:
    """Each app's strongest hint as `recovery status` computes it, in the panel's one-line form."""
    with sqlite3.connect(store_path) as conn:
        now = _dt.datetime.now(_dt.UTC)
        apps = [a for (a,) in conn.execute("SELECT app FROM app_state ORDER BY app")]
        out = {}
        for app in apps:
            hint = strongest(projections.hint_input(conn, app, now))
            out[app] = render.hint_line(hint.to_dict()) if hint else None
    return out


def test_every_chart_draws_with_no_error_and_the_first_panel_shows_each_app_with_its_top_hint(
    served, store_path, tmp_path
):
    base, browser = served
    load(browser, base + "/-/dashboards/recovery")
    marks, fetched = charts_drawn(browser)
    no_errors(browser, fetched)
    print("marks per chart:", dict(zip(VEGA_CHARTS, marks, strict=True)))
    for chart in QUERY_CHARTS:
        assert rows_of(fetched, chart), f"{chart}: no rows"

    head = json.loads(
        browser.evaluate("JSON.stringify([...document.querySelectorAll('#chart-now th')].map(t => t.innerText))")
    )
    assert head[:1] == ["app"] and "top_hint" in head and "timeline" in head
    table = json.loads(
        browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('#chart-now tbody tr')].map("
            "tr => [...tr.querySelectorAll('td')].map(td => td.innerText)))"
        )
    )
    shown = {r[0]: (r[head.index("top_hint")] or None) for r in table}
    expected = expected_hints(store_path)
    assert len(shown) == 10 and shown == {app: (h or None) for app, h in expected.items()}
    assert any(expected.values())  # the two days have a hang: some app has a likely cause
    screenshot(browser, tmp_path / "dashboard.png")


def test_the_filters_change_what_every_chart_shows(served, store_path, tmp_path):
    base, browser = served
    load(browser, base + "/-/dashboards/recovery")
    _, everything = charts_drawn(browser)
    assert len({r["app"] for r in rows_of(everything, "memory")}) == 10

    # Choose an app with an incident and error logs in the form, as a user does, and apply it.
    with sqlite3.connect(store_path) as conn:
        app, started = conn.execute(
            "SELECT app, started_at FROM incidents WHERE app IN (SELECT app FROM log_counts) ORDER BY id DESC LIMIT 1"
        ).fetchone()
    options = json.loads(
        browser.evaluate("JSON.stringify([...document.querySelectorAll('#app option')].map(o => o.value))")
    )
    assert app in options and len(options) == 11  # every app, and empty for all
    browser.evaluate(f"document.querySelector('#app').value = {json.dumps(app)}")
    browser.evaluate("document.querySelector('.dashboard-filters input[type=submit]').click()")
    wait_until(lambda: f"app={app}" in browser.evaluate("location.href"), 30, 0.1, "the filtered dashboard")
    wait_until(lambda: browser.evaluate("document.readyState") == "complete", 30, 0.1, "the page")
    _, fetched = charts_drawn(browser)
    no_errors(browser, fetched)
    for chart in ("memory", "latency", "availability", "incidents"):
        assert {r["app"] for r in rows_of(fetched, chart)} == {app}, chart
    assert [r["app"] for r in rows_of(fetched, "now")] == [app]
    assert len(rows_of(fetched, "memory")) < len(rows_of(everything, "memory"))
    screenshot(browser, tmp_path / "dashboard-one-app.png")

    # The day of the incident only: every chart over time keeps to that UTC day.
    day = started[:10]
    load(browser, f"{base}/-/dashboards/recovery?app={app}&since={day}&until={day}")
    _, fetched = charts_drawn(browser)
    no_errors(browser, fetched)
    assert {r["hour"][:10] for r in rows_of(fetched, "memory")} == {day}
    assert {r["hour"][:10] for r in rows_of(fetched, "latency")} == {day}
    assert {r["day"] for r in rows_of(fetched, "availability")} == {day}
    assert [r["started_at"][:10] for r in rows_of(fetched, "incidents")] == [day]
    screenshot(browser, tmp_path / "dashboard-one-day.png")


def test_an_incident_opens_as_a_readable_timeline(served, store_path, tmp_path):
    base, browser = served
    load(browser, base + "/-/dashboards/recovery")
    charts_drawn(browser)
    with sqlite3.connect(store_path) as conn:
        iid, app = conn.execute("SELECT id, app FROM incidents ORDER BY id DESC LIMIT 1").fetchone()
    # The first panel links the app's last incident to its timeline.
    link = browser.evaluate(
        "[...document.querySelectorAll('#chart-now tbody tr')].filter(tr => tr.cells[0].innerText === %s)"
        "[0].querySelector('a').href" % json.dumps(app)
    )
    assert link == f"{base}/recovery/incident_timeline?id={iid}"
    load(browser, link)
    wait_until(lambda: browser.evaluate("document.querySelectorAll('table.rows-and-columns tbody tr').length") > 3, 30)
    head = json.loads(
        browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('table.rows-and-columns th')].map(t => t.innerText.trim()))"
        )
    )
    assert head[:4] == ["ts", "offset", "app", "what"]
    what = json.loads(
        browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('table.rows-and-columns tbody tr')].map(tr => tr.cells[3].innerText))"
        )
    )
    assert any(" × probe.failed timeout over " in w for w in what), what  # repeats folded, in words
    assert any(w.startswith("restart.requested by check") for w in what), what
    assert any(w.startswith("ended: ") for w in what), what
    assert not any(w.lstrip().startswith("{") for w in what)  # no JSON
    assert len(what) <= 30  # a screen, not 99 rows
    screenshot(browser, tmp_path / "incident-timeline.png")


def test_the_sql_functions_answer_as_status_and_why_do(store_path):
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as conn:
        conn.execute("PRAGMA query_only = 1")
        dashboard.register(conn)
        hints = dict(conn.execute("SELECT app, recovery_hint(app) FROM app_state").fetchall())
        assert hints == expected_hints(store_path)
        iid = conn.execute("SELECT max(id) FROM incidents").fetchone()[0]
        rows = [json.loads(v) for (v,) in conn.execute("SELECT value FROM json_each(incident_timeline(?))", (iid,))]
        assert rows == dashboard.timeline_rows(conn, iid)
        assert conn.execute("SELECT incident_timeline(999999)").fetchone()[0] == "[]"
        assert conn.execute("SELECT html_text('<b>a & b</b>')").fetchone()[0] == "&lt;b&gt;a &amp; b&lt;/b&gt;"
        text = conn.execute(
            "SELECT event_text(type, data) FROM events WHERE type = 'restart.requested' LIMIT 1"
        ).fetchone()[0]
        assert text.startswith("restart.requested by ")


def test_the_memory_chart_keeps_finished_hours_and_reads_again_what_a_late_event_changed(tmp_path):
    """memory_hours is the hour's highest PM2 sample; an hour kept by the server is read again when
    an event with an earlier time (a spooled check) lands in it."""
    from recovery.events import Event, format_ts
    from recovery.store import Store

    now = _dt.datetime.now(_dt.UTC).replace(minute=30)
    hour = now - _dt.timedelta(hours=5)

    def sample(at: _dt.datetime, mb: int, app: str = "web") -> Event:
        data = {"status": "online", "known": True, "source": "pidfile", "pid": 1, "memory": mb * 1048576, "cpu": 1.0}
        return Event(type="process.sampled", app=app, run_id="r", data=data, ts=format_ts(at), host="h")

    path = tmp_path / "recovery.db"
    with Store.open(path) as store:
        store.append([sample(hour + _dt.timedelta(minutes=m), 100 + m) for m in (-20, -10, 0, 10)])
        store.append([sample(hour, 50, "api"), sample(now - _dt.timedelta(minutes=1), 70, "api")])
        projections.fold(store.conn)
    since, until = format_ts(now - _dt.timedelta(hours=8)), format_ts(now)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        conn.execute("PRAGMA query_only = 1")
        dashboard.register(conn)
        shown = lambda app: json.loads(conn.execute("SELECT memory_hours(?, ?, ?)", (app, since, until)).fetchone()[0])  # noqa: E731
        h = format_ts(hour)[:13] + ":00:00Z"
        last = format_ts(now - _dt.timedelta(minutes=1))[:13] + ":00:00Z"
        assert shown("") == [["api", h, 50.0], ["web", h, 110.0], ["api", last, 70.0]]
        assert shown("web") == [["web", h, 110.0]]
        with Store.open(path) as store:
            store.append([sample(hour + _dt.timedelta(minutes=5), 300)])  # late, into a finished hour
        assert shown("web") == [["web", h, 300.0]]
