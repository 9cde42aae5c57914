"""Root-cause hints on hand-built histories: each rule, and histories that must not trigger it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from recovery import hints, projections
from recovery.errors import StoreError
from recovery.events import Event
from recovery.logs.ingestion import ingest
from recovery.store import Store

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
MB = 1048576
HANG = "hung: PM2 says online but 2 failed probes (timeout)"
ERRORED = "errored: PM2 gave up restarting it (crash loop), 2 failed probes (refused)"


class History:
    """Check runs at chosen seconds after T0, as `recovery check` records them."""

    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.store = store
        self.runs = 0
        self.pid = 1000
        self.restart_time = 0
        self.log = tmp_path / "web-error.log"

    def at(self, t: float) -> str:
        return projections.format_ts(T0 + dt.timedelta(seconds=t))

    def run(self, t: float, *events: tuple[str, str | None, dict]) -> None:
        self.runs += 1
        rid = f"run{self.runs}"
        rows = [Event("check.started", None, rid, {"trigger": "cron"}, ts=self.at(t))]
        rows += [
            Event(type_, app, rid, data, ts=self.at(t + 0.01 * (i + 1))) for i, (type_, app, data) in enumerate(events)
        ]
        rows.append(Event("check.finished", None, rid, {}, ts=self.at(t + 0.01 * (len(events) + 1))))
        self.store.append(rows)

    def sample(self, **data) -> dict:
        return {"source": "pidfile", "status": "online", "known": True, "pid": self.pid, **data}

    def healthy(self, t: float, memory: int = 60 * MB, ms: float = 20.0, **sample) -> None:
        self.run(
            t,
            ("probe.succeeded", "web", {"phase": "check", "attempt": 1, "status": 200, "latency_ms": ms}),
            ("process.sampled", "web", self.sample(memory=memory, cpu=1.0, **sample)),
            ("decision.made", "web", {"action": "none", "reason": "healthy", "state": "healthy"}),
        )

    def hang(self, t: float, cpu: float, memory: int = 60 * MB, **sample) -> None:
        """A hang seen by the check, restarted and verified: the next samples have a new pid."""
        self.restarted(
            t,
            HANG,
            "timeout",
            self.sample(
                source="jlist", memory=memory, cpu=cpu, cpu_demand=cpu, restart_time=self.restart_time, **sample
            ),
        )

    def errored(self, t: float) -> None:
        self.restarted(
            t,
            ERRORED,
            "refused",
            {"source": "jlist", "status": "errored", "known": True, "restart_time": self.restart_time, "exit_code": 1},
        )

    def restarted(self, t: float, reason: str, error: str, sample: dict) -> None:
        self.run(
            t,
            ("probe.failed", "web", {"phase": "check", "attempt": 1, "error": error, "latency_ms": 2000}),
            ("process.sampled", "web", sample),
            ("decision.made", "web", {"action": "restart", "reason": reason, "state": "recovering"}),
            ("restart.requested", "web", {"by": "check", "reason": reason}),
            ("restart.succeeded", "web", {"exit_code": 0}),
            ("verification.passed", "web", {"attempts": 1, "seconds": 0.5}),
        )
        self.pid += 1
        self.restart_time += 1

    def pm2_restarted(self, t: float, n: int = 1, cause: str = "crash", **evidence) -> None:
        """A full sample showing PM2 restarted the app `n` times on its own, and the event the check adds."""
        self.restart_time += n
        self.pid += 1
        self.run(
            t,
            ("probe.succeeded", "web", {"phase": "check", "attempt": 1, "status": 200, "latency_ms": 20}),
            ("process.sampled", "web", self.sample(source="jlist", memory=60 * MB, restart_time=self.restart_time)),
            ("process.restarted", "web", {"count": n, "cause": cause, "evidence": evidence}),
            ("decision.made", "web", {"action": "none", "reason": "healthy", "state": "healthy"}),
        )

    def logs(self, t: float, *lines: str) -> None:
        """PM2 error-log lines written at `t` and ingested then."""
        with self.log.open("a") as f:
            f.write("".join(line + "\n" for line in lines))
        ingest(self.store, "web", [(self.log, "err")], now=T0 + dt.timedelta(seconds=t))

    def hints(self, now: float, since: float | None = None) -> list:
        projections.fold(self.store.conn)
        model = projections.hint_input(
            self.store.conn, "web", T0 + dt.timedelta(seconds=now), self.at(since) if since is not None else None
        )
        return hints.evaluate(model)


@pytest.fixture
def h(tmp_path):
    store = Store.open(tmp_path / "recovery.db")
    yield History(store, tmp_path)
    store.close()


def kinds(hints) -> list[str]:
    return [x.kind for x in hints]


def db_error(port: int = 5432) -> list[str]:
    return [
        f"Error: connect ECONNREFUSED 127.0.0.1:{port}",
        "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {",
        "  errno: -111,",
        "  code: 'ECONNREFUSED',",
        "}",
    ]


# -- nothing to say --------------------------------------------------------------------------


def test_a_healthy_history_gives_no_hint(h):
    for k in range(60):
        h.healthy(60 * k, memory=(60 + (k % 5)) * MB)  # a little noise, no trend
    assert h.hints(3600) == []


def test_a_slow_but_alive_history_gives_no_hint(h):
    for k in range(60):
        h.healthy(60 * k, ms=1800.0)
    assert h.hints(3600) == []


# -- memory leak -----------------------------------------------------------------------------


def leak_then_hang(h, start: float, at_mb: int = 400, cpu: float = 99.0) -> None:
    for k in range(10):  # 60 MB growing 30 MB a check, a check a minute
        h.healthy(start + 60 * k, memory=(60 + 30 * k) * MB + (k % 2) * MB)
    h.hang(start + 600, cpu=cpu, memory=at_mb * MB)


def test_memory_growing_until_hangs_at_the_same_level_is_a_leak_that_outranks_the_pinned_cpu(h):
    leak_then_hang(h, 0)
    leak_then_hang(h, 1000, at_mb=390)
    hints = h.hints(2000)
    top = hints[0]
    assert top.kind == "memory_leak" and top.confidence >= 0.8, hints
    assert "hung at ~400MB 2 times" in top.message and "MB/min" in top.message
    assert len(top.evidence["incidents"]) == 2 and top.evidence["hang_level_bytes"] == 390 * MB
    blocked = next(x for x in hints if x.kind == "event_loop_blocked")
    assert blocked.confidence < top.confidence and "garbage collector" in blocked.message


def test_a_leak_in_the_current_uptime_is_forecast_to_max_memory_restart(h):
    for k in range(8):
        h.healthy(60 * k, memory=(100 + 10 * k) * MB, max_memory_restart=512 * MB)
    (top,) = h.hints(600)
    assert top.kind == "memory_leak" and top.confidence < 0.5  # nothing has broken yet
    assert "reaches max_memory_restart 512MB in" in top.message and top.evidence["forecast_s"] > 0


def test_memory_that_rises_and_falls_with_garbage_collection_is_not_a_leak(h):
    for k in range(40):
        h.healthy(60 * k, memory=(80 + 40 * (k % 4)) * MB)  # a sawtooth: no steady growth
    h.hang(2400, cpu=3.0, memory=100 * MB)
    assert "memory_leak" not in kinds(h.hints(2500))


def test_a_small_warm_up_growth_is_not_a_leak(h):
    for k in range(10):
        h.healthy(60 * k, memory=(60 + k) * MB)  # 9 MB over the window: under the floor
    assert h.hints(700) == []


# -- hangs: CPU pinned or idle -------------------------------------------------------------------


def test_hangs_with_the_cpu_pinned_mean_a_blocked_event_loop(h):
    for k in range(3):
        h.healthy(600 * k)
        h.hang(600 * k + 60, cpu=98.5)
    top = h.hints(2000)[0]
    assert top.kind == "event_loop_blocked" and top.confidence >= 0.85
    assert (
        "3 of 3 hangs had the CPU pinned (98% over the probe window)" in top.message
        and len(top.evidence["sample_seqs"]) == 3
    )


def test_hangs_with_an_idle_cpu_are_stalled_on_io_not_a_blocked_loop(h):
    for k in range(2):
        h.healthy(600 * k)
        h.hang(600 * k + 60, cpu=0.5)
    hints = h.hints(2000)
    assert kinds(hints) == ["stalled_on_io"]
    assert "2 of 2 hangs with the CPU idle" in hints[0].message and "database" not in hints[0].message


def test_a_hang_whose_cpu_was_in_between_gives_no_cpu_hint(h):
    h.healthy(0)
    h.hang(60, cpu=45.0)
    assert not {"event_loop_blocked", "stalled_on_io"} & set(kinds(h.hints(200)))


# -- database trouble ------------------------------------------------------------------------


def db_errors_then_hangs(h, cpu: float) -> list:
    """Database errors two minutes before each of two hangs, an hour apart, with the CPU at `cpu`."""
    h.logs(0, "Error: something unrelated happened")
    for k in range(2):
        t = 3600 * (k + 1)
        h.healthy(t - 300)
        h.logs(t - 120, *db_error() * 3)
        h.hang(t, cpu=cpu)
    return h.hints(4 * 3600, since=0)


def test_database_errors_just_before_stalls_are_database_trouble(h):
    hints = db_errors_then_hangs(h, cpu=0.0)
    assert kinds(hints)[:2] == ["database_trouble", "stalled_on_io"], hints
    db = hints[0]
    assert "before 2 of 2 incidents" in db.message and "ECONNREFUSED" in db.message and db.confidence >= 0.9
    assert db.evidence["templates"] and "database errors came before 2 of them" in hints[1].message


def test_database_errors_before_a_busy_loop_are_context_not_the_cause(h):
    # Prisma errors, then the CPU pinned at 100 %: the loop is the app's own work.
    found = db_errors_then_hangs(h, cpu=100.0)
    assert kinds(found)[0] == "event_loop_blocked", found
    db = next(x for x in found if x.kind == "database_trouble")
    assert db.confidence < found[0].confidence and "context, not the cause" in db.message
    assert db.evidence["pinned"] == db.evidence["incidents"]


def test_database_errors_at_an_even_rate_all_day_are_not_blamed(h):
    for k in range(48):  # the same error every half hour, whether or not anything breaks
        h.logs(1800 * k + 10, *db_error())
    h.healthy(20 * 3600)
    h.hang(20 * 3600 + 60, cpu=0.0)
    assert "database_trouble" not in kinds(h.hints(86400, since=0))


def test_other_errors_before_an_incident_are_not_database_trouble(h):
    h.healthy(0)
    h.logs(3000, "TypeError: Cannot read properties of undefined (reading 'id')")
    h.hang(3600, cpu=0.0)
    assert "database_trouble" not in kinds(h.hints(4000, since=0))


# -- crash loop ------------------------------------------------------------------------------


def test_pm2_restarting_it_again_and_again_with_errors_is_a_crash_loop_naming_the_top_error(h):
    h.healthy(0, source="jlist", restart_time=0)
    h.logs(50, "Error: Cannot find module './config.json'", "Error: Cannot find module './config.json'")
    h.pm2_restarted(60, n=3, exit_code=1)
    h.errored(120)
    top = h.hints(300, since=0)[0]
    assert top.kind == "crash_loop" and top.confidence >= 0.85
    assert "PM2 restarted it 3 times on its own and gave up (errored) once; exit code 1" in top.message
    assert "Cannot find module" in top.message and top.evidence["templates"]


def test_one_restart_by_pm2_is_not_a_loop(h):
    h.healthy(0, source="jlist", restart_time=0)
    h.pm2_restarted(60, n=1)
    assert "crash_loop" not in kinds(h.hints(300, since=0))


def test_pm2_restarts_at_the_memory_limit_are_not_a_crash_loop(h):
    h.healthy(0, source="jlist", restart_time=0)
    for k in range(3):
        h.pm2_restarted(600 * (k + 1), cause="memory limit", memory=500 * MB, max_memory_restart=512 * MB)
    assert "crash_loop" not in kinds(h.hints(3000, since=0))


# -- schedule --------------------------------------------------------------------------------


def test_incidents_clustered_at_one_hour_of_the_night_name_the_hour(h):
    for day in range(6):
        t = 86400 * day
        h.healthy(t + 3 * 3600)
        h.hang(t + 3 * 3600 + 630, cpu=45.0)  # 03:10 UTC (its first failed probe), every night
    h.hang(86400 * 2 + 14 * 3600, cpu=45.0)
    hint = next(x for x in h.hints(86400 * 7, since=0) if x.kind == "schedule")
    assert "6 of 7 incidents, on 6 different days, began at 03:10 UTC" in hint.message
    assert hint.evidence["hours_utc"] == [3] and hint.evidence["days"] == 6


def test_nightly_incidents_either_side_of_the_hour_are_one_schedule(h):
    # Six nights, 02:56 to 03:04: a clock-hour bucket split them 3 and 3 and saw nothing.
    for day, minute in enumerate((176, 184, 177, 183, 178, 182)):
        t = 86400 * day
        h.healthy(t + 2 * 3600)
        h.hang(t + minute * 60 + 30, cpu=45.0)  # the first failed probe in that minute
    hint = next(x for x in h.hints(86400 * 7, since=0) if x.kind == "schedule")
    assert "6 of 6 incidents, on 6 different days, began between 02:56 and 03:04 UTC" in hint.message
    assert hint.evidence["hours_utc"] == [2, 3]


def test_nightly_incidents_across_midnight_are_one_schedule(h):
    for day, minute in enumerate((1430, 5, 1435, 10)):  # 23:50, 00:05, 23:55, 00:10
        h.hang(86400 * day + minute * 60 + 30, cpu=45.0)
    hint = next(x for x in h.hints(86400 * 5, since=0) if x.kind == "schedule")
    assert "between 23:50 and 00:10 UTC" in hint.message and hint.evidence["hours_utc"] == [23, 0]


def test_three_stalls_within_minutes_on_one_day_are_no_schedule(h):
    # Three incidents in 8 minutes: one day, so no pattern, however close they are.
    h.healthy(0)
    for k in range(3):
        h.hang(3 * 3600 + 240 * k, cpu=2.0)
    assert "schedule" not in kinds(h.hints(86400, since=0))


def test_incidents_spread_over_the_day_have_no_schedule(h):
    for k in range(8):
        h.hang(3 * 3600 * k + 60, cpu=45.0)
    assert "schedule" not in kinds(h.hints(86400, since=0))


def test_incidents_right_after_deploys_point_at_the_deploy(h):
    for k in range(3):
        t = 86400 * k + 3600 * (2 + 5 * k)  # different hours each day
        h.store.append([Event("maintenance.ended", "web", "op", {"reason": "deploy done", "by": "ops"}, ts=h.at(t))])
        h.hang(t + 300, cpu=45.0)
    hint = next(x for x in h.hints(86400 * 4, since=0) if x.kind == "schedule")
    assert "3 of 3 incidents began within 30m00s after a maintenance window ended" in hint.message


# -- restarts treat a symptom ------------------------------------------------------------------


WEEK = 7 * 86400


def test_restarts_rising_week_over_week_say_restarting_treats_a_symptom(h):
    for week, n in enumerate([0, 1, 3, 6]):
        for k in range(n):
            h.hang(WEEK * week + 3600 * (k + 1) + 7 * k * 600, cpu=45.0)
    hint = next(x for x in h.hints(4 * WEEK - 60) if x.kind == "restarts_treat_symptom")
    assert hint.evidence["restarts_per_week"] == [0, 1, 3, 6] and "0, 1, 3, 6" in hint.message


def test_steady_restarts_are_not_rising(h):
    for week in range(4):
        for k in range(3):
            h.hang(WEEK * week + 3600 * (k + 1) + 7 * k * 600, cpu=45.0)
    assert "restarts_treat_symptom" not in kinds(h.hints(4 * WEEK - 60))


def test_hints_read_a_store_without_log_tables_or_incidents(tmp_path):
    with Store.open(tmp_path / "recovery.db") as store:
        projections.fold(store.conn)
        assert hints.evaluate(projections.hint_input(store.conn, "web", dt.datetime.now(UTC))) == []


def test_hints_carry_kind_message_confidence_and_evidence_as_json(h):
    for k in range(2):
        h.healthy(600 * k)
        h.hang(600 * k + 60, cpu=99.0)
    d = h.hints(2000)[0].to_dict()
    assert set(d) == {"kind", "message", "confidence", "evidence"} and 0 <= d["confidence"] <= 1


# -- the rules on a history held in memory (no store) --------------------------------------------

NOW = T0 + dt.timedelta(days=1)


def at(t: float) -> str:
    return projections.format_ts(T0 + dt.timedelta(seconds=t))


def in_memory(**parts) -> hints.HintInput:
    return hints.HintInput("web", at(0), NOW, **parts)


def hang(iid: int, t: float, cpu: float, code: str = "hung") -> hints.Incident:
    """An incident opened at `t` by a decision with `code`, its check's sample showing `cpu`."""
    return hints.Incident(iid, at(t), code, hints.Sample(100 * iid, at(t - 1), {"pid": iid, "cpu": cpu}))


