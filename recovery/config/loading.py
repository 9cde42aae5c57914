"""The configuration file: find it, read it, say everything that is wrong with it and where.

`check_file` returns every problem (with the file, line and dotted key of each) so that
`recovery config validate` can list them all; `load` raises `ConfigError` naming the first.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recovery.errors import ConfigError
from recovery.expect import JsonExpectation
from recovery.units import parse_duration

from .schema import (
    ALERT_KINDS,
    DEFAULT_FILENAME,
    ENV_VAR,
    RESTART_COMMANDS,
    AlertsConfig,
    AppConfig,
    Config,
    FleetConfig,
    LogsConfig,
    MetricsConfig,
    Pm2Config,
    PolicyConfig,
    Problem,
    StoreConfig,
    WatchConfig,
    defaults,
    keys,
)

# --- durations and status codes -------------------------------------------------------------

_STATUS_HINT = "use codes or ranges like 200, 200-299 or 200-299,301"
_STATUS_PART = re.compile(r"(\d+)(?:\s*-\s*(\d+))?")


def parse_status_ranges(value: Any) -> tuple[tuple[int, int], ...]:
    "Healthy status codes from 200, '200-399', '200-299,301' or a list of those, as (low, high) pairs."
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        items = [value]
    else:
        raise ValueError(f"bad status codes {value!r} ({_STATUS_HINT})")
    ranges: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            ranges.append(_status_range(item, item))
        elif isinstance(item, str):
            for part in item.split(","):
                match = _STATUS_PART.fullmatch(part.strip())
                if match is None:
                    raise ValueError(f"bad status codes {item!r} ({_STATUS_HINT})")
                low = int(match.group(1))
                ranges.append(_status_range(low, int(match.group(2) or low)))
        else:
            raise ValueError(f"bad status codes {item!r} ({_STATUS_HINT})")
    if not ranges:
        raise ValueError(f"no status codes given ({_STATUS_HINT})")
    return tuple(ranges)


def _status_range(low: int, high: int) -> tuple[int, int]:
    for code in (low, high):
        if not 100 <= code <= 599:
            raise ValueError(f"status {code} is not an HTTP status code (100-599)")
    if low > high:
        raise ValueError(f"status range {low}-{high} is backwards (write {high}-{low})")
    return (low, high)


def format_status_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    "The inverse of `parse_status_ranges`: ((200, 299), (301, 301)) -> '200-299,301'."
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


# --- finding and reading the file -----------------------------------------------------------


SYSTEM_DIR = Path("/etc/recovery")


@dataclass(frozen=True)
class ConfigChoice:
    """The config file a command uses, why that one, and the places looked at in order."""

    path: Path
    reason: str
    tried: tuple[Path, ...] = ()
    found: bool = True


def search_path(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None, system_dir: Path | None = None
) -> tuple[tuple[Path, str], ...]:
    """Where a config is looked for when neither --config nor $RECOVERY_CONFIG names one, in order:
    ./recovery.toml, $XDG_CONFIG_HOME/recovery/recovery.toml (~/.config/…), /etc/recovery/recovery.toml."""
    environ = os.environ if environ is None else environ
    here = (cwd or Path.cwd()) / DEFAULT_FILENAME
    xdg = environ.get("XDG_CONFIG_HOME") or ""
    if not Path(xdg).is_absolute():  # the XDG spec: a relative value is ignored
        xdg = str(Path(environ.get("HOME") or Path.home()) / ".config")
    return (
        (here, "in the current directory"),
        (Path(xdg) / "recovery" / DEFAULT_FILENAME, "the user's config ($XDG_CONFIG_HOME, else ~/.config)"),
        ((system_dir or SYSTEM_DIR) / DEFAULT_FILENAME, "the system's config"),
    )


def locate_config(
    explicit: str | Path | None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    system_dir: Path | None = None,
) -> ConfigChoice:
    """The config file to use: `explicit` (--config), else $RECOVERY_CONFIG, else the first of
    `search_path` that exists (when none does: ./recovery.toml, not found)."""
    environ = os.environ if environ is None else environ

    def absolute(chosen: str | Path) -> Path:
        path = Path(chosen).expanduser()
        return cwd / path if cwd is not None and not path.is_absolute() else path

    if explicit:
        return ConfigChoice(absolute(explicit), "named by --config")
    if environ.get(ENV_VAR):
        return ConfigChoice(absolute(environ[ENV_VAR]), f"named by ${ENV_VAR}")
    places = search_path(environ, cwd, system_dir)
    tried = tuple(p for p, _ in places)
    for path, why in places:
        if path.is_file():
            return ConfigChoice(path, f"found {why}", tried)
    return ConfigChoice(places[0][0], "none found", tried, found=False)


def find_config_path(
    explicit: str | Path | None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    "The config file to use (see `locate_config`)."
    return locate_config(explicit, environ, cwd).path


def load(path: Path) -> Config:
    "The configuration in `path`, or ConfigError naming the first problem (and how many more)."
    config, problems = check_file(path)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{problems[0]}{more}")
    assert config is not None
    return config


def check_file(path: Path) -> tuple[Config | None, list[Problem]]:
    "Read and validate `path`: the Config when it is right, else every problem found, by line."
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, [
            Problem(
                None,
                "",
                f"config file not found: {path.absolute()} "
                "(pass --config, set RECOVERY_CONFIG, put one in ~/.config/recovery/ or /etc/recovery/,"
                " or run `recovery init`)",
            )
        ]
    except OSError as exc:
        return None, [Problem(None, "", f"cannot read the file ({exc.strerror or exc})", path)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, [Problem(line, "", "not UTF-8 text (TOML files must be UTF-8)", path)]
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [_syntax_problem(exc, text, path)]
    checker = _Checker(path, _Locator(text))
    config = checker.check(document)
    problems = sorted(checker.problems, key=lambda p: p.line or 0)
    return (None if problems else config), problems


_TOML_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str, path: Path) -> Problem:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    if match is None:
        return Problem(None, "", f"invalid TOML: {message}", path)
    message = message[: match.start()]
    if match.group(1) is None:
        return Problem(text.count("\n") + 1, "", f"invalid TOML: {message} (at end of file)", path)
    return Problem(int(match.group(1)), "", f"invalid TOML: {message} (column {match.group(2)})", path)


# --- validation -----------------------------------------------------------------------------

_MISSING = object()
_KeyPath = tuple[str | int, ...]  # ('apps', 0, 'timeout'): a key, with the index of each [[apps]]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_TYPES = {bool: "boolean", str: "string", int: "integer", float: "float", dict: "table", list: "array"}


def _describe(value: Any) -> str:
    "A TOML-flavoured description of a value for messages: string 'three', integer 5, table."
    kind = _TOML_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        return kind
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def toml_string(value: str) -> str:
    "A TOML basic string holding `value` (for keys in messages, and the sample's values)."
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'


def _dotted(parts: _KeyPath) -> str:
    "('apps', 0, 'timeout') -> 'apps[0].timeout'."
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else toml_string(part)
            out += f".{name}" if out else name
    return out


def _close_match(word: str, choices: tuple[str, ...]) -> str:
    import difflib  # only paid for when something is misspelt

    match = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _duration(*, allow_zero: bool = False) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"expected a duration like '30s', got {_describe(value)}")
        seconds = parse_duration(value)
        if seconds == 0 and not allow_zero:
            raise ValueError("must be longer than 0")
        return seconds

    return convert


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "k": 1 << 10, "mb": 1 << 20, "m": 1 << 20, "gb": 1 << 30, "g": 1 << 30}


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def _size(value: Any) -> int:
    "A byte count: an integer, or a string like '512KB', '2MB', '1GB' (powers of 1024)."
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        unit = m.group(2).lower() if m else ""
        if not m or unit not in _SIZE_UNITS:
            raise ValueError(f"expected a size like '2MB' or '512KB', got {value!r}")
        n = int(float(m.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"expected a size like '2MB', got {_describe(value)}")
    if n < 1024:
        raise ValueError(f"must be at least 1KB, got {n} bytes")
    return n


def format_size(n: int) -> str:
    "The inverse of `_size`, in the largest whole unit: 2 << 20 -> '2MB'."
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def _first_read(value: Any) -> str:
    where = _string(value)
    if where not in ("beginning", "end"):
        raise ValueError(f"must be 'beginning' or 'end', got {where!r}")
    return where


def _alert_urls(value: Any) -> tuple[str, ...]:
    """A list of apprise URLs. Only their form is checked here (`recovery config validate` asks
    apprise); messages never repeat a URL: it holds tokens and passwords."""
    if not isinstance(value, list):
        got = "a string (a list is needed even for one)" if isinstance(value, str) else _describe(value)
        raise ValueError(f'expected a list of apprise URLs like ["slack://…", "mailtos://…"], got {got}')
    for n, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"item {n}: expected a non-empty string, got {_describe(item)}")
        scheme, sep, rest = item.strip().partition("://")
        if not sep or not scheme or not rest or not scheme.replace("+", "").replace("-", "").isalnum():
            raise ValueError(f"item {n}: not an apprise URL (expected SCHEME://…, e.g. slack://, json://, mailtos://)")
    return tuple(item.strip() for item in value)


def _alert_kinds(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"expected a list of alert kinds, got {_describe(value)}")
    for k in value:
        if k not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {k!r}{_close_match(k, ALERT_KINDS)}; kinds: {', '.join(ALERT_KINDS)}")
    return frozenset(value)


def _secret_http_url(value: Any) -> str:
    "An http(s) URL that may hold a token (a heartbeat URL): errors never repeat it."
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"expected an http(s) URL, got {_describe(value) if not isinstance(value, str) else 'an empty string'}"
        )
    try:
        _url(value.strip())
    except ValueError:
        raise ValueError("not an http:// or https:// URL with a host") from None
    return value.strip()


def _postgres_url(value: Any) -> str:
    "A postgresql:// URL (libpq's form); it may hold a password, so errors never repeat it."
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a postgresql://user@host:port/dbname URL")
    scheme, sep, rest = value.strip().partition("://")
    if not sep or scheme not in ("postgresql", "postgres") or not rest:
        raise ValueError("not a postgresql:// URL (expected postgresql://user@host:port/dbname)")
    return value.strip()


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _group(value: Any) -> str:
    "A group on this machine (`[store] group`)."
    import grp

    name = _string(value)
    try:
        grp.getgrnam(name)
    except KeyError:
        raise ValueError(f"no group {name!r} on this machine") from None
    return name


def _app_name(value: Any) -> str:
    name = _string(value)
    if name != name.strip():
        raise ValueError(f"{name!r} starts or ends with whitespace (PM2 names do not)")
    return name


def _retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_describe(value)}")
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _port(value: Any) -> int:
    "A TCP port to listen on, 1-65535."
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a port number, got {_describe(value)}")
    if not 0 < value < 65536:
        raise ValueError(f"expected a port from 1 to 65535, got {value}")
    return value


def _url(value: Any) -> str:
    url = _string(value)
    if any(c.isspace() for c in url):
        raise ValueError(f"{url!r} contains whitespace")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    return url


def _restart_command(value: Any) -> str:
    command = _string(value)
    if command not in RESTART_COMMANDS:
        hint = _close_match(command, RESTART_COMMANDS)
        raise ValueError(f"must be 'restart' or 'reload', got {command!r}{hint}")
    return command


def _paths(value: Any) -> tuple[str, ...]:
    "An app's `logs`: a list of file paths (the checker resolves them against the file's folder)."
    if not isinstance(value, list):
        raise ValueError(f'expected a list of paths like ["/home/me/.pm2/logs/web-error.log"], got {_describe(value)}')
    for n, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"item {n}: expected a non-empty string, got {_describe(item)}")
    return tuple(value)


def _regex(value: Any) -> str:
    "`expect_body_regex`: a Python regular expression, searched for in the body."
    text = _string(value)
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a valid regular expression ({exc})") from None
    return text


def _json_expectation(value: Any) -> JsonExpectation:
    '`expect_json = { path = "status", equals = "ok" }`.'
    if not isinstance(value, dict):
        raise ValueError(f'expected a table like {{ path = "status", equals = "ok" }}, got {_describe(value)}')
    unknown = sorted(set(value) - {"path", "equals"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (expected path and equals)")
    if "path" not in value or "equals" not in value:
        raise ValueError('needs both path and equals, e.g. { path = "status", equals = "ok" }')
    path = _string(value["path"])
    if any(not part for part in path.split(".")):
        raise ValueError(f"path {path!r}: use dotted keys like status or checks.0.ok")
    if isinstance(value["equals"], (dict, _dt.date, _dt.time)):
        raise ValueError("equals: expected a string, number, boolean or list")
    return JsonExpectation(path, value["equals"])


# How each key of a table is read. A schema field missing here fails every load (KeyError), so a new
# field cannot be forgotten; problems within a table are reported in the schema's field order.
_CONVERTERS: dict[type[Any], dict[str, Callable[[Any], Any]]] = {
    StoreConfig: {"path": _string, "busy_timeout": _duration(), "group": _group, "max_size": _size},
    Pm2Config: {"bin": _string, "timeout": _duration()},
    PolicyConfig: {"max_restarts": _retries, "window": _duration(), "restart_grace": _duration(allow_zero=True)},
    WatchConfig: {
        "interval": _duration(),
        "timeout": _duration(),
        "retries": _retries,
        "retry_delay": _duration(allow_zero=True),
        "batch": _duration(allow_zero=True),
    },
    LogsConfig: {
        "keep_raw": _duration(),
        "in_check": _boolean,
        "check_budget": _size,
        "check_every": _duration(allow_zero=True),
        "first_read": _first_read,
        "keep_stdout": _boolean,
    },
    AlertsConfig: {
        "urls": _alert_urls,
        "off": _alert_kinds,
        "remind_every": _duration(allow_zero=True),
        "timeout": _duration(),
        "retries": _retries,
        "heartbeat_url": _secret_http_url,
        "heartbeat_fail_url": _secret_http_url,
        "host": _string,
    },
    MetricsConfig: {"textfile": _string, "port": _port, "host": _string},
    FleetConfig: {"postgres": _postgres_url, "host": _string, "budget": _duration(), "batch": _retries},
    AppConfig: {
        "name": _app_name,
        "url": _url,
        "timeout": _duration(),
        "retries": _retries,
        "retry_delay": _duration(allow_zero=True),
        "expect_status": parse_status_ranges,
        "expect_body": _string,
        "expect_body_regex": _regex,
        "expect_json": _json_expectation,
        "ca_file": _string,
        "cert_warn": _duration(),
        "verify_timeout": _duration(),
        "restart_command": _restart_command,
        "max_restarts": _retries,
        "window": _duration(),
        "restart_grace": _duration(allow_zero=True),
        "slow_threshold": _duration(),
        "logs": _paths,
        "alerts": _alert_urls,
    },
}


def app_value(key: str, value: Any) -> Any:
    """`value` for the app key `key`, read as from the config file; ValueError says what is wrong."""
    return _CONVERTERS[AppConfig][key](value)


class _Checker:
    "Walks the parsed document, converting values and collecting a Problem for each fault."

    def __init__(self, path: Path, locator: _Locator) -> None:
        self.path = path
        self.base = path.absolute().parent
        self.locator = locator
        self.problems: list[Problem] = []

    def report(self, parts: _KeyPath, message: str) -> None:
        self.problems.append(Problem(self.locator.line(parts), _dotted(parts), message, self.path))

    def check(self, document: dict[str, Any]) -> Config | None:
        self.unknown_keys(document, (), keys(Config))
        store = self.section(StoreConfig, document, "store")
        if store["path"] is not _MISSING:
            store["path"] = self.resolve(store["path"])
        pm2 = self.section(Pm2Config, document, "pm2")
        if isinstance(pm2["bin"], str):
            # A bare name is looked up on PATH; anything with a slash is a path like store.path.
            expanded = os.path.expanduser(pm2["bin"])
            pm2["bin"] = str(self.resolve(pm2["bin"])) if os.sep in expanded else expanded
        policy = self.section(PolicyConfig, document, "policy")
        watch = self.section(WatchConfig, document, "watch")
        logs = self.section(LogsConfig, document, "logs")
        alerts = self.section(AlertsConfig, document, "alerts")
        metrics = self.section(MetricsConfig, document, "metrics")
        if metrics["textfile"] not in (None, _MISSING):
            metrics["textfile"] = self.resolve(metrics["textfile"])
        fleet = self.section(FleetConfig, document, "fleet")
        apps = self.apps(document.get("apps", _MISSING), policy)
        if self.problems:
            return None
        return Config(
            source=self.path,
            store=StoreConfig(**store),
            pm2=Pm2Config(**pm2),
            apps=apps,
            policy=PolicyConfig(**policy),
            watch=WatchConfig(**watch),
            logs=LogsConfig(**logs),
            alerts=AlertsConfig(**alerts),
            metrics=MetricsConfig(**metrics),
            fleet=FleetConfig(**fleet),
        )

    def section(self, kind: type[Any], document: dict[str, Any], name: str) -> dict[str, Any]:
        "The [name] table's values for the dataclass `kind`: each key converted, or its schema default."
        return self.values(kind, self.table(document, name), (name,), defaults(kind))

    def values(
        self, kind: type[Any], table: dict[str, Any], parts: _KeyPath, fallback: Mapping[str, Any]
    ) -> dict[str, Any]:
        "Each key of `kind` in `table`, converted; `fallback` holds the values of the keys it may leave out."
        self.unknown_keys(table, parts, keys(kind))
        convert = _CONVERTERS[kind]
        return {key: self.field(table, parts, key, convert[key], fallback.get(key, _MISSING)) for key in keys(kind)}

    def table(self, document: dict[str, Any], key: str) -> dict[str, Any]:
        value = document.get(key, {})
        if not isinstance(value, dict):
            self.report((key,), f"expected a [{key}] table, got {_describe(value)}")
            return {}
        return value

    def unknown_keys(self, table: dict[str, Any], parts: _KeyPath, known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                self.report((*parts, key), f"unknown key {key!r}{_close_match(key, known)}")

    def field(
        self,
        table: dict[str, Any],
        parts: _KeyPath,
        key: str,
        convert: Callable[[Any], Any],
        default: Any = _MISSING,
    ) -> Any:
        "The converted value of `key`, its default, or _MISSING after reporting why not."
        if key not in table:
            if default is _MISSING:
                self.report((*parts, key), "missing (required)")
            return default
        try:
            return convert(table[key])
        except ValueError as exc:
            self.report((*parts, key), str(exc))
            return _MISSING

    def resolve(self, value: str | Path) -> Path:
        "A path from the file: `~` expanded, relative to the file's folder rather than the cwd."
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def apps(self, value: Any, policy: dict[str, Any]) -> tuple[AppConfig, ...]:
        if value is _MISSING or value == []:
            self.report(("apps",), "no apps configured: add an [[apps]] table with a name and a url")
            return ()
        if not isinstance(value, list):
            got = _describe(value)
            self.report(("apps",), f"expected [[apps]] tables, got {got} (write [[apps]], not [apps])")
            return ()
        # An app leaves out a [policy] key: it takes the [policy] value. Where that value was wrong
        # (_MISSING), the app's key reads as missing, as it always has.
        fallback = {**defaults(AppConfig), **policy}
        apps = []
        seen: dict[str, int] = {}
        for index, table in enumerate(value):
            parts: _KeyPath = ("apps", index)
            if not isinstance(table, dict):
                self.report(parts, f"expected a table, got {_describe(table)}")
                continue
            app = self.values(AppConfig, table, parts, fallback)
            if app["logs"] is not _MISSING:
                app["logs"] = tuple(str(self.resolve(item)) for item in app["logs"])
            if isinstance(app["ca_file"], str):
                app["ca_file"] = str(self.resolve(app["ca_file"]))
                if not Path(app["ca_file"]).is_file():
                    self.report((*parts, "ca_file"), f"no such file: {app['ca_file']}")
            url = app["url"]
            if (
                app["cert_warn"] not in (None, _MISSING)
                and isinstance(url, str)
                and not url.lower().startswith("https:")
            ):
                self.report((*parts, "cert_warn"), f"only for https URLs ({app['url']} is not one)")
            name = app["name"]
            if isinstance(name, str):
                if name in seen:
                    self.report((*parts, "name"), f"duplicate app name {name!r} (also apps[{seen[name]}])")
                else:
                    seen[name] = index
            apps.append(AppConfig(**app, explicit=frozenset(k for k in table if k in keys(AppConfig))))
        return tuple(apps)


# --- line numbers ---------------------------------------------------------------------------


class _Locator:
    """Line numbers of tables and keys, from the raw text (tomllib does not keep them).

    Paths are tuples like ('store', 'path') or ('apps', 2, 'url'), the index counting [[apps]]
    headers. Only ever run on text tomllib accepted, so it can afford to be loose.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[_KeyPath, int] = {}
        self._scan(text)

    def line(self, parts: _KeyPath) -> int | None:
        "The line of `parts`, or of the nearest enclosing table or key that has one."
        for n in range(len(parts), 0, -1):
            line = self.lines.get(parts[:n])
            if line is not None:
                return line
        return None

    def _scan(self, text: str) -> None:
        table: _KeyPath = ()
        arrays: dict[_KeyPath, int] = {}  # array-of-tables path -> tables seen
        depth, quote = 0, None
        for number, raw in enumerate(text.splitlines(), 1):
            if depth or quote:  # inside a multi-line array, inline table or string
                depth, quote = _skip_value(raw, 0, depth, quote)
                continue
            line = raw.lstrip()
            if not line or line[0] == "#":
                continue
            if line[0] == "[":
                is_array = line.startswith("[[")
                key = _read_key(line, 2 if is_array else 1)
                if key is not None:
                    table = _resolve_header(key[0], is_array, arrays)
                    self.lines[table] = number
                    for n in range(1, len(table)):
                        self.lines.setdefault(table[:n], number)
                continue
            key = _read_key(line, 0)
            if key is None:
                continue
            names, end = key
            end = _skip_space(line, end)
            if end >= len(line) or line[end] != "=":
                continue
            full = (*table, *names)
            for n in range(len(table) + 1, len(full) + 1):
                self.lines.setdefault(full[:n], number)
            depth, quote = _skip_value(line, end + 1, 0, None)


