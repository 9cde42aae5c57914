"""`recovery ingest` and `recovery errors` over logs written to disk (and, marked pm2, by a real PM2)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from recovery_cli.main import app
from typer.testing import CliRunner

from recovery import logs
from recovery.store import Store

from .conftest import wait_until
from .test_projections import Timeline

runner = CliRunner()

NODE_ERROR = """Error: connect ECONNREFUSED 127.0.0.1:{port}
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {{
  errno: -111,
  code: 'ECONNREFUSED',
  syscall: 'connect',
  address: '127.0.0.1',
  port: {port}
}}
"""
TYPE_ERROR = """TypeError: Cannot read properties of undefined (reading 'id')
    at handler (/srv/app/pages/api/items.js:12:20)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
"""
TEMPLATE = "Error: connect ECONNREFUSED <IP>"


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"RECOVERY_CONFIG": ""})


def ago(**kw: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(**kw)).isoformat()


def write_config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "recovery.toml"
    p.write_text(
        f'[store]\npath = "data/recovery.db"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n{extra}'
    )
    return p


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A store with 1 ECONNREFUSED 30h ago, then 3 ECONNREFUSED (other ports) and 1 TypeError 1h ago."""
    conf = write_config(tmp_path)
    old, new = tmp_path / "old-error.log", tmp_path / "web-error.log"
    old.write_text(NODE_ERROR.format(port=5432))
    new.write_text("".join(NODE_ERROR.format(port=p) for p in (5433, 6379, 27017)) + TYPE_ERROR)
    with Store.open(tmp_path / "data" / "recovery.db") as store:
        assert logs.ingest(store, "web", [old], now=ago(hours=30)).entries == 1
        assert logs.ingest(store, "web", [new], now=ago(hours=1)).entries == 4
    return conf


def test_errors_json_ranks_templates_with_counts_and_the_change_against_the_previous_window(filled):
    result = invoke("errors", "--since", "24h", "--json", "--config", str(filled))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["count"] for r in rows] == [3, 1]
    first = rows[0]
    for key in ("template_id", "template", "app", "count", "first_seen", "last_seen", "example"):
        assert key in first, key
    assert first["template"] == TEMPLATE and first["app"] == "web"
    assert first["example"].startswith("Error: connect ECONNREFUSED 127.0.0.1:")
    assert first["first_seen"] <= first["last_seen"]
    assert (first["previous_count"], first["change"]) == (1, 2)
    assert rows[1]["template"].startswith("TypeError: Cannot read properties of undefined")
    assert rows[1]["previous_count"] == 0

    wide = json.loads(invoke("errors", "--since", "2d", "--json", "--top", "1", "--config", str(filled)).output)
    assert len(wide) == 1 and wide[0]["count"] == 4


def test_errors_text_listing_and_the_empty_cases(filled, tmp_path):
    result = invoke("errors", "--config", str(filled))
    assert result.exit_code == 0, result.output
    assert TEMPLATE in result.output and "3×" in result.output and "+200%" in result.output
    assert "e.g. Error: connect ECONNREFUSED" in result.output and "(new)" in result.output
    quiet = invoke("errors", "--since", "10m", "--config", str(filled))
    assert quiet.exit_code == 0 and "no errors since" in quiet.output
    assert json.loads(invoke("errors", "--since", "10m", "--json", "--config", str(filled)).output) == []


def test_errors_show_gives_the_template_its_days_and_examples_with_stack_top(filled):
    rows = json.loads(invoke("errors", "--json", "--since", "2d", "--config", str(filled)).output)
    tid = rows[0]["template_id"]
    result = invoke("errors", "show", tid, "--config", str(filled))
    assert result.exit_code == 0, result.output
    assert TEMPLATE in result.output and "4 entries" in result.output
    assert "127.0.0.1:27017" in result.output and "at TCPConnectWrap.afterConnect" in result.output
    detail = json.loads(invoke("errors", "show", tid, "--json", "--examples", "2", "--config", str(filled)).output)
    assert detail["template"] == TEMPLATE and detail["count"] == 4
    assert sum(d["count"] for d in detail["days"]) == 4 and len(detail["days"]) in (1, 2)
    assert len(detail["examples"]) == 2 and detail["examples"][0]["ts"] >= detail["examples"][1]["ts"]
    assert all(e["stack_top"].startswith("at TCPConnectWrap") for e in detail["examples"])


def test_errors_search_is_full_text_newest_first(filled):
    result = invoke("errors", "search", "ECONNREFUSED", "--json", "--config", str(filled))
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert len(found) == 4 and [r["ts"] for r in found] == sorted((r["ts"] for r in found), reverse=True)
    assert found[-1]["message"].endswith(":5432")  # the oldest last
    assert (
        len(
            json.loads(
                invoke("errors", "search", "ECONNREFUSED", "--limit", "2", "--json", "--config", str(filled)).output
            )
        )
        == 2
    )
    text = invoke("errors", "search", "items.js", "--config", str(filled))
    assert text.exit_code == 0 and "TypeError" in text.output and "ECONNREFUSED" not in text.output
    assert "no entries match" in invoke("errors", "search", "nothing-like-this", "--config", str(filled)).output


