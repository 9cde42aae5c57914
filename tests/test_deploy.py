"""deploy/setup-auto-recovery.sh, run for real: a temp prefix, a crontab file instead of the
machine's crontab, this checkout's venv instead of a pip install, a temp folder for /etc."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from recovery.store import Store

from .test_alerts import Receiver

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "deploy" / "setup-auto-recovery.sh"
VENV = Path(sys.prefix)  # the venv running the tests; it has bin/recovery


def run_setup(tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    hooks = {
        "RECOVERY_SETUP_CRONTAB": str(tmp_path / "crontab"),
        "RECOVERY_SETUP_VENV": str(VENV),
        "RECOVERY_SETUP_ETC": str(tmp_path / "etc"),
    }
    return subprocess.run(
        [str(SCRIPT), *args],
        env={**hooks, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def bare_env(home: Path) -> dict[str, str]:
    """No pm2 anywhere: Python and the basic tools only, and an empty home (no nvm)."""
    home.mkdir(exist_ok=True)
    return {"PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "HOME": str(home), "PM2_HOME": str(home / ".pm2")}


def install(pm2, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    app = pm2.apps[0] if pm2.apps else pm2.start_app("web")
    prefix = tmp_path / "x"
    args = ("--app", app.name, "--url", app.url, "--prefix", str(prefix), "--log-rotation", "logrotate", *extra)
    return run_setup(tmp_path, pm2.env, *args), prefix


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file below root and its bytes (paths relative to root), except those under `skip`."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(rel.startswith(s) for s in skip):
            out[rel] = path.read_bytes()
    return out


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def cron_check_command(crontab: Path, marker: str = "--stamp check") -> str:
    """The command of one of the block's lines: the crontab line less its five time fields."""
    line = next(line for line in crontab.read_text().splitlines() if marker in line)
    return line.split(None, 5)[5]


# --- flags and bad input ----------------------------------------------------------------------


def test_help_explains_every_flag():
    proc = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    flags = set(re.findall(r"^\s+(--[a-z-]+)\)", SCRIPT.read_text(), re.M))
    assert {"--app", "--url", "--interval", "--alerts", "--dry-run", "--uninstall", "--with-watch"} <= flags
    for flag in flags:
        assert re.search(rf"^\s+(-h, )?{flag}\b", proc.stdout, re.M), f"{flag} is not in --help"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", "http://127.0.0.1:3000/"], "--app NAME is required"),
        (["--app", "web"], "--url URL is required"),
        (["--app", "web", "--url", "ftp://127.0.0.1/"], "--url 'ftp://127.0.0.1/' is not an http"),
        (["--app", "web", "--url", "http://127.0.0.1/", "--interval", "30s"], "1m minimum"),
        (["--app", "web", "--url", "http://127.0.0.1/", "--interval", "5 minutes"], "--interval '5 minutes'"),
        (["--app", "web", "--url", "http://127.0.0.1/", "--nightly-restart", "3am"], "--nightly-restart '3am'"),
        (["--app", "web", "--url", "http://127.0.0.1/", "--weekly-report", "nobody"], "--weekly-report 'nobody'"),
        (["--app", "web", "--url", "http://127.0.0.1/", "--user", "no-such-user-here"], "--user 'no-such-user-here'"),
        (["--app", "web", "--url", "http://127.0.0.1/", "--log-rotation", "daily"], "--log-rotation 'daily'"),
        (["--app", "web", "--url", "http://127.0.0.1/", "--prefix", "/tmp/50%"], "--prefix '/tmp/50%'"),
        (["--app", "web", "--bogus"], "unknown argument '--bogus'"),
        (["--app", "web", "--url"], "--url needs a value"),
    ],
)
def test_bad_input_is_one_line_naming_what_and_exit_2(tmp_path, args, message):
    proc = run_setup(tmp_path, bare_env(tmp_path / "home"), *args)
    assert proc.returncode == 2, output(proc)
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "crontab").exists()


def test_flags_can_come_from_the_environment(tmp_path):
    env = {
        **bare_env(tmp_path / "home"),
        "RECOVERY_APP": "web",
        "RECOVERY_URL": "http://127.0.0.1:9/",
        "RECOVERY_INTERVAL": "10m",
        "RECOVERY_DRY_RUN": "1",
        "RECOVERY_PREFIX": str(tmp_path / "x"),
    }
    proc = run_setup(tmp_path, env)
    assert proc.returncode == 0, output(proc)
    assert f"*/10 * * * * /usr/bin/flock -n '{tmp_path}/x/run/check.lock'" in proc.stdout


