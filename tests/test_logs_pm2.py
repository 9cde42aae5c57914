"""Ingestion of logs that a real PM2 wrote: one entry per Node error, with the right template."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery import logs
from recovery.logs import storage
from recovery.store import Store

from .conftest import wait_until

pytestmark = pytest.mark.pm2

LOGGER_JS = r"""
'use strict';
// Errors as a Node app prints them: console.error(err) writes the stack and a { code } block.
for (const port of [5432, 5433, 6379]) {
  const err = new Error(`connect ECONNREFUSED 127.0.0.1:${port}`);
  err.code = 'ECONNREFUSED';
  err.errno = -111;
  err.syscall = 'connect';
  console.error(err);
  console.log(`GET /api/items/${port} 200 in ${port % 97}ms`);
}
console.log('ready');
setInterval(() => {}, 1000);
"""


@pytest.mark.parametrize("time_prefix", [False, True], ids=["plain", "time"])
def test_errors_pm2_wrote_become_one_entry_each_with_one_template(pm2, tmp_path: Path, time_prefix: bool):
    script = tmp_path / "logger.js"
    script.write_text(LOGGER_JS)
    args = ["start", str(script), "--name", "logger", "--no-autorestart"]
    if time_prefix:
        args.append("--time")  # PM2 prefixes every line with its date
    pm2.run(*args)
    (proc,) = [p for p in pm2.jlist() if p["name"] == "logger"]
    err_log = Path(proc["pm2_env"]["pm_err_log_path"])
    out_log = Path(proc["pm2_env"]["pm_out_log_path"])
    wait_until(lambda: out_log.exists() and "ready" in out_log.read_text(), message="the logger's output")
    wait_until(lambda: err_log.read_text().count("code: 'ECONNREFUSED'") == 3, message="three errors in the log")

    with Store.open(tmp_path / "recovery.db") as store:
        result = logs.ingest(store, "logger", [err_log, out_log], now="2000-01-01T00:00:00Z")
        assert result.entries == 3 and result.skipped == 4, result
        current = dict(store.conn.execute("SELECT template_id, text FROM log_template_current"))
        rows = [
            (e["stream"], e["code"], e["stack_top"], e["lines"], current[e["template_id"]], e["ts"], e["ts_bounded"])
            for e in storage.entries(store.conn)
        ]
        assert {r[4] for r in rows} == {"Error: connect ECONNREFUSED <IP>"}
        assert all(r[0] == "err" and r[1] == "ECONNREFUSED" and r[2].startswith("at ") and r[3] >= 5 for r in rows)
        # With --time the entry's time is PM2's, exact; else it is bounded (issue 16): at the latest
        # the time of ingestion, earlier by the age of the file's last write.
        if time_prefix:
            assert all(r[6] == 0 and r[5] > "2000-01-01T00:00:00.000Z" for r in rows)
        else:
            assert all(r[6] == 1 and r[5] <= "2000-01-01T00:00:00.000Z" for r in rows)
        (top,) = logs.top_templates(store.conn, "1999-12-31T23:00:00Z")  # (a bound falls just before the read)
        assert top["count"] == 3 and top["app"] == "logger"
        assert logs.ingest(store, "logger", [err_log, out_log]).entries == 0  # read once
