"""`recovery watch` under a real PM2 records a steady app in batches and loses no probe (issue 15, point 9)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from recovery import projections
from recovery.events import Event
from recovery.report import build_report
from recovery.store import Store

pytestmark = pytest.mark.pm2


def write_config(tmp_path: Path, sandbox, app, batch: str | None = None) -> Path:
    path = tmp_path / "recovery.toml"
    watch = '[watch]\ntimeout = "1s"\nretries = 2\n' + (f'batch = "{batch}"\n' if batch else "")
    path.write_text(
        f'[store]\npath = "data/recovery.db"\n\n[pm2]\nbin = "{sandbox.bin}"\n\n{watch}\n'
        f'[[apps]]\nname = "{app.name}"\nurl = "{app.url}"\nverify_timeout = "30s"\n'
    )
    return path


def stored(config: Path) -> list[Event]:
    db = config.parent / "data" / "recovery.db"
    if not db.exists():
        return []
    with Store.open(db, readonly=True) as s:
        return s.query()


def answered(app) -> int:
    """GET / the demo app answered: the probes made."""
    return int(httpx.get(app.url + "__count", timeout=5, trust_env=False).json()["answered"])


def watch(pm2, config: Path, tmp_path: Path) -> subprocess.Popen:
    out = (tmp_path / "watch.out").open("w")
    argv = [sys.executable, "-m", "recovery_cli.main", "watch", "--config", str(config), "--interval", "500ms"]
    return subprocess.Popen(argv, env=pm2.env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def check_probes(events: list[Event]) -> int:
    """Check probes in the record: those written one by one and those in batches."""
    one = sum(1 for e in events if e.type in ("probe.succeeded", "probe.failed") and e.data.get("phase") == "check")
    return one + sum(len(e.data["at_ms"]) for e in events if e.type == "probe.batched")


def test_a_watch_stopped_by_sigterm_writes_its_open_batch(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    before = answered(app)
    proc = watch(pm2, config, tmp_path)
    try:
        app.wait_until(lambda: answered(app) >= before + 12, timeout=60, message="a dozen watch steps")
        assert not [e for e in stored(config) if e.type == "probe.batched"]  # still open: less than a minute
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    made = answered(app) - before
    events = stored(config)
    assert [e.type for e in events].count("decision.made") == 1  # the first step only
    assert events[-1].type == "probe.batched" and events[-1].data["pid"] == app.pids()[0]
    assert check_probes(events) == made
    with Store.open(config.parent / "data" / "recovery.db") as store:
        projections.fold(store.conn)
        report = build_report(store, [app.name], events[0].ts)
    assert report.apps[0].probes == made


def test_a_hang_mid_batch_is_written_at_once_after_the_batch(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app, batch="10m")  # no batch ends by its span in this test
    before = answered(app)
    proc = watch(pm2, config, tmp_path)
    try:
        app.wait_until(lambda: answered(app) >= before + 8, timeout=60, message="steady watch steps")
        app.control("hang")
        app.wait_until(
            lambda: any(e.type == "probe.failed" for e in stored(config)), timeout=60, message="the failed probe"
        )
        events = stored(config)  # the watch runs on: nothing was written by a stop
        types = [e.type for e in events]
        failed = types.index("probe.failed")
        assert types[failed - 2 : failed] == ["probe.batched", "check.started"]
        app.wait_until(
            lambda: any(e.type == "verification.passed" for e in stored(config)), timeout=60, message="recovered"
        )
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = stored(config)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert {"restart.requested", "restart.succeeded", "verification.passed"} <= {e.type for e in events}