POOL_TIMEOUT = "Error: Timed out fetching a new connection from the connection pool (connection limit: 10)\n"


def test_around_incidents_ranks_what_came_before_the_outages_against_its_base_rate(tmp_path):
    """Two hangs; DB connection errors minutes before both, a pool timeout before one (and never
    otherwise), a TypeError that is common all day and once happens to fall before one."""
    from recovery import projections

    conf = write_config(tmp_path)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    groups = [  # (minutes ago, text)
        (20 * 60, NODE_ERROR.format(port=5432)),
        (10 * 60, TYPE_ERROR * 10),
        (3 * 60 + 5, NODE_ERROR.format(port=5433) * 2),
        (60 + 4, NODE_ERROR.format(port=5434) * 3),
        (60 + 3, POOL_TIMEOUT),
        (60 + 2, TYPE_ERROR),
    ]
    with Store.open(tmp_path / "data" / "recovery.db") as store:
        for n, (minutes, text) in enumerate(groups):
            f = tmp_path / f"web-error.{n}.log"
            f.write_text(text)
            logs.ingest(store, "web", [f], now=now - dt.timedelta(minutes=minutes))
        tl = Timeline(store, t0=now)
        tl.healthy(-4 * 3600)
        tl.hang_recovered(-3 * 3600)
        tl.hang_recovered(-3600)
        tl.healthy(-60)
        projections.fold(store.conn)

    result = invoke("errors", "--around-incidents", "--json", "--config", str(conf))
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert len(found["incidents"]) == 2 and found["minutes"] == 10
    ranked = [(r["template"].split(":")[0], r["incidents_preceded"], r["before_incidents"]) for r in found["templates"]]
    assert ranked == [("Error", 2, 5), ("Error", 1, 1), ("TypeError", 1, 1)], ranked
    db, pool, type_error = found["templates"]
    assert db["template"] == TEMPLATE and db["base_count"] == 1 and db["lift"] > 100
    assert pool["lift"] is None and pool["appeared_before_incident"] == found["incidents"][1]["id"]
    assert type_error["base_count"] == 10 and type_error["lift"] < db["lift"]

    text = invoke("errors", "--around-incidents", "--since", "7d", "--config", str(conf)).output
    assert "2 incidents since" in text and "before 2 of 2 incidents" in text and "never seen elsewhere" in text
    narrow = invoke("errors", "--around-incidents", "--minutes", "1", "--config", str(conf))
    assert narrow.exit_code == 0 and "no error entries in the 1 minutes before any of them" in narrow.output
    quiet = invoke("errors", "--around-incidents", "--since", "30m", "--config", str(conf))
    assert quiet.exit_code == 0 and "0 incidents since" in quiet.output
    assert_one_line_exit_3(invoke("errors", "--around-incidents", "--minutes", "0", "--config", str(conf)), "--minutes")


def test_prune_deletes_old_raw_entries_as_a_recorded_step_and_keeps_the_counts(filled):
    would = invoke("errors", "prune", "--keep", "1d", "--dry-run", "--config", str(filled))
    assert would.exit_code == 0 and would.output.startswith("would prune 1 entry older than"), would.output
    nothing = invoke("errors", "prune", "--config", str(filled))  # keep_raw defaults to 30d
    assert nothing.exit_code == 0 and nothing.output.startswith("pruned 0 entries"), nothing.output
    assert len(json.loads(invoke("errors", "search", "ECONNREFUSED", "--json", "--config", str(filled)).output)) == 4

    filled.write_text(filled.read_text() + '\n[logs]\nkeep_raw = "1d"\n')
    done = invoke("errors", "prune", "--config", str(filled))
    assert done.exit_code == 0 and "pruned 1 entry" in done.output and "log.pruned" in done.output, done.output
    with Store.open(filled.parent / "data" / "recovery.db", readonly=True) as store:
        (event,) = [e for e in store.query() if e.type == "log.pruned"]
    assert event.data["entries"] == 1
    found = json.loads(invoke("errors", "search", "ECONNREFUSED", "--json", "--config", str(filled)).output)
    assert len(found) == 3 and not any(r["message"].endswith(":5432") for r in found)
    ranked = json.loads(invoke("errors", "--since", "7d", "--json", "--config", str(filled)).output)
    assert {r["template"]: r["count"] for r in ranked}[TEMPLATE] == 4  # counts are kept for good
    assert_one_line_exit_3(invoke("errors", "prune", "--keep", "soon", "--config", str(filled)), "--keep")


