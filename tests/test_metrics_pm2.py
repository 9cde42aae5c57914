"""Metrics with the real parts: a PM2 app, `recovery check` writing the node_exporter textfile after
its answer, and `recovery watch --metrics-port` scraped over HTTP while it recovers a hung app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recovery import metrics
from recovery.config import load
from recovery.demo import free_port
from tests.conftest import wait_until

pytestmark = pytest.mark.pm2


def write_config(tmp_path: Path, sandbox, app, extra: str = "") -> Path:
    path = tmp_path / "recovery.toml"
    path.write_text(
        f'[store]\npath = "data/recovery.db"\n\n[pm2]\nbin = "{sandbox.bin}"\n\n'
        '[watch]\ntimeout = "1s"\nretries = 2\n\n'
        f'[[apps]]\nname = "{app.name}"\nurl = "{app.url}"\ntimeout = "1s"\nretries = 2\nverify_timeout = "30s"\n'
        f"{extra}"
    )
    return path


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value}, through prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def get(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def run(pm2, *args: str, timeout: float = 90, python: bool = False) -> subprocess.CompletedProcess:
    """`recovery ARGS` as a fresh process (with `python`, ARGS are the interpreter's)."""
    argv = [sys.executable, *args] if python else [sys.executable, "-m", "recovery_cli.main", *args]
    return subprocess.run(argv, env=pm2.env, capture_output=True, text=True, timeout=timeout)


def test_a_check_writes_the_textfile_after_its_answer(pm2, tmp_path):
    app = pm2.start_app("web")
    prom = tmp_path / "textfile_collector" / "recovery.prom"
    prom.parent.mkdir()
    config = write_config(tmp_path, pm2, app, f'\n[metrics]\ntextfile = "{prom}"\n')
    done = run(pm2, "check", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    found = wait_until(
        lambda: prom.exists() and samples(prom.read_text()), timeout=30, message="the textfile after the check"
    )
    assert get(found, "recovery_up", app="web") == 1.0
    assert get(found, "recovery_probes_total", app="web", result="ok") == 1.0
    assert get(found, "recovery_store_readable") == 1.0
    assert oct(prom.stat().st_mode & 0o777) == oct(0o644)

    app.control("hang")
    hung = run(pm2, "check", "--config", str(config))
    assert hung.returncode in (0, 1), hung.stdout + hung.stderr  # restarted and verified (OK or WARNING)

    def restarted() -> dict | None:
        now = samples(prom.read_text())
        return now if get(now, "recovery_restarts_total", app="web", by="check") == 1.0 else None

    found = wait_until(restarted, timeout=30, message="the textfile to show the check's restart")
    assert get(found, "recovery_incidents_total", app="web") == 1.0
    assert get(found, "recovery_probes_total", app="web", result="failed") >= 1.0
    assert sorted(os.listdir(prom.parent)) == ["recovery.prom"]  # no temporary file left behind


def test_a_reader_never_sees_half_a_textfile_while_it_is_rewritten(pm2, tmp_path):
    app = pm2.start_app("web")
    prom = tmp_path / "recovery.prom"
    config = write_config(tmp_path, pm2, app, f'\n[metrics]\ntextfile = "{prom}"\n')
    assert run(pm2, "check", "--config", str(config)).returncode == 0
    wait_until(prom.exists, timeout=30, message="the first textfile")
    cfg = load(config)
    stop = threading.Event()
    reads: list[str] = []
    versions: set[tuple[int, int]] = set()  # (inode, mtime): a file replaced

    def reader() -> None:
        while not stop.is_set():
            with prom.open() as f:
                st = os.fstat(f.fileno())
                versions.add((st.st_ino, st.st_mtime_ns))
                reads.append(f.read())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):  # real checks, each followed by its `recovery publish` child...
            assert run(pm2, "check", "--config", str(config)).returncode == 0
            for _ in range(20):  # ...and rewrites as fast as this process can make them
                metrics.write_textfile(cfg)
    finally:
        stop.set()
        thread.join()
    assert len(versions) > 10 and len(reads) > 20  # the reader saw many versions of the file
    last_line = 'recovery_last_check_timestamp_seconds{app="web"}'
    for text in set(reads):
        assert text.startswith("# HELP recovery_store_readable") and last_line in text.splitlines()[-1], text
        assert get(samples(text), "recovery_up", app="web") == 1.0


def test_watch_serves_metrics_that_follow_a_hang_and_its_recovery(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    port = free_port()
    out = (tmp_path / "watch.out").open("w")
    argv = [sys.executable, "-m", "recovery_cli.main", "watch", "--config", str(config), "--interval", "500ms"]
    proc = subprocess.Popen([*argv, "--metrics-port", str(port)], env=pm2.env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> dict:
        answer = httpx.get(url, timeout=10, trust_env=False)
        assert answer.status_code == 200
        return samples(answer.text)

    try:
        wait_until(lambda: get(scrape(), "recovery_up", app="web") == 1.0, timeout=60, message="web up in /metrics")
        app.control("hang")
        found = wait_until(
            lambda: (s := scrape()) and get(s, "recovery_restarts_total", app="web", by="check") == 1.0 and s,
            timeout=90,
            message="the watch's restart in /metrics",
        )
        assert get(found, "recovery_incidents_total", app="web") == 1.0
        wait_until(
            lambda: (
                get(scrape(), "recovery_up", app="web") == 1.0
                and get(scrape(), "recovery_incident_open", app="web") == 0.0
            ),
            timeout=60,
            message="web up again with its incident closed",
        )
        assert "serving metrics on http://127.0.0.1:" in (tmp_path / "watch.out").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with pytest.raises(httpx.ConnectError):  # the server went with the watch
        httpx.get(url, timeout=5, trust_env=False)


def test_a_healthy_check_with_metrics_configured_does_not_import_prometheus_client(pm2, tmp_path):
    app = pm2.start_app("web")
    prom = tmp_path / "recovery.prom"
    config = write_config(tmp_path, pm2, app, f'\n[metrics]\ntextfile = "{prom}"\n')
    result = run(pm2, "-X", "importtime", "-m", "recovery_cli.main", "check", "--config", str(config), python=True)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "httpx" in imported and "prometheus_client" not in imported and "recovery" in imported
    assert not any(line.split("|")[-1].strip() == "recovery.metrics" for line in result.stderr.splitlines())
    wait_until(prom.exists, timeout=30, message="the textfile, written by the check's child")
