"""A crash loop leads the hints from its first incident (issue 16 point 5).

Check runs are written into a real store as `recovery check` records them (probes refused, PM2's
samples, the decision with its inputs, the log lines read at the end of the run); the hints are
read with `projections.hint_input` at a chosen moment, as an alert sent then would read them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from recovery import hints, projections
from recovery.events import Event
from recovery.logs.ingestion import ingest
from recovery.store import Store

T0 = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)
REFUSED = ("probe.failed", "web", {"phase": "check", "attempt": 1, "error": "refused", "latency_ms": 1.0})
CRASH_ERROR = "error: missing DATABASE_URL"


class Runs:
    """Check runs of app "web" at chosen seconds after T0, and its PM2 error log."""

    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.store = store
        self.n = 0
        self.log = tmp_path / "web-error.log"

    def at(self, t: float) -> str:
        return projections.format_ts(T0 + dt.timedelta(seconds=t))

    def run(self, t: float, *events: tuple[str, str | None, dict]) -> None:
        self.n += 1
        rid = f"run{self.n}"
        rows = [Event("check.started", None, rid, {"trigger": "cron"}, ts=self.at(t))]
        rows += [
            Event(type_, app, rid, data, ts=self.at(t + 0.01 * (i + 1))) for i, (type_, app, data) in enumerate(events)
        ]
        rows.append(Event("check.finished", None, rid, {}, ts=self.at(t + 0.01 * (len(events) + 1))))
        self.store.append(rows)

    def healthy(self, t: float, **sample: Any) -> None:
        self.run(
            t,
            ("probe.succeeded", "web", {"phase": "check", "attempt": 1, "status": 200, "latency_ms": 5.0}),
            ("process.sampled", "web", {"source": "jlist", "status": "online", "known": True, "pid": 100, **sample}),
            ("decision.made", "web", {"action": "none", "code": "healthy", "reason": "healthy", "state": "healthy"}),
        )

    def failing(self, t: float, decision: dict, *samples: dict, after: tuple = ()) -> None:
        """A check whose probes were refused: PM2 read (once, or again while settling), then the decision."""
        sampled = [("process.sampled", "web", {"source": "jlist", "known": True, **s}) for s in samples]
        self.run(t, REFUSED, *sampled, ("decision.made", "web", decision), *after)

    def logs(self, t: float, *lines: str) -> None:
        """PM2 error-log lines (no timestamps of their own) read at `t`, as the end of a check reads them."""
        with self.log.open("a") as f:
            f.write("".join(line + "\n" for line in lines))
        ingest(self.store, "web", [(self.log, "err")], now=T0 + dt.timedelta(seconds=t))

    def hints(self, t: float) -> list[hints.Hint]:
        projections.fold(self.store.conn)
        return hints.evaluate(projections.hint_input(self.store.conn, "web", T0 + dt.timedelta(seconds=t)))


@pytest.fixture
def runs(tmp_path):
    store = Store.open(tmp_path / "recovery.db")
    yield Runs(store, tmp_path)
    store.close()


def decision(code: str, action: str, state: str, **inputs: Any) -> dict:
    return {"action": action, "code": code, "reason": f"{code}: ...", "state": state, "inputs": inputs}


FIRST_LIFE = {"status": "online", "pid": 200, "restart_time": 0, "unstable_restarts": 0, "uptime_s": 0.3, "cpu": 0}
CYCLING = {"status": "online", "pid": 203, "restart_time": 3, "unstable_restarts": 3, "exit_code": 1, "uptime_s": 0.1}
CRASH_LOOP = decision(
    "crash_loop", "wait", "down", pm2_status="online", restart_time=3, unstable_restarts=3, exit_code=1, uptime_s=0.1
)


def kinds(found: list[hints.Hint]) -> list[str]:
    return [h.kind for h in found]


def test_the_first_crash_loop_incident_leads_with_crash_loop_naming_exit_code_restart_count_and_error(runs):
    """The check caught the loop's first life, read PM2 again (3 unstable restarts) and read the log."""
    runs.failing(0, CRASH_LOOP, FIRST_LIFE, {**CYCLING, "settling": True})
    runs.logs(1, CRASH_ERROR, CRASH_ERROR, CRASH_ERROR)
    top = runs.hints(3)[0]  # a few seconds after it was detected: when its alert goes out
    assert top.kind == "crash_loop", top
    assert "PM2 restarted it 3 times" in top.message and "exit code 1" in top.message
    assert "“error: missing DATABASE_URL” (3x" in top.message
    assert top.evidence["exit_codes"] == [1] and top.evidence["restart_time"] == 3 and top.evidence["incidents"] == [1]


def test_pm2_that_gave_up_before_the_first_check_is_named_with_its_restart_count_and_exit_code(runs):
    """The first sample PM2 gave of the app shows it errored after 15 restarts: nothing to compare with."""
    errored = {"status": "errored", "restart_time": 15, "unstable_restarts": 0, "exit_code": 1, "since_start_s": 17.6}
    runs.failing(0, decision("errored", "restart", "recovering", pm2_status="errored"), errored)
    top = runs.hints(3)[0]
    assert top.kind == "crash_loop", top
    assert "PM2 restarted it 15 times" in top.message and "gave up (errored)" in top.message
    assert "exit code 1" in top.message