def test_an_empty_history_in_memory_gives_no_hint():
    assert hints.evaluate(in_memory()) == [] and hints.strongest(in_memory()) is None


def test_hangs_with_the_cpu_pinned_read_from_a_model_in_memory_are_a_blocked_event_loop():
    (top,) = hints.evaluate(in_memory(incidents=(hang(1, 600, 99.0), hang(2, 7200, 97.0))))
    assert top.kind == "event_loop_blocked" and "2 of 2 hangs had the CPU pinned (99%, PM2's figure)" in top.message
    assert top.evidence["sample_seqs"] == [100, 200]


def test_the_rules_read_the_decision_code_not_its_reason_text():
    errored = hints.Incident(1, at(600), "errored", hints.Sample(100, at(599), {"pid": 1, "cpu": 99.0}))
    assert "event_loop_blocked" not in kinds(hints.evaluate(in_memory(incidents=(errored,))))


def test_an_idle_hang_after_database_errors_is_stalled_on_io_naming_them():
    db = hints.TemplateBeforeIncidents("t1", "Error: connect ECONNREFUSED <*>:5432", None, 1, 0.5, 2.0, (1,))
    model = in_memory(incidents=(hang(1, 600, 0.5),), before_incidents=hints.ErrorsBeforeIncidents((1,), (db,)))
    (top,) = hints.evaluate(model)
    assert top.kind == "stalled_on_io" and "database errors came before 1 of them" in top.message


