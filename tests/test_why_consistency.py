"""`recovery why` and the hints tell one story: the CPU figure beside a hang in the timeline is the
one the hint judged by, and the hint's evidence holds only what supports its claim (issue 16 point 6)."""

from __future__ import annotations

import datetime as dt

import pytest

from recovery import projections
from recovery.render import facts, timeline_text
from recovery.report import why
from recovery.store import Store
from tests.test_hints import HANG, MB, T0, History


@pytest.fixture
def hist(tmp_path):
    store = Store.open(tmp_path / "recovery.db")
    yield History(store, tmp_path)
    store.close()


def busy_loop_hang(h: History, t: float) -> None:
    """A busy-loop hang as a real check samples it: PM2's own CPU figure lags (32 %), the event
    loop's demand over the probe window reads 100 %, and PM2's loop-delay metric is the last value the
    app reported before it blocked (2 ms)."""
    h.healthy(t - 60)
    h.restarted(
        t,
        HANG,
        "timeout",
        h.sample(
            source="jlist",
            memory=80 * MB,
            cpu=32.0,
            cpu_window=97.0,
            cpu_demand=100.0,
            cpu_window_s=3.1,
            loop_delay_ms=2.1,
            restart_time=h.restart_time,
        ),
    )


def test_the_timeline_shows_the_cpu_the_hint_judged_by(hist):
    busy_loop_hang(hist, 600)
    projections.fold(hist.store.conn)
    timeline = why(hist.store, "web", now=T0 + dt.timedelta(seconds=700))
    assert timeline is not None
    top = timeline.hints[0]
    assert top["kind"] == "event_loop_blocked" and "CPU pinned (100% over the probe window)" in top["message"]
    sampled = [s for s in timeline.steps if s.type == "process.sampled" and s.data.get("cpu_demand")]
    said = facts("process.sampled", sampled[0].data)
    assert "cpu 100% over the probe window (3.1s), PM2 said 32%" in said
    assert "cpu 100% over the probe window" in timeline_text(timeline)


def test_a_blocked_loop_hint_does_not_quote_pm2s_stale_loop_delay(hist):
    busy_loop_hang(hist, 600)
    top = hist.hints(700)[0]
    assert top.kind == "event_loop_blocked"
    assert top.evidence["cpu"] == [100.0]
    assert "loop_delay_ms" not in top.evidence


def test_a_sample_without_a_probe_window_says_the_cpu_is_pm2s():
    assert facts("process.sampled", {"status": "online", "pid": 7, "cpu": 12.0}) == "online, pid 7, cpu 12% (PM2)"
