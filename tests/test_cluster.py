"""Cluster mode in milliseconds: a fake PM2 with 4 workers, a scripted burst of probes, a fake clock.

The store is a real SQLite file; the probe burst and the /proc attribution also run for real
against a loopback server at the end. tests/test_cluster_pm2.py runs the flow against PM2.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from recovery import policy, procnet
from recovery.check import CPU_MIN_WINDOW_S, OK, WARNING, CheckRun, HttpProber
from recovery.clock import FakeClock
from recovery.model import History
from recovery.observations import Attempt, ClusterSeen, Instance, Observations, ProcessView, Worker
from recovery.pm2 import CommandResult
from recovery.probe import probe_burst
from recovery.store import Recorder, Store

from .test_check_flow import URL, FakeApp, write_config
from .test_procnet import LITTLE, TCP, TCP6

PIDS = {1000: 0, 1001: 1, 1002: 2, 1003: 3}  # pid -> pm_id


class FakeCluster:
    """PM2 with one app of several workers: per-pid CPU, a restart of one worker that gives it a new pid."""

    def __init__(self, workers: dict[int, int] | None = None) -> None:
        self.pm_ids = dict(PIDS if workers is None else workers)
        self.cpu: dict[int, float] = {}
        self.worker_restarts: list[int] = []
        self.app_restarts: list[tuple[str, str]] = []
        self.cpu_reads = 0
        self.on_restart: Callable[[], None] = lambda: None

    def _view(self, name: str, source: str) -> ProcessView:
        mode = "cluster_mode" if len(self.pm_ids) > 1 else "fork_mode"
        insts = tuple(
            Instance(name, pm_id, pid, "online", memory=50 << 20, restart_time=0, exec_mode=mode)
            for pid, pm_id in sorted(self.pm_ids.items(), key=lambda w: w[1])
        )
        return ProcessView(name, source, insts)

    def view(self, name: str) -> ProcessView:
        return self._view(name, "jlist")

    def quick_view(self, name: str) -> ProcessView | None:
        return self._view(name, "pidfile")

    def restart(self, name: str, command: str = "restart") -> CommandResult:
        self.app_restarts.append((name, command))
        self.pm_ids = {pid + 100: pm_id for pid, pm_id in self.pm_ids.items()}
        self.cpu = {}
        self.on_restart()
        return CommandResult(["pm2", command, name], 0, "", "", 12.0)

    def restart_worker(self, pm_id: int) -> CommandResult:
        self.worker_restarts.append(pm_id)
        self.pm_ids = {pid + 100 if p == pm_id else pid: p for pid, p in self.pm_ids.items()}
        self.cpu = {}
        self.on_restart()
        return CommandResult(["pm2", "restart", str(pm_id)], 0, "", "", 12.0)

    def cpu_mark(self, name: str) -> Any:
        return "mark"

    def cpu_window(self, mark: Any) -> dict[str, Any]:
        return {}

    def workers(self, mark: Any) -> dict[int, int]:
        return dict(self.pm_ids)

    def cpu_by_pid(self, mark: Any) -> dict[int, float]:
        self.cpu_reads += 1
        return {pid: self.cpu.get(pid, 1.0) for pid in self.pm_ids}

    def daemon(self) -> Any:
        return None

    def resurrect(self) -> Any:
        raise AssertionError("no resurrect here")


class Burst(HttpProber):
    """Probes whose outcome is scripted per burst: `failing` of each burst time out (ports 5000+i)."""

    def __init__(self, app: FakeApp) -> None:
        super().__init__(httpx.MockTransport(app))
        self.failing: set[int] = set()  # indexes in the burst that time out
        self.bursts: list[int] = []
        self.released = 0

    def burst(self, app: Any, count: int, timeout: float | None = None) -> tuple[list[Attempt], Callable[[], None]]:
        self.bursts.append(count)
        out = [
            Attempt(False, i + 1, URL, 2000.0, error="timeout", local_port=5000 + i)
            if i in self.failing
            else Attempt(True, i + 1, URL, 3.0, status=200, local_port=5000 + i)
            for i in range(count)
        ]

        def release() -> None:
            self.released += 1

        return out, release


class Cluster:
    """One cluster-mode app, its PM2, its probes and who holds which probe's connection."""

    def __init__(self, tmp_path: Path, workers: dict[int, int] | None = None, **settings: str) -> None:
        self.config = write_config(tmp_path, retries="2", **settings)
        self.pm2 = FakeCluster(workers)
        self.prober = Burst(FakeApp())
        self.clock = FakeClock()
        self.holders: dict[int, int] = {}  # client port -> pid
        self.owner_reads: list[tuple[int, list[int], int]] = []  # (port, client ports, released so far)

    def owners(self, port: int, ports: list[int], pids: list[int]) -> dict[int, int]:
        self.owner_reads.append((port, ports, self.prober.released))
        return {p: pid for p, pid in self.holders.items() if p in ports and pid in pids}

    def check(self):
        run = CheckRun(
            self.config,
            pm2=self.pm2,
            prober=self.prober,
            recorder=Recorder(self.config.store.path, busy_timeout=1.0, now=self.clock.now),
            clock=self.clock,
            owners=self.owners,
        )
        return run.run()

    def events(self, *types: str) -> list[Any]:
        with Store.open(self.config.store.path) as store:
            return store.query(app="web", types=types or None)

    def decision(self) -> dict[str, Any]:
        return self.events("decision.made")[-1].data

    def stall(self, pid: int, *indexes: int) -> None:
        """Worker `pid` takes the probes at `indexes` of each burst and never answers them."""
        self.prober.failing = set(indexes)
        self.holders = {5000 + i: pid for i in indexes}

        def heal() -> None:
            if pid not in self.pm2.pm_ids:
                self.prober.failing, self.holders = set(), {}

        self.pm2.on_restart = heal


