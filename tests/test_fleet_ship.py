"""Shipping a store's events to the fleet store: a real PostgreSQL (tests/postgres.py), real SQLite stores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from recovery import config as cfg
from recovery import fleet as fleet_pkg
from recovery.check import CheckResult
from recovery.errors import FleetError
from recovery.fleet import ship as ship_mod
from recovery.fleet.ship import backlog, ship
from recovery.store import Store
from recovery.urls import shown_dsn
from recovery.watch import run_watch
from tests.conftest import wait_until
from tests.test_projections import Timeline


def write_config(
    tmp_path: Path, url: str, *, host: str = "a", app_url: str = "http://127.0.0.1:9/", **fleet: str
) -> cfg.Config:
    text = f'[store]\npath = "{tmp_path / "recovery.db"}"\nbusy_timeout = "2s"\n\n[logs]\nin_check = false\n\n'
    text += f'[fleet]\npostgres = "{url}"\nhost = "{host}"\n' + "".join(f"{k} = {v}\n" for k, v in fleet.items())
    text += f'\n[[apps]]\nname = "web"\nurl = "{app_url}"\ntimeout = "1s"\nretries = 1\n'
    path = tmp_path / "recovery.toml"
    path.write_text(text)
    return cfg.load(path)


def history(config: cfg.Config, *, healthy: int = 5, hangs: int = 1) -> int:
    "A few check runs (healthy ones and a hang recovered by a restart); the store's last seq."
    with Store.open(config.store.path) as store:
        t = Timeline(store)
        for i in range(healthy):
            t.healthy(60.0 * i)
        for i in range(hangs):
            t.hang_recovered(60.0 * (healthy + i))
        return store.last_seq()


def local_events(config: cfg.Config) -> list[tuple[Any, ...]]:
    with Store.open(config.store.path) as store:
        return store.conn.execute(
            "SELECT seq, id, ts, host, app, type, run_id, data, prev_hash, hash FROM events ORDER BY seq"
        ).fetchall()


def pg_rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_a_ship_copies_every_event_as_stored_and_the_hosts_read_models(postgres, tmp_path):
    url = postgres.fresh_database()
    config = write_config(tmp_path, url)
    last = history(config)

    result = ship(config)

    assert (result.events, result.last_seq, result.backlog) == (last, last, 0)
    shipped = pg_rows(
        url,
        "SELECT seq, id, ts, event_host, app, type, run_id, data, prev_hash, hash FROM fleet_events"
        " WHERE host = 'a' ORDER BY seq",
    )
    assert shipped == local_events(config)  # byte for byte: fleet verify recomputes the chain from these
    assert pg_rows(url, "SELECT host, app, state FROM fleet_app_state") == [("a", "web", "healthy")]
    with Store.open(config.store.path) as store:
        incidents = store.conn.execute(f"SELECT {ship_mod.INCIDENT_COLUMNS} FROM incidents").fetchall()
        restarts = store.conn.execute(f"SELECT {ship_mod.RESTART_COLUMNS} FROM restarts").fetchall()
    assert pg_rows(url, f"SELECT {ship_mod.INCIDENT_COLUMNS} FROM fleet_incidents") == incidents
    assert [(r[1], r[7], r[8]) for r in incidents] == [("web", 1, "restarted")]
    assert pg_rows(url, f"SELECT {ship_mod.RESTART_COLUMNS} FROM fleet_restarts") == restarts
    assert [(r[1], r[3], r[4]) for r in restarts] == [("web", "check", "recovery")]
    with Store.open(config.store.path) as store:
        hours = store.conn.execute(
            "SELECT app, start, probes, failures, up_s, down_s, unobserved_s, latency FROM rollup_hour ORDER BY start"
        ).fetchall()
    assert hours and pg_rows(url, f"SELECT {ship_mod.ROLLUP_COLUMNS} FROM fleet_rollup_hour ORDER BY start") == hours
    assert pg_rows(url, "SELECT host, first_seq, last_seq, events FROM fleet_hosts") == [("a", 1, last, last)]
    assert pg_rows(url, "SELECT value FROM fleet_meta WHERE key = 'schema_version'") == [
        (str(ship_mod.SCHEMA_VERSION),)
    ]


def test_a_second_ship_adds_no_rows_and_the_next_ships_only_the_new_events(postgres, tmp_path):
    url = postgres.fresh_database()
    config = write_config(tmp_path, url)
    first = history(config, healthy=3, hangs=0)
    ship(config)

    again = ship(config)
    assert (again.events, again.sent) == (0, 0)
    assert pg_rows(url, "SELECT count(*), max(seq) FROM fleet_events") == [(first, first)]

    last = history(config, healthy=2, hangs=1)
    later = ship(config)
    assert (later.sent, later.events) == (last - first, last - first)
    assert pg_rows(url, "SELECT count(*) FROM fleet_events") == [(last,)]
    assert pg_rows(url, "SELECT state, open_incident FROM fleet_app_state") == [("healthy", None)]
    assert pg_rows(url, "SELECT events, last_seq FROM fleet_hosts") == [(last, last)]


def test_the_next_ship_updates_what_later_checks_changed_in_the_read_models(postgres, tmp_path):
    url = postgres.fresh_database()
    config = write_config(tmp_path, url)
    with Store.open(config.store.path) as store:
        t = Timeline(store)
        for i in range(3):
            t.healthy(60.0 * i)
        failed = ("probe.failed", "web", {"phase": "check", "error": "timeout", "latency_ms": 2000})
        down = ("decision.made", "web", {"action": "escalate", "reason": "hung", "state": "down", "code": "hung"})
        t.run(180, failed, down)
    ship(config)
    assert pg_rows(url, "SELECT state FROM fleet_app_state") == [("down",)]
    assert pg_rows(url, "SELECT outcome FROM fleet_incidents") == [("open",)]

    with Store.open(config.store.path) as store:  # the same hour goes on, and the next hours begin
        t = Timeline(store)
        for i in range(4, 100):
            t.healthy(60.0 * i)
    ship(config)

    assert pg_rows(url, "SELECT state FROM fleet_app_state") == [("healthy",)]
    assert pg_rows(url, "SELECT outcome FROM fleet_incidents") == [("recovered without restart",)]
    with Store.open(config.store.path) as store:
        for level in ("hour", "day"):
            local = store.conn.execute(
                f"SELECT {ship_mod.ROLLUP_COLUMNS} FROM rollup_{level} ORDER BY start"
            ).fetchall()
            assert len(local) >= (2 if level == "hour" else 1)
            assert pg_rows(url, f"SELECT {ship_mod.ROLLUP_COLUMNS} FROM fleet_rollup_{level} ORDER BY start") == local


def test_a_crash_between_postgres_commit_and_the_cursor_ships_nothing_twice(postgres, tmp_path, monkeypatch):
    url = postgres.fresh_database()
    config = write_config(tmp_path, url)
    last = history(config)
    real = ship_mod.immediate

    def crash_at_the_cursor(conn):  # PostgreSQL has committed; the process dies before the cursor moves
        raise KeyboardInterrupt("killed")

    with Store.open(config.store.path) as store:  # the cursor row exists, as after an earlier ship
        ship_mod._cursor(store.conn, ship_mod.target_key(config), shown_dsn(url), "a")
    monkeypatch.setattr(ship_mod, "immediate", crash_at_the_cursor)
    with pytest.raises(KeyboardInterrupt):
        ship(config)
    monkeypatch.setattr(ship_mod, "immediate", real)
    assert pg_rows(url, "SELECT count(*) FROM fleet_events") == [(last,)]

    again = ship(config)

    assert (again.sent, again.events) == (last, 0)  # re-sent, and nothing added
    assert pg_rows(url, "SELECT count(*) FROM fleet_events") == [(last,)]
    assert pg_rows(url, "SELECT events FROM fleet_hosts") == [(last,)]


def test_events_go_in_batches_and_a_spent_budget_leaves_the_rest_for_the_next_ship(postgres, tmp_path, monkeypatch):
    url = postgres.fresh_database()
    config = write_config(tmp_path, url, batch="10", budget='"10s"')
    last = history(config, healthy=10, hangs=2)  # 4 events a healthy run, 9 a hang: 58
    now = [0.0]
    monkeypatch.setattr(ship_mod, "_clock", lambda: now[0])
    seen: list[tuple[int, int]] = []

    def after_round(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 2:
            now[0] += 11.0  # the budget is spent during the second round

    first = ship(config, progress=after_round)

    # Two rounds of events, then one of the read models alone.
    assert (first.rounds, first.sent, first.backlog) == (3, 20, last - 20)
    assert seen == [(10, last), (20, last), (20, last)]
    assert pg_rows(url, "SELECT count(*), max(seq) FROM fleet_events") == [(20, 20)]
    assert pg_rows(url, "SELECT count(*) FROM fleet_app_state") == [(1,)]  # the views are current all the same

    rest = ship(config)
    assert (rest.rounds, rest.sent, rest.backlog) == (-(-(last - 20) // 10), last - 20, 0)
    assert pg_rows(url, "SELECT count(*), max(seq) FROM fleet_events") == [(last, last)]


def test_the_url_is_shown_without_its_password():
    assert shown_dsn("postgresql://fleet:s3cr%2Ft@db.example:5433/fleet?sslmode=require") == (
        "postgresql://fleet:***@db.example:5433/fleet?…"
    )
    assert shown_dsn("postgresql://fleet@db/fleet") == "postgresql://fleet@db/fleet"
    assert fleet_pkg.scrub("auth failed for s3cr/t and s3cr%2Ft", "postgresql://u:s3cr%2Ft@h/db") == (
        "auth failed for *** and ***"
    )


def test_postgres_down_is_one_line_without_the_password_kept_for_status_not_as_an_event(postgres_server, tmp_path):
    url = postgres_server.url()
    config = write_config(tmp_path, url)
    last = history(config)
    postgres_server.stop()

    with pytest.raises(FleetError) as err:
        ship(config)

    message = str(err.value)
    assert postgres_server.password not in message and "\n" not in message
    assert f"postgresql://postgres:***@127.0.0.1:{postgres_server.port}/postgres" in message
    cli = run_cli("ship", "--config", str(config.source))
    assert cli.returncode == 3 and cli.stdout == ""
    assert cli.stderr.startswith("recovery: cannot reach the fleet store postgresql://postgres:***@")
    assert "Connection refused" in cli.stderr and "\t" not in cli.stderr  # libpq's reason, on one line
    assert postgres_server.password not in cli.stderr
    status = run_cli("status", "--config", str(config.source))
    line = status.stdout.strip().splitlines()[-1]
    assert line.startswith(f"fleet: {last} events not shipped (host a); never shipped; failing since ")
    assert postgres_server.password not in status.stdout + status.stderr
    with Store.open(config.store.path) as store:
        assert store.last_seq() == last  # no event for a failed ship
        dump = "\n".join(store.conn.iterdump())
    assert postgres_server.password not in dump

    postgres_server.start()
    shipped = run_cli("ship", "--config", str(config.source))
    assert shipped.returncode == 0, shipped.stderr
    assert f"shipped {last} new event(s) of host a to postgresql://postgres:***@" in shipped.stdout
    assert "backlog: 0 event(s) not shipped" in shipped.stdout
    assert postgres_server.password not in shipped.stdout + shipped.stderr
    line = run_cli("status", "--config", str(config.source)).stdout.strip().splitlines()[-1]
    assert line.startswith("fleet: 0 events not shipped (host a); last ship ") and "failing" not in line


def test_a_wrong_password_is_named_without_the_password(postgres, tmp_path):
    wrong = postgres.url().replace(postgres.password, "Wr0ng-pass-1234")
    config = write_config(tmp_path, wrong)
    history(config)
    with pytest.raises(FleetError) as err:
        ship(config)
    assert "Wr0ng-pass-1234" not in str(err.value) and "password authentication failed" in str(err.value)


def test_the_password_may_come_from_pgpassfile_instead_of_the_url(postgres, tmp_path, monkeypatch):
    url = postgres.fresh_database()
    database = url.rsplit("/", 1)[1]
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres.port}:{database}:postgres:{postgres.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    config = write_config(tmp_path, f"postgresql://postgres@127.0.0.1:{postgres.port}/{database}")
    last = history(config, healthy=2, hangs=0)
    assert ship(config).events == last


def test_a_fleet_schema_newer_than_the_code_is_a_clear_error(postgres, tmp_path):
    url = postgres.fresh_database()
    config = write_config(tmp_path, url)
    history(config, healthy=1, hangs=0)
    ship(config)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE fleet_meta SET value = '99' WHERE key = 'schema_version'")
    history(config, healthy=1, hangs=0)
    with pytest.raises(FleetError, match=r"schema is version 99, newer than this recovery knows \(1\)"):
        ship(config)


def test_without_psycopg_the_error_says_how_to_install_it(postgres, tmp_path, monkeypatch):
    config = write_config(tmp_path, postgres.fresh_database())
    history(config, healthy=1, hangs=0)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(FleetError) as err:
        ship(config)
    assert str(err.value) == "fleet.postgres is set but psycopg is not installed: pip install 'recovery[fleet]'"


def test_status_json_has_the_backlog_and_the_last_ship(postgres, tmp_path):
    config = write_config(tmp_path, postgres.fresh_database())
    first = history(config, healthy=2, hangs=0)
    ship(config)
    last = history(config, healthy=1, hangs=0)
    with Store.open(config.store.path) as store:
        b = backlog(store.conn, config)
    assert b is not None and (b.events, b.host, b.error) == (last - first, "a", None) and b.shipped_at
    out = run_cli("status", "--json", "--config", str(config.source))
    assert json.loads(out.stdout)["fleet"]["events"] == last - first


def test_with_postgres_stopped_a_check_answers_as_without_fleet_and_its_events_ship_later(
    postgres_server, tmp_path, http_server
):
    app_url, _state = http_server
    (tmp_path / "plain").mkdir()
    (tmp_path / "fleet").mkdir()
    plain = write_config(tmp_path / "plain", "postgresql://u@127.0.0.1:9/x", app_url=app_url)
    plain = cfg.load(_without_fleet(plain.source))
    fleet = write_config(tmp_path / "fleet", postgres_server.url(), app_url=app_url)
    postgres_server.stop()

    without = run_cli("check", "--config", str(plain.source))
    withfleet = run_cli("check", "--config", str(fleet.source))

    assert (withfleet.returncode, withfleet.stdout.split(" | ")[0]) == (
        without.returncode,
        without.stdout.split(" | ")[0],
    )
    assert [e[5] for e in local_events(fleet)] == [e[5] for e in local_events(plain)]
    # The check's detached child tried, failed, and kept the failure for status (no event).
    wait_until(lambda: _cursor_error(fleet), message="the publish child's failure in the cursor")
    assert [e[5] for e in local_events(fleet)] == [e[5] for e in local_events(plain)]

    postgres_server.start()
    run_cli("check", "--config", str(fleet.source))  # its child ships everything recorded so far
    count = len(local_events(fleet))
    wait_until(
        lambda: pg_rows(postgres_server.url(), "SELECT count(*) FROM fleet_events")[0][0] == count,
        message="the events in PostgreSQL",
    )
    assert _cursor_error(fleet) is None


def test_watch_ships_after_its_steps_on_a_thread_and_a_black_holed_postgres_delays_no_step(tmp_path):
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts connections in the kernel, never answers: a black hole
    try:
        config = write_config(tmp_path, f"postgresql://u:pw@127.0.0.1:{hole.getsockname()[1]}/db", budget='"30s"')
        history(config, healthy=1, hangs=0)
        stop = threading.Event()
        steps: list[CheckResult] = []

        def on_result(r: CheckResult) -> None:
            steps.append(r)
            if len(steps) == 5:
                stop.set()

        worker = ship_mod.ShipWorker(config)
        run_watch(
            config,
            interval=0.01,
            stop=stop,
            on_result=on_result,
            make_check=lambda c: _Step(),
            shipper=worker,
        )
        assert len(steps) == 5  # every step ran while the one ship still waits for PostgreSQL
        assert worker.ships == 0 and worker.thread.is_alive()
    finally:
        hole.close()


def test_watch_ships_new_events_to_postgres(postgres, tmp_path):
    url = postgres.fresh_database()
    config = write_config(tmp_path, url)
    last = history(config)
    stop = threading.Event()
    shipped = threading.Event()

    def on_result(r: CheckResult) -> None:
        if shipped.is_set():
            stop.set()

    worker = ship_mod.ShipWorker(config)
    runner = threading.Thread(
        target=run_watch,
        kwargs={
            "config": config,
            "interval": 0.05,
            "stop": stop,
            "on_result": on_result,
            "make_check": lambda c: _Step(),
            "shipper": worker,
        },
    )
    runner.start()
    try:
        wait_until(lambda: pg_rows(url, "SELECT count(*) FROM fleet_events")[0][0] == last, message="shipped")
    finally:
        shipped.set()
        runner.join(30)
    assert not runner.is_alive()


class _Step:
    def run(self) -> CheckResult:
        return CheckResult(run_id="-")


def _without_fleet(path: Path | None) -> Path:
    assert path is not None
    text = path.read_text()
    start = text.index("[fleet]")
    path.write_text(text[:start] + text[text.index("[[apps]]") :])
    return path


def _cursor_error(config: cfg.Config) -> str | None:
    with Store.open(config.store.path) as store:
        try:
            row = store.conn.execute("SELECT last_error FROM fleet_cursor").fetchone()
        except Exception:
            return None
    return row[0] if row else None


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _children(pid: int) -> list[list[str]]:
    "The command lines of the processes whose parent is `pid`."
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().decode().split("\0")[:-1])
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_the_publish_child_starts_python_only_once_the_check_has_exited(postgres, tmp_path):
    url = postgres.fresh_database()
    config = write_config(tmp_path, url)
    last = history(config)
    script = (
        "import sys\nfrom recovery import config\nfrom recovery.publish import spawn\n"
        "assert spawn(config.load(sys.argv[1]))\nprint('answered', flush=True)\nsys.stdin.read()\n"
    )
    check = subprocess.Popen(
        [sys.executable, "-c", script, str(config.source)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert check.stdout is not None and check.stdout.readline() == "answered\n"
        # While the check lives, its child is a shell waiting on the pipe: no Python competes for the CPU.
        (child,) = _children(check.pid)
        assert child[:4] == ["/bin/sh", "-c", 'read -r _; exec "$@"', "recovery-publish"]
        assert pg_rows(url, "SELECT to_regclass('fleet_events')") == [(None,)]
    finally:
        assert check.stdin is not None
        check.stdin.close()  # the check exits
        check.wait(30)
    wait_until(
        lambda: (
            pg_rows(url, "SELECT to_regclass('fleet_events') IS NOT NULL")[0][0]
            and pg_rows(url, "SELECT count(*) FROM fleet_events")[0][0] == last
        ),
        message="the child's ship after the check's exit",
    )


def test_recovery_ship_shows_a_progress_bar_on_a_terminal_only(postgres, tmp_path):
    import pty

    config = write_config(tmp_path, postgres.fresh_database())
    history(config)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "ship", "--config", str(config.source)],
        stdout=secondary,
        stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the command has exited and closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert proc.wait(60) == 0
    assert b"shipping" in seen and b"\x1b[" in seen  # the bar, drawn with terminal escapes
    assert b"shipped " in seen
    piped = run_cli("ship", "--config", str(config.source))
    assert "shipping" not in piped.stdout and "\x1b[" not in piped.stdout


def test_status_reads_the_backlog_without_importing_psycopg(postgres, tmp_path):
    config = write_config(tmp_path, postgres.fresh_database())
    last = history(config)
    script = (
        "import sys\nfrom recovery_cli.main import main\nsys.argv = ['recovery', 'status', '--config', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint('psycopg' in sys.modules, file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(config.source)], capture_output=True, text=True, env={**os.environ}
    )
    assert out.stderr.strip().splitlines()[-1] == "False"
    assert f"fleet: {last} events not shipped (host a); never shipped" in out.stdout


def test_watch_says_a_failing_ship_once_and_without_the_password(postgres_server, tmp_path, capsys):
    config = write_config(tmp_path, postgres_server.url())
    history(config, healthy=1, hangs=0)
    postgres_server.stop()
    worker = ship_mod.ShipWorker(config)
    worker.start()
    try:
        for n in (1, 2, 3):
            worker.nudge()
            wait_until(lambda n=n: worker.ships >= n, message=f"ship {n}")
    finally:
        assert worker.close(30)
    lines = [line for line in capsys.readouterr().err.splitlines() if "fleet ship" in line]
    assert len(lines) == 1 and "fleet ship failed: cannot reach the fleet store postgresql://postgres:***@" in lines[0]
    assert postgres_server.password not in lines[0]


def test_events_archived_after_shipping_began_still_ship_from_their_segment(postgres, tmp_path):
    import datetime as dt

    from recovery.archive import archive

    url = postgres.fresh_database()
    config = write_config(tmp_path, url)
    with Store.open(config.store.path) as store:
        august = Timeline(store, dt.datetime(2026, 8, 3, tzinfo=dt.UTC))
        for i in range(5):
            august.healthy(60.0 * i)
    first = ship(config).last_seq
    with Store.open(config.store.path) as store:
        august.store = store
        for i in range(5, 10):
            august.healthy(60.0 * i)  # recorded in August, not shipped yet ...
        later = Timeline(store, dt.datetime(2026, 11, 3, tzinfo=dt.UTC))
        for i in range(3):
            later.healthy(60.0 * i)
        moved = archive(store, dt.datetime(2026, 9, 15, tzinfo=dt.UTC))  # ... then archived
        assert moved.pieces and store.conn.execute("SELECT min(seq) FROM events").fetchone()[0] > first + 1
        last = store.last_seq()

    result = ship(config)

    assert result.events == last - first
    assert pg_rows(url, "SELECT count(*), min(seq), max(seq) FROM fleet_events") == [(last, 1, last)]
