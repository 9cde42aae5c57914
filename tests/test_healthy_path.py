"""A healthy check as cron runs it (a minute or more apart): pid files and /proc, no `pm2 jlist`
while nothing changed; the full sample on a pid change, a worker count change, a failure, or
once an hour. Fork and cluster mode alike.

The fast tests use test_check_flow's fakes with a PM2 of N workers that counts its jlist calls;
the last ones run a real PM2 in cluster mode with 4 workers, the wall clock moved between checks.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from recovery import config as cfg
from recovery.check import OK, CheckRun, HttpProber
from recovery.clock import SystemClock
from recovery.observations import Instance, ProcessView
from recovery.pm2 import Pm2, pidfile_view
from recovery.store import Recorder, Store
from tests.conftest import wait_until
from tests.test_check_flow import FakeApp, FakePm2, World


class FakeCluster(FakePm2):
    """PM2 with `n` workers of one app; `pm2_restart(k)` is PM2 restarting worker k on its own."""

    def __init__(self, app: FakeApp, n: int = 4) -> None:
        super().__init__(app)
        self.pids = [5000 + 10 * k for k in range(n)]
        self.counters = [3] * n  # restarts PM2 made before the watchdog came

    def pm2_restart(self, k: int) -> None:
        self.pids[k] += 1
        self.counters[k] += 1

    def _view(self, name: str, source: str) -> ProcessView:
        full = source == "jlist"
        return ProcessView(
            name,
            source,
            tuple(
                Instance(
                    name,
                    k,
                    pid,
                    "online",
                    memory=50 << 20,
                    restart_time=self.counters[k] if full else None,  # the cheap view has no counter
                    exec_mode="cluster_mode" if full else None,
                )
                for k, pid in enumerate(self.pids)
            ),
        )


def spaced(w: World, checks: int, gap: float = 61.0) -> None:
    """`checks` healthy checks, `gap` seconds apart, each one OK."""
    for _ in range(checks):
        w.clock.advance(gap)
        assert w.check().code == OK


def cluster_world(tmp_path: Path, n: int = 4) -> World:
    w = World(tmp_path)
    w.pm2 = FakeCluster(w.app, n)
    return w


# -- fork and cluster mode, with fakes --------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 4], ids=["fork", "cluster"])
def test_healthy_checks_a_minute_apart_make_no_jlist_call(tmp_path, workers):
    w = World(tmp_path) if workers == 1 else cluster_world(tmp_path, workers)
    assert w.check().code == OK and w.pm2.jlists == 1  # the first check has nothing to compare with
    spaced(w, 10)
    assert w.pm2.jlists == 1
    sources = [e.data["source"] for e in w.events("process.sampled")]
    assert sources == ["jlist"] + ["pidfile"] * 10  # each check still records its sample, with memory
    assert all(e.data["memory"] > 0 for e in w.events("process.sampled"))


def test_the_full_sample_is_taken_once_an_hour_when_nothing_changed(tmp_path):
    w = cluster_world(tmp_path)
    w.check()
    spaced(w, 59)  # 59 minutes and 59 s later: still within the hour
    assert w.pm2.jlists == 1
    spaced(w, 1)
    assert w.pm2.jlists == 2
    spaced(w, 5)
    assert w.pm2.jlists == 2


def test_a_worker_restarted_by_pm2_brings_the_full_sample_and_its_restart_is_recorded(tmp_path):
    w = cluster_world(tmp_path)
    w.check()
    spaced(w, 3, gap=10)  # watch's cadence: the pid of the first worker alone would not show it
    w.pm2.pm2_restart(2)
    w.clock.advance(10)
    assert w.check().code == OK
    assert w.pm2.jlists == 2
    (restarted,) = w.events("process.restarted")
    assert restarted.data["count"] == 1 and restarted.data["seen"] == "PM2 restart_time 12 -> 13"
    with Store.open(w.config.store.path) as store:
        assert store.conn.execute("SELECT sum(count) FROM restarts WHERE by = 'pm2'").fetchone()[0] == 1
    spaced(w, 3, gap=10)  # the new pids are the record's now: cheap again
    assert w.pm2.jlists == 2


def test_a_worker_more_or_less_brings_the_full_sample(tmp_path):
    w = cluster_world(tmp_path)
    w.check()
    spaced(w, 2)
    removed = w.pm2.pids.pop()  # `pm2 scale web 3`: its pid file is gone
    w.pm2.counters.pop()
    spaced(w, 1)
    assert w.pm2.jlists == 2
    w.pm2.pids.append(removed + 7)  # and back to 4
    w.pm2.counters.append(0)
    spaced(w, 1)
    assert w.pm2.jlists == 3
    assert w.events("process.restarted") == []  # a worker count change is not a restart


def test_a_clusters_cheap_samples_leave_pm2s_counter_unknown_not_zero(tmp_path):
    """Cheap samples in between once read as "0 restarts", and the next full sample then showed
    every restart PM2 had ever made as made since."""
    w = cluster_world(tmp_path)
    w.check()
    spaced(w, 61)  # an hour of cheap samples, then the hourly full one
    assert w.pm2.jlists == 2
    assert w.events("process.restarted") == []
    with Store.open(w.config.store.path) as store:
        assert store.conn.execute("SELECT count(*) FROM restarts WHERE by = 'pm2'").fetchone()[0] == 0


def test_a_failure_takes_the_full_sample_at_once(tmp_path):
    w = cluster_world(tmp_path)
    w.check()
    spaced(w, 2)
    w.app.state = "hung"
    w.clock.advance(61)
    w.check()
    assert w.pm2.jlists >= 2
    first_failure = next(e.seq for e in w.events("probe.failed"))
    after = [e for e in w.events("process.sampled") if e.seq > first_failure]
    assert after[0].data["source"] == "jlist" and "restart_time" in after[0].data["instances"][0]


# -- a real PM2 in cluster mode -------------------------------------------------------------


class CountingPm2(Pm2):
    """The real adapter, counting its `pm2 jlist` calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.jlists = 0

    def jlist(self) -> list[dict[str, Any]]:
        self.jlists += 1
        return super().jlist()


