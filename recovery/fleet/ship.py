"""Shipping new events to the fleet's PostgreSQL. Issue 18, point 2.

CONTRACT (filled by the shipping work): `ship(config)` sends the events recorded since the local
cursor, within `config.fleet.budget` seconds, idempotent on the event id; raises on failure with a
message that never holds the password.
"""

from __future__ import annotations

from recovery.config import Config


def ship(config: Config) -> None:
    "Ship this store's new events to config.fleet.postgres, within config.fleet.budget seconds."
    raise NotImplementedError("recovery ship: not built yet")
