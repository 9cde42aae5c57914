"""`recovery serve`: Datasette on the event store, read-only, with the project's metadata and plugins.

Datasette is imported only here, and only when a server is made: never on the `recovery check` path.
The store is always served under the database name `recovery` (the metadata's canned queries and
dashboard name it), whatever its file is called.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ServeError, StoreError

# Datasette's settings for this store: a query that runs longer is cut off (the dashboard's and
# the canned queries' run well under it on a week of history; see bench/datasette_week.py).
SETTINGS = {"sql_time_limit_ms": 1000, "max_returned_rows": 2000}
REQUIRE_ACTOR_ENV = "RECOVERY_SERVE_REQUIRE_ACTOR"  # read by the plugin through the metadata's $env
ROOT = "root"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_rule(host: str, *, root: bool, insecure: bool) -> str:
    """How the server is protected, in one line; ServeError when off loopback with no protection."""
    if root:
        return "sign-in required: only Datasette's root actor, through the one-time link printed below"
    if is_loopback(host):
        return "loopback only: no sign-in (anyone with a shell on this machine can read the store)"
    if insecure:
        return f"NO access control (--insecure): anyone who reaches {host} can read the whole store"
    raise ServeError(
        f"--host {host} is not a loopback address: give --root (sign in as Datasette's root actor through a"
        " one-time link) or, to serve it to anyone who can reach it, --insecure"
    )


def _resources() -> tuple[Path, Path]:
    import recovery_datasette

    return recovery_datasette.METADATA, recovery_datasette.PLUGINS_DIR


def datasette_command(store: Path, host: str, port: int, *, root: bool = False) -> str:
    """The plain `datasette serve …` command line that serves the store as `recovery serve` does."""
    metadata, plugins = _resources()
    exe = Path(sys.executable).with_name("datasette")
    argv = [
        str(exe) if exe.exists() else "datasette",
        "serve",
        str(Path(store).resolve()),
        "--metadata",
        str(metadata),
        "--plugins-dir",
        str(plugins),
    ]
    from .segments import files

    for segment in files(Path(store)):
        argv += ["-i", str(segment.resolve())]  # sealed segments: immutable, named after their files
    for key, value in SETTINGS.items():
        argv += ["--setting", key, str(value)]
    argv += ["--host", host, "--port", str(port)]
    line = shlex.join(argv)
    if root:
        line = f"{REQUIRE_ACTOR_ENV}={ROOT} {line} --root"
    return line


def check_store(path: Path) -> str | None:
    """Raise StoreError when the store cannot be served; bring its read models up to date.

    The projections and the error-log tables are what the canned queries read; `recovery check`
    keeps them current, but a copied store may lag. Returns a note when they could not be updated
    (a store this user may only read is still served as it is).
    """
    from . import projections
    from .logs.storage import ensure_schema
    from .store import Store

    Store.open(path, readonly=True).close()  # no store, not a database, too new: one clear line
    try:
        with Store.open(path) as store:
            projections.fold(store.conn)
            try:
                ensure_schema(store.conn)
            except Exception as exc:  # sqlite3.Error, or a newer log schema
                raise StoreError(f"cannot create the error-log tables: {exc}") from exc
    except StoreError as exc:
        return f"serving {path} as it is: {exc}"
    return None


@dataclass
class Prepared:
    """What to serve for a store: its file (or a folded temporary copy of a read-only one), how
    Datasette must open it, and what to tell the user."""

    path: Path
    note: str | None = None
    immutable: bool = False
    copy: Any = None  # the temporary copy's Store, closed (and removed) when serving ends

    def close(self) -> None:
        if self.copy is not None:
            self.copy.close()


def prepare(path: Path) -> Prepared:
    """`check_store` for a store this process can write; for a read-only one (folder or filesystem),
    the store read as it is, or a folded temporary copy when its projections are behind."""
    from .reading import CopyStore, open_folded, writable

    if writable(path) or not path.exists():
        return Prepared(path, check_store(path))
    store = open_folded(path)
    if isinstance(store, CopyStore):
        from .logs.storage import ensure_schema

        try:
            ensure_schema(store.conn)
        except Exception:  # sqlite3.Error, or a newer log schema: the error-log queries say so
            pass
        # Served immutable, which reads no WAL: everything folded goes into the copy's file first.
        store.conn.execute("PRAGMA journal_mode = DELETE")
        return Prepared(store.conn_path(), store.note, True, store)
    store.close()
    return Prepared(path, store.note, store.immutable)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before Datasette starts, so a busy port is one clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"--host {host}: {exc.strerror}") from exc
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is in use (another server?); choose another with --port") from exc
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def make_datasette(store: Path, *, require_actor: str | None = None, immutable: bool = False) -> Any:
    """A Datasette instance serving `store` read-only as the database `recovery`, and each of its
    sealed segments (recovery.segments) as a database `segment-<month>` with the same events table.

    `immutable`: a store on a read-only folder or filesystem, which SQLite cannot open otherwise."""
    import recovery_datasette
    import yaml
    from datasette.app import Datasette
    from datasette.database import Database

    metadata_path, plugins = _resources()
    metadata = yaml.safe_load(metadata_path.read_text(encoding="utf-8"))
    if require_actor:
        metadata["plugins"]["recovery"]["require_actor"] = require_actor
    ds = Datasette(metadata=metadata, plugins_dir=str(plugins), settings=dict(SETTINGS))
    # Mutable, not immutable=1: the store is in WAL mode and written by cron while served, and
    # immutable would hide what is still in the WAL. Reads use mode=ro; the plugin makes every
    # connection query_only.
    ds.add_database(Database(ds, path=str(store), is_mutable=not immutable), name=recovery_datasette.DATABASE)
    add_segments(ds, metadata, store)
    return ds


def add_segments(ds: Any, metadata: dict[str, Any], store: Path) -> None:
    """Each sealed segment beside the store as its own immutable database, its events table
    described as the store's is."""
    from datasette.database import Database

    from . import segments

    events = metadata.get("databases", {}).get("recovery", {}).get("tables", {}).get("events", {})
    for path in segments.files(store):
        name = "segment-" + path.name[len(segments.base_name(store)) + 1 : -len(segments.SUFFIX)]
        ds.add_database(Database(ds, path=str(path), is_mutable=False), name=name)
        metadata.setdefault("databases", {})[name] = {
            "title": f"archived events: {name[len('segment-') :]}",
            "description": "A sealed segment moved out of the store by `recovery archive`: raw events"
            " of one month, read-only. The hash chain runs on from the segment before it; `recovery verify"
            " --all` checks it.",
            "tables": {"events": dict(events)},
        }


