"""File modes: the store and its WAL and SHM are created 0600 (0640 for a configured group)."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest
from recovery_cli.main import app
from typer.testing import CliRunner

from recovery.config import load
from recovery.events import Event
from recovery.store import Recorder, Store

runner = CliRunner()


@pytest.fixture(autouse=True)
def usual_umask():
    """The umask most servers run cron with: without care, new files are world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def files_of(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write_some(store: Store) -> None:
    store.append([Event("probe.succeeded", "web", "run1", {"latency_ms": 3.0})])


def test_a_new_store_its_wal_and_its_shm_are_0600(tmp_path):
    path = tmp_path / "data" / "recovery.db"
    with Store.open(path) as store:
        write_some(store)
        assert {p.name: oct(mode(p)) for p in files_of(path)} == {p.name: "0o600" for p in files_of(path)}


def test_a_check_run_creates_its_store_0600(tmp_path):
    path = tmp_path / "recovery.db"
    rec = Recorder(path)
    try:
        rec.emit("check.started", None, "run1", trigger="cron", apps=["web"], dry_run=False, pid=1)
        assert [oct(mode(p)) for p in files_of(path)] == ["0o600"] * 3
    finally:
        rec.close()


def other_group() -> grp.struct_group:
    mine = os.getegid()
    for g in grp.getgrall():
        if g.gr_gid != mine:
            return g
    pytest.skip("no second group on this machine")


def test_with_a_group_the_store_its_wal_and_shm_are_0640_and_that_groups(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("giving a file to another group needs root here")
    group = other_group()
    path = tmp_path / "recovery.db"
    with Store.open(path, group=group.gr_name) as store:
        write_some(store)
        for p in files_of(path):
            assert oct(mode(p)) == "0o640", p
            assert os.stat(p).st_gid == group.gr_gid, p


def test_the_group_is_read_from_the_config_and_checked_there(tmp_path):
    group = other_group()
    cfg = tmp_path / "recovery.toml"
    app_table = '\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n'
    cfg.write_text(f'[store]\npath = "recovery.db"\ngroup = "{group.gr_name}"\n{app_table}')
    assert load(cfg).store.group == group.gr_name
    cfg.write_text(f'[store]\npath = "recovery.db"\ngroup = "no-such-group-15"\n{app_table}')
    result = runner.invoke(app, ["config", "validate", str(cfg)], env={"RECOVERY_CONFIG": ""})
    assert result.exit_code == 3
    assert f"{cfg}:3: store.group: no group 'no-such-group-15'" in result.output


def test_a_new_store_is_0600_and_an_existing_one_keeps_its_mode(tmp_path):
    path = tmp_path / "recovery.db"
    with Store.open(path) as store:
        write_some(store)
    assert oct(mode(path)) == "0o600"
    os.chmod(path, 0o644)  # an operator opened it up on purpose
    with Store.open(path) as store:
        write_some(store)
        assert [oct(mode(p)) for p in files_of(path)] == ["0o644"] * 3


def test_a_store_created_by_a_writing_command_is_0600(tmp_path):
    cfg = tmp_path / "recovery.toml"
    cfg.write_text('[store]\npath = "recovery.db"\n\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n')
    result = runner.invoke(app, ["pause", "web", "--config", str(cfg)], env={"RECOVERY_CONFIG": ""})
    assert result.exit_code == 0, result.output
    assert oct(mode(tmp_path / "recovery.db")) == "0o600"
