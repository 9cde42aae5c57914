"""The issue's done-when, against a real PM2 and the demo server, with the default probe settings:
a busy-loop hang counts as down from its first failed probe, and p50 latency is a real value."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.test_check import recovery

pytestmark = pytest.mark.pm2


def config_for(tmp_path: Path, pm2, app) -> Path:
    """The defaults: 3 probes of 10 s, 5 s apart; only the store, PM2 and the app are named."""
    path = tmp_path / "recovery.toml"
    path.write_text(
        f'[store]\npath = "data/recovery.db"\n\n[pm2]\nbin = "{pm2.bin}"\n\n[logs]\nin_check = false\n\n'
        f'[[apps]]\nname = "{app.name}"\nurl = "{app.url}"\n'
    )
    return path


def report(pm2, config: Path) -> dict:
    out = recovery(pm2, "report", "--config", str(config), "--since", "1h", "--json")
    assert out.returncode in (0, 1, 2), out.stdout + out.stderr
    return json.loads(out.stdout)["apps"]["web"]


def test_a_busy_loop_hang_is_down_from_its_first_failed_probe(pm2, tmp_path):
    app = pm2.start_app("web")
    config = config_for(tmp_path, pm2, app)
    first = recovery(pm2, "check", "--config", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    app.control("hang")  # a busy loop: PM2 still says online
    app.wait_until(lambda: not app.answers(timeout=0.5), message="the app to hang")
    caught = recovery(pm2, "check", "--config", str(config))
    assert caught.returncode == 1 and "RECOVERED" in caught.stdout, caught.stdout + caught.stderr
    again = recovery(pm2, "check", "--config", str(config))
    assert again.returncode == 0, again.stdout + again.stderr
    web = report(pm2, config)
    (inc,) = web["incidents"]
    print(
        f"\nhang: duration_s {inc['duration_s']}, unobserved_s {inc['unobserved_s']}, mttr_s {web['mttr_s']},"
        f" availability {web['availability_percent']}% (worst {web['availability_worst_percent']}%)"
    )
    assert inc["duration_s"] >= 25 and inc["outcome"] == "restarted"
    assert inc["started_at"] < inc["detected_at"] < inc["ended_at"]
    assert web["mttr_s"] >= 25
    assert web["availability_percent"] < 100
    assert web["availability_worst_percent"] <= web["availability_percent"]


def test_p50_latency_is_within_5_percent_of_what_a_client_measures(pm2, tmp_path):
    app = pm2.start_app("web")
    app.control("slow", ms=300)
    config = config_for(tmp_path, pm2, app)
    truth = []
    with httpx.Client(timeout=5) as client:  # made once: its set-up is not the app's latency
        for _ in range(7):
            for _ in range(2):  # the client's view, interleaved with the checks': a new connection each time
                started = time.perf_counter()
                assert client.get(app.url, headers={"Connection": "close"}).status_code == 200
                truth.append((time.perf_counter() - started) * 1000)
            done = recovery(pm2, "check", "--config", str(config))
            assert done.returncode in (0, 1), done.stdout + done.stderr
    web = report(pm2, config)
    real = statistics.median(truth)
    p50 = web["latency_ms"]["p50"]
    print(f"\nslow app: p50 {p50} ms, client median {real:.1f} ms over {len(truth)} requests, probes {web['probes']}")
    assert web["probes"] >= 7
    assert abs(p50 - real) <= 0.05 * real
