"""`recovery fleet status|report|verify` over a real PostgreSQL holding two hosts' real stores.

Each host's store gets there by real shipping (recovery/fleet/ship.py), as a check's publisher does.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
from recovery_cli.main import app
from typer.testing import CliRunner

from recovery import projections
from recovery.config import load
from recovery.demo import free_port
from recovery.fleet.ship import ensure_schema, ship
from recovery.report import build_report
from recovery.store import Store
from tests.test_projections import Timeline

UTC = dt.UTC
runner = CliRunner()


def ship_store(tmp_path: Path, db: Path, url: str, host: str) -> None:
    """Ship a host's store for real (recovery.fleet.ship): its events byte for byte, its read models,
    its fleet_hosts row, as a check's publisher does."""
    apps = [r[0] for r in sqlite3.connect(db).execute("SELECT app FROM app_state")]
    folder = tmp_path / f"ship-{host}"
    folder.mkdir()
    ship(load(write_config(folder, host, db, apps, url)), budget=None)


def make_store(path: Path, t0: dt.datetime, build) -> Path:
    with Store.open(path) as store:
        build(Timeline(store, t0))
        projections.fold(store.conn)
    return path


def write_config(tmp_path: Path, name: str, db: Path, apps: list[str], url: str | None) -> Path:
    text = f'[store]\npath = "{db}"\n'
    if url is not None:
        text += f'[fleet]\npostgres = "{url}"\nhost = "{name}"\n'
    for a in apps:
        text += f'[[apps]]\nname = "{a}"\nurl = "http://127.0.0.1:3000/"\n'
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"RECOVERY_CONFIG": "", "COLUMNS": "200"})


@pytest.fixture
def fleet(tmp_path, postgres):
    """Hosts `a` (web and api, checked every 5 minutes up to a minute ago; web hung once and was
    restarted) and `b` (shop, whose last check was two hours ago: stale), copied into a fresh database."""
    url = postgres.fresh_database()
    now = dt.datetime.now(UTC)
    t0 = (now - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)

    def host_a(t: Timeline) -> None:
        end = (now - t0).total_seconds() - 60
        s = 0.0
        while s < end:
            if s == 3000:
                t.hang_recovered(s, "web")
            else:
                t.healthy(s, "web", ms=20 + (s % 7))
            t.healthy(s + 1, "api", ms=35)
            s += 300

    def host_b(t: Timeline) -> None:
        for i in range(6):
            t.healthy(i * 300, "shop", ms=50)
        t.run(
            1800,
            ("probe.failed", "shop", {"phase": "check", "error": "refused", "latency_ms": 1}),
            ("decision.made", "shop", {"action": "none", "reason": "stopped by an operator", "state": "stopped"}),
        )

    a = make_store(tmp_path / "a.db", t0, host_a)
    b = make_store(tmp_path / "b.db", t0 - dt.timedelta(hours=2), host_b)
    ship_store(tmp_path, a, url, "a")
    ship_store(tmp_path, b, url, "b")
    cfg = write_config(tmp_path, "fleet", tmp_path / "a.db", ["web", "api"], url)
    return {"url": url, "config": cfg, "a": a, "b": b, "t0": t0, "password": postgres.password, "tmp": tmp_path}


def test_fleet_status_lists_every_hosts_apps_with_their_state_and_flags_the_stale_host(fleet):
    result = invoke("fleet", "status", "--json", "--config", str(fleet["config"]))
    out = json.loads(result.stdout)
    hosts = {h["host"]: h for h in out["hosts"]}
    assert set(hosts) == {"a", "b"}
    assert {a["app"]: a["state"] for a in hosts["a"]["apps"]} == {"web": "healthy", "api": "healthy"}
    assert {a["app"]: a["state"] for a in hosts["b"]["apps"]} == {"shop": "stopped"}
    assert hosts["a"]["stale"] is False and hosts["b"]["stale"] is True
    assert all(a["last_check_at"] and a["latency_ms"] for a in hosts["a"]["apps"])
    assert hosts["b"]["code"] == 3 and out["code"] == 3
    assert result.exit_code == 3, result.output  # a stale host counts as UNKNOWN


