"""Rollups per app and minute / hour / day: maintained by the fold, read by `report`."""

from __future__ import annotations

import datetime as dt
import sqlite3

from recovery import projections, rollups
from recovery.events import Event, format_ts
from recovery.report import build_report
from recovery.store import Store
from tests.test_honest_downtime import Checks

T0 = dt.datetime(2026, 11, 10, 0, 0, tzinfo=dt.UTC)
COLUMNS = "sum(probes), sum(failures), round(sum(up_s), 3), round(sum(down_s), 3), round(sum(unobserved_s), 3)"


def level_sums(conn: sqlite3.Connection) -> dict[str, tuple]:
    return {lv: conn.execute(f"SELECT {COLUMNS} FROM {lv} WHERE app = 'web'").fetchone() for lv in rollups.LEVELS}


def test_minute_hour_and_day_rows_add_up_to_the_same(tmp_path):
    store = Store.open(tmp_path / "r.db")
    c = Checks(store, T0 + dt.timedelta(hours=23))
    for k in range(100):  # across midnight
        if k in (30, 70):
            c.hang(60 * k)
        else:
            c.healthy(60 * k)
    projections.fold(store.conn)
    sums = level_sums(store.conn)
    assert sums["rollup_minute"] == sums["rollup_hour"] == sums["rollup_day"]
    assert sums["rollup_day"][:2] == (104, 6)
    assert store.conn.execute("SELECT count(*) FROM rollup_day").fetchone()[0] == 2
    store.close()


def test_a_report_edge_within_two_days_is_exact_to_the_minute(tmp_path):
    store = Store.open(tmp_path / "r.db")
    c = Checks(store, T0)
    for k in range(180):  # a check every minute, at :30, for three hours
        c.healthy(60 * k + 30)
    projections.fold(store.conn)
    now = T0 + dt.timedelta(hours=3)
    for minutes in (1, 17, 60, 95, 179):
        since = now - dt.timedelta(minutes=minutes)
        web = build_report(store, ["web"], format_ts(since), now).to_dict()["apps"]["web"]
        assert web["probes"] == minutes
        assert abs(web["availability_percent"] - 100) < 1e-9
    store.close()


def test_minute_rows_are_kept_two_days_and_older_edges_fall_on_whole_hours(tmp_path):
    store = Store.open(tmp_path / "r.db")
    c = Checks(store, T0)
    for k in range(4 * 24 * 4):  # a check every 15 minutes for four days
        c.healthy(900 * k + 30)
    projections.fold(store.conn)
    oldest = store.conn.execute("SELECT min(start) FROM rollup_minute").fetchone()[0]
    latest = c.at(900 * (4 * 24 * 4 - 1) + 30)
    assert oldest >= rollups.minute_cutoff(latest) and oldest < c.at(2 * 86400 + 3600)
    assert store.conn.execute("SELECT sum(probes) FROM rollup_hour").fetchone()[0] == 384
    now = T0 + dt.timedelta(days=4)
    # an edge three days back, 20 minutes into an hour: that hour counts whole (4 checks)
    since = T0 + dt.timedelta(days=1, minutes=20)
    web = build_report(store, ["web"], format_ts(since), now).to_dict()["apps"]["web"]
    assert web["probes"] == 3 * 96
    store.close()


def test_the_period_and_the_one_before_split_the_rollups_between_them(tmp_path):
    store = Store.open(tmp_path / "r.db")
    c = Checks(store, T0)
    for k in range(10 * 24):  # ten days, a check an hour, a hang every day
        (c.hang if k % 24 == 5 else c.healthy)(3600 * k + 30)
    projections.fold(store.conn)
    now = T0 + dt.timedelta(days=10)
    cur = build_report(store, ["web"], format_ts(now - dt.timedelta(days=5)), now)
    both = build_report(store, ["web"], format_ts(T0), now)
    total = store.conn.execute("SELECT sum(probes) FROM rollup_day").fetchone()[0]
    assert both.apps[0].probes == total == 240 + 20  # each hang: 3 probes instead of 1
    assert cur.apps[0].probes == 130 and len(cur.apps[0].incidents) == 5
    store.close()


def test_folding_in_small_batches_gives_the_same_rollups_as_at_once(tmp_path):
    stores = [Store.open(tmp_path / f"r{i}.db") for i in range(2)]
    for s in stores:
        c = Checks(s, T0)
        for k in range(3 * 24 * 6):  # three days, every 10 minutes
            (c.hang if k % 50 == 7 else c.healthy)(600 * k + 30)
    projections.fold(stores[0].conn)
    projections.fold(stores[1].conn, batch=97)
    for lv in rollups.LEVELS:
        a, b = (s.conn.execute(f"SELECT * FROM {lv} ORDER BY app, start").fetchall() for s in stores)
        assert a == b, lv
    for s in stores:
        s.close()


def test_hints_of_a_long_report_decode_a_bounded_number_of_process_samples(tmp_path):
    store = Store.open(tmp_path / "r.db")
    now = T0 + dt.timedelta(days=30)
    rows = [
        Event(
            "process.sampled",
            "web",
            f"r{k}",
            {"source": "pidfile", "status": "online", "pid": 42, "memory": 50_000_000 + 1000 * k},
            ts=format_ts(now - dt.timedelta(seconds=60 * (6000 - k))),
        )
        for k in range(6000)  # one a minute for the last 4 days
    ]
    store.append(rows)
    projections.fold(store.conn)
    model = projections.hint_input(store.conn, "web", now, format_ts(now - dt.timedelta(days=365)))
    assert 0 < len(model.samples) <= 2000  # not every sample of a year (the 5,000 newest before)
    assert model.samples[-1].data["memory"] == 50_000_000 + 1000 * 5999
    assert model.samples[0].ts >= format_ts(now - dt.timedelta(days=3))  # the last three days at most
    store.close()