class MovedClock(SystemClock):
    """The real clock, its wall time moved forward by `advance` (durations and sleeps stay real)."""

    def __init__(self) -> None:
        self.offset = _dt.timedelta()

    def now(self) -> _dt.datetime:
        return super().now() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += _dt.timedelta(seconds=seconds)


class RealCluster:
    def __init__(self, sandbox: Any, tmp_path: Path, app: Any) -> None:
        text = f'[store]\npath = "{tmp_path / "recovery.db"}"\n[pm2]\nbin = "{sandbox.bin}"\n[logs]\nin_check = false\n'
        text += f'[[apps]]\nname = "{app.name}"\nurl = "{app.url}"\ntimeout = "2s"\nretries = 2\nretry_delay = "1s"\n'
        (tmp_path / "recovery.toml").write_text(text)
        self.config = cfg.load(tmp_path / "recovery.toml")
        self.pm2 = CountingPm2(sandbox.bin, sandbox.env)
        self.clock = MovedClock()
        self.home = sandbox.home
        self.name = app.name

    def check(self) -> int:
        run = CheckRun(
            self.config,
            pm2=self.pm2,
            prober=HttpProber(),
            recorder=Recorder(self.config.store.path, busy_timeout=1.0, now=self.clock.now),
            clock=self.clock,
        )
        return run.run().code

    def events(self, type_: str) -> list[Any]:
        with Store.open(self.config.store.path) as store:
            return store.query(app=self.name, types=[type_])


@pytest.mark.pm2
def test_a_real_cluster_of_4_is_checked_from_pid_files_until_pm2_restarts_a_worker(pm2, tmp_path):
    app = pm2.start_app("web", instances=4)
    c = RealCluster(pm2, tmp_path, app)
    assert c.check() == OK and c.pm2.jlists == 1
    for _ in range(3):  # cron's minute, without waiting for it
        c.clock.advance(61)
        assert c.check() == OK
    assert c.pm2.jlists == 1
    cheap = c.events("process.sampled")[-1].data
    assert cheap["source"] == "pidfile" and len(cheap["instances"]) == 4
    assert all(i["memory"] > 0 and "restart_time" not in i for i in cheap["instances"])

    old = sorted(cheap["pids"])
    victim = old[1]
    os.kill(victim, signal.SIGKILL)  # PM2 starts a new worker under the same pm_id
    view = wait_until(
        lambda: (
            (v := pidfile_view("web", c.home)) is not None
            and len(v.instances) == 4
            and victim not in [i.pid for i in v.instances]
            and v
        ),
        message="PM2 to restart the killed worker",
    )
    c.clock.advance(61)
    assert c.check() == OK
    assert c.pm2.jlists == 2
    sample = c.events("process.sampled")[-1].data
    assert sample["source"] == "jlist" and sorted(sample["pids"]) == sorted(i.pid for i in view.instances)
    (restarted,) = c.events("process.restarted")
    assert restarted.data["count"] == 1 and restarted.data["seen"] == "PM2 restart_time 0 -> 1"
    c.clock.advance(61)
    assert c.check() == OK and c.pm2.jlists == 2  # nothing changed since
    assert set(old) - {victim} <= set(c.events("process.sampled")[-1].data["pids"])


@pytest.mark.pm2
def test_the_cheap_view_of_a_real_cluster_has_every_worker(pm2):
    app = pm2.start_app("web", instances=4)
    view = pidfile_view("web", pm2.home)
    assert view is not None and view.source == "pidfile"
    assert [i.pm_id for i in view.instances] == [p["pm_id"] for p in app.processes()]
    assert [i.pid for i in view.instances] == app.pids()
    assert all(i.memory and i.restart_time is None and i.unstable_restarts is None for i in view.instances)


def test_no_store_means_no_jlist_on_the_healthy_path(tmp_path):
    """Unchanged: without a record to compare with, the cheap sample as before."""
    from recovery import telemetry

    view = ProcessView("web", "pidfile", (Instance("web", 0, 4242, "online"),))
    assert telemetry.full_sample_due(None, "web", view) is False
    assert telemetry.full_sample_due(None, "web", None) is True
