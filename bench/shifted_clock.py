"""`recovery` with its wall clock moved forward by $RECOVERY_BENCH_SHIFT_S seconds.

For bench/healthy_check.py --gap: the k-th check runs k x gap seconds "later", so each one
finds the record exactly as a check `gap` seconds after the previous one would (every cadence
— the hourly `pm2 jlist`, host.sampled once a minute, the heartbeat — is a comparison of
`datetime.now()` with recorded timestamps). The processes' own clocks (/proc start times,
`time.time()`) stay real: they only give uptimes. Not for production use.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys

_SHIFT = _dt.timedelta(seconds=float(os.environ.get("RECOVERY_BENCH_SHIFT_S") or 0))
_REAL = _dt.datetime


class _Shifted(_REAL):
    @classmethod
    def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:  # type: ignore[override]
        return _REAL.now(tz) + _SHIFT


_dt.datetime = _Shifted  # type: ignore[misc]

from recovery_cli.main import main  # noqa: E402  (after the clock is moved)

if __name__ == "__main__":
    sys.exit(main())
