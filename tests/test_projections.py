"""Projections: folded from events, incrementally, and identical after a rebuild."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from recovery import projections
from recovery.events import Event
from recovery.projections import History, format_ts, history
from recovery.store import Store

T0 = dt.datetime(2026, 11, 1, 2, 0, 0, tzinfo=dt.UTC)


class Timeline:
    """Writes realistic check runs at chosen times."""

    def __init__(self, store: Store, t0: dt.datetime = T0) -> None:
        self.store = store
        self.t0 = t0
        self.n = 0
        self._restarts: dict[str, int] = {}  # PM2's restart_time per app, as samples report it

    def at(self, seconds: float) -> str:
        return format_ts(self.t0 + dt.timedelta(seconds=seconds))

    def run(self, t: float, *events: tuple[str, str | None, dict]) -> None:
        self.n += 1
        rid = f"run{self.n}"
        rows = [Event("check.started", None, rid, {"trigger": "cron"}, ts=self.at(t))]
        for i, (type_, app, data) in enumerate(events):
            rows.append(Event(type_, app, rid, data, ts=self.at(t + 0.1 * (i + 1))))
        rows.append(Event("check.finished", None, rid, {}, ts=self.at(t + 0.1 * (len(events) + 1))))
        self.store.append(rows)

    def healthy(self, t: float, app: str = "web", ms: float = 20.0) -> None:
        self.run(
            t,
            ("probe.succeeded", app, {"phase": "check", "latency_ms": ms, "attempt": 1}),
            ("decision.made", app, {"action": "none", "reason": "healthy", "state": "healthy"}),
        )

    def hang_recovered(self, t: float, app: str = "web", by: str = "check") -> None:
        reason = "hung: PM2 says online but 2 failed probes (timeout)"
        self.run(
            t,
            ("probe.failed", app, {"phase": "check", "error": "timeout", "latency_ms": 2000}),
            (
                "process.sampled",
                app,
                {"source": "jlist", "status": "online", "restart_time": self.restarts(app), "known": True},
            ),
            ("decision.made", app, {"action": "restart", "reason": reason, "state": "recovering"}),
            ("restart.requested", app, {"by": by, "reason": reason}),
            ("restart.succeeded", app, {"exit_code": 0}),
            ("probe.succeeded", app, {"phase": "verify", "latency_ms": 5}),
            ("verification.passed", app, {"attempts": 1, "seconds": 0.5}),
        )
        self._restarts[app] = self.restarts(app) + 1

    def restarts(self, app: str) -> int:
        return self._restarts.get(app, 0)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "recovery.db")
    yield s
    s.close()


def rows(store: Store, table: str) -> list[tuple]:
    return store.conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


def snapshot(store: Store) -> dict[str, list[tuple]]:
    return {t: rows(store, t) for t in projections.TABLES}


def test_a_hang_becomes_one_incident_with_its_restart_and_evidence(store):
    tl = Timeline(store)
    tl.healthy(0)
    tl.hang_recovered(60)
    tl.healthy(120)
    projections.fold(store.conn)
    (inc,) = store.conn.execute(
        "SELECT app, restarts, outcome, duration_s, ended_at, evidence FROM incidents"
    ).fetchall()
    assert inc[:3] == ("web", 1, "restarted")
    assert inc[3] == 2.6 and inc[4] is not None  # from the failed probe's sending (2 s before it was recorded)
    assert len(json.loads(inc[5])) >= 3
    state = store.conn.execute("SELECT state, open_incident FROM app_state").fetchone()
    assert state == ("healthy", None)


def test_restarts_record_who_made_them_including_pm2_on_its_own(store):
    tl = Timeline(store)
    tl.hang_recovered(0)
    tl.hang_recovered(600, by="operator")
    # PM2 restarted the app twice on its own: restart_time jumps by 2 more than our restarts explain.
    tl._restarts["web"] += 2
    tl.run(
        900,
        (
            "process.sampled",
            "web",
            {"source": "jlist", "status": "online", "restart_time": tl.restarts("web"), "known": True},
        ),
        ("decision.made", "web", {"action": "none", "reason": "healthy", "state": "healthy"}),
    )
    projections.fold(store.conn)
    by = dict(store.conn.execute("SELECT by, sum(count) FROM restarts GROUP BY by").fetchall())
    assert by == {"check": 1, "operator": 1, "pm2": 2}


def test_availability_time_is_counted_between_checks(store):
    tl = Timeline(store)
    tl.healthy(0)
    tl.healthy(60)
    tl.run(
        120,
        ("probe.failed", "web", {"phase": "check", "error": "timeout"}),
        ("decision.made", "web", {"action": "escalate", "reason": "x", "state": "down"}),
    )
    tl.healthy(180)
    projections.fold(store.conn)
    up, down, unobserved = store.conn.execute(
        "SELECT sum(up_s), sum(down_s), sum(unobserved_s) FROM rollup_hour"
    ).fetchone()
    # up from the first check to the second; unobserved from there to the failed probe; down after it
    assert round(up) == 60 and round(down) == 60 and round(unobserved) == 60


def test_folding_in_pieces_equals_folding_at_once(store, tmp_path):
    tl = Timeline(store)
    for i in range(5):
        tl.healthy(i * 60)
        projections.fold(store.conn)
    tl.hang_recovered(400)
    projections.fold(store.conn, batch=3)
    tl.healthy(500)
    projections.fold(store.conn)
    pieces = snapshot(store)
    projections.rebuild(store.conn)
    assert snapshot(store) == pieces


def test_rebuild_gives_identical_answers(store):
    tl = Timeline(store)
    tl.healthy(0)
    tl.hang_recovered(60)
    store.append([Event("maintenance.started", "web", "op", {"until": tl.at(900), "reason": "deploy"}, ts=tl.at(100))])
    tl.healthy(120, ms=300)
    tl.hang_recovered(3700, app="api")
    projections.fold(store.conn)
    before = snapshot(store)
    assert projections.rebuild(store.conn) == store.last_seq()
    assert snapshot(store) == before


def test_history_counts_only_automatic_restarts_inside_the_window(store):
    tl = Timeline(store)
    tl.hang_recovered(0)
    tl.hang_recovered(2000, by="operator")
    tl.hang_recovered(2100)
    projections.fold(store.conn)
    now = T0 + dt.timedelta(seconds=2200)
    h = history(store.conn, "web", now, window=1800)
    assert len(h.recent_restarts) == 1 and h.last_restart_at.startswith(tl.at(2100)[:19])


def test_a_lifted_suspension_restarts_the_count(store):
    tl = Timeline(store)
    tl.hang_recovered(0)
    tl.run(100, ("decision.made", "web", {"action": "suppress", "reason": "restart loop", "state": "suspended"}))
    store.append([Event("suspension.lifted", "web", "op", {"reason": "fixed"}, ts=tl.at(200))])
    projections.fold(store.conn)
    h = history(store.conn, "web", T0 + dt.timedelta(seconds=300), window=1800)
    assert h.suspended_at is None and h.recent_restarts == ()


def test_an_app_never_seen_has_an_empty_history(store):
    projections.fold(store.conn)
    assert history(store.conn, "web", T0, 1800) == History()


def test_stale_projections_from_another_version_are_rebuilt(store, monkeypatch):
    tl = Timeline(store)
    tl.hang_recovered(0)
    projections.fold(store.conn)
    before = snapshot(store)
    store.conn.execute("UPDATE projection_meta SET version = -1")
    projections.fold(store.conn)
    assert snapshot(store) == before


def test_a_new_pid_that_none_of_our_restarts_explains_is_pm2s_own_restart(store):
    tl = Timeline(store)
    cheap = {"source": "pidfile", "status": "online", "known": True}
    tl.run(0, ("process.sampled", "web", {**cheap, "pid": 100}))
    tl.hang_recovered(60)  # ours: the next new pid is explained
    tl.run(120, ("process.sampled", "web", {**cheap, "pid": 200}))
    tl.run(180, ("process.sampled", "web", {**cheap, "pid": 300}))  # PM2's own
    # The full sample then shows restart_time grown by both: counted once each, not twice.
    tl._restarts["web"] += 1
    tl.run(
        240,
        (
            "process.sampled",
            "web",
            {"source": "jlist", "status": "online", "pid": 300, "known": True, "restart_time": tl.restarts("web")},
        ),
    )
    projections.fold(store.conn)
    by = dict(store.conn.execute("SELECT by, sum(count) FROM restarts GROUP BY by").fetchall())
    assert by == {"check": 1, "pm2": 1}


def test_our_restart_is_not_mistaken_for_pm2s_when_runs_fold_separately(store):
    tl = Timeline(store)
    tl.hang_recovered(0)
    projections.fold(store.conn)  # the restart's run is folded on its own...
    tl._restarts["web"] += 0
    tl.run(
        60,
        (
            "process.sampled",
            "web",
            {"source": "jlist", "status": "online", "known": True, "restart_time": tl.restarts("web")},
        ),
    )
    projections.fold(store.conn)  # ...and the sample that shows restart_time grown comes later
    assert store.conn.execute("SELECT count(*) FROM restarts WHERE by = 'pm2'").fetchone()[0] == 0
