"""Issue 16 point 2, fast: a log line without a timestamp of its own gets the earliest time it can
be proven to exist (bounded, and said so), the check reads an app's logs before restarting it, and
an old store's entries are migrated with what can be known of their times."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from recovery import config as cfg
from recovery import logs
from recovery.check import CheckRun, HttpProber
from recovery.clock import FakeClock
from recovery.logs import ingestion, storage
from recovery.store import Recorder, Store, split_sql

from .test_check_flow import FakeApp, FakePm2, write_config

UTC = dt.UTC
T1 = dt.datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
ERROR = "Error: connect ECONNREFUSED 127.0.0.1:5432\n    at TCPConnectWrap.afterConnect (node:net:1555:16)\n"


def iso(when: dt.datetime) -> str:
    return storage._iso(when)


def written_ago(path: Path, seconds: float) -> None:
    """The file was last written `seconds` ago, on the system clock."""
    when = time.time() - seconds
    os.utime(path, (when, when))


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "recovery.db")
    yield s
    s.close()


def bounds(store: Store) -> list[tuple]:
    return [(e["ts_from"], e["ts"], e["ts_bounded"]) for e in storage.entries(store.conn)]


def about(when: dt.datetime) -> tuple[str, str]:
    """The stored times within a second of `when` (a bound is computed from an mtime's age)."""
    return iso(when - dt.timedelta(seconds=1)), iso(when + dt.timedelta(seconds=1))


# -- the bounds, computed ------------------------------------------------------------------------


def test_the_upper_bound_is_the_read_time_less_the_age_of_the_files_last_write():
    upper, lower = ingestion.bounds({7: 1000.0, 8: 1090.0}, iso(T1), None, clock=1090.0)
    assert upper == {7: iso(T1 - dt.timedelta(seconds=90)), 8: iso(T1)} and lower is None


def test_a_file_written_after_the_clock_was_read_is_bounded_by_the_read_time():
    upper, _ = ingestion.bounds({7: 1090.5}, iso(T1), None, clock=1090.0)
    assert upper == {7: iso(T1)}


def test_the_age_of_the_last_write_is_rounded_down_to_the_millisecond_so_a_bound_is_never_early():
    upper, _ = ingestion.bounds({7: 1000.0004}, iso(T1), None, clock=1001.5)
    assert upper == {7: "2026-11-28T03:59:58.501Z"}  # 1.4996 s before the read


def test_a_file_written_less_than_a_second_before_the_read_gets_the_reads_time():
    upper, _ = ingestion.bounds({7: 1000.25}, iso(T1), None, clock=1001.0)
    assert upper == {7: iso(T1)}


def test_a_lower_bound_after_the_upper_one_is_dropped():
    assert ingestion.bounds({7: 1000.0}, iso(T1), iso(T1 - dt.timedelta(minutes=5)), clock=1060.0)[1] == iso(
        T1 - dt.timedelta(minutes=5)
    )
    assert ingestion.bounds({7: 1000.0}, iso(T1), iso(T1), clock=1060.0)[1] is None


# -- the bounds, stored --------------------------------------------------------------------------


def test_a_line_without_a_timestamp_is_bounded_by_the_files_last_write_before_the_read(store, tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text(ERROR)
    written_ago(log, 90)
    logs.ingest(store, "web", [log], now=T1)
    ((ts_from, ts, bounded),) = bounds(store)
    lo, hi = about(T1 - dt.timedelta(seconds=90))
    assert bounded == 1 and ts_from is None and lo < ts < hi  # never read before: no lower bound


def test_the_lower_bound_is_when_the_previous_read_reached_the_end_of_the_file(store, tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text(ERROR)
    logs.ingest(store, "web", [log], now=T1)
    with log.open("a") as f:
        f.write(ERROR.replace("5432", "5433"))
    written_ago(log, 70)
    t2 = T1 + dt.timedelta(minutes=3)
    logs.ingest(store, "web", [log], now=t2)
    ts_from, ts, bounded = bounds(store)[1]
    lo, hi = about(t2 - dt.timedelta(seconds=70))
    assert bounded == 1 and ts_from == iso(T1) and lo < ts < hi


def test_a_read_cut_short_by_the_budget_gives_no_lower_bound(store, tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("".join(f"Error: failed {i}\n" for i in range(200)))
    assert not logs.ingest(store, "web", [log], now=T1, max_bytes=500).complete
    t2 = T1 + dt.timedelta(minutes=1)
    logs.ingest(store, "web", [log], now=t2)
    # The rest existed before the first read already: nothing says since when.
    assert len(bounds(store)) == 200 and {b[0] for b in bounds(store)} == {None}
    with log.open("a") as f:
        f.write("Error: failed again\n")
    logs.ingest(store, "web", [log], now=t2 + dt.timedelta(minutes=1))
    assert bounds(store)[-1][0] == iso(t2)  # the second read reached the end


def test_lines_with_their_own_timestamp_keep_it_exact(store, tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("2026-11-28T03:58:00.250Z: Error: connect ECONNREFUSED 127.0.0.1:5432\n")
    logs.ingest(store, "web", [log], now=T1)
    assert bounds(store) == [(None, "2026-11-28T03:58:00.250Z", 0)]


# -- the check reads before it restarts --------------------------------------------------------


def checked(tmp_path: Path, log: Path, *, state: str, dry_run: bool = False, hours: int = 0, **logs_conf: str) -> Store:
    """One check, `hours` after the first, of an app in `state` whose error log is `log`, with
    `[logs]` settings; its store."""
    write_config(tmp_path, timeout='"1s"', retries="1", retry_delay='"0s"', logs=f'["{log}"]')
    path = tmp_path / "recovery.toml"
    settings = "".join(f"{k} = {v}\n" for k, v in {"in_check": "true", **logs_conf}.items())
    path.write_text(path.read_text().replace("[logs]\nin_check = false\n", "[logs]\n" + settings))
    app = FakeApp(state)
    clock = FakeClock(FakeClock().start + dt.timedelta(hours=hours))
    CheckRun(
        cfg.load(path),
        pm2=FakePm2(app),
        prober=HttpProber(httpx.MockTransport(app)),
        recorder=Recorder(tmp_path / "recovery.db", busy_timeout=1.0, now=clock.now),
        clock=clock,
        dry_run=dry_run,
    ).run()
    return Store.open(tmp_path / "recovery.db")


def test_a_check_reads_the_apps_new_log_lines_just_before_restarting_it(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text(ERROR)
    with checked(tmp_path, log, state="hung") as store:
        kinds = [e.type for e in store.query(app="web")]
        (read,) = store.query(app="web", types=["log.ingested"])
        assert kinds.index("decision.made") < kinds.index("log.ingested") < kinds.index("restart.requested")
        assert read.data["before_restart"] is True and read.data["entries"] == 1


def test_the_read_before_a_restart_ignores_check_every_and_the_run_still_reads_what_came_after(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text(ERROR)
    with Store.open(tmp_path / "recovery.db") as store:
        logs.ingest(store, "web", [log])  # just read: a check's own step is not due for a minute
    with log.open("a") as f:
        f.write(ERROR.replace("5432", "5433"))
    with checked(tmp_path, log, state="hung", check_every='"1m"') as store:
        ingested = store.query(app="web", types=["log.ingested"])
        assert [e.data.get("before_restart") for e in ingested] == [None, True]
        assert len(storage.entries(store.conn)) == 2
    with checked(tmp_path, log, state="hung", check_every='"0s"', hours=1) as store:
        assert len(store.query(app="web", types=["restart.succeeded"])) == 2
        assert len(storage.entries(store.conn)) == 2  # nothing new: nothing read twice


@pytest.mark.parametrize("how", ["dry_run", "in_check_off"])
def test_no_read_before_a_restart_in_a_dry_run_or_with_logs_off_in_checks(tmp_path, how):
    log = tmp_path / "web-error.log"
    log.write_text(ERROR)
    extra = {"in_check": "false"} if how == "in_check_off" else {}
    with checked(tmp_path, log, state="hung", dry_run=how == "dry_run", **extra) as store:
        assert store.query(app="web", types=["log.ingested"]) == []


def test_trouble_reading_before_a_restart_is_recorded_and_the_app_is_still_restarted(tmp_path):
    with checked(tmp_path, tmp_path / "web-error.log", state="hung") as store:  # (no such file: a warning)
        assert store.query(app="web", types=["restart.succeeded"])
    with Store.open(tmp_path / "recovery.db") as store:
        store.conn.execute("INSERT OR REPLACE INTO log_meta VALUES ('schema_version', '99')")  # from a newer version
    (tmp_path / "web-error.log").write_text(ERROR)
    with checked(tmp_path, tmp_path / "web-error.log", state="hung", hours=1) as store:
        failed = store.query(app="web", types=["log.failed"])
        assert [e.data.get("before_restart") for e in failed] == [True, None]  # before the restart, and at the end
        kinds = [e.type for e in store.query(app="web", run_id=failed[0].run_id)]
        assert kinds.index("log.failed") < kinds.index("restart.requested")
        assert len(store.query(app="web", types=["restart.succeeded"])) == 2


# -- an old store ------------------------------------------------------------------------------


def schema_3_store(path: Path) -> None:
    """Log tables as schema 3 left them: one entry stamped with its read's time, one with its own."""
    Store.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for statement in split_sql(storage.CURRENT):
        conn.execute(statement)
    conn.execute("INSERT INTO log_meta VALUES ('schema_version', '3')")
    conn.execute("INSERT INTO log_ingests VALUES (1, '2026-11-21T03:00:00.000Z', 'web', NULL, 2, 1)")
    conn.execute("INSERT INTO log_sources VALUES (1, '/var/log/web-error.log')")
    texts = [("Error: connect ECONNREFUSED 10.0.0.1:5432", None, None, ""), ("Error: boom", None, None, "")]
    conn.execute("INSERT INTO log_blocks VALUES (1, 1, 2, '2026-11-21T03:00:00.000Z', ?)", (storage.pack_block(texts),))
    for i, ts in ((1, "2026-11-21T03:00:00.000Z"), (2, "2026-11-21T02:59:00.000Z")):
        conn.execute(
            "INSERT INTO log_entries VALUES (?, 1, 'web', 'err', ?, 'aaeca99a8bf5', NULL, 1, 1, ?, 1)", (i, ts, 100 * i)
        )
    conn.close()


def test_an_old_store_marks_entries_stamped_with_their_reads_time_as_bounded(tmp_path):
    schema_3_store(tmp_path / "recovery.db")
    with Store.open(tmp_path / "recovery.db") as store:
        assert storage.readable(store.conn)  # schema 3 is read as it is, every time exact
        assert [e["ts_bounded"] for e in storage.entries(store.conn)] == [0, 0]
        storage.ensure_schema(store.conn)
        assert storage.schema_version(store.conn) == storage.SCHEMA_VERSION == 4
        assert bounds(store) == [(None, "2026-11-21T03:00:00.000Z", 1), (None, "2026-11-21T02:59:00.000Z", 0)]
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            store.conn.execute("UPDATE log_entries SET ts_bounded = 0")
        log = tmp_path / "web-error.log"
        log.write_text(ERROR)
        logs.ingest(store, "web", [log], now=T1)
        assert bounds(store)[-1][0::2] == (None, 1)  # and new entries are bounded as above


# -- shown honestly ----------------------------------------------------------------------------


def test_recovery_errors_shows_a_bounded_time_as_such_and_gives_the_bounds_in_json(tmp_path):
    from recovery_cli.main import app
    from typer.testing import CliRunner

    conf = tmp_path / "recovery.toml"
    conf.write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n'
    )
    log = tmp_path / "web-error.log"
    log.write_text("2026-11-28T03:58:00.250Z: Error: boom at start\n" + ERROR)
    t2 = T1 + dt.timedelta(minutes=1)
    with Store.open(tmp_path / "recovery.db") as store:
        logs.ingest(store, "web", [log], now=T1)
        with log.open("a") as f:
            f.write(ERROR.replace("5432", "5433"))
        logs.ingest(store, "web", [log], now=t2)

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "--config", str(conf)], env={"RECOVERY_CONFIG": ""})
        assert result.exit_code == 0, result.output
        return result.output

    rows = json.loads(invoke("errors", "search", "ECONNREFUSED", "--json"))
    assert [(r["ts_from"], r["ts_bounded"]) for r in rows] == [(iso(T1), True), (None, True)]  # newest first
    assert rows[0]["ts"] <= iso(t2) and rows[1]["ts"] <= iso(T1)
    shown = invoke("errors", "search", "ECONNREFUSED").splitlines()
    assert shown[0].startswith(f"between {iso(T1)} and {rows[0]['ts']}  web  "), shown
    assert shown[2].startswith(f"≤ {rows[1]['ts']}  web  "), shown
    assert invoke("errors", "search", "boom").startswith("2026-11-28T03:58:00.250Z  web  ")  # its own time
    examples = json.loads(invoke("errors", "show", rows[0]["template_id"], "--json"))["examples"]
    assert [(e["ts_from"], e["ts_bounded"]) for e in examples] == [(iso(T1), True), (None, True)]


def test_the_read_before_a_restart_reads_at_most_2mb_and_the_end_of_the_run_the_rest(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("".join(f"Error: failed {i:07d} {'x' * 1000}\n" for i in range(3000)))  # ~3 MB
    with checked(tmp_path, log, state="hung", check_budget='"8MB"', check_every='"0s"') as store:
        first, rest = store.query(app="web", types=["log.ingested"])
        assert first.data["before_restart"] is True and not first.data["complete"]
        assert sum(f["bytes"] for f in first.data["files"]) <= 2 << 20
        assert rest.data["complete"] and len(storage.entries(store.conn)) == 3000


# -- before an incident, as the store held it ---------------------------------------------------


def test_a_bounded_line_counts_before_an_incident_by_its_upper_bound_and_only_once_it_was_read(store, tmp_path):
    from recovery import projections
    from recovery.logs.incidents import around_incidents

    from .test_projections import Timeline

    now = dt.datetime.now(UTC).replace(microsecond=0)
    tl = Timeline(store, t0=now)
    tl.healthy(-4 * 3600)
    tl.hang_recovered(-3600)
    tl.healthy(-60)
    projections.fold(store.conn)
    (started,) = [r[0] for r in store.conn.execute("SELECT started_at FROM incidents")]
    log = tmp_path / "web-error.log"
    log.write_text(ERROR * 5)
    written_ago(log, 150)
    read_at = dt.datetime.fromisoformat(started.replace("Z", "+00:00")) + dt.timedelta(seconds=60)
    logs.ingest(store, "web", [log], now=read_at)  # read after the hang began (as after a restart)
    assert all(e["ts"] < started for e in storage.entries(store.conn))  # written 90 s before it

    found = around_incidents(store.conn, now - dt.timedelta(days=1), now, app="web")
    ((before,),) = [found["templates"]]
    assert before["before_incidents"] == 5 and before["bounded"] == 5 and before["incidents_preceded"] == 1
    # As the store stood before that read, nothing preceded the incident:
    earlier = around_incidents(
        store.conn, now - dt.timedelta(days=1), now, app="web", known_by=read_at - dt.timedelta(seconds=1)
    )
    assert earlier["templates"] == []
    model = projections.hint_input(store.conn, "web", read_at - dt.timedelta(seconds=1))
    assert model.before_incidents.templates == ()
    assert projections.hint_input(store.conn, "web", now).before_incidents.templates[0].before_incidents == 5


def test_a_cluster_workers_restart_and_a_pm2_resurrect_read_the_logs_first_too(tmp_path):
    from .test_cluster import Cluster
    from .test_pm2_daemon import Fleet

    log = tmp_path / "web-error.log"
    log.write_text(ERROR)
    (tmp_path / "c").mkdir()
    c = Cluster(tmp_path / "c", logs=f'["{log}"]')
    path = tmp_path / "c" / "recovery.toml"
    path.write_text(path.read_text().replace("in_check = false", "in_check = true"))
    c.config = cfg.load(path)
    c.stall(1002, 2, 6)
    c.check()
    kinds = [e.type for e in c.events()]
    assert c.pm2.worker_restarts == [2]
    assert kinds.index("decision.made") < kinds.index("log.ingested") < kinds.index("restart.requested")
    assert c.events("log.ingested")[0].data["before_restart"] is True

    (tmp_path / "f").mkdir()
    f = Fleet(tmp_path / "f")
    path = tmp_path / "f" / "recovery.toml"
    text = path.read_text().replace("in_check = false", "in_check = true")
    path.write_text(text.replace("retries = 2\n", f'retries = 2\nlogs = ["{log}"]\n', 1))  # web's log
    f.config = cfg.load(path)
    f.check()
    kinds = [(e.type, e.app) for e in f.events()]
    assert kinds.index(("log.ingested", "web")) < kinds.index(("restart.requested", None))
    assert f.events("log.ingested")[0].data["before_restart"] is True


def test_an_old_stores_migration_waits_for_the_end_of_the_run_never_delaying_a_restart(tmp_path):
    schema_3_store(tmp_path / "recovery.db")
    log = tmp_path / "web-error.log"
    log.write_text(ERROR)
    with checked(tmp_path, log, state="hung", check_every='"0s"') as store:
        kinds = [e.type for e in store.query(app="web")]
        (read,) = store.query(app="web", types=["log.ingested"])
        assert "before_restart" not in read.data and kinds.index("restart.succeeded") < kinds.index("log.ingested")
        assert storage.schema_version(store.conn) == 4
