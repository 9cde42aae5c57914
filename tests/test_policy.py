"""The policy is a pure function: observations, history, app config and time in, a decision out."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from recovery import policy
from recovery.config import AppConfig
from recovery.events import Event, format_ts
from recovery.model import History
from recovery.observations import Attempt, Instance, Observations, ProcessView
from recovery.policy import CRITICAL, OK, WARNING, decide, under_lock

URL = "http://127.0.0.1:3000/"
FAILED = (Attempt(False, 1, URL, 2000, error="timeout"), Attempt(False, 2, URL, 2000, error="timeout"))
ANSWERED = (Attempt(True, 1, URL, 12, status=200),)
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
NO_HISTORY = History()


def view(*statuses: str) -> ProcessView:
    return ProcessView("web", "jlist", tuple(Instance("web", i, 100 + i, s) for i, s in enumerate(statuses)))


def seen(attempts: tuple[Attempt, ...], pm2: ProcessView | None, problem: str | None = None) -> Observations:
    return Observations(attempts, pm2, problem)


def decide_now(attempts, pm2, history=NO_HISTORY, app=APP, problem=None):
    return decide(seen(attempts, pm2, problem), history, app, NOW)


def test_a_healthy_probe_needs_nothing():
    d = decide_now(ANSWERED, view("online"))
    assert (d.action, d.code, d.exit_code, d.label) == ("none", "healthy", OK, "OK")


def test_online_but_silent_is_a_hang_to_restart():
    d = decide_now(FAILED, view("online"))
    assert (d.action, d.code) == ("restart", "hung")
    assert d.reason == "hung: PM2 says online but 2 failed probes (timeout)"


def test_errored_is_a_crash_loop_to_restart():
    d = decide_now(FAILED, view("errored"))
    assert (d.action, d.code) == ("restart", "errored")


def test_pm2_already_restarting_means_wait_and_verify():
    d = decide_now(FAILED, view("waiting restart"))
    assert (d.action, d.code, d.verify) == ("wait", "pm2_restarting", True)


def test_an_operator_stop_is_left_alone():
    d = decide_now(FAILED, view("stopped"))
    assert (d.action, d.code, d.exit_code) == ("none", "stopped", CRITICAL)


def test_an_unknown_name_escalates():
    d = decide_now(FAILED, ProcessView("web", "jlist", ()))
    assert (d.action, d.code, d.exit_code) == ("escalate", "unknown_app", CRITICAL)
    assert "no process named 'web'" in d.reason


def test_an_answering_app_that_pm2_does_not_know_escalates_too():
    d = decide_now(ANSWERED, ProcessView("web", "jlist", ()))
    assert (d.action, d.code, d.state) == ("escalate", "unknown_app", "healthy")


def test_pm2_unreadable_escalates_and_names_the_problem():
    d = decide_now(FAILED, None, problem="pm2 jlist exited 1: boom")
    assert (d.action, d.code) == ("escalate", "pm2_unreadable") and "boom" in d.reason


def test_a_status_this_tool_does_not_know_escalates():
    assert decide_now(FAILED, view("one-way-status")).code == "unknown_status"


def test_cluster_mode_with_one_instance_online_is_treated_as_online():
    assert decide_now(FAILED, view("online", "errored")).code == "hung"


# -- the dry run, the lock, the mapping to exit codes: the policy's too ---------------------


def test_a_dry_run_records_the_restart_decision_but_leaves_the_app_down():
    d = policy.dry_run(decide_now(FAILED, view("online")))
    assert (d.action, d.code, d.state, d.dry_run) == ("restart", "hung", "down", True)
    assert d.data()["dry_run"] is True
    assert not policy.needs_lock(d)
    assert (d.exit_code, d.label) == (CRITICAL, "DOWN")


def test_a_dry_run_changes_nothing_but_restarts():
    d = decide_now(ANSWERED, view("online"))
    assert policy.dry_run(d) == d


def test_only_a_restart_or_a_wait_on_pm2_takes_the_lock():
    assert policy.needs_lock(decide_now(FAILED, view("online")))
    assert policy.needs_lock(decide_now(FAILED, view("waiting restart")))
    assert not policy.needs_lock(decide_now(FAILED, view("stopped")))


def test_a_lock_held_too_long_escalates_with_the_wait():
    d = policy.lock_timed_out(decide_now(FAILED, view("online")), "2 failed probes (timeout)", 150)
    assert (d.action, d.code) == ("escalate", "lock_timeout")
    assert d.reason == "2 failed probes (timeout); another recovery run held the lock for 150s"


def _event(type_: str, run: str, seq: int) -> Event:
    return Event(type=type_, app="web", run_id=run, seq=seq)


def test_under_the_lock_a_restart_verified_by_another_run_is_not_repeated():
    first = decide_now(FAILED, view("online"))
    others = [_event("restart.requested", "other", 5), _event("verification.passed", "other", 9)]
    d = under_lock(first, others, run_id="me")
    assert (d.action, d.code) == ("none", "already_recovered")


def test_under_the_lock_a_failed_restart_by_another_run_escalates_instead_of_restarting_again():
    first = decide_now(FAILED, view("online"))
    others = [_event("restart.requested", "other", 5), _event("verification.failed", "other", 9)]
    assert under_lock(first, others, run_id="me").code == "already_restarted"


def test_under_the_lock_our_own_events_do_not_count_as_another_restart():
    first = decide_now(FAILED, view("online"))
    assert under_lock(first, [_event("restart.requested", "me", 5)], run_id="me").action == "restart"


def test_under_the_lock_a_restart_that_began_before_this_run_but_verified_after_its_start_counts():
    # Run A restarted the app just before run B started; B probed the warming-up app and failed.
    first = decide_now(FAILED, view("online"))
    assert under_lock(first, [_event("verification.passed", "other", 9)], run_id="me").action == "none"


@pytest.mark.parametrize(
    ("by", "passed", "expected"),
    [
        ("check", True, (WARNING, "RECOVERED")),
        ("operator", True, (OK, "RESTARTED")),
        ("schedule", False, (CRITICAL, "CRITICAL")),
    ],
)
def test_a_verified_restart_maps_to_its_exit_code_and_label(by, passed, expected):
    assert policy.after_restart(by, passed) == expected


def test_every_code_a_decision_can_carry_is_documented():
    assert {"healthy", "hung", "errored", "stopped", "warming_up", "restart_loop", "lock_timeout"} <= set(policy.CODES)


# -- decisions from history: time is passed in, the past is a History ---------------------


def ago(seconds: float) -> str:
    return format_ts(NOW - dt.timedelta(seconds=seconds))


def restarted(*seconds_ago: float) -> History:
    """History with our automatic restarts of hung apps that many seconds ago (newest last)."""
    recent = tuple((ago(s), "hung") for s in sorted(seconds_ago, reverse=True))
    return History(state="healthy", last_restart_at=recent[-1][0] if recent else None, recent_restarts=recent)


def test_failures_inside_the_warm_up_grace_restart_nothing():
    d = decide_now(FAILED, view("online"), restarted(20))
    assert (d.action, d.code, d.state) == ("wait", "warming_up", "recovering")


def test_after_the_grace_a_hang_is_restarted_again():
    assert decide_now(FAILED, view("online"), restarted(61)).action == "restart"


def test_the_wait_between_restarts_doubles():
    # Two restarts in the window: the third waits 2 x restart_grace after the last one.
    d = decide_now(FAILED, view("online"), restarted(300, 90))
    assert (d.action, d.code, d.state) == ("wait", "backoff", "down")
    assert decide_now(FAILED, view("online"), restarted(300, 121)).action == "restart"


def test_past_the_ceiling_the_app_is_suspended_with_the_causes():
    d = decide_now(FAILED, view("online"), restarted(900, 600, 300))
    assert (d.action, d.code, d.state) == ("suppress", "restart_loop", "suspended")
    assert d.reason.startswith("restart loop: 3 restarts in 30m, last causes: hung x3")


def test_a_suspended_app_stays_suspended():
    h = History(suspended_at=ago(100), suspend_reason="restart loop", last_restart_at=ago(400))
    assert decide_now(FAILED, view("online"), h).code == "suspended"


def test_restarts_outside_the_window_do_not_count():
    # history() already drops them: only what is in recent_restarts counts
    h = History(last_restart_at=ago(4000), recent_restarts=())
    assert decide_now(FAILED, view("online"), h).action == "restart"


def test_a_crash_loop_counts_against_the_same_ceiling_as_hangs():
    h = History(
        last_restart_at=ago(900), recent_restarts=((ago(1500), "errored"), (ago(1200), "hung"), (ago(900), "hung"))
    )
    d = decide_now(FAILED, view("errored"), h)
    assert d.code == "restart_loop" and "hung x2, errored x1" in d.reason


def test_a_paused_app_is_not_restarted_and_says_so():
    h = History(paused_until=format_ts(NOW + dt.timedelta(minutes=10)), pause_reason="deploy")
    d = decide_now(FAILED, view("online"), h)
    assert (d.action, d.code, d.state, d.exit_code) == ("none", "paused", "paused", OK)
    assert "deploy" in d.reason


def test_an_expired_pause_no_longer_protects():
    h = History(paused_until=ago(1), pause_reason="deploy")
    assert decide_now(FAILED, view("online"), h).action == "restart"


def test_slower_than_slow_threshold_is_degraded_not_down():
    app = dataclasses.replace(APP, slow_threshold=1.0)
    d = decide_now((Attempt(True, 1, URL, 1500, status=200),), view("online"), app=app)
    assert (d.action, d.code, d.exit_code) == ("none", "degraded", WARNING)


def test_without_slow_threshold_slow_is_healthy():
    assert decide_now((Attempt(True, 1, URL, 1500, status=200),), view("online")).code == "healthy"


def test_an_operator_stop_wins_over_loop_protection():
    assert decide_now(FAILED, view("stopped"), restarted(900, 600, 300)).code == "stopped"