def test_fleet_status_text_names_hosts_apps_and_the_stale_host(fleet):
    result = invoke("fleet", "status", "--config", str(fleet["config"]))
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["HOST", "APP", "STATE"]
    rows = {tuple(line.split()[:3]) for line in lines[1:4]}
    assert rows == {("a", "api", "HEALTHY"), ("a", "web", "HEALTHY"), ("b", "shop", "STOPPED")}
    assert "STALE" in next(line for line in lines if line.startswith("b "))
    assert any(line.startswith("STALE") and line.endswith(": b") for line in lines)


def test_fleet_status_lists_a_host_that_shipped_no_app(fleet):
    with psycopg.connect(fleet["url"]) as pg:
        pg.execute("INSERT INTO fleet_hosts (host) VALUES ('c')")
    out = json.loads(invoke("fleet", "status", "--json", "--config", str(fleet["config"])).stdout)
    c = next(h for h in out["hosts"] if h["host"] == "c")
    assert c["apps"] == [] and c["stale"] is True and c["code"] == 3


def test_fleet_status_fits_the_terminal(fleet):
    result = runner.invoke(
        app, ["fleet", "status", "--config", str(fleet["config"])], env={"RECOVERY_CONFIG": "", "COLUMNS": "60"}
    )
    assert max(len(line) for line in result.stdout.splitlines()) <= 60, result.stdout
    wide = runner.invoke(
        app,
        ["fleet", "status", "--wide", "--config", str(fleet["config"])],
        env={"RECOVERY_CONFIG": "", "COLUMNS": "60"},
    )
    assert "PM2" in wide.stdout.splitlines()[0]


def _local_report(db: Path, apps: list[str], since: str, now: dt.datetime) -> dict:
    with Store.open(db) as store:
        return build_report(store, apps, since, now).to_dict()  # what `recovery report --json` prints


@pytest.mark.parametrize("host, apps", [("a", ["web", "api"]), ("b", ["shop"])])
def test_fleet_report_numbers_match_each_hosts_own_report(fleet, host, apps):
    since = projections.format_ts(fleet["t0"] - dt.timedelta(hours=3))
    result = invoke("fleet", "report", "--json", "--since", since, "--config", str(fleet["config"]))
    assert result.exit_code == 0, result.output
    fleet_out = json.loads(result.stdout)
    now = projections.parse_ts(fleet_out["until"])
    mine = _local_report(fleet[host], apps, since, now)["apps"]
    theirs = fleet_out["hosts"][host]["apps"]
    assert set(theirs) == set(apps)
    for name in apps:
        local, central = mine[name], theirs[name]
        for k in ("probes", "failures", "restarts", "restarts_by", "mttr_s", "mtbf_s", "latency_ms", "incidents"):
            assert central[k] == local[k], (name, k)
        for k in ("availability_percent", "availability_worst_percent", "unobserved_s"):
            assert central[k] == pytest.approx(local[k], abs=1e-3), (name, k)
        assert central["probes"] > 0
    if host == "a":
        assert theirs["web"]["restarts_by"]["check"] == 1 and len(theirs["web"]["incidents"]) == 1
        assert theirs["web"]["availability_percent"] < 100


def test_fleet_report_text_has_a_row_per_host_and_app(fleet):
    result = invoke("fleet", "report", "--since", "1d", "--config", str(fleet["config"]))
    assert result.exit_code == 0, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    assert ["a", "web"] in rows and ["a", "api"] in rows and ["b", "shop"] in rows


def test_fleet_verify_passes_when_every_chain_holds(fleet):
    result = invoke("fleet", "verify", "--config", str(fleet["config"]))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 2 host(s)")