def assert_one_line_exit_3(result, *needles: str):
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_input_is_one_line_and_exit_3(filled, tmp_path):
    assert_one_line_exit_3(invoke("errors", "show", "nope", "--config", str(filled)), "nope")
    assert_one_line_exit_3(invoke("errors", "--since", "someday", "--config", str(filled)), "--since")
    assert_one_line_exit_3(invoke("errors", "--app", "shop", "--config", str(filled)), "shop")
    assert_one_line_exit_3(invoke("ingest", "--app", "shop", "--config", str(filled)), "shop")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    conf = write_config(fresh)
    for args in (["errors"], ["errors", "show", "x"], ["errors", "search", "x"]):
        assert_one_line_exit_3(invoke(*args, "--config", str(conf)), "no event store")


def test_ingest_reads_the_logs_given_in_the_config_once(tmp_path):
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "web-error.log"
    log.write_text(NODE_ERROR.format(port=5432) + NODE_ERROR.format(port=5433))
    conf = write_config(tmp_path, 'logs = ["logs/web-error.log"]\n')
    result = invoke("ingest", "--config", str(conf))
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"web: [\d,]+ bytes, [\d,]+ lines, 2 entries, 1 new template, 0 warnings from 1 file in [\d.]+s",
        result.output.strip(),
    ), result.output
    with log.open("a") as f:
        f.write(TYPE_ERROR)
    again = invoke("ingest", "--app", "web", "--config", str(conf))
    assert again.exit_code == 0 and ", 1 entry, 1 new template," in again.output
    rows = json.loads(invoke("errors", "--json", "--config", str(conf)).output)
    assert sorted(r["count"] for r in rows) == [1, 2]


def test_ingest_with_no_pm2_is_one_line_and_exit_3(tmp_path):
    conf = write_config(tmp_path)
    conf.write_text('[pm2]\nbin = "/nonexistent/bin/pm2"\n' + conf.read_text())
    assert_one_line_exit_3(invoke("ingest", "--config", str(conf)), "pm2 not found")


LOGGER_JS = r"""
'use strict';
for (const port of [5432, 5433, 6379]) {
  const err = new Error(`connect ECONNREFUSED 127.0.0.1:${port}`);
  err.code = 'ECONNREFUSED';
  console.error(err);
  console.log(`GET /api/items/${port} 200 in ${port % 97}ms`);
}
console.log('ready');
setInterval(() => {}, 1000);
"""


@pytest.mark.pm2
def test_ingest_finds_the_log_paths_pm2_reports(pm2, tmp_path, monkeypatch):
    script = tmp_path / "logger.js"
    script.write_text(LOGGER_JS)
    pm2.run("start", str(script), "--name", "logger", "--no-autorestart")
    (proc,) = [p for p in pm2.jlist() if p["name"] == "logger"]
    err_log = Path(proc["pm2_env"]["pm_err_log_path"])
    out_log = Path(proc["pm2_env"]["pm_out_log_path"])
    wait_until(lambda: out_log.exists() and "ready" in out_log.read_text(), message="the logger's output")
    wait_until(lambda: err_log.read_text().count("code: 'ECONNREFUSED'") == 3, message="three errors in the log")

    conf = tmp_path / "recovery.toml"
    conf.write_text(
        f'[store]\npath = "recovery.db"\n\n[pm2]\nbin = "{pm2.bin}"\n\n'
        '[[apps]]\nname = "logger"\nurl = "http://127.0.0.1:9/"\n'
    )
    monkeypatch.setenv("PM2_HOME", str(pm2.home))
    result = invoke("ingest", "--config", str(conf))
    assert result.exit_code == 0, result.output
    assert ", 3 entries, 1 new template, 0 warnings from 2 files in " in result.output, result.output
    rows = json.loads(invoke("errors", "--json", "--config", str(conf)).output)
    assert [(r["template"], r["count"], r["app"]) for r in rows] == [(TEMPLATE, 3, "logger")]
    assert "logger: 0 bytes, 0 lines, 0 entries" in invoke("ingest", "--config", str(conf)).output  # read once


def test_a_long_template_is_cut_in_the_list_and_shown_whole_by_show(tmp_path):
    conf = write_config(tmp_path)
    log = tmp_path / "web-error.log"
    long_message = "Error: render failed for " + " ".join(f"segment{n}" for n in range(4000))  # ~44 KB, one line
    log.write_text(long_message + "\n")
    with Store.open(tmp_path / "data" / "recovery.db") as store:
        assert logs.ingest(store, "web", [log], now=ago(minutes=5)).entries == 1
    listed = invoke("errors", "--config", str(conf))
    assert listed.exit_code == 0 and max(len(line) for line in listed.output.splitlines()) < 400
    (tid,) = re.findall(r"`recovery errors show (\w+)` prints it whole", listed.output)
    whole = invoke("errors", "show", tid, "--config", str(conf))
    assert "segment3999" in whole.output