def test_a_healthy_cluster_probes_every_worker_twice_and_reads_no_socket(tmp_path):
    c = Cluster(tmp_path)
    result = c.check()
    assert result.code == OK and result.lines()[1].startswith("web OK ")
    assert c.prober.bursts == [8]
    assert [e.type for e in c.events("probe.succeeded", "probe.failed")] == ["probe.succeeded"] * 8
    assert c.owner_reads == []  # /proc/net/tcp is read only when something failed or a CPU is pinned
    assert c.decision()["inputs"]["workers"] == {"total": 4, "failed": []}
    assert c.prober.released == 1


def test_fork_mode_sends_no_burst_and_reads_no_cpu_per_pid(tmp_path):
    c = Cluster(tmp_path, workers={1000: 0})
    assert c.check().code == OK
    assert c.prober.bursts == [] and c.pm2.cpu_reads == 0 and c.owner_reads == []
    assert len(c.events("probe.succeeded")) == 1


def test_a_stalled_worker_named_by_its_socket_is_restarted_alone(tmp_path):
    c = Cluster(tmp_path)
    c.stall(1002, 2, 6)  # one probe in four, as PM2's round robin hands them out
    result = c.check()
    assert (result.code, result.apps[0].state) == (WARNING, "RECOVERED")
    assert result.apps[0].summary.startswith("worker 2 (pid 1002, socket evidence) hung, restarted alone")
    assert c.pm2.worker_restarts == [2] and c.pm2.app_restarts == []
    decision = c.decision()
    assert (decision["action"], decision["code"]) == ("restart", "worker_hung")
    assert decision["inputs"]["worker"] == {"pm_id": 2, "pid": 1002, "evidence": "socket"}
    workers = decision["inputs"]["workers"]
    assert (workers["total"], workers["failed"]) == (4, [2])
    # what each worker showed is recorded with the decision: its CPU and the probes it held
    assert workers["seen"][2] == {"pm_id": 2, "pid": 1002, "cpu_window": 1.0, "failed": 2}
    assert workers["seen"][0] == {"pm_id": 0, "pid": 1000, "cpu_window": 1.0}
    requested = c.events("restart.requested")[0].data
    assert requested["command"] == ["pm2", "restart", "2"] and (requested["pm_id"], requested["pid"]) == (2, 1002)
    assert c.events("restart.succeeded")[0].data["pm_id"] == 2
    assert c.events("verification.passed")[0].data["attempts"] == 8  # one burst, every probe answered
    # The sockets were read while the probes' connections were still held open.
    assert c.owner_reads[0] == (3000, list(range(5000, 5008)), 0)
    # Two bursts decided it: the second, spaced as fork mode spaces attempts, failed the same way.
    failed = c.events("probe.failed")
    assert [(e.data["burst"], e.data["local_port"]) for e in failed] == [(1, 5002), (1, 5006), (2, 5002), (2, 5006)]
    assert c.prober.bursts == [8, 8, 8]  # two in the check, one verifying