def _event(url: str, host: str, type_: str) -> tuple[int, str]:
    with psycopg.connect(url) as pg:
        return pg.execute(
            "SELECT seq, id FROM fleet_events WHERE host = %s AND type = %s ORDER BY seq LIMIT 1 OFFSET 3",
            (host, type_),
        ).fetchone()


def test_fleet_verify_names_the_host_seq_and_id_of_an_edited_event(fleet):
    seq, eid = _event(fleet["url"], "a", "probe.succeeded")
    with psycopg.connect(fleet["url"]) as pg:
        pg.execute(
            "UPDATE fleet_events SET data = replace(data, '\"latency_ms\":', '\"latency_ms\":1') WHERE host = 'a' AND seq = %s",
            (seq,),
        )
    result = invoke("fleet", "verify", "--config", str(fleet["config"]))
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines == [
        f"recovery: host a: seq {seq} (event {eid}): its contents do not match its hash: the row was edited"
    ]
    as_json = json.loads(invoke("fleet", "verify", "--json", "--config", str(fleet["config"])).stdout)
    assert {h["host"]: h["ok"] for h in as_json["hosts"]} == {"a": False, "b": True}


def test_fleet_verify_names_a_gap_where_a_shipped_event_was_deleted(fleet):
    seq, _ = _event(fleet["url"], "b", "decision.made")
    with psycopg.connect(fleet["url"]) as pg:
        pg.execute("DELETE FROM fleet_events WHERE host = 'b' AND seq = %s", (seq,))
    result = invoke("fleet", "verify", "--config", str(fleet["config"]))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"recovery: host b: seq {seq}: missing: seq jumps from {seq - 1} to {seq + 1} (events deleted)"
    ]


def test_fleet_verify_names_the_last_events_deleted(fleet):
    with psycopg.connect(fleet["url"]) as pg:
        last = pg.execute("SELECT max(seq) FROM fleet_events WHERE host = 'a'").fetchone()[0]
        pg.execute("DELETE FROM fleet_events WHERE host = 'a' AND seq >= %s", (last - 1,))
    result = invoke("fleet", "verify", "--config", str(fleet["config"]))
    assert result.exit_code == 2, result.output
    assert f"host a: seq {last - 1}: missing: the host shipped up to seq {last}" in result.stderr


def test_fleet_verify_names_a_broken_link(fleet):
    seq, eid = _event(fleet["url"], "a", "decision.made")
    with psycopg.connect(fleet["url"]) as pg:  # an event re-hashed after an edit: its own hash holds, the link does not
        pg.execute("UPDATE fleet_events SET prev_hash = repeat('0', 64) WHERE host = 'a' AND seq = %s", (seq,))
    result = invoke("fleet", "verify", "--config", str(fleet["config"]))
    assert result.exit_code == 2
    assert f"host a: seq {seq} (event {eid}): its prev_hash is not the hash of the event before it" in result.stderr


def test_the_password_never_reaches_the_output(fleet):
    with psycopg.connect(fleet["url"]) as pg:
        pg.execute("UPDATE fleet_events SET data = data || ' ' WHERE host = 'a' AND seq = 5")
    for args in (["status"], ["status", "--json"], ["report"], ["report", "--json"], ["verify"], ["verify", "--json"]):
        result = invoke("fleet", *args, "--config", str(fleet["config"]))
        assert fleet["password"] not in result.stdout + result.stderr, args


def test_postgresql_unreachable_is_one_line_without_the_password(tmp_path, fleet):
    url = f"postgresql://postgres:{fleet['password']}@127.0.0.1:{free_port()}/fleet"
    cfg = write_config(tmp_path, "gone", tmp_path / "a.db", ["web"], url)
    for command in ("status", "report", "verify"):
        result = invoke("fleet", command, "--config", str(cfg))
        assert result.exit_code == 3, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("recovery: cannot reach the fleet store"), lines
        assert "postgres:***@127.0.0.1" in lines[0]
        assert fleet["password"] not in result.stdout + result.stderr
        assert "Traceback" not in result.output


