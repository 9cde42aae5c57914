"""The event store: append-only, hash-chained, and never in the way of recovery."""

from __future__ import annotations

import json
import sqlite3

import pytest

from recovery.errors import StoreError
from recovery.events import Event, EventError
from recovery.store import Recorder, Store, spool_path, spool_replay, spool_write


def ev(type_: str = "probe.failed", app: str = "web", **data) -> Event:
    return Event(type=type_, app=app, run_id="run1", data=data or {"attempt": 1})


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "recovery.db"


@pytest.fixture
def store(db_path):
    s = Store.open(db_path)
    yield s
    s.close()


def test_it_creates_the_store_in_wal_mode_with_the_events_table(store, db_path):
    store.append([ev()])
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
    assert cols == ["seq", "id", "ts", "host", "app", "type", "run_id", "data", "prev_hash", "hash"]


def test_appended_events_come_back_in_order_with_their_data(store):
    store.append([ev(attempt=1), ev(attempt=2)])
    store.append([ev("decision.made", action="restart")])
    got = store.query()
    assert [e.seq for e in got] == [1, 2, 3]
    assert [e.type for e in got] == ["probe.failed", "probe.failed", "decision.made"]
    assert got[2].data == {"action": "restart"}
    assert got[1].prev_hash == got[0].hash


def test_update_on_events_is_refused(store, db_path):
    store.append([ev()])
    conn = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("UPDATE events SET type = 'probe.succeeded'")


def test_delete_on_events_is_refused(store, db_path):
    store.append([ev()])
    conn = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("DELETE FROM events")


def _tamper(db_path, *statements):
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    for s in statements:
        conn.execute(s)
    conn.close()


def test_verify_passes_on_untouched_history(store):
    store.append([ev(attempt=i) for i in range(5)])
    result = store.verify()
    assert result.ok and result.count == 5


def test_verify_names_an_edited_row(store, db_path):
    store.append([ev(attempt=i) for i in range(5)])
    _tamper(db_path, "UPDATE events SET data = '{\"attempt\":99}' WHERE seq = 3")
    result = store.verify()
    assert result.first_bad_seq == 3
    assert "edited" in result.reason


def test_verify_names_the_row_after_a_deleted_one(store, db_path):
    store.append([ev(attempt=i) for i in range(5)])
    _tamper(db_path, "DELETE FROM events WHERE seq = 2")
    assert store.verify().first_bad_seq == 3


def test_verify_catches_a_row_inserted_out_of_band(store, db_path):
    store.append([ev(attempt=i) for i in range(3)])
    conn = sqlite3.connect(db_path, isolation_level=None)
    first = conn.execute("SELECT hash FROM events WHERE seq = 3").fetchone()[0]
    conn.execute(
        "INSERT INTO events VALUES (4, 'forged', '2026-01-01T00:00:00.000Z', 'h', 'web', 'probe.succeeded',"
        " 'x', '{}', ?, 'not-a-real-hash')",
        (first,),
    )
    conn.close()
    assert store.verify().first_bad_seq == 4


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path):
    bad = tmp_path / "recovery.db"
    bad.write_bytes(b"this is not sqlite, just some text " * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store.open(bad)


def test_an_unwritable_store_folder_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the store's folder"):
        Store.open(blocker / "sub" / "recovery.db")


def test_a_store_opened_read_only_must_exist(tmp_path):
    with pytest.raises(StoreError, match="no event store"):
        Store.open(tmp_path / "missing.db", readonly=True)


def test_a_store_locked_beyond_the_busy_timeout_is_a_store_error(db_path, store):
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            Store.open(db_path, busy_timeout=0.2).append([ev()])
    finally:
        holder.execute("ROLLBACK")


URL = "http://127.0.0.1:3000/"


def test_the_recorder_refuses_an_event_of_an_unknown_type_or_without_a_required_field(tmp_path):
    rec = Recorder(tmp_path / "recovery.db")
    with pytest.raises(EventError, match=r"unknown event type 'probe\.lost'"):
        rec.emit("probe.lost", "web", "r1")
    with pytest.raises(EventError, match="lacks code"):
        rec.emit("restart.requested", "web", "r1", by="check", reason="hung", command=["pm2", "restart"])
    rec.close()
    with Store.open(tmp_path / "recovery.db") as s:
        assert s.query() == []


def test_the_recorder_spools_when_the_store_is_unusable_and_says_why(tmp_path):
    bad = tmp_path / "recovery.db"
    bad.write_bytes(b"garbage" * 1000)
    rec = Recorder(bad)
    rec.emit("probe.failed", "web", "r1", url=URL, attempt=1, latency_ms=1.0, error="timeout", phase="check")
    rec.emit("restart.requested", "web", "r1", by="check", code="hung", reason="hung", command=["pm2", "restart"])
    rec.close()
    assert "not a SQLite database" in rec.problem
    lines = [line for line in spool_path(bad).read_text().splitlines() if line.startswith("{")]
    assert [json.loads(line)["type"] for line in lines] == ["probe.failed", "restart.requested"]


def test_the_spool_is_replayed_in_order_exactly_once(tmp_path):
    path = tmp_path / "recovery.db"
    spooled = [ev(attempt=1), ev("restart.requested", by="check"), ev("verification.passed", attempts=2)]
    spool_write(spool_path(path), spooled)
    rec = Recorder(path)
    rec.emit("check.started", None, "r2", trigger="manual", apps=["web"], dry_run=False)
    rec.close()
    again = Recorder(path)
    again.close()
    with Store.open(path) as s:
        got = s.query()
        assert [e.id for e in got[:3]] == [e.id for e in spooled]
        assert [e.type for e in got] == ["probe.failed", "restart.requested", "verification.passed", "check.started"]
        assert s.verify().ok
    assert rec.replayed == 3 and again.replayed == 0
    assert not spool_path(path).exists()


def test_a_replay_interrupted_after_commit_adds_nothing_twice(tmp_path):
    path = tmp_path / "recovery.db"
    spooled = [ev(attempt=1), ev(attempt=2)]
    with Store.open(path) as s:
        s.append(spooled)  # committed, but the claimed spool file was left behind
    spool_write(spool_path(path).with_name("recovery.db.spool.replaying-12345"), spooled)
    with Store.open(path) as s:
        assert spool_replay(s) == 0
        assert len(s.query()) == 2


def test_query_filters_by_app_type_and_keeps_the_newest_with_limit(store):
    store.append([ev(app="web", attempt=i) for i in range(5)] + [ev("decision.made", app="api", action="none")])
    assert [e.data["attempt"] for e in store.query(app="web", limit=2)] == [3, 4]
    assert [e.app for e in store.query(types=["decision.made"])] == ["api"]


def test_a_newer_schema_is_refused_rather_than_misread(db_path, store):
    store.append([ev()])
    sqlite3.connect(db_path).execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer than this recovery"):
        Store.open(db_path)
