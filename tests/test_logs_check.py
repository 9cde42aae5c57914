"""Log ingestion as the last step of `recovery check`, against logs a real PM2 wrote."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from recovery.store import Store

from .test_check import recovery, stored, types, write_config

pytestmark = pytest.mark.pm2


def with_logs(config: Path, **settings: str) -> Path:
    config.write_text(config.read_text() + "\n[logs]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return config


def entries(config: Path) -> list[tuple]:
    with Store.open(config.parent / "data" / "recovery.db", readonly=True) as s:
        return s.conn.execute(
            "SELECT e.app, e.code, v.text FROM log_entries e JOIN log_template_current v ON v.template_id = e.template_id"
            " ORDER BY e.id"
        ).fetchall()


def run_events(config: Path) -> list[list]:
    """The stored events, one list per check run, in order."""
    runs: dict[str, list] = {}
    for e in stored(config):
        runs.setdefault(e.run_id, []).append(e)
    return list(runs.values())


def error_log(app) -> Path:
    (proc,) = app.processes()
    return Path(proc["pm2_env"]["pm_err_log_path"])


def log_errors(app, n: int, before: int = 0) -> None:
    """Make the app print `n` Node errors, and wait until PM2 has written them."""
    app.control("error", n=n)
    app.wait_until(
        lambda: error_log(app).read_text().count("code: 'ECONNREFUSED'") == before + n,
        message=f"{n} more errors in the app's error log",
    )


def test_a_healthy_check_ingests_new_errors_after_its_probe_without_a_jlist_once_the_files_are_known(pm2, tmp_path):
    app = pm2.start_app("web")
    log_errors(app, 2)
    config = with_logs(write_config(tmp_path, pm2, app, logs_in_check=True), check_every='"0s"')

    first = recovery(pm2, "check", "--config", str(config))
    assert first.returncode == 0 and first.stdout.splitlines()[1].startswith("web OK"), first.stderr
    (run1,) = run_events(config)
    kinds = types(run1)
    assert kinds.index("decision.made") < kinds.index("log.ingested") < kinds.index("check.finished")
    # The first time, PM2 is asked where the app's logs are (a full sample, recorded as such).
    discovered = [e for e in run1 if e.type == "process.sampled" and e.data["source"] == "jlist"]
    assert discovered and str(error_log(app)) in discovered[0].data["logs"]
    assert entries(config) == [("web", "ECONNREFUSED", "Error: connect ECONNREFUSED <IP>")] * 2

    log_errors(app, 3, before=2)
    second = recovery(pm2, "check", "--config", str(config))
    assert second.returncode == 0, second.stderr
    run2 = run_events(config)[1]
    assert [e.data["source"] for e in run2 if e.type == "process.sampled"] == ["pidfile"]  # no pm2 jlist
    (ingested,) = [e for e in run2 if e.type == "log.ingested"]
    assert ingested.data["entries"] == 3
    assert len(entries(config)) == 5  # each error once

    listed = recovery(pm2, "errors", "--json", "--config", str(config))
    (top,) = json.loads(listed.stdout)
    assert top["count"] == 5 and top["template"] == "Error: connect ECONNREFUSED <IP>"


def test_a_hung_app_has_its_logs_read_just_before_it_is_restarted_and_verified(pm2, tmp_path):
    app = pm2.start_app("web")
    log_errors(app, 1)
    config = write_config(tmp_path, pm2, app, logs_in_check=True, timeout='"1s"', retry_delay='"0s"')
    app.control("hang")
    app.wait_until(lambda: not app.answers(timeout=0.5), message="the app to hang")

    result = recovery(pm2, "check", "--config", str(config))
    assert result.returncode == 1 and "RECOVERED" in result.stdout, (result.stdout, result.stderr)
    kinds = types(stored(config))
    # Read before the restart (issue 16): a line without a timestamp is then bounded by the failure.
    assert kinds.index("decision.made") < kinds.index("log.ingested") < kinds.index("restart.requested")
    assert kinds.index("restart.succeeded") < kinds.index("verification.passed")
    assert [e[1] for e in entries(config)] == ["ECONNREFUSED"]


def test_a_backlog_is_worked_off_over_several_checks_within_the_budget(pm2, tmp_path):
    app = pm2.start_app("web")
    backlog = tmp_path / "old-error.log"
    error = "Error: connect ETIMEDOUT 10.0.0.{n}:5432\n    at TCPConnectWrap.afterConnect (node:net:1555:16) {{\n  code: 'ETIMEDOUT'\n}}\n"
    backlog.write_text("".join(error.format(n=n % 250) for n in range(2000)))  # ~220 KB
    config = write_config(tmp_path, pm2, app, logs_in_check=True)
    config.write_text(config.read_text() + f'logs = ["{backlog}"]\n')
    with_logs(config, check_every='"0s"', check_budget='"64KB"')

    reads = []
    for _ in range(10):
        result = recovery(pm2, "check", "--config", str(config))
        assert result.returncode == 0, result.stderr
        (ingested,) = [e for e in run_events(config)[-1] if e.type == "log.ingested"]
        reads.append(ingested.data)
        if ingested.data["complete"]:
            break
    assert len(reads) >= 4 and reads[-1]["complete"], [r["complete"] for r in reads]
    assert all(f["bytes"] <= 64 * 1024 for r in reads for f in r["files"])
    assert len(entries(config)) == 2000  # nothing lost or doubled at the budget's cuts
    # Nothing new: the next check leaves the log tables and the events alone.
    recovery(pm2, "check", "--config", str(config))
    assert "log.ingested" not in types(run_events(config)[-1])


def test_check_every_dry_run_and_in_check_false_leave_the_logs_to_recovery_ingest(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, logs_in_check=True)  # check_every defaults to 1m
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    log_errors(app, 2)
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    assert recovery(pm2, "check", "--dry-run", "--config", str(config)).returncode == 0
    assert entries(config) == []  # the first run read the empty log; the next ones were too soon / dry

    with_logs(config, in_check="false", check_every='"0s"')
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    assert entries(config) == []
    ingested = recovery(pm2, "ingest", "--config", str(config))
    assert ingested.returncode == 0 and ", 2 entries, " in ingested.stdout, ingested.stdout


def test_log_trouble_is_recorded_and_never_changes_the_checks_verdict(pm2, tmp_path):
    app = pm2.start_app("web")
    config = with_logs(write_config(tmp_path, pm2, app, logs_in_check=True), check_every='"0s"')
    assert recovery(pm2, "check", "--config", str(config)).returncode == 0
    db = tmp_path / "data" / "recovery.db"
    with sqlite3.connect(db) as conn:  # as if a newer recovery had migrated the log tables
        conn.execute("INSERT OR REPLACE INTO log_meta (key, value) VALUES ('schema_version', '99')")
    log_errors(app, 1)

    result = recovery(pm2, "check", "--config", str(config))
    assert result.returncode == 0 and result.stdout.splitlines()[1].startswith("web OK"), (result.stdout, result.stderr)
    (failed,) = [e for e in run_events(config)[-1] if e.type == "log.failed"]
    assert "schema version 99" in failed.data["error"]
    assert types(run_events(config)[-1])[-1] == "check.finished"