def test_database_errors_far_above_their_usual_rate_before_incidents_are_database_trouble():
    db = hints.TemplateBeforeIncidents("t1", "too many connections", None, 6, 0.2, 30.0, (1, 2))
    model = in_memory(before_incidents=hints.ErrorsBeforeIncidents((1, 2), (db,)))
    (top,) = hints.evaluate(model)
    assert top.kind == "database_trouble" and "before 2 of 2 incidents" in top.message and "30x" in top.message


def test_the_crash_loop_counts_errors_from_ten_minutes_before_pm2_first_restarted_it():
    restarts = (hints.Restart(10, at(3600), "pm2", 2), hints.Restart(11, at(4000), "pm2", 1))
    assert hints.crash_errors_from(in_memory(restarts=restarts)) == at(3000)
    assert hints.crash_errors_from(in_memory(restarts=restarts[:1])) is None  # 2 restarts: no loop


def test_a_crash_loop_in_memory_names_the_error_template_of_the_crashes():
    model = in_memory(
        restarts=(hints.Restart(10, at(3600), "pm2", 3),),
        pm2_restarts=(hints.Pm2Restart(11, at(3600), 3, "crash", exit_code=1, template_id="b2"),),
        crash_errors=(hints.TemplateCount("a1", "Warning: slow", 9), hints.TemplateCount("b2", "Error: boom", 3)),
    )
    (top,) = hints.evaluate(model)
    assert top.kind == "crash_loop" and "exit code 1" in top.message and "“Error: boom” (3x" in top.message


