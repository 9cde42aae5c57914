"""The fleet done-when with real engines: two stores on this machine acting as hosts `a` and `b`, each
with its own PM2 daemon and demo app, shipping to a real PostgreSQL (tests/postgres.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from recovery.store import Store
from tests.conftest import Pm2Sandbox, wait_until
from tests.test_check import recovery

pytestmark = pytest.mark.pm2


@pytest.fixture
def pm2_b(pm2_bin: Path) -> Iterator[Pm2Sandbox]:
    "A second private PM2 daemon: host b's."
    sandbox = Pm2Sandbox(pm2_bin)
    try:
        yield sandbox
    finally:
        sandbox.close()


def host_config(folder: Path, sandbox: Pm2Sandbox, app: Any, host: str, url: str | None) -> Path:
    "A host's config: its own store, PM2 and app `web`; a fleet section when `url` is given."
    folder.mkdir()
    text = f'[store]\npath = "{folder / "recovery.db"}"\n\n[pm2]\nbin = "{sandbox.bin}"\n\n[logs]\nin_check = false\n\n'
    if url is not None:
        text += f'[fleet]\npostgres = "{url}"\nhost = "{host}"\nbudget = "10s"\n\n'
    text += f'[[apps]]\nname = "web"\nurl = "{app.url}"\ntimeout = "1s"\nretries = 2\nretry_delay = "0s"\n'
    path = folder / "recovery.toml"
    path.write_text(text)
    return path


def pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def events(config: Path) -> list[tuple[str, str, str | None]]:
    with Store.open(config.parent / "recovery.db") as store:
        return store.conn.execute("SELECT ts, type, app FROM events ORDER BY seq").fetchall()


def cursor(config: Path) -> tuple[Any, ...] | None:
    with Store.open(config.parent / "recovery.db") as store:
        try:
            return store.conn.execute("SELECT last_seq, tried_at, last_error FROM fleet_cursor").fetchone()
        except Exception:
            return None


def test_two_hosts_ship_their_apps_state_and_a_second_ship_adds_no_rows(pm2, pm2_b, postgres, tmp_path):
    url = postgres.fresh_database()
    a = host_config(tmp_path / "a", pm2, pm2.start_app("web"), "a", url)
    b = host_config(tmp_path / "b", pm2_b, pm2_b.start_app("web"), "b", url)

    for sandbox, config in ((pm2, a), (pm2_b, b)):
        done = recovery(sandbox, "check", "--config", str(config))
        assert done.returncode == 0, done.stdout + done.stderr

    # Each check's detached child ships after the answer; both hosts' apps arrive.
    wait_until(
        lambda: (
            pg(url, "SELECT host, app, state FROM fleet_app_state ORDER BY host")
            == [("a", "web", "healthy"), ("b", "web", "healthy")]
        ),
        message="both hosts' app state in PostgreSQL",
    )
    wait_until(
        lambda: (
            pg(url, "SELECT host, last_seq FROM fleet_hosts ORDER BY host")
            == [("a", len(events(a))), ("b", len(events(b)))]
        ),
        message="both hosts' events in PostgreSQL",
    )
    before = pg(url, "SELECT host, count(*) FROM fleet_events GROUP BY host ORDER BY host")
    assert before == [("a", len(events(a))), ("b", len(events(b)))]

    # The fleet's view, read from either host: both hosts' apps with their state.
    status = recovery(pm2, "fleet", "status", "--config", str(a), "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    seen = {(h["host"], app["app"], app["state"]) for h in json.loads(status.stdout)["hosts"] for app in h["apps"]}
    assert seen == {("a", "web", "healthy"), ("b", "web", "healthy")}
    assert recovery(pm2, "fleet", "verify", "--config", str(a)).returncode == 0

    again = recovery(pm2, "ship", "--config", str(a))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("shipped 0 new event(s) of host a")
    assert pg(url, "SELECT host, count(*) FROM fleet_events GROUP BY host ORDER BY host") == before
    assert pg(url, "SELECT host, events FROM fleet_hosts ORDER BY host") == before

    # Someone edits one of host b's shipped events in PostgreSQL: the central check names it.
    seq, event_id = pg(url, "SELECT seq, id FROM fleet_events WHERE host = 'b' AND type = 'probe.succeeded'")[0]
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE fleet_events SET data = replace(data, '200', '503') WHERE host = 'b' AND seq = %s", (seq,))
    verify = recovery(pm2, "fleet", "verify", "--config", str(a))
    assert verify.returncode == 2, verify.stdout + verify.stderr
    assert f"host b: seq {seq} (event {event_id}" in verify.stderr and "host a" not in verify.stderr
    assert postgres.password not in verify.stdout + verify.stderr + status.stdout


def restart_offsets(config: Path) -> dict[str, float]:
    "Seconds from the hang check's start to its restart and to the verified answer, from its events."
    from recovery.units import parse_ts

    rows = events(config)
    start = [ts for ts, type_, _ in rows if type_ == "check.started"][-1]

    def at(type_: str) -> float:
        ts = next(ts for ts, t, _ in rows if t == type_ and ts >= start)
        return (parse_ts(ts) - parse_ts(start)).total_seconds()

    return {"restart": at("restart.succeeded"), "verified": at("verification.passed"), "answered": at("check.finished")}


def test_with_postgres_stopped_a_hung_app_is_restarted_as_without_fleet_and_ships_later(
    pm2, pm2_b, postgres_server, tmp_path
):
    url = postgres_server.url()
    app_a, app_b = pm2.start_app("web"), pm2_b.start_app("web")
    a = host_config(tmp_path / "a", pm2, app_a, "a", url)  # with the fleet, PostgreSQL stopped
    b = host_config(tmp_path / "b", pm2_b, app_b, "b", None)  # no fleet at all
    for sandbox, config in ((pm2, a), (pm2_b, b)):
        assert recovery(sandbox, "check", "--config", str(config)).returncode == 0
    wait_until(lambda: cursor(a) and cursor(a)[0] > 0, message="the first ship of host a")  # type: ignore[index]
    postgres_server.stop()

    for app in (app_a, app_b):
        app.control("hang")
    for app in (app_a, app_b):
        app.wait_until(lambda app=app: not app.answers(timeout=0.5), message="the app to hang")
    fleet_run = recovery(pm2, "check", "--config", str(a))
    plain_run = recovery(pm2_b, "check", "--config", str(b))

    assert fleet_run.returncode == plain_run.returncode == 1, fleet_run.stdout + plain_run.stdout
    assert "RECOVERED" in fleet_run.stdout and "RECOVERED" in plain_run.stdout
    with_fleet, without = restart_offsets(a), restart_offsets(b)
    print(f"\nhang check, offsets from its start: with fleet (PostgreSQL down) {with_fleet}; without fleet {without}")
    # The same recovery, step for step: the same events from the hang check's start to its answer ...
    kinds = [[t for _, t, _ in events(c)] for c in (a, b)]
    start_a = max(i for i, t in enumerate(kinds[0]) if t == "check.started")
    start_b = max(i for i, t in enumerate(kinds[1]) if t == "check.started")
    assert kinds[0][start_a:] == kinds[1][start_b:]
    # ... and the fleet's attempt came only after that answer was recorded (the detached child).
    failed = wait_until(lambda: cursor(a) if cursor(a) and cursor(a)[2] else None, message="the failed ship")  # type: ignore[index]
    answered = [ts for ts, t, _ in events(a) if t == "check.finished"][-1]
    assert failed[1] >= answered and failed[0] < len(events(a))
    assert "***" in failed[2] and postgres_server.password not in failed[2]

    postgres_server.start()
    shipped = recovery(pm2, "ship", "--config", str(a))
    assert shipped.returncode == 0, shipped.stderr
    count = len(events(a))
    assert pg(url, "SELECT count(*), max(seq) FROM fleet_events WHERE host = 'a'") == [(count, count)]
    assert pg(url, "SELECT app, outcome, restarts FROM fleet_incidents WHERE host = 'a'") == [("web", "restarted", 1)]
    assert pg(url, "SELECT app, state FROM fleet_app_state WHERE host = 'a'") == [("web", "healthy")]
