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
