"""The premise of `recovery`, checked against a real PM2.

PM2 only notices a process that exits. An app whose event loop is blocked
stays `online` in PM2 forever while every HTTP request times out, so a
watchdog has to probe over HTTP and restart through PM2 itself.
"""

import httpx
import pytest

pytestmark = pytest.mark.pm2


def test_a_hung_app_stays_online_in_pm2_while_http_times_out(pm2):
    app = pm2.start_app("web")
    [pid] = app.pids()
    assert app.get().json()["pid"] == pid

    app.control("hang")
    # The server answers first and blocks its loop ~50 ms later.
    app.wait_until(lambda: not app.answers(timeout=0.3), timeout=5)

    with pytest.raises(httpx.TimeoutException):
        httpx.get(app.url + "health", timeout=1.0)
    [proc] = app.processes()
    assert proc["pm2_env"]["status"] == "online"
    assert proc["pid"] == pid
    assert proc["pm2_env"]["restart_time"] == 0

    # A restart through PM2 is the cure: the blocked loop never runs its
    # SIGINT handler, so PM2 sends SIGKILL after --kill-timeout (500 ms here).
    pm2.run("restart", "web")
    app.wait_until(app.answers, timeout=15)
    [new_pid] = app.pids()
    assert new_pid != pid
    assert app.status() == ["online"]


def test_a_crash_on_start_marker_drives_pm2_to_errored(pm2):
    """An app that crashes at every start ends `errored` after a PM2 restart.

    What PM2 (God.handleExit, 5.x to 7.x) does: an exit counts as an
    "unstable restart" only if the process lived less than min_uptime
    (default 1000 ms) AND the app was created or explicitly restarted less
    than min_uptime * max_restarts ago (default 1 s * 16 = 16 s). Once
    unstable restarts reach max_restarts (default 16) the status becomes
    `errored`, pid 0, and PM2 stops restarting (the counter is reset to 0,
    so jlist shows unstable_restarts 0 while errored). `--min-uptime` is
    not a CLI option (ecosystem file only), `--max-restarts` is.
    Consequences:
      * `pm2 restart` resets the window, so restarting into a crash-on-start
        reaches `errored` quickly (~1 s with --max-restarts 3).
      * An app that ran longer than the window and then starts crash-looping
        by itself is NOT counted: PM2 restarts it forever, status cycling
        through online, and restart_time climbing.
    Removing the cause and running `pm2 restart` brings an errored app back.
    """
    app = pm2.start_app("web", extra_args=("--max-restarts", "3"))
    app.marker("crash").touch()

    pm2.run("restart", "web")
    app.wait_until(lambda: app.status() == ["errored"], timeout=20)
    assert app.pids() == [0]
    assert not app.answers()
    assert not list((pm2.home / "pids").glob("web-*.pid")), "PM2 removes the pid file of an errored app"

    app.marker("crash").unlink()
    pm2.run("restart", "web")
    app.wait_until(app.answers, timeout=15)
    assert app.status() == ["online"]
