"""`recovery status` from the projections: states, staleness, exit codes."""

from __future__ import annotations

import datetime as dt

import pytest

from recovery import projections
from recovery.config import AppConfig, Config, Pm2Config, StoreConfig
from recovery.errors import StoreError
from recovery.render import status_table
from recovery.status import status
from recovery.store import Store
from tests.test_projections import T0, Timeline


def config_for(tmp_path, *names: str) -> Config:
    apps = tuple(
        AppConfig(
            name=n,
            url="http://127.0.0.1:9/",
            timeout=2,
            retries=2,
            retry_delay=1,
            expect_status=((200, 399),),
            verify_timeout=30,
            restart_command="restart",
        )
        for n in names
    )
    return Config(None, StoreConfig(tmp_path / "recovery.db", 5), Pm2Config(None), apps)


def test_a_check_overdue_by_twice_the_usual_interval_is_flagged_stale(tmp_path):
    with Store.open(tmp_path / "recovery.db") as store:
        tl = Timeline(store)
        for i in range(5):
            tl.healthy(i * 60)
        fresh = status(store, config_for(tmp_path, "web"), now=T0 + dt.timedelta(seconds=4 * 60 + 90))
        late = status(store, config_for(tmp_path, "web"), now=T0 + dt.timedelta(seconds=4 * 60 + 150))
    assert fresh[0].stale is False and fresh[0].code == 0
    assert late[0].stale is True and late[0].code == 3
    assert "STALE" in status_table(late, now=T0 + dt.timedelta(seconds=400))


def test_an_app_never_checked_is_unknown(tmp_path):
    with Store.open(tmp_path / "recovery.db") as store:
        (row,) = status(store, config_for(tmp_path, "web"), now=T0)
    assert row.state == "unknown" and row.code == 3


def test_an_open_incident_and_a_down_state_are_critical(tmp_path):
    with Store.open(tmp_path / "recovery.db") as store:
        tl = Timeline(store)
        tl.healthy(0)
        tl.run(
            60,
            ("probe.failed", "web", {"phase": "check", "error": "timeout"}),
            ("decision.made", "web", {"action": "escalate", "reason": "no pm2", "state": "down"}),
        )
        (row,) = status(store, config_for(tmp_path, "web"), now=T0 + dt.timedelta(seconds=70))
    assert row.state == "down" and row.code == 2 and row.open_incident is not None


def test_uptime_and_ages_are_written_like_every_other_duration(tmp_path):
    with Store.open(tmp_path / "recovery.db") as store:
        tl = Timeline(store)
        tl.healthy(0)
        (row,) = status(store, config_for(tmp_path, "web"), now=T0 + dt.timedelta(seconds=60))
    row.uptime_s = 479.6  # 7m59.6s: the old status wrote 7m60s; it rounds to 8m00s
    text = status_table([row], now=T0 + dt.timedelta(seconds=60 + 59.6))
    assert "8m00s" in text and "7m60s" not in text and "1m59s ago" in text


def test_a_store_status_cannot_read_is_a_store_error_naming_it(tmp_path):
    with Store.open(tmp_path / "recovery.db") as store:
        Timeline(store).healthy(0)
        projections.fold(store.conn)
        store.conn.execute("DROP TABLE restarts")
        with pytest.raises(StoreError, match=f"cannot read the event store {store.path}"):
            status(store, config_for(tmp_path, "web"), now=T0)
