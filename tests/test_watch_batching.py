"""`recovery watch` records a steady healthy app a minute at a time, losing no probe (issue 15, point 9).

Fakes for PM2 and the app, a fake clock, a real SQLite store: each step is a whole `CheckRun`
recorded through the watch's `Batcher`, as `recovery watch` runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import httpx
from recovery_cli.main import app as cli
from typer.testing import CliRunner

from recovery import hints, projections
from recovery.batching import Batcher, expand
from recovery.check import OK, WARNING, CheckRun, HttpProber
from recovery.config import check_file, load
from recovery.events import Event, parse_ts
from recovery.observations import Attempt, Instance, ProcessView
from recovery.replay import replay_store
from recovery.report import build_report
from recovery.status import status
from recovery.store import Recorder, Store
from recovery.watch import run_watch
from tests.test_check_flow import URL, World

INTERVAL = 2.0


class ScriptedProber:
    """The app's answers with chosen latencies (ms), one per attempt: what a real server cannot give cheaply."""

    def __init__(self, world: World, latencies: list[float]) -> None:
        self.world = world
        self.latencies = latencies
        self.made: list[float] = []
        self.real = HttpProber(httpx.MockTransport(world.app))

    def attempt(self, app: Any, n: int, timeout: float | None = None) -> Attempt:
        if self.world.app.state != "healthy":
            return self.real.attempt(app, n, timeout)
        ms = self.latencies[len(self.made) % len(self.latencies)]
        self.made.append(ms)
        return Attempt(True, n, app.url, ms, status=200)

    def burst(self, app: Any, count: int, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Watch:
    """A World checked as `recovery watch` checks it: every INTERVAL seconds, through one Batcher."""

    def __init__(self, tmp_path: Path, latencies: list[float] | None = None, **settings: str) -> None:
        self.w = World(tmp_path, **settings)
        self.path = self.w.config.store.path
        self.batcher = Batcher(self.path, busy_timeout=1.0)
        self.prober = ScriptedProber(self.w, latencies or [12.5])

    def step(self) -> Any:
        run = CheckRun(
            self.w.config,
            pm2=self.w.pm2,
            prober=self.prober,
            recorder=self.batcher.recorder(now=self.w.clock.now),
            clock=self.w.clock,
            trigger="watch",
            deliver=False,
        )
        result = run.run()
        self.w.clock.advance(INTERVAL)
        return result

    def steps(self, n: int) -> None:
        for _ in range(n):
            assert self.step().code == OK

    def stop(self) -> None:
        self.batcher.close(now=self.w.clock.now)

    def events(self, *types: str) -> list[Event]:
        with Store.open(self.path) as store:
            return store.query(types=types or None)

    def probes_in_report(self) -> int:
        with Store.open(self.path) as store:
            projections.fold(store.conn)
            since = projections.format_ts(self.w.clock.start - dt.timedelta(hours=1))
            report = build_report(store, ["web"], since, now=self.w.clock.now())
        return report.apps[0].probes


def batched_probes(events: list[Event]) -> int:
    return sum(len(e.data["at_ms"]) for e in events if e.type == "probe.batched")


def assert_in_order(events: list[Event]) -> None:
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    stamps = [e.ts for e in events]
    assert stamps == sorted(stamps), "event timestamps go back"


def test_a_steady_app_is_written_as_one_batch_a_minute(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(150)  # five minutes at 2 s
    watch.stop()
    events = watch.events()
    types = [e.type for e in events if e.type != "host.sampled"]  # the host's, once a minute
    # The first step is written whole; then nothing per step, one batch per minute.
    assert types[:5] == ["check.started", "probe.succeeded", "process.sampled", "decision.made", "check.finished"]
    assert types.count("decision.made") == 1 and types.count("check.started") == 1
    batches = [e for e in events if e.type == "probe.batched"]
    assert 5 <= len(batches) <= 6
    assert all(b.data["at_ms"][-1] <= 60_000 for b in batches)
    assert 1 + batched_probes(events) == 150
    assert_in_order(events)
    assert len(types) <= 11  # against 750 (5 per step) before


def test_the_report_counts_every_probe_of_a_watch(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(97)
    watch.stop()
    assert len(watch.prober.made) == 97
    assert watch.probes_in_report() == 97


def test_every_probe_latency_and_time_is_retrievable(tmp_path):
    latencies = [10.0, 11.5, 250.3, 9.9, 42.0, 13.1, 7.7]
    watch = Watch(tmp_path, latencies)
    watch.steps(70)
    watch.stop()
    probes = [p for e in watch.events() for p in expand(e) if p.type == "probe.succeeded"]
    assert [p.data["latency_ms"] for p in probes] == watch.prober.made
    times = [parse_ts(p.ts) for p in probes]
    gaps = {round((b - a).total_seconds(), 3) for a, b in zip(times, times[1:])}
    assert gaps == {INTERVAL}  # each probe at its own time, 2 s apart


def test_a_failure_mid_batch_writes_the_batch_then_the_failure_at_once(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(20)
    watch.w.app.state = "hung"
    assert watch.step().code == WARNING  # restarted, verified
    events = watch.events()  # no stop: all of it is written by the failing step itself
    types = [e.type for e in events]
    first_failure = types.index("probe.failed")
    assert types[first_failure - 2 : first_failure] == ["probe.batched", "check.started"]
    assert 1 + batched_probes(events) == 20
    assert {"restart.requested", "verification.passed", "decision.made"} <= set(types[first_failure:])
    assert_in_order(events)
    # The steps after it are written whole until a decision is healthy again, then batched again.
    watch.steps(40)
    watch.stop()
    assert watch.probes_in_report() == 20 + 3 + 40  # the verification's probe is not a check's
    assert_in_order(watch.events())


def test_another_apps_failure_writes_the_whole_step_of_both(tmp_path):
    watch = Watch(tmp_path)
    text = watch.w.config.source.read_text()
    watch.w.config.source.write_text(text + text[text.index("[[apps]]") :].replace('"web"', '"api"', 1))
    watch.w.config = load(watch.w.config.source)
    failing: set[str] = set()
    scripted = watch.prober.attempt

    def attempt(app: Any, n: int, timeout: float | None = None) -> Attempt:
        if app.name in failing:
            return Attempt(False, n, app.url, 1000.0, error="timeout")
        return scripted(app, n, timeout)

    watch.prober.attempt = attempt  # type: ignore[method-assign]
    watch.steps(10)
    failing.add("api")
    watch.w.pm2.heals = False
    watch.step()
    events = watch.events()
    last_step = [e for e in events if e.run_id == events[-1].run_id]
    web = [e.type for e in last_step if e.app == "web"]
    assert web == ["probe.succeeded", "process.sampled", "decision.made"]  # written whole, api's trouble
    batches = [e for e in events if e.type == "probe.batched"]
    assert {e.app for e in batches} == {"web", "api"} and all(e.seq < last_step[0].seq for e in batches)
    assert all(len(e.data["at_ms"]) == 9 for e in batches)
    assert_in_order(events)


def test_a_killed_watch_loses_at_most_the_open_batch(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(100)  # no stop(): SIGKILL
    with Store.open(watch.path) as store:
        projections.fold(store.conn)
        events = store.query()
    kept = 1 + batched_probes(events)
    assert 100 - kept <= 31  # a minute of 2 s probes
    assert kept >= 100 - 31


def test_a_new_pid_is_written_at_once(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(10)
    watch.w.pm2.pid += 1  # PM2 restarted it on its own between two steps
    watch.w.pm2.restart_time += 1
    watch.steps(1)
    events = watch.events()
    types = [e.type for e in events]
    assert "process.restarted" in types
    assert types.index("probe.batched") < types.index("process.restarted")
    assert types.count("decision.made") == 2
    assert_in_order(events)


def test_a_log_line_ingested_mid_step_writes_what_the_step_held_first(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(5)
    rec = watch.batcher.recorder(now=watch.w.clock.now)
    rec.emit("check.started", None, "r1", trigger="watch", apps=["web"], dry_run=False)
    rec.emit("probe.succeeded", "web", "r1", url="u", attempt=1, latency_ms=3.0, status=200, phase="check")
    assert rec.store is not None
    data = {"entries": 2, "lines": 9, "files": []}
    ingested = Event("log.ingested", "web", "r1", data, ts=projections.format_ts(watch.w.clock.now()))
    rec.store.append([ingested])  # what the check's log ingestion does
    rec.close()
    types = [e.type for e in watch.events()][-4:]
    assert types == ["probe.batched", "check.started", "probe.succeeded", "log.ingested"]


def test_stdout_read_past_mid_step_leaves_the_step_steady(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(5)
    rec = watch.batcher.recorder(now=watch.w.clock.now)
    rec.emit("check.started", None, "r2", trigger="watch", apps=["web"], dry_run=False)
    rec.emit("probe.succeeded", "web", "r2", url=URL, attempt=1, latency_ms=3.0, status=200, phase="check")
    rec.emit("process.sampled", "web", "r2", source="pidfile", status="online", known=True, pid=4242)
    rec.emit("decision.made", "web", "r2", action="none", code="healthy", reason="healthy", state="healthy", inputs={})
    assert rec.store is not None
    data = {"entries": 0, "lines": 40, "files": [], "warnings": []}  # access lines on stdout, nothing kept
    rec.store.append([Event("log.ingested", "web", "r2", data, ts=projections.format_ts(watch.w.clock.now()))])
    rec.emit("check.finished", None, "r2", outcome="OK", code=0, duration_ms=1.0, apps={"web": "OK"}, problems=[])
    rec.close()
    watch.stop()
    events = watch.events()
    assert "r2" not in {e.run_id for e in events if e.type != "log.ingested"}  # the step stayed steady
    assert [e.type for e in events][-3:] == ["probe.batched", "log.ingested", "probe.batched"]
    assert 1 + batched_probes(events) == 6
    assert_in_order(events)


def test_a_step_that_failed_midway_is_written_by_the_next_one(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(3)
    rec = watch.batcher.recorder(now=watch.w.clock.now)
    rec.emit("check.started", None, "r1", trigger="watch", apps=["web"], dry_run=False)
    # ... an exception ends the step: its recorder is never closed.
    watch.steps(1)
    assert [e.run_id for e in watch.events("check.started")][1] == "r1"


def test_a_memory_sample_is_still_written_every_few_minutes(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(600)  # 20 minutes
    watch.stop()
    samples = watch.events("process.sampled")
    assert 4 <= len(samples) <= 6  # the first step's, then one every 5 minutes
    assert 4 <= len(watch.events("host.sampled")) <= 6  # the host's too
    assert_in_order(watch.events())


def test_run_watch_writes_the_open_batch_at_the_stop(tmp_path):
    watch = Watch(tmp_path)
    stop = threading.Event()
    steps = []

    def on_result(result: Any) -> None:
        steps.append(result.code)
        if len(steps) == 12:
            stop.set()

    class Step:
        def run(self) -> Any:
            return watch.step()

    run_watch(
        watch.w.config,
        interval=INTERVAL,
        stop=stop,
        on_result=on_result,
        clock=watch.w.clock.monotonic,
        make_check=lambda c: Step(),
        batcher=watch.batcher,
    )
    events = watch.events()
    assert 1 + batched_probes(events) == 12
    assert events[-1].type == "probe.batched"


def test_status_does_not_call_a_watched_healthy_app_stale(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(200)
    config = watch.w.config
    with Store.open(watch.path) as store:
        now = watch.w.clock.now()
        # The last batch was written up to a minute ago; its probes are 2 s apart.
        (row,) = status(store, config, now=now)
        assert row.stale is False and row.check_interval_s == INTERVAL
        (late,) = status(store, config, now=now + dt.timedelta(minutes=5))
        assert late.stale is True


def test_replay_decides_again_at_each_batched_probe(tmp_path):
    watch = Watch(tmp_path, [20.0] * 29 + [1500.0])
    watch.steps(90)
    watch.stop()
    apps = watch.w.config.apps
    with Store.open(watch.path) as store:
        projections.fold(store.conn)
        same = replay_store(store, apps, {}, None).apps[0]
        faster = replay_store(store, apps, {"timeout": 1.0}, None).apps[0]
    assert same.decisions == 90 and not same.changed
    assert faster.decisions == 90
    assert faster.replayed.failed_probes >= 3 and faster.changed  # each 1.5 s answer is a timeout now


def test_replay_reads_batches_not_folded_yet(tmp_path):
    watch = Watch(tmp_path, [20.0] * 29 + [1500.0])
    watch.steps(90)
    watch.stop()
    apps = watch.w.config.apps
    with Store.open(watch.path) as store:
        faster = replay_store(store, apps, {"timeout": 1.0}, None).apps[0]  # nothing folded
    assert faster.decisions == 90 and faster.replayed.failed_probes >= 3


def test_events_shows_a_batch_as_one_line_or_expanded(tmp_path):
    watch = Watch(tmp_path, [10.0, 20.0, 30.0])
    watch.steps(31)
    watch.stop()
    args = ["events", "--config", str(tmp_path / "recovery.toml"), "--type", "probe.batched"]
    short = CliRunner().invoke(cli, args)
    assert short.exit_code == 0, short.output
    (line,) = short.output.splitlines()
    assert "probes=30" in line and "10/20/30" in line
    expanded = CliRunner().invoke(cli, [*args, "--expand"])
    assert expanded.exit_code == 0, expanded.output
    lines = expanded.output.splitlines()
    assert len(lines) == 30 and all("probe.succeeded" in x for x in lines)
    as_json = CliRunner().invoke(cli, [*args, "--expand", "--json"])
    rows = [json.loads(x) for x in as_json.output.splitlines()]
    assert [r["data"]["latency_ms"] for r in rows] == watch.prober.made[1:]
    assert len({r["ts"] for r in rows}) == 30
    # Asked for probe.succeeded, expanded: the written one and the batched ones, in order.
    every = CliRunner().invoke(cli, [*args[:-1], "probe.succeeded", "--expand", "--json"])
    rows = [json.loads(x) for x in every.output.splitlines()]
    assert [r["data"]["latency_ms"] for r in rows] == watch.prober.made


def test_a_cron_check_still_writes_every_event(tmp_path):
    w = World(tmp_path)
    for _ in range(3):
        run = CheckRun(
            w.config,
            pm2=w.pm2,
            prober=HttpProber(httpx.MockTransport(w.app)),
            recorder=Recorder(w.config.store.path, busy_timeout=1.0, now=w.clock.now),
            clock=w.clock,
            trigger="cron",
        )
        run.run()
        w.clock.advance(60)
    assert [e.type for e in w.events()].count("decision.made") == 3


def test_the_batch_span_is_configured_and_0s_turns_batching_off(tmp_path):
    path = tmp_path / "recovery.toml"
    body = '\n[[apps]]\nname = "web"\nurl = "http://127.0.0.1:3000/"\n'
    path.write_text('[watch]\nbatch = "0s"\n' + body)
    assert load(path).watch.batch == 0.0
    path.write_text('[watch]\nbatch = "-5s"\n' + body)
    config, problems = check_file(path)
    assert config is None and [(p.line, p.key) for p in problems] == [(2, "watch.batch")]


def test_a_leak_under_a_steady_watch_is_still_forecast(tmp_path):
    watch = Watch(tmp_path)
    pm2 = watch.w.pm2
    grown = {"mb": 50}

    def view(name: str, source: str) -> ProcessView:
        grown["mb"] += 1  # a leak: 1 MB more at each sample
        inst = Instance(name, 0, pm2.pid, pm2.status, memory=grown["mb"] << 20, restart_time=pm2.restart_time)
        return ProcessView(name, source, (inst,))

    pm2._view = view  # type: ignore[method-assign]
    watch.steps(900)  # 30 minutes
    watch.stop()
    assert len(watch.events("decision.made")) == 1  # steady all along: memory is no change of state
    with Store.open(watch.path) as store:
        projections.fold(store.conn)
        model = projections.hint_input(store.conn, "web", watch.w.clock.now())
    assert len(model.samples) >= 5
    assert hints.memory_leak(model, hints._leak(model)) is not None


def test_an_open_batch_goes_to_the_spool_with_the_store_and_comes_back_whole(tmp_path):
    watch = Watch(tmp_path)
    watch.steps(20)  # a batch open
    aside = watch.path.with_name("aside.db")
    watch.path.rename(aside)
    watch.path.write_bytes(b"not a database" * 100)
    for _ in range(10):
        watch.step()  # UNKNOWN: the open batch, then each step whole, to the spool
    assert not watch.batcher.open
    watch.path.unlink()
    aside.rename(watch.path)
    watch.steps(20)  # the first of these appends the spool; then batches again
    watch.stop()
    assert watch.probes_in_report() == 50
    assert_in_order(watch.events())