def test_a_real_run_without_pm2_stops_with_one_line_and_changes_nothing(tmp_path):
    before = tree(tmp_path)
    proc = run_setup(
        tmp_path,
        bare_env(tmp_path / "home"),
        "--app",
        "web",
        "--url",
        "http://127.0.0.1:9/",
        "--prefix",
        str(tmp_path / "x"),
    )
    assert proc.returncode == 3, output(proc)
    assert proc.stderr.startswith("setup-auto-recovery: pm2 not found") and proc.stderr.count("\n") == 1
    assert tree(tmp_path) == before


# --- dry run ------------------------------------------------------------------------------------


def test_dry_run_without_app_or_pm2_prints_the_changes_makes_none_and_exits_0(tmp_path):
    (tmp_path / "crontab").write_text("0 1 * * * echo mine\n")
    before = tree(tmp_path)
    env = {**bare_env(tmp_path / "home"), "RECOVERY_SETUP_VENV": ""}  # a real install, were it not a dry run
    proc = run_setup(
        tmp_path,
        env,
        "--app",
        "web",
        "--url",
        "http://127.0.0.1:9/",
        "--prefix",
        str(tmp_path / "x"),
        "--nightly-restart",
        "03:00",
        "--dry-run",
    )
    assert proc.returncode == 0, output(proc)
    assert tree(tmp_path) == before
    out = proc.stdout
    assert "would install recovery from" in out and f"would write {tmp_path}/x/recovery.toml" in out
    assert "+# BEGIN recovery web" in out and "+0 3 * * * " in out
    assert "restart web --by schedule --reason nightly" in out
    assert "dry run: nothing was changed" in out


def test_dry_run_after_an_install_shows_the_new_cron_line_and_changes_nothing(pm2, tmp_path):
    proc, prefix = install(pm2, tmp_path)
    assert proc.returncode == 0, output(proc)
    before = tree(tmp_path)
    app = pm2.apps[0]
    proc = run_setup(
        tmp_path,
        pm2.env,
        "--app",
        "web",
        "--url",
        app.url,
        "--prefix",
        str(prefix),
        "--log-rotation",
        "logrotate",
        "--nightly-restart",
        "4:30",
        "--dry-run",
    )
    assert proc.returncode == 0, output(proc)
    assert tree(tmp_path) == before
    assert "would install the cron block" in proc.stdout and "+30 4 * * * " in proc.stdout


def test_alert_urls_are_written_to_the_config_test_sent_and_never_printed(pm2, tmp_path):
    receiver = Receiver()
    secret = f"json://127.0.0.1:{receiver.port}/SECRET-TOKEN-123"
    proc = run_setup(
        tmp_path,
        bare_env(tmp_path / "home"),
        "--app",
        "web",
        "--url",
        "http://127.0.0.1:9/",
        "--prefix",
        str(tmp_path / "x"),
        "--alerts",
        secret,
        "--dry-run",
    )
    assert proc.returncode == 0 and "json://***" in proc.stdout
    assert "SECRET-TOKEN" not in output(proc)
    proc, prefix = install(pm2, tmp_path, "--alerts", secret)
    assert "SECRET-TOKEN" not in output(proc)
    assert (
        f'[alerts]                         # written by setup-auto-recovery.sh --alerts\nurls = ["{secret}"]'
        in (prefix / "recovery.toml").read_text()
    )
    # The checklist test-sends through the channel (`recovery alert test`).
    receiver.close()
    assert proc.returncode == 0, output(proc)
    assert re.search(r"^  ✓ alerts test-sent: ✓ #1 json://127.0.0.1:\d+/\*\*\*", proc.stdout, re.M), proc.stdout
    assert [m["title"] for m in receiver.messages()] == [f"recovery test alert from {socket.gethostname()}"]
    # A re-run without --alerts shows what it would write instead: the old URL redacted too.
    proc, _ = install(pm2, tmp_path)
    assert '-urls = ["json://***"]' in proc.stdout and "SECRET-TOKEN" not in output(proc)


# --- a real run -------------------------------------------------------------------------------


def test_a_real_run_passes_the_checklist(pm2, tmp_path):
    proc, prefix = install(pm2, tmp_path)
    assert proc.returncode == 0, output(proc)
    checklist = proc.stdout.split("checklist:\n", 1)[1]
    assert [line[:3] for line in checklist.splitlines() if line.startswith("  ")] == ["  ✓"] * 5, checklist
    assert "recovery check, run as cron runs it: web OK " in checklist
    with Store.open(prefix / "data" / "recovery.db", readonly=True) as store:
        assert [e.type for e in store.query()][-1] == "check.finished"


