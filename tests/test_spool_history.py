"""Loop protection and the one-restart guard with the store unusable (issue 13, case 11).

While the store cannot be used, every run's events go to the spool beside it; the policy's
history and the re-decision under the app's lock read the spool too. Fast: fake PM2, fake clock,
a real (garbage or locked) SQLite file and a real spool. tests/test_spool_history_pm2.py-style
measurements with a real PM2 are in the report of issue 13.
"""

from __future__ import annotations

import json
import sqlite3

import httpx

from recovery.check import CheckResult, CheckRun, HttpProber
from recovery.store import Recorder, spool_path

from .test_check_flow import World


def garbage(w: World) -> None:
    w.config.store.path.write_bytes(b"\x8f\x01not a database at all\x00" * 200)


def spooled(w: World, *types: str) -> list[dict]:
    """The spool's events of `types`, read as a person would: the lines that are JSON objects
    (each record's payload line; its header line before it starts with RS)."""
    lines = [line for line in spool_path(w.config.store.path).read_text().splitlines() if line.startswith("{")]
    return [e for e in map(json.loads, lines) if e["type"] in types]


def run_of(w: World, handler) -> CheckRun:
    return CheckRun(
        w.config,
        pm2=w.pm2,
        prober=HttpProber(httpx.MockTransport(handler)),
        recorder=Recorder(w.config.store.path, busy_timeout=0.2, now=w.clock.now),
        clock=w.clock,
    )


def test_loop_protection_holds_with_a_garbage_store(tmp_path):
    w = World(tmp_path, "hung", max_restarts="2", restart_grace='"10s"', window='"1h"', verify_timeout='"10s"')
    w.pm2.heals = False
    garbage(w)
    for _ in range(6):
        result = w.check()
        assert "event store unusable" in result.lines()[-1]
        w.clock.advance(600)
    assert len(w.pm2.restarts) == 2
    codes = [e["data"]["code"] for e in spooled(w, "decision.made")]
    assert codes == ["hung", "hung", "restart_loop", "suspended", "suspended", "suspended"]
    assert len(spooled(w, "restart.requested")) == 2


def test_the_warm_up_holds_with_a_garbage_store(tmp_path):
    w = World(tmp_path, "hung", restart_grace='"60s"', verify_timeout='"10s"')
    w.pm2.heals = False
    garbage(w)
    w.check()
    w.clock.advance(10)
    w.check()
    assert len(w.pm2.restarts) == 1
    assert [e["data"]["code"] for e in spooled(w, "decision.made")] == ["hung", "warming_up"]


def test_a_run_that_waited_for_the_lock_sees_another_runs_spooled_restart(tmp_path):
    """Two runs probe a hung app at once; the first restarts it while the second still probes.
    With the store unusable both spool: the second, under the lock, must read the first's restart
    from the spool and not restart again."""
    w = World(tmp_path, "hung", retries="1", verify_timeout='"10s"')
    garbage(w)
    first_done: list[CheckResult] = []

    def second_sees_a_hang(request: httpx.Request) -> httpx.Response:
        if not first_done:
            first_done.append(run_of(w, w.app).run())  # the first run: restart, verified healthy
        raise httpx.ConnectTimeout("timed out", request=request)

    result = run_of(w, second_sees_a_hang).run()
    assert first_done[0].apps[0].restarted
    assert len(w.pm2.restarts) == 1
    assert result.apps[0].state == "RECOVERED" and not result.apps[0].restarted, result.lines()
    assert [e["data"]["code"] for e in spooled(w, "decision.made")] == ["hung", "already_recovered"]


def test_concurrent_runs_with_the_store_locked_restart_once(tmp_path):
    w = World(tmp_path, retries="1", verify_timeout='"10s"')
    w.check()  # a healthy store, then another process holds it locked
    w.app.state = "hung"
    holder = sqlite3.connect(w.config.store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        first_done: list[CheckResult] = []

        def second_sees_a_hang(request: httpx.Request) -> httpx.Response:
            if not first_done:
                first_done.append(run_of(w, w.app).run())
            raise httpx.ConnectTimeout("timed out", request=request)

        run_of(w, second_sees_a_hang).run()
        assert len(w.pm2.restarts) == 1
        assert len(spooled(w, "restart.requested")) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_suspension_recorded_before_the_store_was_locked_still_holds(tmp_path):
    """The store's own history counts too: another process's write lock leaves it readable."""
    w = World(tmp_path, "hung", max_restarts="1", restart_grace='"10s"', window='"1h"', verify_timeout='"10s"')
    w.pm2.heals = False
    w.check()  # restart 1 of 1
    w.clock.advance(600)
    w.check()
    assert w.decisions()[-1] == ("suppress", "restart_loop")
    holder = sqlite3.connect(w.config.store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        w.clock.advance(600)
        result = w.check()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(w.pm2.restarts) == 1, result.lines()
    assert [e["data"]["code"] for e in spooled(w, "decision.made")] == ["suspended"]
