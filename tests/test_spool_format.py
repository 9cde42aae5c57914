"""The spool's records (issue 15, point 3): each one length-prefixed and checksummed, so a record
torn by a crash, cut short or changed is found by the run that replays it, recorded as
`spool.damaged` and named on that run's problems line, never skipped without a word; the records
after it are still replayed. Spools written by the previous version (JSON lines) are still read.

Real files and a real SQLite store; the check runs with the fake PM2 and app of test_check_flow.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path

import pytest

from recovery.events import Event
from recovery.policy import UNKNOWN
from recovery.store import Recorder, Store, spool_path, spool_write

from .conftest import wait_until
from .test_check_flow import World


@pytest.fixture(autouse=True)
def no_fallbacks(tmp_path, monkeypatch):
    """Keep every spool location inside the test's folder."""
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setattr("recovery.store.SPOOL_TMP", tmp_path / "var-tmp", raising=False)


def ev(n: int, type_: str = "probe.succeeded") -> Event:
    data = {"url": "http://127.0.0.1:9/", "attempt": 1, "latency_ms": 12.5, "phase": "check", "n": n}
    return Event(type=type_, app="web", run_id="r1", data=data, ts=f"2026-01-01T00:00:0{n}.000Z")


def old_format(path: Path, events: list[Event]) -> None:
    """A spool as the previous version wrote it: one JSON object a line."""
    with path.open("a") as f:
        f.writelines(json.dumps(e.to_dict(), sort_keys=True, default=str) + "\n" for e in events)


def replay(store_path: Path) -> tuple[Recorder, list[Event]]:
    rec = Recorder(store_path)
    rec.close()
    with Store.open(store_path) as s:
        return rec, s.query()


def numbers(events: list[Event]) -> list[int]:
    return [e.data["n"] for e in events if e.type == "probe.succeeded"]


def damaged(events: list[Event]) -> list[dict]:
    return [e.data for e in events if e.type == "spool.damaged"]


def test_a_record_torn_by_a_crash_is_recorded_as_damaged_and_the_records_after_it_are_replayed(tmp_path):
    db = tmp_path / "recovery.db"
    spool = spool_path(db)
    spool_write(spool, [ev(1), ev(2), ev(3)])
    whole = spool.stat().st_size
    os.truncate(spool, whole - 40)  # the run died while writing its third record
    spool_write(spool, [ev(4)])  # and the next run, still without a store, spooled after it

    rec, stored = replay(db)

    assert numbers(stored) == [1, 2, 4]
    (report,) = damaged(stored)
    assert report["file"] == str(spool) and report["bytes"] > 0 and "short record" in report["why"]
    assert 0 < report["offset"] < whole - 40
    assert [d.why for d in rec.damaged] == [report["why"]]
    assert not spool.exists() and Store.open(db).verify().ok


def test_a_changed_byte_inside_a_record_is_caught_by_its_checksum(tmp_path):
    db = tmp_path / "recovery.db"
    spool = spool_path(db)
    spool_write(spool, [ev(1), ev(2)])
    raw = spool.read_bytes()
    at = raw.rindex(b'"latency_ms": 12.5')
    spool.write_bytes(raw[:at] + b'"latency_ms": 13.5' + raw[at + 18 :])  # still valid JSON, no longer true

    _, stored = replay(db)

    assert numbers(stored) == [1]
    (report,) = damaged(stored)
    assert "checksum" in report["why"]


def test_a_torn_line_of_a_spool_from_the_previous_version_is_reported_not_skipped(tmp_path):
    db = tmp_path / "recovery.db"
    spool = spool_path(db)
    old_format(spool, [ev(1), ev(2)])
    spool.write_bytes(spool.read_bytes()[:-30])  # the old writer's short write: no end of line

    _, stored = replay(db)

    assert numbers(stored) == [1]
    (report,) = damaged(stored)
    assert report["offset"] == len(spool_line(ev(1))) and "torn" in report["why"]


def spool_line(e: Event) -> bytes:
    return (json.dumps(e.to_dict(), sort_keys=True, default=str) + "\n").encode()


def test_a_spool_written_by_the_previous_version_and_then_by_this_one_is_replayed_whole_in_order(tmp_path):
    db = tmp_path / "recovery.db"
    spool = spool_path(db)
    old_format(spool, [ev(1), ev(2)])  # before the upgrade
    spool_write(spool, [ev(3)])  # after it, the store still unusable

    _, stored = replay(db)

    assert numbers(stored) == [1, 2, 3] and damaged(stored) == []


def test_the_check_that_replays_a_damaged_spool_says_so_once_and_exits_3(tmp_path):
    w = World(tmp_path)
    spool = spool_path(w.config.store.path)
    spool_write(spool, [ev(1), ev(2)])
    os.truncate(spool, spool.stat().st_size - 10)

    first = w.check()
    second = w.check()

    assert first.code == UNKNOWN
    (line,) = [p for p in first.problems if "spool damaged" in p]
    assert str(spool) in line and "short record" in line
    assert second.problems == []
    with Store.open(w.config.store.path) as s:
        assert len(damaged(s.query())) == 1


def test_a_record_a_run_is_still_writing_when_the_replay_claims_the_spool_is_replayed_too(tmp_path):
    """A run spooling while another, whose store works again, replays: the replay renames the
    spool and then waits for the writer's lock, so the record being written is not unlinked unread."""
    db = tmp_path / "recovery.db"
    spool = spool_path(db)
    spool_write(spool, [ev(1)])
    record = tmp_path / "one-record"
    spool_write(record, [ev(2)])

    fd = os.open(spool, os.O_WRONLY | os.O_APPEND)  # the writer has opened the spool and holds its lock
    fcntl.flock(fd, fcntl.LOCK_EX)
    replayer = threading.Thread(target=lambda: Recorder(db).close())
    replayer.start()
    try:
        wait_until(lambda: not spool.exists(), timeout=10, message="the replay to claim the spool")
        os.write(fd, record.read_bytes())
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        replayer.join(timeout=30)

    with Store.open(db) as s:
        assert numbers(s.query()) == [1, 2]