def test_two_runs_leave_an_identical_crontab_and_files(pm2, tmp_path):
    (tmp_path / "crontab").write_text("MAILTO=ops@example.com\n0 1 * * * echo mine\n")
    first, prefix = install(pm2, tmp_path, "--nightly-restart", "03:00")
    assert first.returncode == 0, output(first)
    before = tree(tmp_path, skip=("x/data/", "x/logs/"))  # the checklist's check writes the store
    second, _ = install(pm2, tmp_path, "--nightly-restart", "03:00")
    assert second.returncode == 0, output(second)
    assert tree(tmp_path, skip=("x/data/", "x/logs/")) == before
    assert "write " not in second.stdout and "update " not in second.stdout
    crontab = (tmp_path / "crontab").read_text()
    assert crontab.startswith("MAILTO=ops@example.com\n0 1 * * * echo mine\n# BEGIN recovery web\n")
    assert crontab.count("# BEGIN recovery web") == 1 and crontab.endswith("# END recovery web\n")
    assert {"recovery.toml", "bin/recovery-cron", "ecosystem.config.js"} <= set(tree(prefix))


def test_the_generated_cron_wrapper_is_shellcheck_clean(pm2, tmp_path):
    proc, prefix = install(pm2, tmp_path)
    assert proc.returncode == 0, output(proc)
    lint = subprocess.run(["shellcheck", str(prefix / "bin" / "recovery-cron")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_user_edits_to_the_config_survive_a_rerun(pm2, tmp_path):
    proc, prefix = install(pm2, tmp_path)
    assert proc.returncode == 0, output(proc)
    config = prefix / "recovery.toml"
    edited = config.read_text().replace("# retries = 3 ", "retries = 5 ")
    config.write_text(edited)
    app = pm2.apps[0]
    proc = run_setup(
        tmp_path,
        pm2.env,
        "--app",
        "web",
        "--url",
        app.url + "health",
        "--prefix",
        str(prefix),
        "--log-rotation",
        "logrotate",
    )
    assert config.read_text() == edited
    assert f"kept {config} (yours); this run would change it like so:" in proc.stdout
    assert f'-url = "{app.url}"' in proc.stdout and f'+url = "{app.url}health"' in proc.stdout
    assert "-retries = 5 " in proc.stdout


def test_uninstall_removes_what_it_added_and_keeps_the_store_and_logs(pm2, tmp_path):
    (tmp_path / "crontab").write_text("0 1 * * * echo mine\n")
    proc, prefix = install(pm2, tmp_path, "--nightly-restart", "03:00", "--with-watch")
    assert (tmp_path / "etc" / "logrotate.d" / "recovery-web").exists()
    assert (tmp_path / "etc" / "systemd" / "system" / "recovery-watch-web.service").exists()
    # Without --prefix: the block says where it lives.
    proc = run_setup(tmp_path, pm2.env, "--app", "web", "--uninstall")
    assert proc.returncode == 0, output(proc)
    assert (tmp_path / "crontab").read_text() == "0 1 * * * echo mine\n"
    assert tree(tmp_path / "etc") == {}
    left = set(tree(prefix))
    assert "data/recovery.db" in left
    assert all(p.startswith(("data/", "logs/")) for p in left), left


def test_without_a_crontab_file_it_goes_through_the_crontab_command(pm2, tmp_path):
    table = tmp_path / "spool" / "root"  # what cron would keep; a stand-in `crontab` edits it
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
case "$1" in
    -l) if [ -f '{table}' ]; then cat '{table}'; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
    -) mkdir -p '{table.parent}' && cat >'{table}' ;;
    *) echo "unexpected: $*" >&2; exit 2 ;;