def _resolve_header(names: list[str], is_array: bool, arrays: dict[_KeyPath, int]) -> _KeyPath:
    "The path a [table] or [[array]] header opens, with the index of every array of tables on it."
    path: _KeyPath = ()
    for n, name in enumerate(names):
        path = (*path, name)
        if is_array and n == len(names) - 1:
            arrays[path] = arrays.get(path, 0) + 1
        if path in arrays:
            path = (*path, arrays[path] - 1)
    return path


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _read_key(text: str, i: int) -> tuple[list[str], int] | None:
    "A dotted key (bare or quoted parts) starting at text[i], and the index after it."
    names: list[str] = []
    while True:
        i = _skip_space(text, i)
        if i >= len(text):
            return None
        if text[i] == '"':
            j = i + 1
            name = ""
            while j < len(text) and text[j] != '"':
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                name += text[j]
                j += 1
            names.append(name)
            i = j + 1
        elif text[i] == "'":
            j = text.find("'", i + 1)
            if j < 0:
                return None
            names.append(text[i + 1 : j])
            i = j + 1
        else:
            match = _BARE_KEY.match(text, i)
            if match is None:
                return None
            names.append(match.group())
            i = match.end()
        i = _skip_space(text, i)
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return names, i


def _skip_value(text: str, i: int, depth: int, quote: str | None) -> tuple[int, str | None]:
    "Scan a value from text[i]; return the bracket depth and open multi-line quote at the line's end."
    while i < len(text):
        if quote:
            end = text.find(quote, i)
            if end < 0:
                return depth, quote
            i = end + 3
            while i < len(text) and text[i] == quote[0]:  # up to two quotes may end the content
                i += 1
            quote = None
            continue
        char = text[i]
        if char == "#":
            break
        if char in "\"'":
            if text.startswith(char * 3, i):
                quote = char * 3
                i += 3
                continue
            i += 1
            while i < len(text) and text[i] != char:
                i += 2 if char == '"' and text[i] == "\\" else 1
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        i += 1
    return depth, quote
