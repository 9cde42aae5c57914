"""`recovery demo`: the whole story on a throw-away app under its own PM2 daemon."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SERVER_JS = Path(__file__).with_name("server.js")
APP_NAME = "demo-web"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, deadline: float) -> bool:
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def run_demo(*, workdir: Path | None = None, keep: bool = False, echo: Callable[[str], None] = print) -> int:
    """Start the demo app under a private PM2, hang it, recover it, show the trail; 0 on success."""
    from ..check import Checker
    from ..config import load
    from ..errors import RecoveryError
    from ..pm2 import find_pm2
    from ..render import format_event
    from ..store import Store

    if shutil.which("node") is None:
        echo("recovery: node not found on PATH; the demo runs a small Node.js server (Node 18 or later)")
        return 3
    try:
        pm2_bin = find_pm2(os.environ.get("PM2"))
    except RecoveryError as exc:
        echo(f"recovery: {exc}")
        return 3
    # Short path: PM2's unix sockets live in PM2_HOME and must stay under ~100 characters.
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="recovery-demo-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PM2_HOME=str(work / "pm2"))
    env["PATH"] = os.pathsep.join([str(pm2_bin.parent), env.get("PATH", "")])
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    config_path = work / "recovery.toml"
    config_path.write_text(
        f"""# written by `recovery demo`
[store]
path = "recovery.db"

[pm2]
bin = "{pm2_bin}"

[[apps]]
name = "{APP_NAME}"
url = "{url}"
timeout = "2s"
retries = 2
retry_delay = "1s"
verify_timeout = "30s"
""",
        encoding="utf-8",
    )

    def pm2(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(pm2_bin), *args], env={**env, **extra_env}, capture_output=True, text=True, timeout=120
        )

    def check(title: str) -> int:
        echo(f"\n$ recovery check        # {title}")
        result = Checker(load(config_path), environ=env).run()
        for line in result.lines():
            echo(line)
        echo(f"(exit {result.code})")
        return result.code

    echo(f"demo folder: {work}  (PM2_HOME={env['PM2_HOME']}, your own PM2 is not touched)")
    echo(f"starting {APP_NAME} under PM2 on {url} ...")
    # PM2 hands the environment of `pm2 start` to the app: that is how it learns its port.
    started = pm2(
        "start", str(SERVER_JS), "--name", APP_NAME, "--kill-timeout", "500", PORT=str(port), HOST="127.0.0.1"
    )
    try:
        if started.returncode != 0:
            echo(f"recovery: pm2 start failed: {(started.stderr or started.stdout).strip()[-300:]}")
            return 1
        if not _wait_healthy(url, time.monotonic() + 30):
            echo("recovery: the demo app did not answer within 30s")
            return 1
        first = check("the app is healthy")
        echo(f"\n$ curl {url}__control/hang   # block the event loop: PM2 still says 'online'")
        import httpx

        httpx.get(url + "__control/hang", timeout=5, trust_env=False)
        status = [p.get("pm2_env", {}).get("status") for p in _jlist(pm2)]
        echo(f"pm2 status: {', '.join(s for s in status if s) or 'unknown'}")
        second = check("the app is hung")
        echo(f"\n$ recovery events       # the trail in {work / 'recovery.db'}")
        with Store.open(work / "recovery.db", readonly=True) as store:
            for e in store.query():
                echo(format_event(e))
            chain = store.verify()
        echo(
            f"\n$ recovery verify\nOK hash chain intact, {chain.count} events"
            if chain.ok
            else f"chain broken at {chain.first_bad_seq}"
        )
        me = sys.argv[0] if os.path.basename(sys.argv[0]) == "recovery" else "recovery"
        echo(f"\nLook around: RECOVERY_CONFIG={config_path} {me} events --type 'restart.*'")
        return 0 if (first, second) == (0, 1) and chain.ok else 1
    finally:
        if keep:
            echo(
                f"left running: PM2_HOME={env['PM2_HOME']} {pm2_bin} list   (stop with: PM2_HOME={env['PM2_HOME']} {pm2_bin} kill)"
            )
        else:
            pm2("kill")


def _jlist(pm2: Callable[..., subprocess.CompletedProcess[str]]) -> list[dict]:
    from ..pm2 import parse_jlist

    try:
        return parse_jlist(pm2("jlist").stdout)
    except Exception:  # the demo only prints it
        return []


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
