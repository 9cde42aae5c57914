"""pm2 missing or broken (issue 13, case 5): the apps are still probed and every event kept; the
run ends UNKNOWN (exit 3) with one line naming the pm2 problem, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from recovery.check import UNKNOWN, CheckRun, HttpProber, MissingPm2
from recovery.errors import Pm2CannotRun
from recovery.pm2 import Pm2
from recovery.store import Recorder

from .test_check import recovery, stored, types, write_config
from .test_check_flow import World
from .test_pm2_daemon import god


class BrokenPm2:
    """A pm2 that was found but cannot be executed (ENOEXEC, a bad #! line...)."""

    def __init__(self, world: World) -> None:
        self.fake = world.pm2

    def view(self, *args: Any) -> Any:
        raise Pm2CannotRun("cannot run pm2 at /usr/bin/pm2: Exec format error")

    restart = resurrect = view

    def quick_view(self, name: str) -> Any:
        return self.fake.quick_view(name)

    def cpu_mark(self, name: str) -> Any:
        return None

    def cpu_window(self, mark: Any) -> dict[str, Any]:
        return {}

    def daemon(self) -> Any:
        return None


def test_a_hung_app_with_pm2_missing_is_probed_recorded_and_escalated(tmp_path):
    w = World(tmp_path, "hung")
    result = w.check(pm2=MissingPm2("pm2 not found on PATH"), problem="pm2 not found on PATH")
    assert result.code == UNKNOWN
    assert result.lines()[-1] == "UNKNOWN pm2 not found on PATH"
    assert [e.type for e in w.events()].count("probe.failed") == 3
    assert w.decisions() == [("escalate", "pm2_unreadable")]
    assert "pm2 not found on PATH" in result.apps[0].summary


def test_a_healthy_app_with_pm2_missing_is_ok_but_the_run_is_unknown(tmp_path):
    w = World(tmp_path, "healthy")
    result = w.check(pm2=MissingPm2("pm2 not found on PATH"), problem="pm2 not found on PATH")
    assert result.code == UNKNOWN and result.apps[0].state == "OK"
    assert w.decisions() == [("none", "healthy")]


def test_a_pm2_that_cannot_be_executed_makes_the_run_unknown_and_keeps_every_event(tmp_path):
    w = World(tmp_path, "hung")
    result = w.check(pm2=BrokenPm2(w))
    assert result.code == UNKNOWN
    assert result.problems == ["cannot run pm2 at /usr/bin/pm2: Exec format error"]
    assert w.decisions() == [("escalate", "pm2_unreadable")]
    assert [e.type for e in w.events()].count("probe.failed") == 3
    with_run = [e for e in w.events() if e.type == "process.sampled"]
    assert "Exec format error" in with_run[0].data["error"]


def test_an_operator_restart_with_a_broken_pm2_is_unknown_and_recorded(tmp_path):
    w = World(tmp_path, "healthy")
    run = CheckRun(
        w.config,
        pm2=BrokenPm2(w),
        prober=HttpProber(httpx.MockTransport(w.app)),
        recorder=Recorder(w.config.store.path, busy_timeout=1.0, now=w.clock.now),
        clock=w.clock,
    )
    result = run.restart_now("web", by="operator", reason="deploy")
    assert result.code == UNKNOWN
    assert [e.type for e in w.events()][-1] == "restart.failed"


# -- the adapter on real files ------------------------------------------------------------------


@pytest.fixture
def live_daemon(tmp_path: Path):
    home = tmp_path / "pm2home"
    home.mkdir()
    proc = god(home)
    yield home
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    ("content", "mode", "says"),
    [
        (b"\x7fELF\x00garbage", 0o755, "Exec format error"),
        (b"#!/nonexistent/node\n", 0o755, "interpreter"),
        (b"#!/bin/sh\necho '[]'\n", 0o644, "Permission denied"),
    ],
    ids=["not-a-program", "bad-interpreter", "not-executable"],
)
def test_a_pm2_that_cannot_be_executed_is_one_pm2_error(tmp_path, live_daemon, content, mode, says):
    path = tmp_path / "pm2"
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(Pm2CannotRun, match=says):
        Pm2(path, {"PM2_HOME": str(live_daemon), "PATH": os.defpath}).jlist()


# -- against a real PM2 ---------------------------------------------------------------------


def check_with(sandbox, config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if env is None:
        return recovery(sandbox, "check", "--config", str(config))
    return subprocess.run(
        [sys.executable, "-m", "recovery_cli.main", "check", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.pm2
@pytest.mark.parametrize("how", ["bin-missing", "off-path"])
def test_a_hung_app_with_pm2_missing_is_probed_and_the_check_exits_3(pm2, tmp_path, how):
    app = pm2.start_app("web")
    app.control("hang")
    app.wait_until(lambda: not app.answers(0.5), message="the app to hang")
    config = write_config(tmp_path, pm2, app)
    env = None
    if how == "bin-missing":
        config.write_text(config.read_text().replace(str(pm2.bin), str(tmp_path / "no" / "pm2")))
    else:
        text = "".join(line + "\n" for line in config.read_text().splitlines() if not line.startswith("bin = "))
        config.write_text(text)
        # no pm2 on PATH, none in the usual folders of this HOME
        env = {**pm2.env, "HOME": str(tmp_path), "PATH": os.pathsep.join(["/usr/bin", "/bin"])}
        assert subprocess.run(["sh", "-c", "command -v pm2"], env=env, capture_output=True).returncode != 0
    proc = check_with(pm2, config, env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr == ""
    unknown = [line for line in proc.stdout.splitlines() if line.startswith("UNKNOWN")]
    assert len(unknown) == 1 and "pm2 not found" in unknown[0]
    events = stored(config, "web")
    assert types(events).count("probe.failed") == 2
    assert [e.data["code"] for e in events if e.type == "decision.made"] == ["pm2_unreadable"]
    assert app.processes()[0]["pm2_env"]["restart_time"] == 0  # nothing restarted


@pytest.mark.pm2
@pytest.mark.parametrize(
    ("content", "mode"),
    [(b"\x7fELF\x00garbage", 0o755), (b"#!/nonexistent/node\n", 0o755), (b"#!/bin/sh\necho '[]'\n", 0o644)],
    ids=["not-a-program", "bad-interpreter", "not-executable"],
)
def test_a_pm2_that_cannot_be_executed_is_one_line_and_exit_3(pm2, tmp_path, content, mode):
    app = pm2.start_app("web")
    broken = tmp_path / "bin" / "pm2"
    broken.parent.mkdir()
    broken.write_bytes(content)
    broken.chmod(mode)
    config = write_config(tmp_path, pm2, app)
    config.write_text(config.read_text().replace(str(pm2.bin), str(broken)))
    proc = recovery(pm2, "check", "--config", str(config))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr == ""
    assert proc.stdout.splitlines()[1].startswith("web OK ")
    (unknown,) = [line for line in proc.stdout.splitlines() if line.startswith("UNKNOWN")]
    assert str(broken) in unknown
    finished = [e for e in stored(config) if e.type == "check.finished"]
    assert len(finished) == 1 and finished[0].data["code"] == UNKNOWN
    assert "probe.succeeded" in types(stored(config, "web"))
