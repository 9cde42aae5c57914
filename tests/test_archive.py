"""`recovery archive`: old raw events move into sealed monthly segments; the chain, the read models
and `recovery serve` carry on across them; `[store] max_size` archives the oldest months itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest
import recovery_datasette
import yaml
from recovery_cli.main import app
from typer.testing import CliRunner

from recovery import archive, projections, segments
from recovery import serve as srv
from recovery.check import OK, CheckRun, HttpProber
from recovery.clock import FakeClock
from recovery.config import load
from recovery.store import GENESIS, Recorder, Store
from tests.test_check_flow import URL, FakeApp, FakePm2
from tests.test_projections import Timeline

runner = CliRunner()
T0 = dt.datetime(2026, 7, 10, tzinfo=dt.UTC)  # four and a half months before NOW
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
READ_MODELS = ("incidents", "restarts", "rollup_minute", "rollup_hour", "rollup_day", "app_state", "decision_points")


def build(path: Path, until: dt.datetime = NOW) -> None:
    """A check every 6 hours from T0, a hang restarted every 10 days; folded."""
    with Store.open(path) as store:
        timeline = Timeline(store, T0)
        t = 0.0
        while T0 + dt.timedelta(seconds=t + 3600) < until:
            timeline.healthy(t)
            if int(t) % (10 * 86400) == 0:
                timeline.hang_recovered(t + 60)
            t += 6 * 3600
        projections.fold(store.conn)


def snapshot(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in READ_MODELS}


def write_config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "recovery.toml"
    p.write_text(
        f'[store]\npath = "recovery.db"\n{extra}\n[logs]\nin_check = false\n\n[[apps]]\nname = "web"\nurl = "{URL}"\n'
        'timeout = "2s"\nretries = 3\nretry_delay = "1s"\n'
    )
    return p


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"RECOVERY_CONFIG": ""})


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "recovery.db"
    build(path)
    return path


def archived(store_path: Path, before: dt.datetime = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)) -> archive.ArchiveResult:
    with Store.open(store_path) as store:
        return archive.archive(store, before, now=NOW)


def test_dry_run_says_what_would_move_and_moves_nothing(tmp_path, store_path):
    with Store.open(store_path) as store:
        count = store.last_seq()
    result = invoke("archive", "--before", "2026-10-15", "--dry-run", "--config", str(write_config(tmp_path)))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(" events of ")[1].split(" ")[0] for line in lines] == ["2026-07", "2026-08", "2026-09"]
    assert all(line.startswith("would move ") for line in lines)
    assert segments.files(store_path) == []
    with Store.open(store_path) as store:
        assert store.last_seq() == count and store.verify().count == count


def test_whole_months_before_the_cut_move_into_sealed_read_only_segments(tmp_path, store_path):
    result = invoke("archive", "--before", "2026-10-15", "--config", str(write_config(tmp_path)))
    assert result.exit_code == 0, result.output
    names = [p.name for p in segments.files(store_path)]
    assert names == [f"recovery.2026-0{m}.segment.db" for m in (7, 8, 9)]
    for p in segments.files(store_path):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o400  # the store's 0600, read-only
        assert not Path(f"{p}-wal").exists() and not Path(f"{p}-journal").exists()
    with Store.open(store_path, readonly=True) as store:
        first = store.conn.execute("SELECT min(ts) FROM events WHERE type != 'store.archived'").fetchone()[0]
        assert first >= "2026-10-01"
        moved = store.query(types=["store.archived"])
    segs = segments.segments(store_path)
    assert [e.data["segment"] for e in moved] == names
    assert [e.data["months"] for e in moved] == [["2026-07"], ["2026-08"], ["2026-09"]]
    for e, seg in zip(moved, segs):
        assert (e.data["first_seq"], e.data["last_seq"], e.data["last_hash"], e.data["events"]) == (
            seg.first_seq,
            seg.last_seq,
            seg.exit_hash,
            seg.events,
        )
        conn = segments.connect(seg.path)
        months = {r[0] for r in conn.execute("SELECT DISTINCT substr(ts, 1, 7) FROM events")}
        conn.close()
        assert months == {seg.months}


def test_the_chain_continues_from_segment_to_segment_into_the_store(store_path):
    archived(store_path)
    segs = segments.segments(store_path)
    assert segs[0].first_seq == 1 and segs[0].entry_hash == GENESIS
    for before, after in zip(segs, segs[1:]):
        assert after.first_seq == before.last_seq + 1 and after.entry_hash == before.exit_hash
    with Store.open(store_path, readonly=True) as store:
        first = store.conn.execute("SELECT seq, prev_hash FROM events ORDER BY seq LIMIT 1").fetchone()
        assert first == (segs[-1].last_seq + 1, segs[-1].exit_hash)
        assert store.verify().ok


def test_verify_all_checks_every_segment_and_the_links(tmp_path, store_path):
    with Store.open(store_path) as store:
        total = store.last_seq()
    archived(store_path)
    config = str(write_config(tmp_path))
    plain = invoke("verify", "--config", config)
    assert plain.exit_code == 0, plain.output
    assert "3 segment(s) not checked (use --all)" in plain.stdout
    every = invoke("verify", "--all", "--config", config)
    assert every.exit_code == 0, every.output
    assert f"{total + 3} events, 3 segment(s) linked" in every.stdout


def test_verify_all_finds_an_edited_segment(tmp_path, store_path):
    archived(store_path)
    seg = segments.files(store_path)[1]
    os.chmod(seg, 0o600)
    conn = sqlite3.connect(seg)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET data = '{}' WHERE seq = (SELECT min(seq) + 5 FROM events)")
    conn.commit()
    conn.close()
    result = invoke("verify", "--all", "--config", str(write_config(tmp_path)))
    assert result.exit_code == 2
    assert f"recovery: {seg.name}: chain broken at seq" in result.stderr
    assert "row was edited" in result.stderr


def test_verify_all_finds_a_missing_segment(tmp_path, store_path):
    archived(store_path)
    gone = segments.files(store_path)[1]
    gone.unlink()
    result = invoke("verify", "--all", "--config", str(write_config(tmp_path)))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert any("a segment is missing" in line for line in lines), lines
    assert any(f"{gone.name}: missing" in line for line in lines), lines


def test_events_stay_undeletable_after_an_archive(store_path):
    archived(store_path)
    with Store.open(store_path) as store:
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            store.conn.execute("DELETE FROM events WHERE seq = (SELECT min(seq) FROM events)")
        names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"events_no_update", "events_no_delete"} <= names


def test_read_models_stay_and_a_rebuild_folds_the_segments_first(store_path):
    with Store.open(store_path) as store:
        before = snapshot(store.conn)
    archived(store_path)
    with Store.open(store_path) as store:
        projections.fold(store.conn)
        assert snapshot(store.conn) == before
        projections.rebuild(store.conn)
        assert snapshot(store.conn) == before
        assert len(before["incidents"]) == 14


def test_a_report_over_archived_months_still_counts_them(tmp_path, store_path):
    def report() -> dict:
        result = invoke("report", "--json", "--since", "2026-07-01", "--config", str(write_config(tmp_path)))
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["apps"]["web"]

    before = report()
    archived(store_path)
    after = report()
    for key in ("incidents", "restarts", "availability_percent", "probes", "failures", "mttr_s", "latency_ms"):
        assert after.get(key) == before.get(key), key


def test_serve_attaches_the_segments_and_the_canned_queries_still_run(store_path):
    archived(store_path)
    prepared = srv.prepare(store_path)  # as `recovery serve` does: projections and error-log tables ready
    assert prepared.note is None and prepared.path == store_path
    ds = srv.make_datasette(store_path)
    try:
        names = [n for n in ds.databases if n.startswith("segment-")]
        assert names == ["segment-2026-07", "segment-2026-08", "segment-2026-09"]
        got = asyncio.run(ds.client.get("/segment-2026-08/events.json?_shape=array&_size=5"))
        assert got.status_code == 200, got.text[:300]
        assert [r["ts"][:7] for r in got.json()] == ["2026-08"] * 5
        incidents = asyncio.run(ds.client.get("/recovery/incidents.json?_shape=array"))
        assert incidents.status_code == 200 and len(incidents.json()) == 14
        queries = yaml.safe_load(recovery_datasette.METADATA.read_text())["databases"]["recovery"]["queries"]
        for name in queries:  # the canned queries and their metadata still answer
            answer = asyncio.run(ds.client.get(f"/recovery/{name}.json?_shape=array"))
            assert answer.status_code == 200, (name, answer.text[:300])
        described = asyncio.run(ds.client.get("/-/metadata.json")).json()["databases"]
        assert described["segment-2026-08"]["tables"]["events"]["columns"]["seq"]
    finally:
        for db in ds.databases.values():
            db.close()


def check_at(config_path: Path, now: dt.datetime):
    config = load(config_path)
    fake = FakeApp()
    clock = FakeClock(now)
    run = CheckRun(
        config,
        pm2=FakePm2(fake),
        prober=HttpProber(httpx.MockTransport(fake)),
        recorder=Recorder(config.store.path, busy_timeout=1.0, now=clock.now),
        clock=clock,
        trigger="cron",
    )
    return run.run()


def test_max_size_archives_the_oldest_months_at_the_end_of_a_check(tmp_path, store_path):
    with Store.open(store_path) as store:
        used = archive.used_bytes(store.conn)
    config = write_config(tmp_path, f"max_size = {used * 3 // 4}\n")
    result = check_at(config, NOW)
    assert result.code == OK, result.lines()
    names = [p.name for p in segments.files(store_path)]
    assert names and names[0] == "recovery.2026-07.segment.db"
    assert all("2026-11" not in n for n in names)  # the current month stays
    with Store.open(store_path) as store:
        assert archive.used_bytes(store.conn) <= used * 3 // 4
        assert len(store.query(types=["store.archived"])) == len(names)


def test_under_max_size_a_check_archives_nothing(tmp_path, store_path):
    config = write_config(tmp_path, 'max_size = "1GB"\n')
    assert check_at(config, NOW).code == OK
    assert segments.files(store_path) == []


def test_an_archive_run_twice_moves_nothing_more(store_path):
    first = archived(store_path)
    again = archived(store_path)
    assert first.events and again.pieces == []
    assert len(segments.files(store_path)) == 3


def test_a_month_is_archived_once_when_two_archivers_meet(tmp_path, store_path):
    with Store.open(store_path) as store:
        used = archive.used_bytes(store.conn)
    config = write_config(tmp_path, f"max_size = {used * 3 // 4}\n")
    with archive.archive_lock(store_path, wait=False) as held:  # another run is archiving
        assert held
        assert check_at(config, NOW).code == OK
        assert segments.files(store_path) == []
    assert check_at(config, NOW).code == OK
    assert segments.files(store_path)


def test_verify_all_follows_archives_of_archive_records(tmp_path, store_path):
    archived(store_path, dt.datetime(2026, 8, 15, tzinfo=dt.UTC))  # July: its store.archived is written in "November"
    with Store.open(store_path) as store:
        build_more = Timeline(store, dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
        build_more.healthy(0)
        archive.archive(store, dt.datetime(2027, 1, 1, tzinfo=dt.UTC), now=dt.datetime(2027, 1, 2, tzinfo=dt.UTC))
    result = invoke("verify", "--all", "--config", str(write_config(tmp_path)))
    assert result.exit_code == 0, result.output
    gone = segments.files(store_path)[0]
    gone.unlink()
    result = invoke("verify", "--all", "--config", str(write_config(tmp_path)))
    assert f"{gone.name}: missing" in result.stderr


def test_the_printed_datasette_command_opens_the_segments_immutable(store_path):
    archived(store_path)
    line = srv.datasette_command(store_path, "127.0.0.1", 8001)
    for seg in segments.files(store_path):
        assert f"-i {seg.resolve()}" in line


def test_another_stores_segments_in_the_same_folder_are_not_taken(tmp_path, store_path):
    other = tmp_path / "recovery.old.db"
    build(other, until=dt.datetime(2026, 9, 5, tzinfo=dt.UTC))
    with Store.open(other) as store:
        archive.archive(store, dt.datetime(2026, 9, 1, tzinfo=dt.UTC), now=NOW)
    assert [p.name for p in segments.files(other)] == [
        "recovery.old.2026-07.segment.db",
        "recovery.old.2026-08.segment.db",
    ]
    assert segments.files(store_path) == []
    archived(store_path)
    result = invoke("verify", "--all", "--config", str(write_config(tmp_path)))
    assert result.exit_code == 0, result.output


def test_an_archive_killed_before_its_store_transaction_is_redone_cleanly(tmp_path, store_path, monkeypatch):
    def killed(folder: Path) -> None:
        raise SystemExit("killed")  # the process dies right after the segment file is in place

    monkeypatch.setattr(archive, "_fsync_dir", killed)
    with pytest.raises(SystemExit):
        archived(store_path)
    monkeypatch.undo()
    assert [p.name for p in segments.files(store_path)] == ["recovery.2026-07.segment.db"]  # an orphan
    with Store.open(store_path, readonly=True) as store:
        assert store.query(types=["store.archived"]) == []
        assert store.conn.execute("SELECT min(seq) FROM events").fetchone()[0] == 1
    archived(store_path)
    assert [p.name for p in segments.files(store_path)] == [f"recovery.2026-0{m}.segment.db" for m in (7, 8, 9)]
    result = invoke("verify", "--all", "--config", str(write_config(tmp_path)))
    assert result.exit_code == 0, result.output


def test_projections_of_another_version_are_rebuilt_from_the_segments_too(store_path, monkeypatch):
    with Store.open(store_path) as store:
        before = snapshot(store.conn)
    archived(store_path)
    monkeypatch.setattr(projections, "VERSION", projections.VERSION + 1)  # a newer recovery opens the store
    with Store.open(store_path) as store:
        projections.fold(store.conn)
        assert projections.last_folded(store.conn) == store.last_seq()
        assert snapshot(store.conn) == before


def test_a_clock_stepped_back_across_a_month_boundary_keeps_seqs_contiguous(tmp_path):
    path = tmp_path / "recovery.db"
    with Store.open(path) as store:
        late_august = dt.datetime(2026, 8, 31, 23, 50, tzinfo=dt.UTC)
        Timeline(store, late_august).healthy(0)
        Timeline(store, late_august).healthy(1200)  # 1 September, 00:10
        Timeline(store, late_august).healthy(300)  # the clock stepped back into August
        october = Timeline(store, dt.datetime(2026, 10, 2, tzinfo=dt.UTC))
        october.healthy(0)
        total = store.last_seq()
        result = archive.archive(store, dt.datetime(2026, 10, 20, tzinfo=dt.UTC), now=NOW)
    assert [p.months for p in result.pieces] == [["2026-08"], ["2026-09"]]
    assert result.pieces[0].last_seq + 1 == result.pieces[1].first_seq
    assert result.events == 12
    every = invoke("verify", "--all", "--config", str(write_config(tmp_path)))
    assert every.exit_code == 0, every.output
    assert f"{total + 2} events, 2 segment(s) linked" in every.stdout


@pytest.mark.parametrize("before", ["0d", "soon", "2999-01-01"])
def test_a_bad_before_is_one_line_naming_the_option(tmp_path, store_path, before):
    result = invoke("archive", "--before", before, "--config", str(write_config(tmp_path)))
    assert result.exit_code == 3
    assert result.stderr.startswith(f"recovery: --before {before!r}") and len(result.stderr.splitlines()) == 1
    assert segments.files(store_path) == []


def test_events_since_before_the_store_reads_the_segments_too(tmp_path, store_path):
    with Store.open(store_path) as store:
        total = store.last_seq()
    archived(store_path)
    config = str(write_config(tmp_path))
    result = invoke("events", "--json", "--limit", "0", "--since", "2026-07-01", "--config", config)
    assert result.exit_code == 0, result.output
    seqs = [json.loads(line)["seq"] for line in result.stdout.splitlines()]
    assert seqs == list(range(1, total + 4))  # every event, archived or not, and the 3 store.archived
    newest = invoke("events", "--json", "--limit", "5", "--since", "2026-07-01", "--config", config)
    assert [json.loads(line)["seq"] for line in newest.stdout.splitlines()] == seqs[-5:]
    august = invoke(
        "events", "--json", "--limit", "0", "--since", "2026-08-01", "--type", "restart.requested", "--config", config
    )
    assert {json.loads(line)["ts"][:7] for line in august.stdout.splitlines()} >= {"2026-08", "2026-09", "2026-10"}