def test_a_failure_the_second_burst_does_not_repeat_restarts_nothing(tmp_path):
    """A worker that missed the timeout once (a long GC pause) answers the spaced second burst."""
    c = Cluster(tmp_path)
    c.stall(1002, 2)
    original = c.prober.burst

    def once(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        c.prober.failing = set()
        return out

    c.prober.burst = once  # type: ignore[method-assign]
    result = c.check()
    assert result.code == OK and c.pm2.worker_restarts == [] and c.pm2.app_restarts == []
    assert c.decision()["code"] == "healthy"
    assert len(c.events("probe.failed")) == 1 and c.prober.bursts == [8, 8]


def test_with_one_retry_a_single_burst_decides(tmp_path):
    c = Cluster(tmp_path)
    c.config = write_config(tmp_path, retries="1")
    c.stall(1002, 2, 6)
    assert c.check().code == WARNING
    assert c.pm2.worker_restarts == [2] and c.prober.bursts == [8, 8]  # the check's one, the verification's


def test_a_busy_worker_is_named_by_its_cpu_when_every_probe_answers(tmp_path):
    c = Cluster(tmp_path)
    c.pm2.cpu = {1001: 100.0}
    result = c.check()
    assert result.code == WARNING
    assert c.decision()["inputs"]["worker"] == {"pm_id": 1, "pid": 1001, "evidence": "cpu"}
    assert c.pm2.worker_restarts == [1]
    # A short burst's CPU reading is taken again over CPU_MIN_WINDOW_S before it names anyone.
    assert c.clock.slept[0] == pytest.approx(CPU_MIN_WINDOW_S)


def test_a_worker_busy_but_answering_probes_is_not_hung(tmp_path):
    c = Cluster(tmp_path)
    c.pm2.cpu = {1001: 100.0}
    c.holders = {5001: 1001}  # it holds an answered probe's connection: it serves, slowly or not
    assert c.check().code == OK
    assert c.pm2.worker_restarts == [] and c.decision()["code"] == "healthy"


def test_failures_no_worker_can_be_named_for_restart_the_whole_app_with_reload(tmp_path):
    c = Cluster(tmp_path, restart_command='"reload"')
    c.prober.failing = {3}  # its connection is in no worker: PM2's master kept it
    c.pm2.on_restart = lambda: c.prober.failing.clear()
    result = c.check()
    assert result.code == WARNING, result.lines()
    assert c.pm2.app_restarts == [("web", "reload")] and c.pm2.worker_restarts == []
    decision = c.decision()
    assert decision["code"] == "hung"
    workers = decision["inputs"]["workers"]
    assert (workers["total"], workers["failed"], workers["evidence"], workers["unattributed"]) == (4, [], "none", 1)
    assert "no worker could be named" in decision["reason"]


def test_every_probe_failing_restarts_the_whole_app(tmp_path):
    c = Cluster(tmp_path)
    c.prober.failing = set(range(8))
    c.pm2.on_restart = lambda: c.prober.failing.clear()
    assert c.check().code == WARNING
    assert c.pm2.app_restarts == [("web", "restart")] and c.pm2.worker_restarts == []
    assert c.decision()["code"] == "hung"
    assert c.decision()["inputs"]["workers"]["evidence"] == "none"


def test_a_worker_still_hung_after_its_restart_is_not_restarted_again_in_its_grace(tmp_path):
    c = Cluster(tmp_path)
    c.stall(1002, 2, 6)
    c.pm2.on_restart = lambda: None  # the new worker stalls too
    first = c.check()
    assert first.apps[0].state == "CRITICAL" and c.pm2.worker_restarts == [2]
    c.clock.advance(5)
    c.holders = {5002: 1102, 5006: 1102}
    c.check()
    assert c.pm2.worker_restarts == [2]  # loop protection is per app, as for whole-app restarts
    assert c.decision()["code"] == "warming_up"


def test_the_policy_prefers_socket_evidence_to_cpu():
    cluster = ClusterSeen((Worker(0, 10, 100.0), Worker(1, 11, 2.0, failed=2), Worker(2, 12, 1.0, answered=2)))
    assert policy.hung_workers(cluster) == ([cluster.workers[1]], "socket")
    assert policy.hung_workers(ClusterSeen((Worker(0, 10, 100.0, answered=1),))) == ([], "none")


def test_the_policy_leaves_a_cluster_pm2_is_moving_to_the_fork_rules(tmp_path):
    app = write_config(tmp_path).apps[0]
    attempts = (Attempt(True, 1, URL, 3.0, status=200), Attempt(False, 2, URL, 2000.0, error="timeout"))
    view = ProcessView("web", "jlist", (Instance("web", 0, 10, "launching"), Instance("web", 1, 11, "launching")))
    seen = ClusterSeen((Worker(0, 10, failed=1), Worker(1, 11)))
    observed = Observations(attempts, view, cluster=seen)
    now = FakeClock().now()
    assert policy.worker_hung(observed, History(), app, now, {}) is None


@pytest.mark.skipif(not LITTLE, reason="the sample text is a little-endian host's")
def test_connection_owners_joins_the_server_side_socket_to_the_worker_holding_it(tmp_path):
    proc = tmp_path
    (proc / "net").mkdir()
    (proc / "net" / "tcp").write_text(TCP)
    (proc / "net" / "tcp6").write_text(TCP6)
    for pid, links in ((100, ["socket:[5001]"]), (101, ["socket:[5003]"])):
        (proc / str(pid) / "fd").mkdir(parents=True)
        for n, link in enumerate(links):
            os.symlink(link, proc / str(pid) / "fd" / str(n))
    # row 2: local 127.0.0.1:3001, remote 127.0.0.1:54000, inode 5003, held by pid 101
    assert procnet.connection_owners(3001, [54000, 40000], [100, 101], proc) == {54000: 101}
    assert procnet.connection_owners(3002, [54000], [100, 101], proc) == {}  # another port: not ours


class Silent:
    """A loopback server that accepts connections, reads the request and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def closed_by_client(self) -> list[bool]:
        out = []
        for conn in self.conns:
            conn.settimeout(0.5)
            try:
                while True:
                    data = conn.recv(4096)
                    if not data:
                        out.append(True)
                        break
            except TimeoutError:
                out.append(False)
        return out

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


def test_a_burst_keeps_timed_out_connections_open_until_released_so_proc_names_their_holder():
    server = Silent()
    try:
        url = f"http://127.0.0.1:{server.port}/"
        attempts, release = probe_burst(url, 3, lambda s: s < 400, timeout=0.3)
        assert [a.error for a in attempts] == ["timeout"] * 3
        ports = [a.local_port for a in attempts]
        assert all(ports) and len(set(ports)) == 3  # a fresh connection each
        me = os.getpid()  # the server runs in this process: it holds the server side
        assert procnet.connection_owners(server.port, ports, [me]) == dict.fromkeys(ports, me)
        assert server.closed_by_client() == [False] * 3
        release()
        assert server.closed_by_client() == [True] * 3
    finally:
        server.close()


def test_cpu_by_pid_tells_a_busy_loop_from_an_idle_worker(tmp_path):
    """Two real processes named by PM2-style pid files: the spinning one reads pinned, the idle one not."""
    import subprocess
    import sys

    from recovery.pm2 import cpu_by_pid, cpu_mark

    from .conftest import wait_until

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], stdout=subprocess.PIPE
    )
    try:
        assert idle.stdout is not None and idle.stdout.readline() == b"up\n"  # done starting: idle from now on
        (tmp_path / "pids").mkdir()
        (tmp_path / "pids" / "web-0.pid").write_text(str(idle.pid))
        (tmp_path / "pids" / "web-3.pid").write_text(str(busy.pid))
        mark = cpu_mark("web", tmp_path)
        assert mark is not None and mark.pm_ids == {idle.pid: 0, busy.pid: 3}
        wait_until(lambda: cpu_by_pid(mark).get(busy.pid, 0) >= policy.CPU_PINNED, 10, 0.1, "the loop reads pinned")
        assert cpu_by_pid(mark)[idle.pid] < policy.CPU_PINNED
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()
