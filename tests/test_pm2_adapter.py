"""The PM2 adapter's parsing and discovery, on the output and folder layouts PM2 really produces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recovery.errors import Pm2Error, Pm2NotFound
from recovery.pm2 import ProcessView, find_pm2, instance_from_jlist, parse_jlist

BANNER = (
    "\x1b[32m[PM2] \x1b[39mSpawning PM2 daemon with pm2_home=/tmp/rpm2-x\n"
    "\x1b[32m[PM2] \x1b[39mPM2 Successfully daemonized\n"
)
ENTRY = (
    '{"pid":4242,"name":"web","pm_id":0,"monit":{"memory":52428800,"cpu":3},'
    '"pm2_env":{"status":"online","restart_time":2,"unstable_restarts":0,"pm_uptime":1000,'
    '"exec_mode":"fork_mode","env":{"DATABASE_URL":"postgres://secret"},"DATABASE_URL":"postgres://secret"}}'
)


def test_jlist_is_found_behind_the_banner_pm2_prints_when_it_spawns_its_daemon():
    assert parse_jlist(BANNER + "[" + ENTRY + "]\n")[0]["pid"] == 4242


def test_an_empty_process_list_parses():
    assert parse_jlist(BANNER + "[]\n") == []


def test_output_without_a_process_list_is_a_pm2_error():
    with pytest.raises(Pm2Error, match="did not print a process list"):
        parse_jlist("[PM2] Something went wrong\n")


def test_a_sample_keeps_what_matters_and_never_the_apps_environment():
    inst = instance_from_jlist(parse_jlist("[" + ENTRY + "]")[0], now_ms=11_000)
    data = ProcessView("web", "jlist", (inst,)).data()
    assert data["pid"] == 4242 and data["memory"] == 52428800 and data["restart_time"] == 2
    assert data["uptime_s"] == 10.0
    assert "secret" not in repr(data)


def _fake_pm2(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_pm2_is_found_in_nvm_under_crons_short_path(tmp_path):
    _fake_pm2(tmp_path / ".nvm/versions/node/v18.20.0/bin/pm2")
    newest = _fake_pm2(tmp_path / ".nvm/versions/node/v20.11.1/bin/pm2")
    env = {"HOME": str(tmp_path), "PATH": "/nonexistent"}
    assert find_pm2(None, env) == newest


def test_pm2_on_path_wins(tmp_path):
    on_path = _fake_pm2(tmp_path / "bin/pm2")
    _fake_pm2(tmp_path / ".nvm/versions/node/v20.11.1/bin/pm2")
    assert find_pm2(None, {"HOME": str(tmp_path), "PATH": str(on_path.parent)}) == on_path


def test_a_configured_path_that_is_not_executable_is_named(tmp_path):
    with pytest.raises(Pm2NotFound, match="not an executable file"):
        find_pm2(str(tmp_path / "pm2"), {"HOME": str(tmp_path), "PATH": os.defpath})


def test_no_pm2_anywhere_says_where_it_looked(tmp_path):
    with pytest.raises(Pm2NotFound, match="nvm"):
        find_pm2(None, {"HOME": str(tmp_path), "PATH": str(tmp_path)})
