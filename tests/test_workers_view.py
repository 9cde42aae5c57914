"""A cluster's workers in the record: PM2's own restarts of one worker named by pm_id, `recovery
status` showing 3/4-style worker health and the hung worker, `report` and `why` naming the worker,
and hints that read each worker's own memory and CPU.

The events are written as the shared contract of issue 14 has them (decision code worker_hung with
inputs.worker and inputs.workers; restart.requested with pm_id, pid and `pm2 restart <pm_id>`), into
real SQLite stores, and read back through the real projections.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from recovery import hints, projections, telemetry
from recovery.events import Event
from recovery.render import format_event, report_markdown, report_text, status_table, timeline_text, workers_cell
from recovery.report import build_report, why
from recovery.status import status
from recovery.store import Store
from tests.test_projections import T0, Timeline
from tests.test_status import config_for

MB = 1024 * 1024
PIDS = {0: 1000, 1: 1001, 2: 1002, 3: 1003}


def cluster(
    pids: dict[int, int] | None = None,
    restarts: dict[int, int] | None = None,
    *,
    memory: dict[int, int] | None = None,
    cpu: dict[int, float] | None = None,
    status: dict[int, str] | None = None,
    cheap: bool = False,
    **extra,
) -> dict:
    """A process.sampled data of a 4-worker cluster, as ProcessView.data() writes it."""
    pids = pids or PIDS
    instances = []
    for pm_id, pid in pids.items():
        i = {
            "pm_id": pm_id,
            "pid": pid,
            "status": (status or {}).get(pm_id, "online"),
            "memory": (memory or {}).get(pm_id, 60 * MB),
            "cpu": (cpu or {}).get(pm_id, 1.0),
            "exec_mode": "cluster_mode",
        }
        if not cheap:
            i["restart_time"] = (restarts or {}).get(pm_id, 0)
        instances.append(i)
    return {
        "source": "pidfile" if cheap else "jlist",
        "status": "online",
        "known": True,
        "instances": instances,
        "pids": list(pids.values()),
        "memory": sum(i["memory"] for i in instances),
        **extra,
    }


def sampled(tl: Timeline, t: float, data: dict, app: str = "web") -> None:
    """A check run that sampled the cluster and found it healthy."""
    tl.run(
        t,
        ("probe.succeeded", app, {"phase": "check", "latency_ms": 10, "attempt": 1}),
        ("process.sampled", app, data),
        ("decision.made", app, {"action": "none", "code": "healthy", "reason": "healthy", "state": "healthy"}),
    )


def worker_hung(pm_id: int, pid: int, evidence: str = "socket") -> dict:
    return {
        "action": "restart",
        "code": "worker_hung",
        "reason": f"worker {pm_id} of 4 hung: 2 of 8 probes timed out",
        "state": "recovering",
        "inputs": {
            "worker": {"pm_id": pm_id, "pid": pid, "evidence": evidence},
            "workers": {"total": 4, "failed": [pm_id]},
        },
    }


def worker_restart(pm_id: int, pid: int, **extra) -> dict:
    return {
        "by": "check",
        "code": "worker_hung",
        "reason": "worker hung",
        "command": ["pm2", "restart", str(pm_id)],
        "pm_id": pm_id,
        "pid": pid,
        **extra,
    }


def hang_of_one_worker(tl: Timeline, t: float, pm_id: int = 2, *, verified: bool = True, **sample) -> None:
    """A check run that finds worker `pm_id` hung, restarts it alone and (if `verified`) sees it answer."""
    pid = PIDS[pm_id]
    events = [
        ("probe.failed", "web", {"phase": "check", "error": "timeout", "latency_ms": 2000, "attempt": 1}),
        ("probe.succeeded", "web", {"phase": "check", "latency_ms": 10, "attempt": 2}),
        ("process.sampled", "web", cluster(**sample)),
        ("decision.made", "web", worker_hung(pm_id, pid)),
        ("restart.requested", "web", worker_restart(pm_id, pid)),
    ]
    if verified:
        events += [
            ("restart.succeeded", "web", worker_restart(pm_id, pid, exit_code=0)),
            ("verification.passed", "web", {"attempts": 1, "seconds": 0.4}),
        ]
    tl.run(t, *events)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "recovery.db")
    yield s
    s.close()


def pm2_rows(store: Store) -> list[tuple]:
    projections.fold(store.conn)
    return store.conn.execute("SELECT count, pm_ids FROM restarts WHERE by = 'pm2' ORDER BY seq").fetchall()


# -- PM2's own restarts, per worker ---------------------------------------------------------------


def test_pm2_restarting_one_worker_is_one_restart_of_that_worker_named_by_pm_id(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    sampled(tl, 60, cluster({**PIDS, 2: 2002}, {2: 1}))
    assert pm2_rows(store) == [(1, "[2]")]


def test_the_process_restarted_event_names_the_worker_and_its_pids(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    projections.fold(store.conn)
    data = cluster({**PIDS, 2: 2002}, {2: 1})
    restarted = telemetry.pm2_restarts(store.conn, "web", data, T0 + dt.timedelta(seconds=60))
    assert restarted is not None and restarted["count"] == 1
    assert restarted["pm_id"] == 2 and (restarted["old_pid"], restarted["new_pid"]) == (1002, 2002)
    assert restarted["workers"] == [{"pm_id": 2, "old_pid": 1002, "new_pid": 2002, "count": 1}]


def test_a_worker_that_exited_with_an_error_is_a_crash_of_that_worker(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    projections.fold(store.conn)
    data = cluster({**PIDS, 1: 2001}, {1: 1})
    data["instances"][1]["exit_code"] = 1
    restarted = telemetry.pm2_restarts(store.conn, "web", data, T0 + dt.timedelta(seconds=60))
    assert restarted is not None
    assert (restarted["cause"], restarted["evidence"]) == ("crash", {"exit_code": 1})
    assert restarted["workers"][0]["exit_code"] == 1


def test_our_restart_of_one_worker_does_not_hide_pm2s_restart_of_another(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    hang_of_one_worker(tl, 60)  # ours: `pm2 restart 2` grows worker 2's counter by one
    # Then PM2 restarts worker 0 on its own: both counters grew by one.
    sampled(tl, 120, cluster({**PIDS, 0: 2000, 2: 2002}, {0: 1, 2: 1}))
    assert pm2_rows(store) == [(1, "[0]")]
    (ours,) = store.conn.execute("SELECT by, pm_ids, outcome FROM restarts WHERE source = 'recovery'").fetchall()
    assert ours == ("check", "[2]", "verified")


def test_a_clusters_cheap_sample_is_no_restart_counter_of_zero(store):
    """The pid-file sample has no restart counters: the next full sample must not count every
    restart the workers ever had as PM2's."""
    tl = Timeline(store)
    sampled(tl, 0, cluster(restarts={0: 3, 1: 3, 2: 3, 3: 3}))
    sampled(tl, 60, cluster(cheap=True))
    sampled(tl, 120, cluster(restarts={0: 3, 1: 3, 2: 3, 3: 3}))
    assert pm2_rows(store) == []


