"""Config where Unix looks (issue 17 point 2): --config, $RECOVERY_CONFIG, ./recovery.toml,
$XDG_CONFIG_HOME/recovery/recovery.toml (~/.config/…), /etc/recovery/recovery.toml, in that order;
`recovery config path` says which file is used and why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from recovery.config import locate_config
from recovery.config.schema import DEFAULT_FILENAME, ENV_VAR

APP = '[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n'
RECOVERY = Path(sys.executable).parent / "recovery"


def put(path: Path, text: str = APP) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def places(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    cwd, home, etc = tmp_path / "cwd", tmp_path / "home", tmp_path / "etc"
    cwd.mkdir()
    return cwd, home, etc, {"HOME": str(home)}


def test_the_users_config_is_found_from_any_directory(tmp_path):
    cwd, home, etc, env = places(tmp_path)
    user = put(home / ".config" / "recovery" / DEFAULT_FILENAME)
    put(etc / DEFAULT_FILENAME)
    choice = locate_config(None, env, cwd, etc)
    assert choice.path == user and choice.found and "user's config" in choice.reason


def test_xdg_config_home_moves_the_users_config(tmp_path):
    cwd, home, etc, env = places(tmp_path)
    put(home / ".config" / "recovery" / DEFAULT_FILENAME)
    mine = put(tmp_path / "xdg" / "recovery" / DEFAULT_FILENAME)
    assert locate_config(None, {**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}, cwd, etc).path == mine


def test_a_relative_xdg_config_home_is_ignored_as_the_spec_says(tmp_path):
    cwd, home, etc, env = places(tmp_path)
    user = put(home / ".config" / "recovery" / DEFAULT_FILENAME)
    assert locate_config(None, {**env, "XDG_CONFIG_HOME": "rel"}, cwd, etc).path == user


def test_the_systems_config_comes_last(tmp_path):
    cwd, _, etc, env = places(tmp_path)
    system = put(etc / DEFAULT_FILENAME)
    assert locate_config(None, env, cwd, etc).path == system
    here = put(cwd / DEFAULT_FILENAME)
    assert locate_config(None, env, cwd, etc).path == here


def test_the_flag_and_the_variable_win_even_when_their_file_is_missing(tmp_path):
    cwd, home, etc, env = places(tmp_path)
    put(home / ".config" / "recovery" / DEFAULT_FILENAME)
    assert locate_config(tmp_path / "a.toml", {**env, ENV_VAR: "/x/b.toml"}, cwd, etc).path == tmp_path / "a.toml"
    choice = locate_config(None, {**env, ENV_VAR: "/x/b.toml"}, cwd, etc)
    assert choice.path == Path("/x/b.toml") and ENV_VAR in choice.reason


def test_with_none_found_the_current_directory_is_named(tmp_path):
    cwd, home, etc, env = places(tmp_path)
    choice = locate_config(None, env, cwd, etc)
    assert not choice.found and choice.path == cwd / DEFAULT_FILENAME
    assert choice.tried == (
        cwd / DEFAULT_FILENAME,
        home / ".config" / "recovery" / DEFAULT_FILENAME,
        etc / DEFAULT_FILENAME,
    )


def cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    return subprocess.run([str(RECOVERY), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_status_from_the_root_directory_reads_the_users_config(tmp_path):
    home = tmp_path / "home"
    user = put(home / ".config" / "recovery" / DEFAULT_FILENAME, APP + f'[store]\npath = "{tmp_path}/r.db"\n')
    said = cli("config", "path", cwd=Path("/"), home=home)
    assert (
        said.returncode == 0
        and said.stdout.strip() == f"{user}: found the user's config ($XDG_CONFIG_HOME, else ~/.config)"
    )
    status = cli("status", cwd=Path("/"), home=home)  # no check has run: the store it names is not there yet
    assert status.stderr.strip() == f"recovery: no event store at {tmp_path}/r.db (a `recovery check` run creates it)"


def test_config_path_without_any_config_says_where_it_looked(tmp_path):
    (tmp_path / "cwd").mkdir()
    said = cli("config", "path", cwd=tmp_path / "cwd", home=tmp_path / "home")
    assert said.returncode == 3 and said.stdout == ""
    assert said.stderr.startswith("recovery: no config file found; looked at ") and str(tmp_path / "cwd") in said.stderr
