"""The memory-leak rule: a leak explains a hang only with a sign that memory caused it, and its
forecast is not optimistic. Hand-built histories (`HintInput`), plus real PM2 runs (a leak, then a stall or a busy loop)."""

from __future__ import annotations

import datetime as dt

import pytest

from recovery import hints
from recovery.units import format_ts

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MB = 1048576
LIMIT = 512 * MB


def at(t: float) -> str:
    return format_ts(T0 + dt.timedelta(seconds=t))


class Leaky:
    """A history: one uptime window after another, each growing from 60 MB, a check a minute."""

    def __init__(self) -> None:
        self.samples: list[hints.Sample] = []
        self.incidents: list[hints.Incident] = []
        self.pm2_restarts: list[hints.Pm2Restart] = []
        self.t = 0.0
        self.pid = 100

    def sample(self, memory: float, **data) -> hints.Sample:
        s = hints.Sample(
            len(self.samples) + 1, at(self.t), {"pid": self.pid, "memory": int(memory), "cpu": 1.0, **data}
        )
        self.samples.append(s)
        self.t += 60
        return s

    def climb(self, to_mb: float, steps: int = 10, **data) -> None:
        for k in range(steps):
            self.sample((60 + (to_mb - 60) * k / steps) * MB, **data)

    def hang(self, to_mb: float, cpu: float, **data) -> None:
        """A leaking window that ends in a hang at `to_mb` with `cpu`; we restart it (a new pid)."""
        self.climb(to_mb, **data)
        s = self.sample(to_mb * MB, cpu=cpu, cpu_demand=cpu, source="jlist", **data)
        self.incidents.append(hints.Incident(len(self.incidents) + 1, s.ts, "hung", s))
        self.pid += 1

    def pm2_memory_restart(self, to_mb: float) -> None:
        """A leaking window that PM2 ends at its memory limit."""
        self.climb(to_mb, max_memory_restart=LIMIT)
        self.pm2_restarts.append(hints.Pm2Restart(len(self.samples), at(self.t), cause="memory limit"))
        self.pid += 1

    def model(self) -> hints.HintInput:
        return hints.HintInput(
            "web",
            at(0),
            T0 + dt.timedelta(seconds=self.t),
            incidents=tuple(self.incidents),
            samples=tuple(self.samples),
            pm2_restarts=tuple(self.pm2_restarts),
        )

    def hints(self) -> list[hints.Hint]:
        return hints.evaluate(self.model())


def by_kind(found: list[hints.Hint]) -> dict[str, hints.Hint]:
    return {h.kind: h for h in found}


def flat_hang(cpu: float) -> hints.Hint:
    """The hint one hang with `cpu` gets with no leak at all: its normal confidence."""
    h = Leaky()
    for _ in range(10):
        h.sample(60 * MB)
    s = h.sample(60 * MB, cpu=cpu, cpu_demand=cpu, source="jlist")
    h.incidents.append(hints.Incident(1, s.ts, "hung", s))
    return h.hints()[0]


# -- a leak and a hang it did not cause ---------------------------------------------------------


def test_an_idle_stall_at_the_end_of_a_leak_far_below_the_limit_is_stalled_on_io():
    h = Leaky()
    h.hang(149, cpu=2.0, max_memory_restart=LIMIT)
    found = h.hints()
    top, kinds = found[0], by_kind(found)
    assert top.kind == "stalled_on_io" and top.confidence == flat_hang(2.0).confidence, found
    leak = kinds["memory_leak"]
    assert leak.confidence < top.confidence and leak.evidence["unexplained_incidents"] == [1]
    assert leak.evidence["incidents"] == [] and "cause_evidence" not in leak.evidence
    assert "a hang at the end of a climb (~149MB) showed no sign memory caused it" in leak.message


def test_a_busy_loop_at_the_end_of_a_leak_below_the_limit_is_a_blocked_event_loop_at_full_strength():
    h = Leaky()
    h.hang(169, cpu=99.0, max_memory_restart=LIMIT)
    found = h.hints()
    top = found[0]
    assert top.kind == "event_loop_blocked" and top.confidence == flat_hang(99.0).confidence, found
    assert "garbage collector" not in top.message
    assert by_kind(found)["memory_leak"].confidence < top.confidence


def test_a_busy_loop_at_the_end_of_a_leak_with_no_limit_known_is_a_blocked_event_loop():
    h = Leaky()
    h.hang(169, cpu=99.0)
    assert h.hints()[0].kind == "event_loop_blocked"


def test_idle_stalls_that_recur_at_one_level_while_leaking_are_still_stalled_on_io():
    """A stall that comes every ten minutes, a leak that starts over at each restart: one level by coincidence."""
    h = Leaky()
    h.hang(150, cpu=2.0)
    h.hang(152, cpu=3.0)
    found = h.hints()
    assert found[0].kind == "stalled_on_io" and by_kind(found)["memory_leak"].evidence["incidents"] == [], found


def test_a_heap_full_at_an_idle_stall_is_not_memory_pressure():
    h = Leaky()
    h.hang(149, cpu=2.0, heap_used=95 * MB, heap_total=100 * MB)
    assert h.hints()[0].kind == "stalled_on_io"


# -- a leak and the hangs it caused ---------------------------------------------------------------


def test_busy_hangs_at_about_the_same_level_twice_are_the_leak():
    h = Leaky()
    h.hang(400, cpu=99.0)
    h.hang(390, cpu=98.0)
    found = h.hints()
    top = found[0]
    assert top.kind == "memory_leak" and top.evidence["incidents"] == [1, 2], found
    assert top.evidence["cause_evidence"] == "near the level of other hangs"
    assert by_kind(found)["event_loop_blocked"].confidence < top.confidence


