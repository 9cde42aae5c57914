"""The package as a user gets it (issue 17 point 7): a wheel with the LICENSE and deploy/, installed
with pipx (offline, from the wheelhouse ./test.sh fills), whose `recovery setup` reaches the set-up
script and runs it against this installation."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
PY = Path(sys.executable)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [str(PY), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("recovery-*.whl")
    return found


def test_the_wheel_carries_the_license_and_deploy(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("setup-auto-recovery.sh", "ecosystem.config.js", "logrotate.conf", "recovery-check.timer", "README.md"):
        assert f"recovery_deploy/{f}" in names, f
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names), names


def test_pipx_install_of_the_wheel_runs_and_reaches_the_setup_script(wheel, tmp_path):
    assert (WHEELHOUSE / ".complete").is_file(), "./test.sh fills .cache/wheelhouse"
    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    env.pop("RECOVERY_SETUP_VENV", None)
    subprocess.run(
        [str(PY), "-m", "pipx", "install", "--pip-args", f"--no-index --find-links {WHEELHOUSE}", str(wheel)],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    recovery = tmp_path / "bin" / "recovery"
    assert subprocess.run([str(recovery), "--version"], capture_output=True, text=True, timeout=60).stdout.startswith(
        "recovery "
    )
    where = subprocess.run([str(recovery), "setup", "--print-path"], capture_output=True, text=True, timeout=60)
    folder = Path(where.stdout.strip())
    assert str(folder).startswith(str(tmp_path / "pipx")) and (folder / "setup-auto-recovery.sh").is_file()
    # Run for real, dry: it uses this pipx install (no checkout, no venv of its own).
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [
            str(recovery),
            "setup",
            "--app",
            "web",
            "--url",
            "http://127.0.0.1:3000/",
            "--prefix",
            str(tmp_path / "srv"),
            "--dry-run",
        ],
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not a recovery checkout" not in done.stdout + done.stderr
    assert "install recovery from" not in done.stdout  # this installation is used, none made
