"""After a check has answered: the work that must never delay recovery.

Two things may follow a check: the metrics textfile for node_exporter (`[metrics] textfile`,
recovery.metrics) and shipping new events to the fleet store (`[fleet] postgres`, recovery.fleet.ship).
Both import heavy modules (prometheus_client, psycopg) and the second talks to the network, so
`recovery check` does neither itself: once its answer is decided and printed, `spawn` starts
`recovery publish` as a detached child (its own session, no terminal, output discarded) and the
check exits at once. cron and Nagios wait only for the check. The child's Python starts only once
the check has exited (a /bin/sh waits for the end of a pipe whose write end only the check holds):
started at once, its start-up and imports competed with the check's last milliseconds for the CPU,
+40 to +100 ms on the check's median on a busy 2-CPU machine; gated, +5 ms
(bench/healthy_check.py --fleet).

`publish` runs one child at a time per store (a flock on `<store>-publish.lock`): a child that finds
it held waits its turn (up to the fleet budget and LOCK_SLACK_S), since the running one may have
read the store before this check's events were written; and one failure never
stops the other part: each problem is one line in the list it returns (the hidden command prints
them on stderr, which the check's child discards; `recovery metrics` and `recovery ship` run the
same parts by hand and say what went wrong).
"""

from __future__ import annotations

import os
import subprocess
import sys

from recovery.config import Config


def spawn(config: Config) -> bool:
    """Start `recovery publish --config <file>` detached, when the config asks for it; True when
    started. Never raises: a check's answer does not depend on it."""
    if not config.publishes or config.source is None:
        return False
    try:
        gate_in, gate_out = os.pipe()
    except OSError:
        return False
    try:
        # sh waits for the pipe's end of file (this process's exit: nobody else holds the write end)
        # before Python starts: the child's start-up never competes with the check for the CPU.
        subprocess.Popen(
            ["/bin/sh", "-c", 'read -r _; exec "$@"', "recovery-publish"]
            + [sys.executable, "-m", "recovery_cli.main", "publish", "--config", str(config.source)],
            stdin=gate_in,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "RECOVERY_TRIGGER": "publish"},
        )
    except OSError:
        os.close(gate_out)
        return False
    finally:
        os.close(gate_in)
    _GATES.append(gate_out)  # open until this process exits
    return True


_GATES: list[int] = []
LOCK_SLACK_S = 30.0  # beyond [fleet] budget, how long a publisher waits for the one before it


def publish(config: Config) -> list[str]:
    "Write the metrics textfile, then ship to the fleet store, as configured; the problems, one line each."
    from recovery.store import held_lock

    with held_lock(config.store.path, "-publish.lock", wait=config.fleet.budget + LOCK_SLACK_S) as held:
        if not held:
            return [
                f"another recovery publish held {config.store.path}-publish.lock for too long; the next check publishes"
            ]
        problems: list[str] = []
        if config.metrics.textfile is not None:
            from recovery.metrics import write_textfile

            try:
                write_textfile(config)
            except Exception as exc:  # each part fails alone, in one line
                problems.append(f"metrics textfile {config.metrics.textfile}: {exc}")
        if config.fleet.postgres is not None:
            from recovery.fleet.ship import ship

            try:
                ship(config)
            except Exception as exc:
                problems.append(f"fleet ship: {exc}")
        return problems
