"""Error-log ingestion: the reader, the grouper, the miner and the log tables (no PM2 needed)."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from recovery import logs
from recovery.errors import StoreError
from recovery.events import parse_ts
from recovery.logs import queries, reader, storage
from recovery.logs.grouper import Grouper
from recovery.logs.miner import Miner, mask
from recovery.store import Store

NODE_ERROR = """\
Error: connect ECONNREFUSED 127.0.0.1:5432
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)
    at TCPConnectWrap.callbackTrampoline (node:internal/async_hooks:128:17) {
  errno: -111,
  code: 'ECONNREFUSED',
  syscall: 'connect',
  address: '127.0.0.1',
  port: 5432
}
"""


def lines_of(path: Path, state=None, **kw):
    r = reader.read(str(path), state, **kw)
    return [line.text for line in r.lines], r


def append(path: Path, data: bytes | str) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "recovery.db")
    yield s
    s.close()


# -- reader ------------------------------------------------------------------------------


def test_a_new_file_is_read_from_its_start_and_each_line_once(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("one\ntwo\n")
    got, r = lines_of(log)
    assert got == ["one", "two"]
    append(log, "three\n")
    got, r = lines_of(log, r.state)
    assert got == ["three"]
    got, r2 = lines_of(log, r.state)
    assert got == [] and r2.state == r.state


def test_a_new_file_can_be_read_from_its_end(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("old\nolder\nhalf")
    got, r = lines_of(log, start="end")
    assert got == [] and r.state.offset == len("old\nolder\n")
    append(log, " line\nnew\n")
    got, _ = lines_of(log, r.state)
    assert got == ["half line", "new"]


def test_a_partial_last_line_waits_for_its_newline(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("done\nhalf")
    got, r = lines_of(log)
    assert got == ["done"] and r.state.offset == 5
    append(log, " and the rest\n")
    got, _ = lines_of(log, r.state)
    assert got == ["half and the rest"]


def test_rotation_by_rename_finishes_the_old_file_then_reads_the_new_one(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("a\n")
    _, r = lines_of(log)
    append(log, "b\nc-without-newline")
    log.rename(tmp_path / "web-error.log.1")
    log.write_text("d\n")
    got, r = lines_of(log, r.state)
    assert got == ["b", "c-without-newline", "d"]
    assert r.rotations == ["renamed"]


def test_a_log_renamed_away_and_not_yet_recreated_is_followed(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("a\n")
    _, r = lines_of(log)
    append(log, "b\n")
    log.rename(tmp_path / "web-error__2026-11-28_03-00-00.log")
    got, r = lines_of(log, r.state)
    assert got == ["b"] and [w.kind for w in r.warnings] == ["missing"]
    log.write_text("c\n")
    got, _ = lines_of(log, r.state)
    assert got == ["c"]


def test_copytruncate_reads_the_rest_from_the_copy_then_the_file_from_zero(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("first\n")
    _, r = lines_of(log)
    append(log, "second\n")
    shutil.copy(log, tmp_path / "web-error__2026-11-28_03-00-00.log")  # what pm2-logrotate does
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, "third\n")
    got, r = lines_of(log, r.state)
    assert got == ["second", "third"] and r.rotations == ["truncated"]


def test_a_truncated_file_that_grew_past_the_offset_is_noticed_by_its_fingerprint(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("old 1\n")
    _, r = lines_of(log)
    log.write_text("a new file, longer than the old one\n")
    got, r = lines_of(log, r.state)
    assert got == ["a new file, longer than the old one"]


def test_a_replaced_file_is_read_from_zero(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("old\n")
    _, r = lines_of(log)
    log.unlink()
    log.write_text("new\n")
    got, r = lines_of(log, r.state)
    assert got == ["new"] and r.rotations in (["replaced"], ["truncated"])  # the inode may be reused


def test_a_deleted_file_is_a_warning_not_an_error(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("x\n")
    _, r = lines_of(log)
    log.unlink()
    got, r2 = lines_of(log, r.state)
    assert got == [] and r2.warnings[0].kind == "missing" and r2.state == r.state


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_a_folder_without_permission_is_a_warning(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "web-error.log").write_text("x\n")
    folder.chmod(0)
    try:
        got, r = lines_of(folder / "web-error.log")
    finally:
        folder.chmod(0o755)
    assert got == [] and r.warnings[0].kind == "permission"


def test_a_log_that_cannot_be_opened_is_a_warning(tmp_path, monkeypatch):
    log = tmp_path / "web-error.log"
    log.write_text("x\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reader.os, "open", refuse)
    got, r = lines_of(log)
    assert got == [] and r.warnings[0].kind == "permission"


def test_invalid_utf8_and_nul_bytes_are_replaced_not_dropped(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_bytes(b"caf\xe9 \xff\xfe\x00end\r\nnext\n")
    got, _ = lines_of(log)
    assert got == ["caf\ufffd \ufffd\ufffd\ufffdend", "next"]


def test_a_10mb_line_is_truncated_with_a_marker_and_the_next_line_is_read(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_bytes(b"x" * 10_000_000 + b"\nafter\n")
    got, r = lines_of(log)
    assert len(got) == 2 and got[1] == "after"
    assert got[0].startswith("x" * 1000) and got[0].endswith(f" …[truncated {10_000_000 - reader.LINE_LIMIT} bytes]")
    assert len(got[0]) < reader.LINE_LIMIT + 100


def test_a_10mb_line_still_being_written_is_skipped_to_its_end(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_bytes(b"y" * 3_000_000)
    got, r = lines_of(log)
    assert len(got) == 1 and "truncated" in got[0]
    append(log, b"y" * 3_000_000 + b"\nafter\n")
    got, _ = lines_of(log, r.state)
    assert got == ["after"]


def test_a_backlog_is_read_in_bounded_chunks_without_losing_lines(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)))
    seen, state = [], None
    for _ in range(1000):
        got, r = lines_of(log, state, max_bytes=4096)
        assert r.bytes_read <= 4096
        seen += got
        state = r.state
        if r.eof:
            break
    assert seen == [f"line {i}" for i in range(10_000)]


def test_a_file_vanishing_between_reads_loses_nothing_already_read(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("a\n")
    got, r = lines_of(log)
    os.unlink(log)
    (tmp_path / "web-error.log").mkdir()  # something else now has the name
    got2, r2 = lines_of(log, r.state)
    assert got == ["a"] and got2 == [] and r2.warnings


class Writer(threading.Thread):
    """Appends numbered lines, reopening the path when asked (as PM2 does after a rotation)."""

    def __init__(self, path: Path, n: int) -> None:
        super().__init__(daemon=True)
        self.path, self.n = path, n
        self.lock = threading.Lock()
        self.f = open(path, "ab", buffering=0)

    def run(self) -> None:
        for i in range(self.n):
            with self.lock:
                self.f.write(f"line {i} {'x' * (i % 50)}\n".encode())
            if i % 97 == 0:
                time.sleep(0.001)
        self.f.close()

    def reopen(self) -> None:
        self.f.close()
        self.f = open(self.path, "ab", buffering=0)


def _collect_while(writer: Writer, log: Path, rotate) -> list[str]:
    seen, state, rotations = [], None, 0
    writer.start()
    while writer.is_alive() or rotations < 3:
        got, r = lines_of(log, state, max_bytes=20_000)
        seen += got
        state = r.state
        if rotations < 3 and len(seen) > (rotations + 1) * 1500:
            with writer.lock:
                rotate(rotations)
            rotations += 1
    writer.join()
    for _ in range(100):
        got, r = lines_of(log, state)
        seen += got
        state = r.state
        if r.eof and not got:
            break
    return seen


def test_rotation_by_rename_while_a_writer_appends_loses_and_doubles_nothing(tmp_path):
    log = tmp_path / "web-error.log"
    writer = Writer(log, 8000)

    def rotate(i: int) -> None:
        log.rename(tmp_path / f"web-error.log.{i + 1}")
        writer.reopen()

    seen = _collect_while(writer, log, rotate)
    assert [s.split()[1] for s in seen] == [str(i) for i in range(8000)]


def test_copytruncate_while_a_writer_appends_loses_and_doubles_nothing(tmp_path):
    log = tmp_path / "web-error.log"
    writer = Writer(log, 8000)

    def rotate(i: int) -> None:
        shutil.copyfile(log, tmp_path / f"web-error__{i}.log")
        os.truncate(log, 0)  # the writer appends (O_APPEND), so it goes on at 0

    seen = _collect_while(writer, log, rotate)
    assert [s.split()[1] for s in seen] == [str(i) for i in range(8000)]


def test_random_bytes_written_in_random_pieces_read_back_exactly(tmp_path):
    rng = random.Random(4)
    for round_ in range(30):
        log = tmp_path / f"fuzz{round_}.log"
        log.write_bytes(b"")
        shapes = [b"\n", b"\r\n", b"\xff\xfe", b"\x00", "⨯ é".encode(), b"    at x (y:1:2)", b"{", b"}", b" "]
        blob = b"".join(
            rng.choice(shapes) if rng.random() < 0.5 else bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
            for _ in range(rng.randrange(1, 300))
        )
        blob = blob.replace(b"\r\n", b"\n")
        state, seen, pos = None, [], 0
        while pos < len(blob):
            step = rng.randrange(1, 200)
            append(log, blob[pos : pos + step])
            pos += step
            got, r = lines_of(log, state, max_bytes=rng.randrange(1, 500))
            seen += got
            state = r.state
        while True:
            got, r = lines_of(log, state)
            seen += got
            state = r.state
            if r.eof and not got:
                break
        expected = [reader._decode(raw) for raw in blob.split(b"\n")[:-1]]
        assert seen == expected
        assert Grouper("err").feed_all(r.lines) is not None  # the grouper takes anything


# -- grouper -----------------------------------------------------------------------------


def _lines(text: str) -> list[reader.Line]:
    out, at = [], 0
    for raw in text.splitlines():
        out.append(reader.Line(raw, at, "f", 1))
        at += len(raw.encode()) + 1
    return out


def test_a_node_error_with_stack_and_code_block_is_one_entry():
    g = Grouper("err")
    entries = g.feed_all(_lines(NODE_ERROR + "next line\n")) + g.flush()
    assert [e.message for e in entries] == ["Error: connect ECONNREFUSED 127.0.0.1:5432", "next line"]
    e = entries[0]
    assert e.lines == 9 and e.code == "ECONNREFUSED"
    assert e.stack_top == "at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)"
    assert entries[1].offset == len(NODE_ERROR.encode())


def test_a_cause_block_and_a_nextjs_error_are_entries_of_their_own():
    text = """\
