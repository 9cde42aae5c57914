"""A thread that works when nudged: what `recovery watch` uses to deliver alerts and to ship to the
fleet store beside its loop, so neither ever delays a probe or a restart."""

from __future__ import annotations

import threading


class NudgedWorker:
    """A daemon thread that does one pass of `work()` per nudge; nudges that come while a pass runs
    make one more pass after it. `close` stops it: no new pass starts, and the one in flight gets
    `grace` seconds; a worker still busy after that is a daemon thread and does not keep the
    process alive."""

    thread_name = "recovery-worker"

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.code: int | None = None  # the newest step's exit code, given by nudge
        self.thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def nudge(self, code: int | None = None) -> None:
        "A step ended (with `code`): work now, if not busy, else right after the pass in flight."
        self.code = code
        self.wake.set()

    def close(self, grace: float = 2.0) -> bool:
        "Stop; wait up to `grace` for the pass in flight. True if it ended."
        self.stopping.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(grace)
        return not self.thread.is_alive()

    def work(self) -> None:
        "One pass (on the worker's thread); it handles its own errors."
        raise NotImplementedError

    def finished(self) -> None:
        "On the worker's thread, when it stops."

    def _loop(self) -> None:
        try:
            while True:
                self.wake.wait()
                if self.stopping.is_set():
                    return
                self.wake.clear()
                self.work()
        finally:
            self.finished()