def test_a_worker_with_a_new_pid_in_the_cheap_sample_is_counted_once(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    sampled(tl, 60, cluster({**PIDS, 3: 2003}, cheap=True))  # seen from the pid file
    sampled(tl, 120, cluster({**PIDS, 3: 2003}, {3: 1}))  # and then in its counter: the same restart
    assert pm2_rows(store) == [(1, "[3]")]


def test_a_rebuild_gives_the_same_workers(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    hang_of_one_worker(tl, 60, verified=False)
    sampled(tl, 120, cluster({**PIDS, 0: 2000}, {0: 1, 2: 1}))
    projections.fold(store.conn)
    tables = ("app_state", "incidents", "restarts")
    before = {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    projections.rebuild(store.conn)
    assert {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables} == before


# -- recovery status ----------------------------------------------------------------------------


def status_of(store: Store, tmp_path, seconds: float):
    (row,) = status(store, config_for(tmp_path, "web"), now=T0 + dt.timedelta(seconds=seconds))
    return row


def test_status_shows_worker_health_and_names_the_hung_worker(store, tmp_path):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    hang_of_one_worker(tl, 60, verified=False)
    row = status_of(store, tmp_path, 61)
    assert row.workers["total"] == 4 and row.workers["healthy"] == 3
    assert row.workers["failed"] == [{"pm_id": 2, "pid": 1002, "why": "hung"}]
    text = status_table([row], now=T0 + dt.timedelta(seconds=61))
    head, line = text.splitlines()[:2]
    assert line[head.index("WORKERS") :].startswith("3/4 (#2 hung)")
    assert "web: worker #2 (pid 1002) hung" in text
    json.dumps(row.to_dict())


def test_status_shows_every_worker_healthy_once_the_worker_answers_again(store, tmp_path):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    hang_of_one_worker(tl, 60)
    sampled(tl, 120, cluster({**PIDS, 2: 2002}, {2: 1}))
    row = status_of(store, tmp_path, 121)
    assert workers_cell(row.workers) == "4/4" and row.workers["failed"] == []
    assert row.cpu == 4.0  # the workers' CPU, summed
    assert [i["pid"] for i in row.workers["instances"]] == [1000, 1001, 2002, 1003]
    assert row.pm2_restarts_24h == 0 and row.restarts_24h == 1


def test_status_names_the_worker_pm2_restarted_on_its_own(store, tmp_path):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    sampled(tl, 60, cluster({**PIDS, 1: 2001}, {1: 1}))
    row = status_of(store, tmp_path, 61)
    assert row.pm2_restarts_24h == 1
    assert [i["pm2_restarts_24h"] for i in row.workers["instances"]] == [0, 1, 0, 0]
    text = status_table([row], now=T0 + dt.timedelta(seconds=61))
    assert "web: PM2 restarted worker #1 on its own in the last 24h (1x)" in text


def test_a_worker_the_pid_files_do_not_show_yet_is_unknown_not_its_old_self(store, tmp_path):
    """Right after `pm2 restart 2` the restarted worker's pid file may not be written yet: the
    cheap sample shows three workers, and worker 2's old pid and CPU are not shown as its own."""
    tl = Timeline(store)
    sampled(tl, 0, cluster(cpu={2: 99.0}))
    hang_of_one_worker(tl, 60)
    three = {k: p for k, p in PIDS.items() if k != 2}
    tl.run(61, ("process.sampled", "web", cluster(three, cheap=True, after_restart=True)))
    row = status_of(store, tmp_path, 62)
    assert workers_cell(row.workers) == "3/4 (#2 unknown)"
    assert row.workers["instances"][2]["pid"] is None and row.cpu == 3.0
    sampled(tl, 120, cluster({**PIDS, 2: 2002}, {2: 1}))
    assert workers_cell(status_of(store, tmp_path, 121).workers) == "4/4"
    assert pm2_rows(store) == []


def test_status_counts_a_worker_pm2_stopped_or_errored_as_not_healthy(store, tmp_path):
    tl = Timeline(store)
    sampled(tl, 0, cluster(status={1: "errored"}))
    assert workers_cell(status_of(store, tmp_path, 1).workers) == "3/4 (#1 errored)"


def test_the_workers_cell_stays_compact_however_many_workers_failed():
    failed = [{"pm_id": k, "pid": 100 + k, "why": "hung"} for k in range(10)]
    w = {"total": 16, "healthy": 6, "failed": failed}
    assert workers_cell(w) == "6/16 (#0,#1,#2 hung +7)"
    assert workers_cell({"total": 4, "healthy": 0, "failed": failed[:4]}) == "0/4 (all hung)"
    mixed = [failed[0], {"pm_id": 3, "pid": None, "why": "stopped"}]
    assert workers_cell({"total": 4, "healthy": 2, "failed": mixed}) == "2/4 (#0 hung +1)"


def test_status_of_an_app_with_one_process_has_no_workers(store, tmp_path):
    Timeline(store).healthy(0)
    row = status_of(store, tmp_path, 1)
    assert row.workers is None and workers_cell(row.workers) == "-"


# -- recovery report and why -------------------------------------------------------------------------


def test_report_names_the_hung_worker_of_an_incident_and_the_workers_pm2_restarted(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    hang_of_one_worker(tl, 60)
    sampled(tl, 120, cluster({**PIDS, 0: 2000, 2: 2002}, {0: 1, 2: 1}))
    sampled(tl, 180, cluster({**PIDS, 0: 3000, 2: 2002}, {0: 2, 2: 1}))
    projections.fold(store.conn)
    r = build_report(store, ["web"], projections.format_ts(T0), now=T0 + dt.timedelta(seconds=240))
    (a,) = r.apps
    (inc,) = a.incidents
    assert inc.workers == [{"pm_id": 2, "pid": 1002, "evidence": "socket"}]
    assert a.worker_restarts == {"check": {"2": 1}, "pm2": {"0": 2}}
    assert any("on its own" in note and "worker #0 2x" in note for note in a.stands_out)
    text = report_text(r)
    assert "WORKER" in text and "#2 pid 1002" in text
    assert "restarts of one worker: check #2 1x; pm2 #0 2x" in text
    assert "#2 pid 1002" in report_markdown(r)
    assert r.to_dict()["apps"]["web"]["incidents"][0]["workers"][0]["pm_id"] == 2


def test_why_names_the_worker_its_decision_and_our_restart_of_it(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    hang_of_one_worker(tl, 60)
    projections.fold(store.conn)
    t = why(store, "web", now=T0 + dt.timedelta(seconds=120))
    assert t is not None
    text = timeline_text(t)
    assert "about worker #2 (pid 1002) of the cluster" in text
    assert "[worker #2, pid 1002, socket evidence]" in text
    assert "by check: pm2 restart 2 (worker #2, pid 1002)" in text
    assert "4 workers: #0:1000/60.0MB" in text


def test_why_names_the_worker_pm2_restarted_on_its_own(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    hang_of_one_worker(tl, 60, verified=False)
    restarted = {
        "count": 1,
        "cause": "crash",
        "workers": [{"pm_id": 1, "old_pid": 1001, "new_pid": 2001, "count": 1}],
        "pm_id": 1,
    }
    tl.run(90, ("process.sampled", "web", cluster({**PIDS, 1: 2001}, {1: 1})), ("process.restarted", "web", restarted))
    projections.fold(store.conn)
    text = timeline_text(why(store, "web", now=T0 + dt.timedelta(seconds=120)))
    assert "PM2 restarted worker #1 (pid 1001 -> 2001) on its own, cause crash" in text


# -- hints: each worker's own memory and CPU --------------------------------------------------------


def test_a_leak_in_one_worker_is_its_own_slope_not_the_sum_across_workers(store):
    """Worker 1 grows 1 MB a minute from 60 MB while three stay flat: its own line is a leak
    (30 MB on 60), the sum's is not (30 MB on 240)."""
    tl = Timeline(store)
    for k in range(31):
        sampled(tl, 60 * k, cluster(memory={0: 60 * MB, 1: 60 * MB + k * MB, 2: 60 * MB, 3: 60 * MB}))
    projections.fold(store.conn)
    model = projections.hint_input(store.conn, "web", T0 + dt.timedelta(seconds=60 * 31))
    leak = next(h for h in hints.evaluate(model) if h.kind == "memory_leak")
    assert "of worker #1" in leak.message
    (window,) = leak.evidence["windows"]
    assert window["pm_id"] == 1 and window["pid"] == 1001
    assert window["bytes_per_s"] == pytest.approx(MB / 60, rel=0.01)


def test_a_leaking_worker_is_forecast_to_reach_its_own_memory_limit(store):
    """PM2 applies max_memory_restart to each worker: the forecast is against that, not the sum."""
    tl = Timeline(store)
    for k in range(31):
        data = cluster(memory={0: 60 * MB, 1: 60 * MB + k * MB, 2: 60 * MB, 3: 60 * MB})
        for i in data["instances"]:
            i["max_memory_restart"] = 150 * MB
        sampled(tl, 60 * k, data)
    projections.fold(store.conn)
    model = projections.hint_input(store.conn, "web", T0 + dt.timedelta(seconds=60 * 31))
    leak = next(h for h in hints.evaluate(model) if h.kind == "memory_leak")
    assert "reaches max_memory_restart 150MB" in leak.message
    assert leak.evidence["forecast_s"] == pytest.approx(60 * 60, rel=0.05)  # 60 MB to go at 1 MB a minute


def test_another_worker_restarting_does_not_end_a_leaking_workers_window(store):
    tl = Timeline(store)
    for k in range(31):
        pids = {**PIDS, 3: 1003 if k < 15 else 2003}  # PM2 restarts worker 3 half way
        restarts = {3: 0 if k < 15 else 1}
        mem = {0: 60 * MB, 1: 60 * MB + k * MB, 2: 60 * MB, 3: 60 * MB}
        sampled(tl, 60 * k, cluster(pids, restarts, memory=mem))
    projections.fold(store.conn)
    model = projections.hint_input(store.conn, "web", T0 + dt.timedelta(seconds=60 * 31))
    leak = next(h for h in hints.evaluate(model) if h.kind == "memory_leak")
    (window,) = leak.evidence["windows"]
    assert window["samples"] == 31 and not window["ended"]


def test_a_stalled_worker_reads_its_own_idle_cpu_not_the_busiest_workers(store):
    """Worker 2 stalls (idle) while worker 0 serves flat out: the hang is stalled on I/O, in worker 2."""
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    for k in range(3):  # cpu_window: the busiest process over the probes, worker 0
        hang_of_one_worker(tl, 600 * (k + 1), cpu={0: 97.0, 2: 0.5}, cpu_window=97.0)
    projections.fold(store.conn)
    model = projections.hint_input(store.conn, "web", T0 + dt.timedelta(seconds=3600))
    found = {h.kind: h for h in hints.evaluate(model)}
    assert "event_loop_blocked" not in found
    assert "in worker #2" in found["stalled_on_io"].message
    assert found["stalled_on_io"].evidence["workers"] == [2]


def test_a_busy_worker_reads_as_a_blocked_event_loop_in_that_worker(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    for k in range(2):
        hang_of_one_worker(tl, 600 * (k + 1), cpu={2: 99.0})
    projections.fold(store.conn)
    model = projections.hint_input(store.conn, "web", T0 + dt.timedelta(seconds=3600))
    found = {h.kind: h for h in hints.evaluate(model)}
    assert "in worker #2" in found["event_loop_blocked"].message


def test_a_crash_loop_of_one_worker_names_it(store):
    tl = Timeline(store)
    sampled(tl, 0, cluster())
    for k in range(1, 5):
        data = cluster({**PIDS, 3: 3000 + k}, {3: k})
        restarted = {"count": 1, "cause": "crash", "workers": [{"pm_id": 3, "count": 1, "exit_code": 1}], "pm_id": 3}
        tl.run(60 * k, ("process.sampled", "web", data), ("process.restarted", "web", restarted))
    projections.fold(store.conn)
    model = projections.hint_input(store.conn, "web", T0 + dt.timedelta(seconds=600))
    crash = next(h for h in hints.evaluate(model) if h.kind == "crash_loop")
    assert "(worker #3)" in crash.message and crash.evidence["exit_codes"] == [1]


def test_events_print_a_clusters_sample_as_one_word_per_worker():
    e = Event("process.sampled", "web", "r", cluster(status={3: "stopped"}), ts="2026-11-01T02:00:00.000Z", seq=9)
    line = format_event(e)
    assert "instances=#0:1000/60.0MB,#1:1001/60.0MB,#2:1002/60.0MB,#3:1003/stopped/60.0MB" in line
