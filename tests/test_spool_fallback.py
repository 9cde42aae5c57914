"""Where events go when neither the store nor its folder takes them (issue 15, points 3 and 4).

The spool is tried beside the store, then in `$XDG_STATE_HOME/recovery/`, then in
`/var/tmp/recovery-<uid>/`; the problems line names where the events went (and why the places
before it failed), and the next run that can write the store replays every location, in time
order, exactly once. Events are "lost" only when every location failed, and the line says each.

The faults are real: `recovery check` runs in a subprocess under a real RLIMIT_FSIZE (SIGXFSZ
ignored, as `ulimit -f` in a shell), with the store's folder on a read-only bind mount (root
ignores a 0555 folder, not a read-only mount), or on a full 64 KiB tmpfs. Each runs in its own
mount namespace (`unshare -m`), where /var/tmp is bound to a folder of the test, so that no test
touches the machine's /var/tmp. Needs root (for the mounts); a real PM2 and a real app.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recovery.events import Event
from recovery.store import Recorder, Store, spool_path, spool_write

from .test_check import write_config
from .test_check_flow import World

needs_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare for the mounts"
)


def recovery_in(
    sandbox, tmp_path: Path, *args: str, mounts: str = "", fsize: int | None = None, xdg: bool = True
) -> subprocess.CompletedProcess:
    """`recovery ARGS` in a private mount namespace: /var/tmp bound to tmp_path/var-tmp, then `mounts`
    (shell commands), under an RLIMIT_FSIZE of `fsize` bytes when given."""
    var_tmp = tmp_path / "var-tmp"
    var_tmp.mkdir(exist_ok=True)
    env = {**sandbox.env, "PYTHONDONTWRITEBYTECODE": "1", "XDG_STATE_HOME": str(tmp_path / "state")}
    if not xdg:
        del env["XDG_STATE_HOME"]
    script = f'mount --bind "{var_tmp}" /var/tmp; {mounts} exec "$@"'

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process, as cron sees it
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-ec", script, "sh"]
        + [sys.executable, "-m", "recovery_cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit,
    )


def read_only(folder: Path) -> str:
    return f'mount --bind "{folder}" "{folder}"; mount -o remount,bind,ro "{folder}";'


def stored(db: Path) -> list[Event]:
    with Store.open(db, readonly=True) as s:
        return s.query()


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def leftovers(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.rglob("*.spool*") if p.is_file())


def first_run(events: list[Event]) -> list[Event]:
    run = next(e.run_id for e in events if e.type == "check.started")
    return [e for e in events if e.run_id == run]


@pytest.mark.pm2
@needs_mounts
def test_a_file_size_limit_mid_run_sends_the_rest_to_the_fallback_and_nothing_is_lost(pm2, tmp_path):
    """`ulimit -f 1`: the store cannot grow past 1 KiB, nor its spool; before, decision.made was
    torn off the spool's end and dropped without a word."""
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    db = tmp_path / "data" / "recovery.db"

    proc = recovery_in(pm2, tmp_path, "check", "--config", str(config), fsize=1024)
    assert recovery_in(pm2, tmp_path, "check", "--config", str(config)).returncode == 0  # no limit: replayed

    events = stored(db)
    run = first_run(events)
    types = [e.type for e in run]
    assert "decision.made" in types and "probe.succeeded" in types
    assert types[0] == "check.started" and types[-1] == "check.finished"
    assert [e.ts for e in run] == sorted(e.ts for e in run)
    assert len({e.id for e in events}) == len(events)
    assert "spool.damaged" not in [e.type for e in events]  # the torn write was cut back off, not left
    (replayed,) = [e for e in events if e.type == "spool.replayed"]
    assert replayed.data["count"] == len(run) and len(replayed.data["files"]) >= 2
    assert proc.returncode == 3, output(proc)
    line = proc.stdout.strip().splitlines()[-1]
    assert f"spooled to {spool_path(db)}, which then failed (File too large)" in line, line
    assert "spooled to the fallback " in line and "lost" not in line
    assert leftovers(tmp_path) == []