def test_a_leak_in_memory_is_forecast_to_reach_max_memory_restart():
    samples = tuple(
        hints.Sample(k, at(60 * k), {"pid": 7, "memory": (100 + 10 * k) * MB, "max_memory_restart": 512 * MB})
        for k in range(8)
    )
    (top,) = hints.evaluate(in_memory(samples=samples))
    assert top.kind == "memory_leak" and "reaches max_memory_restart 512MB in" in top.message


def test_incidents_right_after_deploys_in_memory_point_at_the_deploy():
    deploys = tuple(hints.Deploy(k, at(86400 * k / 4)) for k in range(3))
    incidents = tuple(hang(k + 1, 86400 * k / 4 + 300, 45.0) for k in range(3))
    (top,) = hints.evaluate(in_memory(incidents=incidents, deploys=deploys))
    assert top.kind == "schedule" and top.evidence["maintenance_seqs"] == [0, 1, 2]


def test_restarts_rising_week_over_week_in_memory_treat_a_symptom():
    week = 7 * 86400
    start = NOW - dt.timedelta(weeks=4)
    restarts = tuple(
        hints.Restart(
            100 * w + k, projections.format_ts(start + dt.timedelta(seconds=w * week + 3600 * (k + 1))), "check"
        )
        for w, n in enumerate([0, 1, 3, 6])
        for k in range(n)
    )
    (top,) = hints.evaluate(in_memory(restarts=restarts))
    assert top.kind == "restarts_treat_symptom" and top.evidence["restarts_per_week"] == [0, 1, 3, 6]


