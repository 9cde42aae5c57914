"""recovery/publish.py: what follows a check's answer runs one at a time per store, and a publisher
that finds another at work waits its turn rather than leaving (the one at work may have read the
store before this check's events were written)."""

from __future__ import annotations

import fcntl
import os
import threading
import types

from recovery import config as cfg
from recovery import publish, store
from recovery.store import Recorder, lock_fd


def test_a_publisher_that_finds_another_at_work_waits_and_then_writes(tmp_path, monkeypatch):
    textfile = tmp_path / "recovery.prom"
    (tmp_path / "recovery.toml").write_text(
        f'[store]\npath = "{tmp_path / "recovery.db"}"\n[metrics]\ntextfile = "{textfile}"\n'
        '[[apps]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n'
    )
    config = cfg.load(tmp_path / "recovery.toml")
    held = lock_fd(config.store.path, "-publish.lock")
    fcntl.flock(held, fcntl.LOCK_EX)  # the publisher of an earlier check, still at work
    rec = Recorder(config.store.path, busy_timeout=1.0)  # then this check's events are written
    rec.emit(
        "probe.succeeded",
        "web",
        "run-2",
        url="http://127.0.0.1:9/",
        attempt=1,
        latency_ms=3.0,
        status=200,
        phase="check",
    )
    rec.close()
    refused = threading.Event()

    def flock(fd: int, op: int) -> None:
        try:
            fcntl.flock(fd, op)
        except BlockingIOError:
            refused.set()
            raise

    monkeypatch.setattr(  # the store's lock files are taken in recovery.store.held_lock
        store, "fcntl", types.SimpleNamespace(flock=flock, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB)
    )
    problems: list[list[str]] = []
    worker = threading.Thread(target=lambda: problems.append(publish.publish(config)))
    worker.start()
    assert refused.wait(30), "the publisher never met the lock"
    assert not textfile.exists()
    os.close(held)  # the earlier publisher is done
    worker.join(30)
    assert problems == [[]]
    assert 'recovery_probes_total{app="web",result="ok"} 1.0' in textfile.read_text()