Error: fetch failed
    at async Page (/app/.next/server/app/page.js:1:99) {
  [cause]: Error: getaddrinfo ENOTFOUND db
      at GetAddrInfoReqWrap.onlookup (node:dns:107:26) {
    errno: -3008,
    code: 'ENOTFOUND'
  }
}
 ⨯ TypeError: Cannot read properties of undefined (reading 'id')
    at Page (/app/.next/server/app/page.js:1:2345) {
  digest: '2338101'
}
"""
    g = Grouper("err")
    entries = g.feed_all(_lines(text)) + g.flush()
    assert [e.message for e in entries] == [
        "Error: fetch failed",
        "⨯ TypeError: Cannot read properties of undefined (reading 'id')",
    ]
    assert entries[0].lines == 8 and "[cause]: Error: getaddrinfo ENOTFOUND db" in entries[0].detail_text


@pytest.mark.parametrize(
    ("prefix", "ts"),
    [
        ("2026-11-28T03:00:01: ", "2026-11-28T03:00:01.000Z"),
        ("2026-11-28 03:00:01 +02:00: ", "2026-11-28T01:00:01.000Z"),
        ("2026-11-28T03:00:01.123Z: ", "2026-11-28T03:00:01.123Z"),
    ],
)
def test_pm2_date_prefixes_give_the_entry_its_time(prefix, ts):
    g = Grouper("err")
    text = "".join(prefix + line + "\n" for line in NODE_ERROR.splitlines())
    entries = g.feed_all(_lines(text)) + g.flush()
    assert len(entries) == 1 and entries[0].ts == ts and entries[0].message.startswith("Error: connect")


def test_stdout_noise_is_skipped_and_stdout_errors_are_kept():
    text = "GET / 200 in 12ms\n ✓ Ready in 2.1s\n ⨯ Error: boom\n    at x (/app/a.js:1:1)\nUnhandled rejection: nope\n"
    g = Grouper("out")
    entries = g.feed_all(_lines(text)) + g.flush()
    assert [e.message for e in entries] == ["⨯ Error: boom", "Unhandled rejection: nope"]
    assert g.skipped == 2


def test_an_uncaught_exception_keeps_its_source_line_as_detail():
    text = "/app/server.js:10\n    throw new Error('boom');\n    ^\n\nError: boom\n    at Object.<anonymous> (/app/server.js:10:11)\n\nNode.js v20.11.0\n"
    g = Grouper("err")
    entries = g.feed_all(_lines(text)) + g.flush()
    assert [e.message for e in entries] == ["Error: boom", "Node.js v20.11.0"]
    assert entries[0].detail[0] == "/app/server.js:10"


def test_stack_frames_without_their_message_are_not_entries():
    g = Grouper("err")
    entries = g.feed_all(_lines("    at f (a.js:1:1)\n    at g (b.js:2:2)\nError: next\n")) + g.flush()
    assert [e.message for e in entries] == ["Error: next"]


def test_pm2_json_log_lines_are_unpacked():
    line = '{"message":"Error: x 1\\n    at y (z.js:1:1)\\n","timestamp":"2026-11-28T03:00:01","type":"err"}'
    g = Grouper("err")
    entries = g.feed_all(_lines(line)) + g.flush()
    assert len(entries) == 1 and entries[0].stack_top == "at y (z.js:1:1)"


def test_random_line_shapes_never_break_the_grouper():
    rng = random.Random(7)
    shapes = [
        "Error: x",
        "    at f (a.js:1:1)",
        "{",
        "}",
        "  code: 'E'",
        "",
        " ⨯ y",
        "  [cause]: Error: z",
        "]",
        '{"message": 1}',
        '{"message":"a\\nb"}',
        "2026-11-28T03:00:01: ",
        "\ufffd\ufffd",
        "Node.js v18",
    ]
    for _ in range(200):
        text = "\n".join(rng.choice(shapes) + rng.choice(["", " 1", "{", "["]) for _ in range(rng.randrange(50)))
        g = Grouper(rng.choice(["err", "out"]))
        entries = g.feed_all(_lines(text)) + g.flush()
        assert all(e.message for e in entries)


# -- miner -------------------------------------------------------------------------------


def test_masks_cover_what_varies_in_node_logs():
    masked, params = mask(
        "req_id=ab-12 GET https://x.io/a?b=1 from 10.0.0.1:443 took 45ms id 123e4567-e89b-12d3-a456-426614174000"
        " user 42 hash 0xdeadbeef path /api/users/17 'quoted value'"
    )
    assert masked == (
        "req_id=<ID> GET <URL> from <IP> took <DUR> id <UUID> user <NUM> hash <HEX> path /api/users/<NUM> <STR>"
    )
    assert {"ab-12", "https://x.io/a?b=1", "10.0.0.1:443", "'quoted value'", "17"} <= set(params)


def test_differently_parameterised_messages_map_to_one_template():
    m = Miner()
    a = m.add("Error: connect ECONNREFUSED 127.0.0.1:5432")
    b = m.add("Error: connect ECONNREFUSED 10.1.2.3:6379")
    c = m.add("Error: connect ETIMEDOUT 10.1.2.3:6379")
    assert a.template is b.template and b.params == ["10.1.2.3:6379"]
    assert c.template is not a.template  # error codes are anchors: never merged away
    d = m.add("Payment 77 failed for customer alice")
    e = m.add("Payment 78 failed for customer bob")
    assert d.template is e.template and e.template.text == "Payment <NUM> failed for customer <*>" and e.changed


def test_the_miner_is_deterministic():
    msgs = [f"Job {i} failed on queue {q}" for i, q in zip(range(20), "abcabcabcabcabcabcab")] + ["x y z"] * 3
    a, b = Miner(), Miner()
    assert [a.add(x).template.id for x in msgs] == [b.add(x).template.id for x in msgs]


def test_templates_survive_a_reload_from_the_store(tmp_path):
    log = tmp_path / "web-error.log"
    log.write_text("Payment 77 failed for customer alice\nPayment 78 failed for customer bob\n")
    with Store.open(tmp_path / "r.db") as s:
        first = logs.ingest(s, "web", [log])
    append(log, "Payment 79 failed for customer carol\n")
    with Store.open(tmp_path / "r.db") as s:
        second = logs.ingest(s, "web", [log])
        rows = s.conn.execute("SELECT DISTINCT template_id FROM log_entries").fetchall()
        versions = s.conn.execute("SELECT version, text FROM log_template_versions ORDER BY version").fetchall()
    assert len(first.new_templates) == 1 and second.new_templates == [] and len(rows) == 1
    assert versions == [(1, "Payment <NUM> failed for customer <*>")]


# -- storage and the API -----------------------------------------------------------------


def _err_log(tmp_path: Path, text: str) -> Path:
    log = tmp_path / "web-error.log"
    append(log, text)
    return log


def test_ingest_stores_one_entry_per_error_and_records_an_event(tmp_path, store):
    text = "".join(
        "2026-11-28T03:00:0%d: %s\n" % (i, line)
        for i in range(3)
        for line in NODE_ERROR.replace("5432", str(5432 + i)).splitlines()
    )
    log = _err_log(tmp_path, text)
    r = logs.ingest(store, "web", [log], now="2026-11-28T04:00:00Z", run_id="run1")
    assert r.entries == 3 and r.lines == 27 and len(r.new_templates) == 1
    (e,) = store.query(types=["log.ingested"])
    assert e.app == "web" and e.run_id == "run1" and e.data["entries"] == 3
    assert e.data["files"][0]["to_offset"] == log.stat().st_size
    top = logs.top_templates(store.conn, "2026-11-28T00:00:00Z")
    assert [(t["template"], t["count"], t["first_seen"], t["last_seen"]) for t in top] == [
        ("Error: connect ECONNREFUSED <IP>", 3, "2026-11-28T03:00:00.000Z", "2026-11-28T03:00:02.000Z")
    ]
    assert top[0]["example"] == "Error: connect ECONNREFUSED 127.0.0.1:5434"
    assert logs.ingest(store, "web", [log]).entries == 0
    assert len(store.query(types=["log.ingested"])) == 1  # nothing new: no event


def test_top_templates_counts_only_the_window_and_the_app(tmp_path, store):
    lines = [
        "2026-11-20T10:00:00: Error: old one",
        "2026-11-28T02:30:00: Error: boom 1",
        "2026-11-28T03:10:00: Error: boom 2",
        "2026-11-28T05:00:00: Error: boom 3",
    ]
    logs.ingest(store, "web", [_err_log(tmp_path, "\n".join(lines) + "\n")])
    other = tmp_path / "api-error.log"
    other.write_text("2026-11-28T05:00:00: Error: boom 4\n")
    logs.ingest(store, "api", [other])
    top = logs.top_templates(store.conn, "2026-11-28T02:45:00Z", app="web")
    assert [(t["template"], t["count"]) for t in top] == [("Error: boom <NUM>", 2)]
    both = logs.top_templates(store.conn, "2026-11-21T00:00:00Z")
    assert sorted((t["app"], t["count"]) for t in both) == [("api", 1), ("web", 3)]


def test_search_finds_entries_newest_first(tmp_path, store):
    lines = [
        "2026-11-28T01:00:00: Error: payment declined for order 1",
        "2026-11-28T02:00:00: Error: payment declined for order 2",
        "2026-11-28T03:00:00: Error: other",
    ]
    logs.ingest(store, "web", [_err_log(tmp_path, "\n".join(lines) + "\n")])
    hits = logs.search(store.conn, "payment declined", 10)
    assert [h["message"] for h in hits] == [
        "Error: payment declined for order 2",
        "Error: payment declined for order 1",
    ]
    assert logs.search(store.conn, "node:net", 10) == []


def test_ranked_templates_carry_their_count_in_the_window_before(tmp_path, store):
    lines = [
        "2026-11-27T01:00:00: Error: boom 1",
        "2026-11-28T01:00:00: Error: boom 2",
        "2026-11-28T02:00:00: Error: boom 3",
        "2026-11-28T03:00:00: Error: fresh",
    ]
    logs.ingest(store, "web", [_err_log(tmp_path, "\n".join(lines) + "\n")])
    since, until = parse_ts("2026-11-28T00:00:00Z"), parse_ts("2026-11-29T00:00:00Z")
    rows = queries.ranked(store, since, until)
    assert [(r["template"], r["count"], r["previous_count"], r["change"]) for r in rows] == [
        ("Error: boom <NUM>", 2, 1, 1),
        ("Error: fresh", 1, 0, 1),
    ]
    assert [r["template"] for r in queries.ranked(store, since, until, top=1)] == ["Error: boom <NUM>"]


def test_broken_log_tables_are_a_store_error_for_the_commands(tmp_path, store):
    logs.ingest(store, "web", [_err_log(tmp_path, "2026-11-28T01:00:00: Error: x\n")])
    (template_id,) = store.conn.execute("SELECT id FROM log_templates").fetchone()
    store.conn.execute("DROP TABLE log_counts")  # as a store another tool left half-written would be
    since, until = parse_ts("2026-11-28T00:00:00Z"), parse_ts("2026-11-29T00:00:00Z")
    with pytest.raises(StoreError, match=r"cannot read the error-log tables in .*recovery\.db: .*log_counts"):
        queries.ranked(store, since, until)
    with pytest.raises(StoreError, match="log_counts"):
        queries.detail(store, template_id)
    store.conn.execute("DROP TABLE log_entries_fts")
    with pytest.raises(StoreError):
        queries.find(store, "x")
    store.conn.execute("DROP TABLE log_entries")
    with pytest.raises(StoreError):
        logs.count_before(store, "2026-11-29T00:00:00Z")


def test_log_files_come_from_the_config_and_pm2_is_asked_only_for_the_others(monkeypatch):
    from recovery.logs import ingestion

    asked: list[str | None] = []

    def jlist_paths(pm2_bin: str | None) -> dict[str, list[str]]:
        asked.append(pm2_bin)
        return {"api": ["/pm2/api-error.log", "/pm2/api-out.log"]}

    monkeypatch.setattr(ingestion, "pm2_log_paths", jlist_paths)
    web = SimpleNamespace(name="web", logs=("/var/log/web.log",))
    api, gone = SimpleNamespace(name="api", logs=()), SimpleNamespace(name="gone", logs=())
    assert logs.log_files([web], "pm2") == {"web": ["/var/log/web.log"]} and asked == []
    assert logs.log_files([web, api, gone], "pm2") == {
        "web": ["/var/log/web.log"],
        "api": ["/pm2/api-error.log", "/pm2/api-out.log"],
        "gone": [],
    }
    assert asked == ["pm2"]


def test_log_rows_refuse_update_and_unrecorded_delete(tmp_path, store):
    logs.ingest(store, "web", [_err_log(tmp_path, "2026-11-28T01:00:00: Error: x\n")])
    for sql in (
        "UPDATE log_entries SET code = 'y'",
        "UPDATE log_blocks SET data = x''",
        "DELETE FROM log_blocks",
        "DELETE FROM log_sources",
        "DELETE FROM log_entries",
        "UPDATE log_counts SET count = 9",
        "DELETE FROM log_templates",
        "DELETE FROM log_files",
        "UPDATE log_template_versions SET text = ''",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="refused"):
            store.conn.execute(sql)


def test_prune_is_recorded_and_keeps_counts(tmp_path, store):
    lines = ["2026-10-01T01:00:00: Error: boom 1", "2026-11-28T01:00:00: Error: boom 2"]
    logs.ingest(store, "web", [_err_log(tmp_path, "\n".join(lines) + "\n")])
    assert logs.prune(store, "2026-11-01T00:00:00Z") == 1
    assert [r["message"] for r in storage.entries(store.conn)] == ["Error: boom 2"]
    assert [h["message"] for h in logs.search(store.conn, "boom", 10)] == ["Error: boom 2"]
    (e,) = store.query(types=["log.pruned"])
    assert e.data == {"before": "2026-11-01T00:00:00.000Z", "entries": 1}
    top = logs.top_templates(store.conn, "2026-09-01T00:00:00Z")
    assert top[0]["count"] == 2 and top[0]["first_seen"] == "2026-10-01T01:00:00.000Z"
    assert store.verify().ok


def test_a_budget_that_ends_inside_an_error_reads_it_whole_next_time(tmp_path, store):
    log = _err_log(tmp_path, NODE_ERROR * 3)
    total, runs = 0, 0
    while True:
        r = logs.ingest(store, "web", [log], max_bytes=400)  # more than one error, less than two
        total += r.entries
        runs += 1
        if r.complete:
            break
    assert total == 3 and runs == 3
    rows = store.conn.execute("SELECT lines, code FROM log_entries").fetchall()
    assert rows == [(9, "ECONNREFUSED")] * 3


def test_an_error_split_by_a_rotation_is_stored_whole_and_the_new_file_read(tmp_path, store):
    log = _err_log(tmp_path, "Error: first\n")
    logs.ingest(store, "web", [log])
    append(log, NODE_ERROR)
    log.rename(tmp_path / "web-error.log.1")
    log.write_text("Error: after rotation\n")
    r = logs.ingest(store, "web", [log])
    assert r.entries == 2 and r.files[0].rotations == ["renamed"]
    assert [x[0] for x in store.conn.execute("SELECT lines FROM log_entries ORDER BY id")] == [1, 9, 1]


def test_two_runs_ingesting_at_once_store_each_entry_once(tmp_path):
    log = _err_log(tmp_path, "".join(f"Error: job {i} failed\n" for i in range(3000)))
    Store.open(tmp_path / "r.db").close()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with Store.open(tmp_path / "r.db", busy_timeout=30) as s:
                while not logs.ingest(s, "web", [log], max_bytes=2000).complete:
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Store.open(tmp_path / "r.db") as s:
        messages = [r["message"] for r in storage.entries(s.conn)]
        assert s.conn.execute("SELECT count(DISTINCT template_id) FROM log_entries").fetchone()[0] == 1
    assert messages == [f"Error: job {i} failed" for i in range(3000)]


def test_an_unhandled_rejection_is_named_by_its_error():
    text = (
        "Unhandled Rejection at: Promise {\n  <rejected> Error: timeout of 500ms exceeded\n      at f (a.js:1:1)\n}\n"
    )
    g = Grouper("err")
    (e,) = g.feed_all(_lines(text)) + g.flush()
    assert e.message == "Unhandled Rejection at: Promise { <rejected> Error: timeout of 500ms exceeded"


def test_stdout_logs_keep_only_errors_by_default(tmp_path, store):
    out = tmp_path / "web-out.log"
    out.write_text("GET / 200 in 3ms\nready\nError: boom\n")
    r = logs.ingest(store, "web", [out])
    assert r.entries == 1 and r.skipped == 2
    assert logs.stream_of(str(out)) == "out" and logs.stream_of("/x/web-error.log") == "err"


def test_an_unreadable_log_becomes_a_warning_in_the_event(tmp_path, store):
    r = logs.ingest(store, "web", [tmp_path / "missing-error.log"])
    assert r.entries == 0 and r.warnings[0].kind == "missing"
    (e,) = store.query(types=["log.ingested"])
    assert e.data["warnings"][0]["kind"] == "missing"