def test_a_crash_pm2_is_bringing_the_app_back_from_is_a_crash_loop_from_the_first_incident(runs):
    """A young process whose last exit code was 1 and that does not answer: the check waits on PM2."""
    runs.healthy(0, restart_time=0)
    seen = {"status": "online", "pid": 201, "restart_time": 1, "unstable_restarts": 0, "exit_code": 1, "uptime_s": 1.6}
    waiting = decision(
        "pm2_restarting", "wait", "recovering", pm2_status="online", restart_time=1, exit_code=1, uptime_s=1.6
    )
    runs.failing(60, waiting, seen)
    top = runs.hints(63)[0]
    assert top.kind == "crash_loop" and "exit code 1" in top.message, top


def test_a_crash_that_pm2_recovered_from_is_no_loop(runs):
    """One crash, PM2 brought the app back and it answered again: not a crash loop."""
    runs.healthy(0, restart_time=0)
    seen = {"status": "online", "pid": 201, "restart_time": 1, "exit_code": 1, "uptime_s": 0.5}
    waiting = decision("pm2_restarting", "wait", "recovering", pm2_status="online", restart_time=1, exit_code=1)
    passed = ("verification.passed", "web", {"attempts": 2, "seconds": 1.5})
    runs.failing(60, waiting, seen, after=(passed,))
    assert "crash_loop" not in kinds(runs.hints(120))
    assert "crash_loop" in kinds(
        runs.hints(60.035)
    )  # once detected (60.03), before it answered again (60.04), it was one


def test_refused_probes_while_pm2_restarts_the_process_are_not_a_stall(runs):
    """A record from before the crash_loop code: the check called the loop `hung` (CPU idle, every
    probe refused) though PM2 had just counted unstable restarts of a process 0.3 s old."""
    sample = {**CYCLING, "uptime_s": 0.3, "cpu": 0, "cpu_demand": 0.0}
    hung = {"action": "restart", "reason": "hung: PM2 says online but 2 failed probes (refused)", "state": "recovering"}
    runs.failing(0, hung, sample)
    found = runs.hints(3)
    assert kinds(found)[0] == "crash_loop", found
    assert "stalled_on_io" not in kinds(found) and "event_loop_blocked" not in kinds(found)


def test_a_hang_of_a_process_that_ran_for_an_hour_is_still_a_stall(runs):
    """The same idle hang of a process PM2 started an hour ago, after old unstable restarts, is one."""
    sample = {**CYCLING, "uptime_s": 3600.0, "cpu": 0, "cpu_demand": 0.0}
    runs.failing(0, decision("hung", "restart", "recovering", pm2_status="online"), sample)
    assert kinds(runs.hints(3)) == ["stalled_on_io"]


def test_a_hang_soon_after_a_restart_that_left_an_exit_code_is_still_a_stall(runs):
    """A process 30 s old whose predecessor exited 1 (no unstable restarts): PM2 is not cycling it."""
    sample = {**CYCLING, "unstable_restarts": 0, "uptime_s": 30.0, "cpu": 0, "cpu_demand": 0.0}
    runs.failing(0, decision("hung", "restart", "recovering", pm2_status="online"), sample)
    assert kinds(runs.hints(3)) == ["stalled_on_io"]


def test_once_pm2_gives_up_the_crash_loop_says_so(runs):
    runs.failing(0, CRASH_LOOP, CYCLING)
    assert "gave up" not in runs.hints(30)[0].message
    errored = {"status": "errored", "restart_time": 16, "unstable_restarts": 16, "exit_code": 1, "since_start_s": 3.0}
    runs.failing(60, decision("errored", "restart", "recovering", pm2_status="errored"), errored)
    top = runs.hints(90)[0]
    assert top.kind == "crash_loop" and "13 times on its own (restart count 16)" in top.message
    assert "gave up (errored) 30s ago" in top.message and top.evidence["gave_up_at"] == runs.at(60.02)


def test_the_crash_errors_are_counted_from_minutes_before_the_first_crash_loop_incident():
    incident = hints.Incident(1, "2026-11-01T09:00:00.000Z", "crash_loop", exit_code=1, restart_time=3)
    model = hints.HintInput("web", "2026-10-25T09:00:00.000Z", T0 + dt.timedelta(seconds=5), incidents=(incident,))
    assert hints.crash_errors_from(model) == "2026-11-01T08:50:00.000Z"


def test_an_incident_carries_what_its_deciding_check_saw_of_pm2(runs):
    runs.failing(0, CRASH_LOOP, FIRST_LIFE, {**CYCLING, "settling": True})
    projections.fold(runs.store.conn)
    (inc,) = projections.hint_input(runs.store.conn, "web", T0 + dt.timedelta(seconds=3)).incidents
    assert (inc.code, inc.exit_code, inc.restart_time, inc.unstable_restarts, inc.status) == (
        "crash_loop",
        1,
        3,
        3,
        "online",
    )
    assert inc.crash_looping and not inc.hung and not inc.recovered