def test_a_database_nothing_was_shipped_to_is_one_line(tmp_path, postgres):
    url = postgres.fresh_database()
    cfg = write_config(tmp_path, "empty", tmp_path / "a.db", ["web"], url)
    result = invoke("fleet", "status", "--config", str(cfg))
    assert result.exit_code == 3
    assert result.stderr.strip().endswith("nothing has been shipped there yet"), result.stderr
    assert postgres.password not in result.stderr


def test_no_fleet_configured_is_one_line(tmp_path):
    cfg = write_config(tmp_path, "local", tmp_path / "a.db", ["web"], None)
    result = invoke("fleet", "status", "--config", str(cfg))
    assert result.exit_code == 3
    assert (
        result.stderr.strip()
        == f'recovery: no fleet store configured: add [fleet] postgres = "postgresql://..." to {cfg}'
    )


def test_fleet_verify_names_the_first_events_deleted(fleet):
    with psycopg.connect(fleet["url"]) as pg:
        pg.execute("DELETE FROM fleet_events WHERE host = 'b' AND seq <= 2")
    result = invoke("fleet", "verify", "--config", str(fleet["config"]))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "recovery: host b: seq 1: missing: the first 2 event(s) shipped (seq 1..2) were deleted"
    ]


def test_a_password_in_the_url_or_its_query_is_redacted():
    from recovery.fleet import scrub, shown_dsn

    url = "postgresql://fleet:s3cret@db.example.com:5432/fleet?password=other&sslmode=require"
    shown = shown_dsn(url)
    assert shown == "postgresql://fleet:***@db.example.com:5432/fleet?…"
    assert "s3cret" not in scrub(f"failed for {url} (s3cret, other)", url)
    assert "other" not in scrub(f"failed for {url} (s3cret, other)", url)


def test_psycopg_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "psycopg", None)  # `import psycopg` raises ImportError
    cfg = write_config(tmp_path, "nopsycopg", tmp_path / "a.db", ["web"], "postgresql://u:pw@127.0.0.1:1/db")
    result = invoke("fleet", "verify", "--config", str(cfg))
    assert result.exit_code == 3
    assert (
        result.stderr == "recovery: fleet.postgres is set but psycopg is not installed: pip install 'recovery[fleet]'\n"
    )


def test_fleet_verify_host_checks_that_host_only(fleet):
    with psycopg.connect(fleet["url"]) as pg:
        pg.execute("DELETE FROM fleet_events WHERE host = 'b' AND seq = 3")
    assert invoke("fleet", "verify", "--host", "a", "--config", str(fleet["config"])).stdout.startswith("OK: 1 host(s)")
    result = invoke("fleet", "verify", "--host", "b", "--config", str(fleet["config"]))
    assert result.exit_code == 2 and "host b: seq 3" in result.stderr


def test_fleet_status_with_no_host_shipped_yet_is_unknown(tmp_path, postgres):
    url = postgres.fresh_database()
    with psycopg.connect(url, autocommit=True) as pg:
        ensure_schema(pg)
    cfg = write_config(tmp_path, "none", tmp_path / "a.db", ["web"], url)
    result = invoke("fleet", "status", "--config", str(cfg))
    assert result.exit_code == 3
    assert result.stdout.strip() == "no host has shipped to the fleet store yet"


def test_fleet_verify_names_both_a_deleted_event_and_an_edit_of_the_one_after_it(fleet):
    seq, eid = _event(fleet["url"], "a", "decision.made")
    with psycopg.connect(fleet["url"]) as pg:
        pg.execute("DELETE FROM fleet_events WHERE host = 'a' AND seq = %s", (seq - 1,))
        pg.execute("UPDATE fleet_events SET data = data || ' ' WHERE host = 'a' AND seq = %s", (seq,))
    result = invoke("fleet", "verify", "--config", str(fleet["config"]))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"recovery: host a: seq {seq - 1}: missing: seq jumps from {seq - 2} to {seq} (events deleted)",
        f"recovery: host a: seq {seq} (event {eid}): its contents do not match its hash: the row was edited",
    ]