@pytest.mark.pm2
@needs_mounts
def test_a_read_only_store_folder_spools_to_xdg_state_home_and_the_next_run_replays_it(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    data = tmp_path / "data"
    assert recovery_in(pm2, tmp_path, "check", "--config", str(config)).returncode == 0

    proc = recovery_in(pm2, tmp_path, "check", "--config", str(config), mounts=read_only(data))
    fallback = tmp_path / "state" / "recovery"
    (spool,) = fallback.iterdir()
    assert oct(fallback.stat().st_mode & 0o777) == "0o700" and oct(spool.stat().st_mode & 0o777) == "0o600"
    assert recovery_in(pm2, tmp_path, "check", "--config", str(config)).returncode == 0

    events = stored(data / "recovery.db")
    outcomes = [e.data["outcome"] for e in events if e.type == "check.finished"]
    assert outcomes == ["OK", "UNKNOWN", "OK"]  # the read-only run's events are in, once
    assert proc.returncode == 3, output(proc)
    assert proc.stdout.splitlines()[1].startswith("web OK")
    line = proc.stdout.strip().splitlines()[-1]
    assert f"{spool_path(data / 'recovery.db')} failed (Read-only file system)" in line, line
    assert f"event(s) spooled to the fallback {fallback}/recovery.db-" in line
    assert leftovers(tmp_path) == [] and not fallback.exists()


@pytest.mark.pm2
@needs_mounts
def test_a_full_disk_without_xdg_state_home_spools_to_var_tmp(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    data = tmp_path / "data"
    data.mkdir()
    full = f'mount -t tmpfs -o size=64k tmpfs "{data}"; dd if=/dev/zero of="{data}/filler" bs=4k 2>/dev/null || true;'

    proc = recovery_in(pm2, tmp_path, "check", "--config", str(config), mounts=full, xdg=False)

    assert proc.returncode == 3, output(proc)
    line = proc.stdout.strip().splitlines()[-1]
    assert f"{spool_path(data / 'recovery.db')} failed (No space left on device)" in line, line
    assert f"event(s) spooled to the fallback /var/tmp/recovery-{os.getuid()}/recovery.db-" in line
    (spool,) = (tmp_path / "var-tmp" / f"recovery-{os.getuid()}").iterdir()

    # The disk has room again (here: the tmpfs is gone with its namespace): the spool is replayed.
    assert recovery_in(pm2, tmp_path, "check", "--config", str(config), xdg=False).returncode == 0
    outcomes = [e.data["outcome"] for e in stored(data / "recovery.db") if e.type == "check.finished"]
    assert outcomes == ["UNKNOWN", "OK"]
    assert not spool.exists()


@pytest.mark.pm2
@needs_mounts
def test_when_every_location_fails_the_line_names_each_and_why(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    data, state = tmp_path / "data", tmp_path / "state"
    data.mkdir()
    state.mkdir()
    (tmp_path / "var-tmp").mkdir()
    mounts = read_only(data) + read_only(state) + read_only(Path("/var/tmp"))

    proc = recovery_in(pm2, tmp_path, "check", "--config", str(config), mounts=mounts)

    assert proc.returncode == 3, output(proc)
    line = proc.stdout.strip().splitlines()[-1]
    assert "event(s) lost: every spool location failed: " in line, line
    assert line.count("Read-only file system") == 3
    for where in (str(data / "recovery.db.spool"), f"{state}/recovery/", f"/var/tmp/recovery-{os.getuid()}/"):
        assert where in line


# -- fast: the Recorder and the policy's history with a fake PM2 -------------------------


@pytest.fixture
def fallbacks(tmp_path, monkeypatch):
    """$XDG_STATE_HOME and /var/tmp inside the test's folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr("recovery.store.SPOOL_TMP", tmp_path / "var-tmp", raising=False)
    (tmp_path / "var-tmp").mkdir()
    return tmp_path


def unwritable_spool(store_path: Path) -> None:
    """A store that is not a database, and a folder where its spool file should be: both unusable."""
    store_path.parent.mkdir(parents=True, exist_ok=True)
    store_path.write_bytes(b"not a database" * 100)
    spool_path(store_path).mkdir()


def test_the_one_restart_guard_reads_the_fallback_spool(fallbacks):
    w = World(fallbacks, "hung", restart_grace='"60s"', verify_timeout='"10s"')
    w.pm2.heals = False
    unwritable_spool(w.config.store.path)
    first = w.check()
    w.clock.advance(10)
    second = w.check()
    assert "spooled to the fallback" in first.problems[-1]
    assert len(w.pm2.restarts) == 1  # the second run saw the first's restart in the fallback
    assert second.apps[0].action != "restart"


def test_two_stores_of_the_same_name_never_share_a_fallback_spool(fallbacks):
    a, b = fallbacks / "a" / "recovery.db", fallbacks / "b" / "recovery.db"
    for path, app in ((a, "web-a"), (b, "web-b")):
        unwritable_spool(path)
        rec = Recorder(path)
        rec.emit("maintenance.ended", app, "r1", reason="test", by="me")
        rec.close()
    files = sorted((fallbacks / "state" / "recovery").iterdir())
    assert len(files) == 2 and all(f.name.startswith("recovery.db-") for f in files)
    for path, app in ((a, "web-a"), (b, "web-b")):
        spool_path(path).rmdir()
        path.unlink()
        Recorder(path).close()
        assert [e.app for e in stored(path) if e.type == "maintenance.ended"] == [app]


def test_the_replay_orders_events_by_time_across_locations(fallbacks):
    db = fallbacks / "recovery.db"
    unwritable_spool(db)
    rec = Recorder(db)
    rec.emit("maintenance.started", "web", "r1", until="later", reason="deploy", by="me")  # goes to XDG
    rec.close()
    (fallback,) = rec.spooled_to
    spool_path(db).rmdir()
    early = Event(
        type="maintenance.ended",
        app="web",
        run_id="r0",
        data={"reason": "x", "by": "me"},
        ts="2000-01-01T00:00:00.000Z",
    )
    spool_write(spool_path(db), [early])  # an older event beside the store
    db.unlink()

    again = Recorder(db)
    again.close()

    assert [e.type for e in stored(db)] == ["maintenance.ended", "maintenance.started"]
    assert again.replayed == 2 and not fallback.exists()


def test_a_fallback_folder_another_user_owns_is_neither_written_nor_read(fallbacks):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the folder away")
    db = fallbacks / "recovery.db"
    unwritable_spool(db)
    foreign = fallbacks / "state" / "recovery"
    foreign.mkdir(parents=True, mode=0o700)
    os.chown(foreign, 65534, 65534)
    planted = Event(type="maintenance.started", app="web", run_id="x", data={"until": "x", "reason": "x", "by": "x"})

    rec = Recorder(db)
    rec.emit("maintenance.ended", "web", "r1", reason="test", by="me")
    rec.close()

    assert [why for p, why in rec.spool_failed if p.parent == foreign] == [f"{foreign} belongs to uid 65534, not 0"]
    (where,) = rec.spooled_to
    assert where.parent == fallbacks / "var-tmp" / "recovery-0"
    # A spool planted in the foreign folder under this store's name is not replayed.
    spool_write(foreign / where.name, [planted])
    spool_path(db).rmdir()
    db.unlink()
    Recorder(db).close()
    assert [e.type for e in stored(db) if e.app == "web"] == ["maintenance.ended"]
