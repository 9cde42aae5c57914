"""A store on a read-only filesystem can still be read: status, report, why, events, verify, serve.

The store sits behind a real read-only bind mount (we run as root in CI; skipped otherwise).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from recovery_cli.main import app
from typer.testing import CliRunner

from recovery import projections
from recovery import serve as srv
from recovery.store import Store
from tests.conftest import free_port, wait_until
from tests.test_projections import Timeline

runner = CliRunner()
STEP = 60.0  # between checks


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(the writable folder, its read-only view): `src` bind-mounted read-only at `ro`."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    try:
        mount("--bind", str(src), str(ro))
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot bind-mount here: {getattr(exc, 'stderr', exc)}")
    try:
        mount("-o", "remount,bind,ro", str(ro))
        with pytest.raises(OSError):  # really read-only, for root too
            (ro / "probe").write_text("x")
        yield src, ro
    finally:
        if subprocess.run(["umount", str(ro)], check=False, capture_output=True).returncode:
            subprocess.run(["umount", "--lazy", str(ro)], check=False, capture_output=True)


def write_history(path: Path, *, hangs: int = 1, fold: bool = True, ago: float = 60.0) -> None:
    """20 healthy checks, `hangs` hangs restarted, a healthy check `ago` seconds before now."""
    with Store.open(path) as store:
        timeline = Timeline(store, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ago + (20 + hangs) * STEP))
        for n in range(20):
            timeline.healthy(n * STEP)
        for n in range(hangs):
            timeline.hang_recovered((20 + n) * STEP)
        timeline.healthy((20 + hangs) * STEP)
        if fold:
            projections.fold(store.conn)


@pytest.fixture
def ro_store(layout, tmp_path, request) -> Path:
    """A config whose store is on the read-only view, closed cleanly (no WAL, no SHM beside it)."""
    src, ro = layout
    write_history(src / "recovery.db", ago=getattr(request, "param", 60.0))
    assert sorted(p.name for p in src.iterdir()) == ["recovery.db"]
    config = tmp_path / "recovery.toml"
    config.write_text(
        f'[store]\npath = "{ro / "recovery.db"}"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n'
    )
    return config


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"RECOVERY_CONFIG": ""})


def test_status_reads_it_and_says_once_it_read_a_snapshot(ro_store):
    result = invoke("status", "--json", "--config", str(ro_store))
    assert result.exit_code == 0, result.output
    assert "unable to open" not in result.output
    apps = json.loads(result.stdout)["apps"]
    assert [a["app"] for a in apps] == ["web"]
    assert apps[0]["state"] == "healthy"
    assert result.stderr.count("immutable snapshot") == 1


def test_report_reads_it(ro_store):
    result = invoke("report", "--json", "--since", "7d", "--config", str(ro_store))
    assert result.exit_code == 0, result.output
    web = json.loads(result.stdout)["apps"]["web"]
    assert web["incidents"] and len(web["incidents"]) == 1


def test_why_reads_it(ro_store):
    result = invoke("why", "web", "--json", "--config", str(ro_store))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["events"]


def test_events_reads_it(ro_store):
    result = invoke("events", "--json", "--limit", "0", "--config", str(ro_store))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 21 * 4 + 9
    assert "immutable snapshot" in result.stderr


def test_verify_reads_it(ro_store):
    result = invoke("verify", "--config", str(ro_store))
    assert result.exit_code == 0, result.output
    assert "hash chain intact" in result.stdout


def test_serve_serves_it(ro_store, layout):
    _, ro = layout
    prepared = srv.prepare(ro / "recovery.db")
    try:
        assert prepared.immutable
        ds = srv.make_datasette(prepared.path, immutable=prepared.immutable)
        response = asyncio.run(ds.client.get("/recovery/incidents.json?_shape=array"))
        assert response.status_code == 200, response.text[:300]
        assert len(response.json()) == 1
        for db in ds.databases.values():
            db.close()
    finally:
        prepared.close()


@pytest.mark.parametrize("ro_store", [3 * 3600.0], indirect=True)
def test_stale_projections_are_folded_in_a_temporary_copy_and_nothing_is_left(ro_store, layout):
    src, ro = layout
    write_history(src / "recovery.db", hangs=2, fold=False)  # two more incidents, not folded
    assert sorted(p.name for p in src.iterdir()) == ["recovery.db"]
    temp_before = set(Path(tempfile.gettempdir()).glob("recovery-readonly-*"))
    result = invoke("report", "--json", "--since", "7d", "--config", str(ro_store))
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["apps"]["web"]["incidents"]) == 3
    assert "temporary copy" in result.stderr
    assert set(Path(tempfile.gettempdir()).glob("recovery-readonly-*")) == temp_before
    with Store.open(src / "recovery.db", readonly=True) as store:  # the store itself was not folded
        assert projections.last_folded(store.conn) < store.last_seq()


@pytest.mark.parametrize("ro_store", [3 * 3600.0], indirect=True)
def test_recovery_serve_serves_it_as_a_real_server_with_stale_projections_folded(ro_store, layout):
    src, ro = layout
    write_history(src / "recovery.db", hangs=1, fold=False)  # one more incident, not folded
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "recovery_cli.main", "serve", "--config", str(ro_store), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RECOVERY_CONFIG": ""},
    )
    try:
        url = f"http://127.0.0.1:{port}/recovery/incidents.json?_shape=array"
        wait_until(lambda: server.poll() is None and httpx.get(url).status_code == 200, 60, message=f"{url}")
        assert len(httpx.get(url).json()) == 2
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "temporary copy" in err and "Traceback" not in err
    assert f"serving {ro / 'recovery.db'} read-only" in out