esac
""")
    fake.chmod(0o755)
    pm2.env["PATH"] = f"{fake.parent}:{pm2.env['PATH']}"
    pm2.env["RECOVERY_SETUP_CRONTAB"] = ""
    proc, prefix = install(pm2, tmp_path)
    assert proc.returncode == 0, output(proc)
    assert f"# prefix {prefix}\n" in table.read_text()
    proc = run_setup(tmp_path, pm2.env, "--app", "web", "--uninstall")
    assert proc.returncode == 0, output(proc)
    assert table.read_text() == ""


def test_uninstall_keeps_a_config_the_user_edited(pm2, tmp_path):
    proc, prefix = install(pm2, tmp_path)
    config = prefix / "recovery.toml"
    config.write_text(config.read_text() + "# mine\n")
    proc = run_setup(tmp_path, pm2.env, "--app", "web", "--prefix", str(prefix), "--uninstall")
    assert proc.returncode == 0, output(proc)
    assert config.read_text().endswith("# mine\n")
    assert f"kept {config}: edited since this script wrote it" in proc.stdout
    assert "recovery" not in (tmp_path / "crontab").read_text()


def test_with_watch_writes_a_systemd_unit_that_restarts_always(pm2, tmp_path):
    proc, prefix = install(pm2, tmp_path, "--with-watch")
    unit = (tmp_path / "etc" / "systemd" / "system" / "recovery-watch-web.service").read_text()
    assert f"ExecStart={prefix}/bin/recovery-cron watch" in unit and "Restart=always" in unit
    assert f"User={getpass.getuser()}" in unit
    # No systemd runs the unit here (the /etc stand-in): the checklist says so and fails.
    assert proc.returncode == 1 and "✗ recovery-watch-web is not running" in proc.stdout


def test_with_a_systemd_timer_the_check_leaves_the_crontab(pm2, tmp_path):
    proc, prefix = install(pm2, tmp_path, "--systemd-timer", "--interval", "2m", "--nightly-restart", "03:00")
    units = tmp_path / "etc" / "systemd" / "system"
    assert "OnUnitActiveSec=2m" in (units / "recovery-check-web.timer").read_text()
    assert (
        f"ExecStart={prefix}/bin/recovery-cron check --trigger cron"
        in (units / "recovery-check-web.service").read_text()
    )
    crontab = (tmp_path / "crontab").read_text()
    assert "--stamp check" not in crontab and "restart web --by schedule --reason nightly" in crontab
    assert "✓ recovery check, run as cron runs it: web OK" in proc.stdout
    assert proc.returncode == 1 and "✗ recovery-check-web.timer is not active" in proc.stdout


def test_the_rendered_systemd_units_pass_systemd_analyze_verify(pm2, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    install(pm2, tmp_path, "--systemd-timer", "--with-watch")
    units = sorted((tmp_path / "etc" / "systemd" / "system").iterdir())
    assert [u.name for u in units] == [
        "recovery-check-web.service",
        "recovery-check-web.timer",
        "recovery-watch-web.service",
    ]
    check = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr


# --- the cron line, as cron runs it -------------------------------------------------------------


def test_the_cron_line_recovers_a_hung_app_under_crons_environment_with_pm2_from_nvm(pm2, tmp_path):
    app = pm2.start_app("web")
    home = tmp_path / "home"
    nvm_bin = home / ".nvm" / "versions" / "node" / "v20.0.0" / "bin"
    nvm_bin.mkdir(parents=True)
    (nvm_bin / "node").symlink_to(shutil.which("node") or "/usr/bin/node")
    (nvm_bin / "pm2").symlink_to(pm2.bin)
    # The setup runs as a login shell would without nvm loaded: pm2 is only in nvm's folder.
    env = {**bare_env(home), "PM2_HOME": pm2.env["PM2_HOME"]}
    prefix = tmp_path / "x"
    proc = run_setup(tmp_path, env, "--app", "web", "--url", app.url, "--prefix", str(prefix), "--log-rotation", "none")
    assert proc.returncode == 0, output(proc)
    config = prefix / "recovery.toml"  # the user tunes the probe (and it survives re-runs)
    config.write_text(
        config.read_text()
        .replace('# timeout = "10s"', 'timeout = "2s"')
        .replace("# retries = 3 ", "retries = 2 ")
        .replace('# retry_delay = "5s"', 'retry_delay = "1s"')
    )
    old_pid = app.pids()[0]
    app.control("hang")
    app.wait_until(lambda: not app.answers(timeout=0.5), message="the app to hang")
    cron_env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": str(home), "LOGNAME": getpass.getuser()}
    cron = subprocess.run(
        [
            "env",
            "-i",
            *(f"{k}={v}" for k, v in cron_env.items()),
            "/bin/sh",
            "-c",
            cron_check_command(tmp_path / "crontab"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert cron.returncode == 1 and cron.stdout == "", output(cron)  # WARNING: recovered; output went to the log
    log = (prefix / "logs" / "recovery-cron.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ web RECOVERED restarted after 2 failed probes", log, re.M), log
    assert app.answers() and app.pids()[0] != old_pid
    events = store_events(prefix)
    assert [e.type for e in events].count("restart.succeeded") == 1
    assert [e.data["trigger"] for e in events if e.type == "check.started"][-1] == "cron"
    # The daily prune line works under cron's environment too (nothing is old enough to go yet).
    prune = subprocess.run(
        [
            "env",
            "-i",
            *(f"{k}={v}" for k, v in cron_env.items()),
            "/bin/sh",
            "-c",
            cron_check_command(tmp_path / "crontab", "--stamp errors prune"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert prune.returncode == 0, output(prune)
    assert re.search(r"Z pruned 0 entries older than", (prefix / "logs" / "recovery-cron.log").read_text())


def store_events(prefix: Path) -> list:
    with Store.open(prefix / "data" / "recovery.db", readonly=True) as store:
        return store.query()


# --- lint -------------------------------------------------------------------------------------


def test_every_shell_script_is_shellcheck_clean():
    scripts = sorted(
        [*(REPO / "deploy").glob("*.sh"), *(REPO / "scripts").glob("*.sh"), REPO / "test.sh", REPO / "demo.sh"]
    )
    assert SCRIPT in scripts
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (./test.sh installs it)", pytrace=False)
    lint = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True, cwd=REPO)
    assert lint.returncode == 0, lint.stdout + lint.stderr
