"""The policy is a pure function: what PM2 says plus what the probes saw -> what to do."""

from __future__ import annotations

import pytest

from recovery.events import Event
from recovery.pm2 import Instance, ProcessView
from recovery.policy import decide, decide_under_lock
from recovery.probe import Attempt

URL = "http://127.0.0.1:3000/"
FAILED = [Attempt(False, 1, URL, 2000, error="timeout"), Attempt(False, 2, URL, 2000, error="timeout")]


def view(*statuses: str) -> ProcessView:
    return ProcessView("web", "jlist", tuple(Instance("web", i, 100 + i, s) for i, s in enumerate(statuses)))


def test_a_healthy_probe_needs_nothing():
    assert decide([Attempt(True, 1, URL, 12, status=200)], view("online")).action == "none"


def test_online_but_silent_is_a_hang_to_restart():
    d = decide(FAILED, view("online"))
    assert d.action == "restart"
    assert d.reason == "hung: PM2 says online but 2 failed probes (timeout)"


def test_errored_is_a_crash_loop_to_restart():
    d = decide(FAILED, view("errored"))
    assert d.action == "restart" and "crash loop" in d.reason


@pytest.mark.parametrize("status", ["launching", "waiting restart"])
def test_pm2_already_restarting_means_wait(status):
    assert decide(FAILED, view(status)).action == "wait"


@pytest.mark.parametrize("status", ["stopped", "stopping"])
def test_an_operator_stop_is_left_alone(status):
    d = decide(FAILED, view(status))
    assert d.action == "none" and "stopped by an operator" in d.reason


def test_an_unknown_name_escalates():
    d = decide(FAILED, ProcessView("web", "jlist", ()))
    assert d.action == "escalate" and "no process named 'web'" in d.reason


def test_cluster_mode_with_one_instance_online_is_treated_as_online():
    assert decide(FAILED, view("online", "errored")).action == "restart"


def _event(type_: str, run: str, seq: int) -> Event:
    return Event(type=type_, app="web", run_id=run, seq=seq)


def test_under_the_lock_a_restart_verified_by_another_run_is_not_repeated():
    first = decide(FAILED, view("online"))
    others = [_event("restart.requested", "other", 5), _event("verification.passed", "other", 9)]
    d = decide_under_lock(first, others, run_id="me")
    assert d.action == "none" and "already restarted" in d.reason


def test_under_the_lock_a_failed_restart_by_another_run_escalates_instead_of_restarting_again():
    first = decide(FAILED, view("online"))
    others = [_event("restart.requested", "other", 5), _event("verification.failed", "other", 9)]
    assert decide_under_lock(first, others, run_id="me").action == "escalate"


def test_under_the_lock_our_own_events_do_not_count_as_another_restart():
    first = decide(FAILED, view("online"))
    assert decide_under_lock(first, [_event("restart.requested", "me", 5)], run_id="me").action == "restart"


def test_under_the_lock_a_restart_that_began_before_this_run_but_verified_after_its_start_counts():
    # Run A restarted the app just before run B started; B probed the warming-up app and failed.
    first = decide(FAILED, view("online"))
    d = decide_under_lock(first, [_event("verification.passed", "other", 9)], run_id="me")
    assert d.action == "none"


# -- decisions from history: time is passed in, the past is a History ---------------------

import datetime as dt  # noqa: E402

from recovery.config import AppConfig  # noqa: E402
from recovery.projections import History, format_ts  # noqa: E402

NOW = dt.datetime(2026, 11, 28, 3, 0, 0, tzinfo=dt.UTC)
APP = AppConfig(
    name="web",
    url=URL,
    timeout=2,
    retries=2,
    retry_delay=1,
    expect_status=((200, 399),),
    verify_timeout=30,
    restart_command="restart",
    max_restarts=3,
    window=1800,
    restart_grace=60,
)


def ago(seconds: float) -> str:
    return format_ts(NOW - dt.timedelta(seconds=seconds))


def restarted(*seconds_ago: float) -> History:
    """History with our automatic restarts that many seconds ago (newest last)."""
    recent = tuple(
        (ago(s), "hung: PM2 says online but 2 failed probes (timeout)") for s in sorted(seconds_ago, reverse=True)
    )
    return History(state="healthy", last_restart_at=recent[-1][0] if recent else None, recent_restarts=recent)


def test_failures_inside_the_warm_up_grace_restart_nothing():
    d = decide(FAILED, view("online"), app=APP, history=restarted(20), now=NOW)
    assert d.action == "wait" and d.state == "recovering" and "warming up" in d.reason


def test_after_the_grace_a_hang_is_restarted_again():
    assert decide(FAILED, view("online"), app=APP, history=restarted(61), now=NOW).action == "restart"


def test_the_wait_between_restarts_doubles():
    # Two restarts in the window: the third waits 2 x restart_grace after the last one.
    d = decide(FAILED, view("online"), app=APP, history=restarted(300, 90), now=NOW)
    assert d.action == "wait" and "backoff" in d.reason and d.state == "down"
    assert decide(FAILED, view("online"), app=APP, history=restarted(300, 121), now=NOW).action == "restart"


def test_past_the_ceiling_the_app_is_suspended_with_the_causes():
    d = decide(FAILED, view("online"), app=APP, history=restarted(900, 600, 300), now=NOW)
    assert d.action == "suppress" and d.state == "suspended"
    assert d.reason.startswith("restart loop: 3 restarts in 30m, last causes: hung x3")


def test_a_suspended_app_stays_suspended():
    h = History(suspended_at=ago(100), suspend_reason="restart loop", last_restart_at=ago(400))
    assert decide(FAILED, view("online"), app=APP, history=h, now=NOW).action == "suppress"


def test_restarts_outside_the_window_do_not_count():
    # history() already drops them: only what is in recent_restarts counts
    h = History(last_restart_at=ago(4000), recent_restarts=())
    assert decide(FAILED, view("online"), app=APP, history=h, now=NOW).action == "restart"


def test_a_paused_app_is_not_restarted_and_says_so():
    h = History(paused_until=format_ts(NOW + dt.timedelta(minutes=10)), pause_reason="deploy")
    d = decide(FAILED, view("online"), app=APP, history=h, now=NOW)
    assert d.action == "none" and d.state == "paused" and "deploy" in d.reason


def test_an_expired_pause_no_longer_protects():
    h = History(paused_until=ago(1), pause_reason="deploy")
    assert decide(FAILED, view("online"), app=APP, history=h, now=NOW).action == "restart"


def test_slower_than_slow_threshold_is_degraded_not_down():
    app = AppConfig(**{**APP.__dict__, "slow_threshold": 1.0})
    d = decide([Attempt(True, 1, URL, 1500, status=200)], view("online"), app=app, now=NOW)
    assert d.action == "none" and d.state == "degraded"


def test_without_slow_threshold_slow_is_healthy():
    d = decide([Attempt(True, 1, URL, 1500, status=200)], view("online"), app=APP, now=NOW)
    assert d.state == "healthy"


def test_an_operator_stop_wins_over_loop_protection():
    d = decide(FAILED, view("stopped"), app=APP, history=restarted(900, 600, 300), now=NOW)
    assert d.state == "stopped"
