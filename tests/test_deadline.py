"""`recovery check --deadline` (issue 17 point 1): the whole run, restart and verification included,
ends by the deadline, and says what it cut short. Fakes and a fake clock: a timeout costs its time."""

from __future__ import annotations

from typing import Any

import httpx

from recovery.check import CRITICAL, UNKNOWN, CheckRun, HttpProber
from recovery.config import AppConfig
from recovery.observations import Attempt
from recovery.store import Recorder, Store
from tests.test_check_flow import World


class TimedProber(HttpProber):
    """The app behind a MockTransport, where an attempt that times out takes its whole timeout
    on the fake clock, as a real one does."""

    def __init__(self, world: World) -> None:
        super().__init__(httpx.MockTransport(world.app))
        self.clock = world.clock
        self.timeouts: list[float] = []

    def attempt(self, app: AppConfig, n: int, timeout: float | None = None) -> Attempt:
        a = super().attempt(app, n, timeout)
        if a.error == "timeout":
            spent = timeout if timeout is not None else app.timeout
            self.timeouts.append(spent)
            self.clock.advance(spent)
        return a


def run(w: World, deadline: float | None) -> Any:
    prober = TimedProber(w)
    check = CheckRun(
        w.config,
        pm2=w.pm2,
        prober=prober,
        recorder=Recorder(w.config.store.path, busy_timeout=1.0, now=w.clock.now),
        clock=w.clock,
        deadline=deadline,
    )
    return check.run(), prober


DEFAULTS = {"timeout": '"10s"', "retries": "3", "retry_delay": '"5s"', "verify_timeout": '"60s"'}


def test_without_a_deadline_a_hang_that_stays_down_outruns_nagioss_60s(tmp_path):
    w = World(tmp_path, "hung", **DEFAULTS)
    w.pm2.heals = False
    result, _ = run(w, None)
    assert result.code == CRITICAL and w.clock.elapsed > 60 and result.cut is None


def test_a_deadline_ends_the_run_in_time_cutting_the_verification_and_saying_so(tmp_path):
    w = World(tmp_path, "hung", **DEFAULTS)
    w.pm2.heals = False
    result, _ = run(w, 55.0)
    assert w.clock.elapsed <= 55.0
    assert w.pm2.restarts == [("web", "restart")]  # the restart still happened
    assert result.code == CRITICAL and "verification cut short by --deadline" in result.apps[0].summary
    assert result.lines()[-1].startswith("cut short by --deadline 55s: web's verification after ")
    (failed,) = w.events("verification.failed")
    assert failed.data["cut_by_deadline"] == 55.0
    with Store.open(w.config.store.path) as store:
        (finished,) = store.query(types=["check.finished"])
    assert finished.data["cut_by_deadline"] == ["web's verification after 13.0s"]
    assert result.to_dict()["cut_short"] == result.cut


def test_attempts_are_cut_to_the_time_left_and_the_app_is_left_undecided(tmp_path):
    w = World(tmp_path, "hung", **DEFAULTS)
    result, prober = run(w, 6.0)
    assert prober.timeouts == [4.0]  # 6s less the 2s kept in hand, not the 10s timeout
    assert result.code == UNKNOWN
    assert result.apps[0].summary == "--deadline 6s reached before its probes were done; nothing decided"
    assert w.pm2.restarts == [] and w.decisions() == []
    assert result.cut == "cut short by --deadline 6s: web's probes"


def test_no_restart_is_begun_without_time_for_it(tmp_path):
    w = World(tmp_path, "hung", **{**DEFAULTS, "retries": "1"})
    result, _ = run(w, 12.0)
    assert w.pm2.restarts == [] and w.decisions() == [("restart", "hung")]
    assert (
        result.code == CRITICAL
        and "not restarted: --deadline 12s left 2.0s (the next check restarts it)" in result.apps[0].summary
    )
    assert result.cut == "cut short by --deadline 12s: web's restart"


def test_a_healthy_run_is_not_touched_by_a_deadline(tmp_path):
    w = World(tmp_path, "healthy", **DEFAULTS)
    result, _ = run(w, 55.0)
    assert result.code == 0 and result.cut is None and w.decisions() == [("none", "healthy")]


def test_no_worker_restart_is_begun_without_time_for_it(tmp_path):
    from tests.test_cluster import Cluster

    c = Cluster(tmp_path)
    c.stall(1002, 2, 6)  # worker 2 holds one probe in four and never answers them
    run = CheckRun(
        c.config,
        pm2=c.pm2,
        prober=c.prober,
        recorder=Recorder(c.config.store.path, busy_timeout=1.0, now=c.clock.now),
        clock=c.clock,
        owners=c.owners,
        deadline=6.0,
    )
    result = run.run()
    assert c.pm2.worker_restarts == [] and c.pm2.app_restarts == []
    assert (c.decision()["action"], c.decision()["code"]) == ("restart", "worker_hung")
    assert result.code == CRITICAL and "not restarted: --deadline 6s left" in result.apps[0].summary
    assert result.apps[0].summary.startswith("worker 2 (pid 1002, socket evidence) hung; ")
    assert result.cut == "cut short by --deadline 6s: web's worker 2 restart"
    assert c.events("restart.requested") == []


def test_no_pm2_resurrect_is_begun_without_time_for_it(tmp_path):
    from tests.test_pm2_daemon import Fleet

    f = Fleet(tmp_path)
    f.answered_before()  # refusals are failures; each app's two probes take retry_delay (5s)
    result = CheckRun(
        f.config,
        pm2=f.pm2,
        prober=HttpProber(httpx.MockTransport(f.apps)),
        recorder=Recorder(f.config.store.path, busy_timeout=1.0, now=f.clock.now),
        clock=f.clock,
        deadline=11.0,
    ).run()
    assert "resurrect" not in f.pm2.calls and f.events("restart.requested") == []
    assert result.apps[0].code == CRITICAL  # api's probes are cut short too (UNKNOWN)
    assert "not resurrected: --deadline 11s left 6.0s" in result.apps[0].summary
    assert result.cut.startswith("cut short by --deadline 11s: web's resurrect")
