"""`probe.batched`: a watch's steady healthy minute folds like the checks it stands for."""

from __future__ import annotations

from recovery import projections
from recovery.events import Event
from recovery.sketch import Sketch
from recovery.store import Store
from tests.test_projections import Timeline


def test_batch_counts_each_probe_and_its_time_as_up(tmp_path):
    store = Store.open(tmp_path / "r.db")
    tl = Timeline(store)
    tl.healthy(0)
    start = tl.at(2)
    batch = {"url": "http://127.0.0.1:1/", "phase": "check", "start": start, "status": 200}
    batch |= {"at_ms": [i * 2000 for i in range(30)], "latency_ms": [10.0 + i for i in range(30)]}
    store.append([Event("probe.batched", "web", None, batch, ts=tl.at(61))])
    projections.fold(store.conn)
    probes, up_s, n = store.conn.execute(
        "SELECT sum(probes), sum(up_s), latency FROM rollup_hour WHERE app = 'web'"
    ).fetchone()
    assert probes == 31 and Sketch.from_json(n).count == 31
    assert abs(up_s - 60.0) < 0.5  # from the check at 0 s (+0.1) to the last probe of the batch at 60 s
    state, last = store.conn.execute("SELECT state, last_check_at FROM app_state WHERE app = 'web'").fetchone()
    assert state == "healthy" and last == tl.at(60)
    assert store.conn.execute("SELECT count(*) FROM decision_points").fetchone()[0] == 1
    store.close()