def test_old_decisions_without_a_code_get_one_from_their_reason():
    assert projections.decision_code({"reason": HANG}) == "hung"
    assert projections.decision_code({"reason": ERRORED}) == "errored"
    assert projections.decision_code(None, "restart loop: 3 restarts in 30m") == "suspended"
    assert projections.decision_code({"code": "stalled", "reason": HANG}) == "stalled"


def test_a_hint_input_from_the_store_carries_the_code_and_sample_of_the_opening_decision(h):
    h.healthy(0)
    h.hang(60, cpu=98.5)
    projections.fold(h.store.conn)
    (inc,) = projections.hint_input(h.store.conn, "web", T0 + dt.timedelta(seconds=120)).incidents
    assert inc.code == "hung" and inc.cpu == 98.5 and inc.sample is not None


def test_a_store_without_the_restarts_projection_is_a_store_error_naming_it(h):
    h.healthy(0)
    projections.fold(h.store.conn)
    h.store.conn.execute("DROP TABLE restarts")
    with pytest.raises(StoreError, match=f"cannot read the event store {h.store.path}: no such table: restarts"):
        projections.hint_input(h.store.conn, "web", T0 + dt.timedelta(seconds=60))


# -- hints do no I/O --------------------------------------------------------------------------------

IO_MODULES = {"sqlite3", "socket", "subprocess", "httpx", "os", "pathlib", "shutil", "urllib", "http", "apprise"}


