"""A store whose log tables have the old schema (2: texts in log_entries) is migrated once, with
sqlite-utils, and keeps every entry; `recovery check` never imports sqlite-utils."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from recovery import logs
from recovery.logs import storage
from recovery.store import Store, split_sql

from .test_check import write_config

STACK = "at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)"
DETAIL = f"    {STACK} {{\n  errno: -111,\n  code: 'ECONNREFUSED',\n  port: 5432\n}}"
# (id, ts, message): ids 3 and 4 went in a recorded prune, so the ids have a gap.
OLD_ROWS = [
    (1, "2026-10-01T01:00:00.000Z", "Error: connect ECONNREFUSED 10.0.0.1:5432"),
    (2, "2026-10-01T01:00:05.000Z", "Error: connect ECONNREFUSED 10.0.0.2:5432"),
    (5, "2026-11-20T01:00:00.000Z", "Error: connect ECONNREFUSED 10.0.0.5:5432"),
    (6, "2026-11-21T02:00:00.000Z", "Error: connect ECONNREFUSED 10.0.0.6:5432"),
]
TID = "aaeca99a8bf5"


def old_store(path: Path, log: str) -> None:
    """A store as the code before schema 3 left it, built with that code's SQL (MIGRATIONS 1 and 2)."""
    Store.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for statement in split_sql(storage.MIGRATIONS[0] + "\n" + storage.MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute("INSERT INTO log_meta VALUES ('schema_version', '2')")
    conn.execute("INSERT INTO log_ingests VALUES (1, '2026-11-21T03:00:00.000Z', 'web', NULL, 6, 1)")
    conn.execute(
        "INSERT INTO log_templates VALUES (?, '2026-10-01T01:00:00.000Z', 'Error: connect ECONNREFUSED <IP>', ?)",
        (TID, OLD_ROWS[0][2]),
    )
    conn.execute(
        "INSERT INTO log_template_versions VALUES (?, 1, 'Error: connect ECONNREFUSED <IP>', ?, 1)",
        (TID, OLD_ROWS[0][1]),
    )
    for i, ts, message in OLD_ROWS:
        conn.execute(
            "INSERT INTO log_entries (id, ingest_id, app, stream, ts, template_id, message, params, stack_top, code,"
            " detail, lines, file, offset) VALUES (?, 1, 'web', 'err', ?, ?, ?, ?, ?, 'ECONNREFUSED', ?, 6, ?, ?)",
            (i, ts, TID, message, json.dumps([message.split()[-1]]), STACK, DETAIL, log, 100 * i),
        )
        conn.execute(
            "INSERT INTO log_counts VALUES (1, 'web', ?, ?, 1, ?, ?)",
            (TID, ts[:13], ts, ts),
        )
    conn.execute(
        "INSERT INTO log_entries_fts (rowid, message, stack_top) SELECT id, message, stack_top FROM log_entries"
    )
    conn.execute("INSERT INTO log_prunes VALUES (1, '2026-11-21T03:00:00.000Z', '2026-10-02T00:00:00.000Z', 2)")
    conn.close()


@pytest.fixture
def migrated(tmp_path: Path):
    old_store(tmp_path / "recovery.db", str(tmp_path / "web-error.log"))
    store = Store.open(tmp_path / "recovery.db")
    storage.ensure_schema(store.conn)
    yield store
    store.close()


def test_an_old_store_keeps_every_entry_with_its_texts(migrated, tmp_path):
    assert storage.schema_version(migrated.conn) == storage.SCHEMA_VERSION
    got = storage.entries(migrated.conn)
    assert [(e["id"], e["ts"], e["message"]) for e in got] == OLD_ROWS
    assert {(e["stack_top"], e["detail"], e["code"], e["lines"]) for e in got} == {(STACK, DETAIL, "ECONNREFUSED", 6)}
    assert [e["params"] for e in got] == [[m.split()[-1]] for _, _, m in OLD_ROWS]
    assert {e["file"] for e in got} == {str(tmp_path / "web-error.log")}
    assert [e["offset"] for e in got] == [100, 200, 500, 600]


def test_search_show_and_the_ranking_read_migrated_entries(migrated):
    hits = logs.search(migrated.conn, "10.0.0.5")
    assert [(h["id"], h["message"], h["stack_top"]) for h in hits] == [(5, OLD_ROWS[2][2], STACK)]
    detail = storage.template_detail(migrated.conn, TID, examples=2)
    assert [(e["id"], e["message"], e["detail"]) for e in detail["examples"]] == [
        (6, OLD_ROWS[3][2], DETAIL),
        (5, OLD_ROWS[2][2], DETAIL),
    ]
    (top,) = logs.top_templates(migrated.conn, "2026-11-01T00:00:00Z", until="2026-12-01T00:00:00Z")
    assert (top["count"], top["example"], top["stack_top"]) == (2, OLD_ROWS[3][2], STACK)


def test_the_migrated_tables_are_the_ones_a_new_store_gets(migrated, tmp_path):
    with Store.open(tmp_path / "new.db") as fresh:
        storage.ensure_schema(fresh.conn)
        for table in ("log_entries", "log_blocks", "log_sources"):
            columns = [(r[1], r[2].upper(), r[3], r[5]) for r in migrated.conn.execute(f"PRAGMA table_info({table})")]
            assert columns == [
                (r[1], r[2].upper(), r[3], r[5]) for r in fresh.conn.execute(f"PRAGMA table_info({table})")
            ]

        def objects(conn: sqlite3.Connection, kind: str) -> set[str]:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = ? AND name LIKE 'log%'", (kind,))
            return {r[0] for r in rows if not r[0].startswith(("sqlite_", "idx_"))}

        assert objects(migrated.conn, "trigger") == objects(fresh.conn, "trigger")
        assert objects(migrated.conn, "index") == objects(fresh.conn, "index")
    for sql in ("UPDATE log_entries SET code = 'x'", "DELETE FROM log_entries", "DELETE FROM log_blocks"):
        with pytest.raises(sqlite3.DatabaseError, match="refused"):
            migrated.conn.execute(sql)
    assert migrated.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_migrated_store_takes_new_entries_and_prunes_old_ones(migrated, tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("2026-11-30T01:00:00: Error: connect ECONNREFUSED 10.0.0.7:5432\n")
    r = logs.ingest(migrated, "web", [log])
    assert r.entries == 1 and r.new_templates == []  # the old template is found again
    assert [e["id"] for e in storage.entries(migrated.conn)] == [1, 2, 5, 6, 7]
    assert logs.prune(migrated, "2026-11-21T00:00:00Z") == 3
    assert [h["id"] for h in logs.search(migrated.conn, "ECONNREFUSED")] == [7, 6]
    assert [e["message"] for e in storage.entries(migrated.conn)] == [
        OLD_ROWS[3][2],
        "Error: connect ECONNREFUSED 10.0.0.7:5432",
    ]


@pytest.mark.pm2
def test_a_healthy_check_that_ingests_logs_never_imports_sqlite_utils(pm2, tmp_path):
    app = pm2.start_app("web")
    app.control("error", n=2)
    config = write_config(tmp_path, pm2, app, logs_in_check=True)
    for _ in range(2):  # the first creates the log tables, the second reads into them
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "recovery_cli.main", "check", "--config", str(config)],
            env=pm2.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 and result.stdout.splitlines()[1].startswith("web OK"), result.stderr[-2000:]
        imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
        assert "httpx" in imported and "sqlite_utils" not in imported
    with Store.open(tmp_path / "data" / "recovery.db", readonly=True) as store:
        assert store.query(types=["log.ingested"]), "the check ingested the app's log"


def test_recovery_errors_on_an_old_store_says_how_to_upgrade_and_ingest_upgrades_it(tmp_path):
    from .test_errors_cli import assert_one_line_exit_3, invoke

    log = tmp_path / "web-error.log"
    log.write_text("")
    old_store(tmp_path / "recovery.db", str(log))
    conf = tmp_path / "recovery.toml"
    conf.write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n'
        f'logs = ["{log}"]\n'
    )
    assert_one_line_exit_3(invoke("errors", "search", "ECONNREFUSED", "--config", str(conf)), "recovery ingest")
    assert invoke("ingest", "--config", str(conf)).exit_code == 0
    found = invoke("errors", "search", "ECONNREFUSED", "--json", "--config", str(conf))
    assert found.exit_code == 0, found.output
    assert [r["id"] for r in json.loads(found.output)] == [6, 5, 2, 1]
