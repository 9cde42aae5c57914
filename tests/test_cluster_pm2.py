"""Cluster mode against a real PM2: 4 workers of the demo server behind PM2's round-robin master.

One worker hung (a busy loop, or a stall with an idle CPU) is found, named and restarted alone:
`recovery check` exits 1, exactly that worker's pid changes, the events name its pm_id, and the
next check is OK with every probe answered. Every worker hung is the whole app's restart.
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import DemoApp
from .test_check import recovery, stored, write_config

pytestmark = pytest.mark.pm2

WORKERS = 4


def on_worker(app: DemoApp, action: str, pid: int) -> None:
    """/__control/<action> acted on by the worker `pid` alone (the others answer `skipped`)."""
    for _ in range(10 * WORKERS):
        try:
            answer = httpx.get(f"{app.url}__control/{action}", params={"pid": pid}, timeout=2.0)
        except httpx.TimeoutException:
            continue  # handed to a worker already hung: the next call goes on in the rotation
        if not answer.json().get("skipped"):
            return
    raise AssertionError(f"PM2 never handed /__control/{action} to worker pid {pid}")


def check(pm2, config) -> tuple[int, str]:
    """The exit code and the output after the Nagios status line: a line per app, then stderr."""
    proc = recovery(pm2, "check", "--config", str(config))
    status, _, rest = proc.stdout.partition("\n")
    assert status.startswith("RECOVERY "), proc.stdout
    return proc.returncode, rest + proc.stderr


def last_run(config) -> list:
    events = stored(config, "web")
    run = [e for e in events if e.type == "decision.made"][-1].run_id
    return [e for e in events if e.run_id == run]


def assert_one_worker_restarted(pm2, app: DemoApp, config, before: list[int], pm_id: int, evidence: str) -> None:
    code, out = check(pm2, config)
    assert code == 1, out
    assert out.startswith(f"web RECOVERED worker {pm_id} "), out
    after = app.pids()
    assert after[pm_id] != before[pm_id]
    assert [p for i, p in enumerate(after) if i != pm_id] == [p for i, p in enumerate(before) if i != pm_id]
    run = last_run(config)
    decision = next(e for e in run if e.type == "decision.made")
    assert decision.data["code"] == "worker_hung"
    assert decision.data["inputs"]["worker"] == {"pm_id": pm_id, "pid": before[pm_id], "evidence": evidence}
    assert decision.data["inputs"]["workers"]["total"] == WORKERS
    requested = next(e for e in run if e.type == "restart.requested")
    assert requested.data["command"] == ["pm2", "restart", str(pm_id)]
    assert (requested.data["pm_id"], requested.data["pid"]) == (pm_id, before[pm_id])
    assert "verification.passed" in [e.type for e in run]
    code, out = check(pm2, config)
    assert code == 0, out
    probes = [e.type for e in last_run(config) if e.type.startswith("probe.")]
    assert probes == ["probe.succeeded"] * (2 * WORKERS)
    assert app.pids() == after
    assert "process.restarted" not in [e.type for e in stored(config, "web")]  # ours, not PM2's own


@pytest.fixture
def cluster(pm2, tmp_path):
    app = pm2.start_app("web", instances=WORKERS)
    app.wait_until(lambda: len(app.pids()) == WORKERS and all(app.pids()), message="4 workers online")
    return app, write_config(tmp_path, pm2, app)


def test_all_workers_healthy_is_ok_and_probes_each_twice(pm2, cluster):
    app, config = cluster
    before = app.pids()
    code, out = check(pm2, config)
    assert code == 0 and out.startswith("web OK "), out
    run = last_run(config)
    assert [e.type for e in run if e.type.startswith("probe.")] == ["probe.succeeded"] * (2 * WORKERS)
    assert "restart.requested" not in [e.type for e in run]
    assert app.pids() == before


def test_one_stalled_worker_is_named_by_its_socket_and_restarted_alone(pm2, cluster):
    app, config = cluster
    before = app.pids()
    on_worker(app, "stall", before[2])
    assert_one_worker_restarted(pm2, app, config, before, 2, "socket")


def test_one_busy_worker_is_named_by_its_cpu_and_restarted_alone(pm2, cluster):
    app, config = cluster
    before = app.pids()
    on_worker(app, "hang", before[1])
    assert_one_worker_restarted(pm2, app, config, before, 1, "cpu")


def test_a_busy_worker_is_found_when_every_probe_of_the_check_answers(pm2, cluster):
    """Another client's request took the busy worker's last connection: the check's probes all
    answer (the master no longer hands it any), and its CPU alone names it."""
    app, config = cluster
    before = app.pids()
    on_worker(app, "hang", before[3])
    timed_out = 0
    for _ in range(2 * WORKERS):
        try:
            app.get(timeout=0.5)
        except httpx.TimeoutException:
            timed_out += 1
    assert timed_out == 1  # PM2 handed the busy worker exactly one more connection
    code, out = check(pm2, config)
    assert code == 1, out
    run = last_run(config)
    # Both bursts (the second confirms the pinned CPU over a longer window) answered in full.
    probes = [e.type for e in run if e.type.startswith("probe.") and e.data.get("phase") == "check"]
    assert probes == ["probe.succeeded"] * (2 * 2 * WORKERS)
    decision = next(e for e in run if e.type == "decision.made")
    assert decision.data["inputs"]["worker"] == {"pm_id": 3, "pid": before[3], "evidence": "cpu"}
    after = app.pids()
    assert after[3] != before[3] and after[:3] == before[:3]


def test_every_worker_hung_restarts_the_whole_app(pm2, cluster):
    app, config = cluster
    before = app.pids()
    for pid in before:
        on_worker(app, "hang", pid)
    code, out = check(pm2, config)
    assert code == 1, out
    assert out.startswith("web RECOVERED restarted after"), out
    run = last_run(config)
    requested = next(e for e in run if e.type == "restart.requested")
    assert requested.data["command"] == ["pm2", "restart", "web"]
    decision = next(e for e in run if e.type == "decision.made")
    assert decision.data["code"] == "hung"
    assert decision.data["inputs"]["workers"]["evidence"] == "none"
    assert not set(app.pids()) & set(before)