def test_a_hang_near_max_memory_restart_is_the_leak_even_with_the_cpu_idle():
    h = Leaky()
    h.hang(470, cpu=2.0, max_memory_restart=LIMIT)  # 92 % of the limit
    found = h.hints()
    top = found[0]
    assert top.kind == "memory_leak" and top.evidence["cause_evidence"] == "near max_memory_restart", found
    assert "stalled_on_io" not in by_kind(found)


def test_a_busy_hang_with_the_heap_full_is_the_leak():
    h = Leaky()
    h.hang(169, cpu=99.0, heap_used=97 * MB, heap_total=100 * MB)
    top = h.hints()[0]
    assert top.kind == "memory_leak" and top.evidence["cause_evidence"] == "GC pressure", top


def test_pm2_memory_restarts_make_the_leak_the_top_hint():
    h = Leaky()
    h.pm2_memory_restart(480)
    h.pm2_memory_restart(485)
    h.climb(200, max_memory_restart=LIMIT)
    top = h.hints()[0]
    assert top.kind == "memory_leak" and top.evidence["cause_evidence"] == "PM2 memory-limit restarts", top


def test_a_leak_that_explains_one_hang_leaves_another_to_its_own_rule():
    h = Leaky()
    h.hang(470, cpu=99.0, max_memory_restart=LIMIT)  # at the limit: memory
    h.hang(150, cpu=2.0, max_memory_restart=LIMIT)  # far below, idle: a stall
    kinds = by_kind(h.hints())
    assert kinds["memory_leak"].evidence["incidents"] == [1]
    assert kinds["memory_leak"].evidence["unexplained_incidents"] == [2]
    assert kinds["stalled_on_io"].evidence["incidents"] == [2]


# -- the forecast -----------------------------------------------------------------------------------


def leak_series(warm: int, flat_mb: float, rate_mb: float, jump_mb: float = 0.0) -> list[float]:
    """Memory per check (a minute apart): `warm` checks at `flat_mb` (after a jump of `jump_mb` at
    start-up), then `rate_mb` more per check until 512 MB."""
    out = [flat_mb - jump_mb] if jump_mb else []
    out += [flat_mb] * warm
    while out[-1] < 512:
        out.append(out[-1] + rate_mb)
    return out


@pytest.mark.parametrize(
    "series",
    [
        pytest.param(leak_series(10, 60, 8), id="a leak that begins after a flat warm-up"),
        pytest.param(leak_series(2, 90, 8, jump_mb=50), id="a jump at start-up then a steady leak"),
    ],
)
def test_the_forecast_is_not_optimistic(series):
    h = Leaky()
    for m in series:
        h.sample(m * MB, max_memory_restart=LIMIT)
    hit = at(60 * next(k for k, m in enumerate(series) if m * MB >= LIMIT))
    models = []
    for n in range(2, len(series)):
        part = Leaky()
        part.samples = h.samples[:n]
        part.t = 60 * (n - 1)
        models.append(part.model())
    scored = hints.forecast_errors(models, hit)
    assert len(scored) >= 10
    # never says the limit is further than it is (a minute's slack: the samples are a minute apart)
    assert all(forecast <= actual + 60 for _, forecast, actual in scored), scored
    # and is not useless the other way: within a third of the truth once the climb is well under way
    late = scored[len(scored) // 2 :]
    assert all(forecast >= 0.66 * actual - 60 for _, forecast, actual in late), late


def test_forecast_errors_gives_each_forecast_beside_the_time_left_and_skips_what_has_none():
    """10 MB a minute from 100 MB to a 512 MB limit: reached 41.2 minutes after the first sample."""
    h = Leaky()
    for k in range(8):
        h.sample((100 + 10 * k) * MB, max_memory_restart=LIMIT)
    whole = h.model()  # now: a minute after the 8th sample (170 MB)
    early = hints.HintInput("web", at(0), T0 + dt.timedelta(seconds=60), samples=tuple(h.samples[:2]))  # no leak yet
    hit = at(60 * 41.2)
    ((now, forecast, actual),) = hints.forecast_errors([early, whole], hit)
    # both counted from the last sample (7 min, 170 MB): 342 MB to go at 10 MB/min, not from `now`
    assert now == whole.until and whole.until > at(420) and actual == pytest.approx(60 * 41.2 - 420)
    assert forecast == pytest.approx(actual, abs=1)
    assert hints.forecast_errors([whole], at(400)) == []  # the limit came before `now`: nothing to score


# -- a real PM2 ---------------------------------------------------------------------------------


@pytest.mark.pm2
@pytest.mark.parametrize(("control", "kind"), [("stall", "stalled_on_io"), ("hang", "event_loop_blocked")])
def test_a_steady_leak_then_a_hang_of_its_own_under_a_real_pm2_is_that_hang(pm2, tmp_path, control, kind):
    from tests.test_check import write_config
    from tests.test_hints_scenarios import QUICK, check, checks, gone_bad
    from tests.test_hints_scenarios import hints as hints_of

    app = pm2.start_app("web", extra_args=("--max-memory-restart", "1G"))
    config = write_config(tmp_path, pm2, app, **QUICK)
    checks(pm2, config, 1)
    app.control("leak", mb=8)  # each answered request keeps 8 MB more: a steady climb, far below 1 GB
    checks(pm2, config, 16)  # back to back: many, so that one slow check does not bend the line
    app.control(control)  # an idle stall, or a busy loop
    gone_bad(app)
    assert check(pm2, config).apps[0].state == "RECOVERED"
    found = hints_of(config)
    print(f"leak then {control}:", found)
    assert found[0].kind == kind, found
    leak = by_kind(found)["memory_leak"]
    assert leak.confidence < found[0].confidence and leak.evidence["unexplained_incidents"], leak