@dataclass(frozen=True)
class Server:
    """A Datasette ready to serve on a bound socket, and where people find it."""

    ds: Any
    sock: socket.socket
    url: str
    dashboard: str
    sign_in: str | None  # the one-time link that signs in Datasette's root actor (--root)


def start(store: Path, host: str, port: int, *, root: bool = False, immutable: bool = False) -> Server:
    """Bind `host`:`port` (0: any free port) and make the Datasette that will serve `store` on it.

    Raises ServeError when the port cannot be had."""
    sock = bind(host, port)
    port = sock.getsockname()[1]
    ds = make_datasette(store, require_actor=ROOT if root else None, immutable=immutable)
    # Single use: Datasette forgets the token once it has signed someone in.
    sign_in = url_of(host, port, "/-/auth-token?token=" + ds._root_token) if root else None
    return Server(ds, sock, url_of(host, port), url_of(host, port, "/-/dashboards/recovery"), sign_in)


def command_note(store: Path) -> str | None:
    """What to know before serving `store` with the printed `datasette serve` line."""
    if Path(store).stem == "recovery":
        return None
    return (
        "note: Datasette names a database after its file; the metadata expects recovery.db,"
        f" so serve a link named recovery.db to {store}"
    )


def url_of(host: str, port: int, path: str = "/") -> str:
    """A URL a browser can open: a wildcard address (0.0.0.0, ::) is shown as this machine's name."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve(ds: Any, sock: socket.socket) -> None:
    """Serve until SIGINT or SIGTERM. uvicorn shuts down gracefully, then raises the signal again
    for the previous handler: SIGTERM (PM2, systemd) then ends the command with exit 0."""
    import signal

    import uvicorn

    signal.signal(signal.SIGTERM, _stopped)
    config = uvicorn.Config(ds.app(), log_level=os.environ.get("RECOVERY_SERVE_LOG_LEVEL", "warning"), lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