PACKAGE = Path(projections.__file__).parent


def imports_of(module: str) -> set[str]:
    """Every module `module` (recovery.x.y) imports, at the top or inside a function, relative ones resolved."""
    import ast

    path = PACKAGE.joinpath(*module.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            if node.module is None:  # from . import x
                out |= {f"{base}.{a.name}" for a in node.names}
            else:
                out.add(f"{base}.{node.module}" if base else node.module)
    return out


def imported_by(module: str) -> set[str]:
    """The recovery modules `module` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for imported in imports_of(todo.pop()):
            if imported.startswith("recovery") and imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def test_hints_import_nothing_that_does_io_not_even_inside_a_function():
    modules = {"recovery.hints"} | imported_by("recovery.hints")
    assert modules == {"recovery.hints", "recovery.stats", "recovery.units"}
    for module in modules:
        for imported in imports_of(module):
            assert imported.partition(".")[0] not in IO_MODULES, f"{module} imports {imported}"


@pytest.mark.parametrize(
    "port, db", [(5432, True), (5436, True), (6432, True), (3306, True), (3000, False), (5440, False)]
)
def test_a_refused_connection_is_a_database_error_by_its_port(port, db):
    """PostgreSQL listens on 5432, and Debian gives each further cluster the next port (5433, ...)."""
    assert bool(hints.DB_ERRORS.search(f"Error: connect ECONNREFUSED 127.0.0.1:{port}")) is db
