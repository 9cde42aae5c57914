"""Lines to entries: one Node error (message, stack frames, `{ code: … }` block) is one entry.

Node and Next.js print an error as its message line, indented `    at …` frames, and, when the
error has extra properties, a `{ … }` block that ends with a `}` in the first column; a
`[cause]: …` is indented inside it. PM2 may prefix every line with its `log_date_format`
(`2026-11-28T03:00:01: `, `2026-11-28 03:00:01 +00:00: `) or write JSON lines
(`--log-type json`); the first line's date is the entry's time.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..events import format_ts
from .reader import Line

DETAIL_LIMIT = 16 * 1024

_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?(?: ?(Z|[+-]\d{2}:?\d{2}))?: ")
# stdout lines that start an error entry; other stdout lines are noise by default.
_LOOKS_LIKE_ERROR = re.compile(r"Error|⨯|FATAL|[Ff]atal|Unhandled|ECONN|EADDRINUSE|ETIMEDOUT|^\s*error[:\s]|\[error\]")
_PREAMBLE = re.compile(r"^(?:/|[A-Za-z]:\\|node:|file:).*:\d+$")  # `/app/x.js:3` before an uncaught throw
_CODE = re.compile(r"^\s+code: '([^']*)'")
_NEXT_MARK = re.compile(r"^ {0,2}[⨯▲✓○⚠]")  # Next.js prints ` ⨯ Error: …`: indented, yet a new entry
_NODE_VERSION = re.compile(r"^Node\.js v\d")

_ts_cache: dict[str, str | None] = {}
_offsets: dict[str, int] = {}  # "YYYY-MM-DDTHH" local -> UTC offset in seconds


def _local_offset(y: int, mo: int, d: int, h: int) -> int:
    key = f"{y}-{mo}-{d}T{h}"
    off = _offsets.get(key)
    if off is None:
        when = _dt.datetime(y, mo, d, h, 30).astimezone()
        off = _offsets[key] = int(when.utcoffset().total_seconds())  # type: ignore[union-attr]
    return off


def parse_prefix_ts(match: re.Match[str]) -> str | None:
    """PM2's date prefix as UTC ISO 8601 with milliseconds; a date without a zone is local time."""
    key = match.group(0)
    hit = _ts_cache.get(key, "")
    if hit != "":
        return hit
    y, mo, d, h, mi, s, frac, zone = match.groups()
    ms = (frac or "0").ljust(3, "0")[:3]
    try:
        if zone is None:
            offset = _local_offset(int(y), int(mo), int(d), int(h))
        elif zone == "Z":
            offset = 0
        else:
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        if offset == 0 and "01" <= mo <= "12" and "01" <= d <= "31" and h < "24" and mi < "60" and s < "61":
            value: str | None = f"{y}-{mo}-{d}T{h}:{mi}:{s}.{ms}Z"  # the usual case, no arithmetic
        else:
            when = _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int(ms) * 1000)
            when -= _dt.timedelta(seconds=offset)
            value = format_ts(when.replace(tzinfo=_dt.UTC))
    except (ValueError, OverflowError):
        value = None
    if len(_ts_cache) > 10000:
        _ts_cache.clear()
    _ts_cache[key] = value
    return value


def split_prefix(text: str) -> tuple[str | None, str]:
    """(timestamp or None, the line without PM2's date prefix)."""
    if text[:2] == "20" or (text[:1].isdigit() and len(text) > 20):
        m = _TS.match(text)
        if m:
            return parse_prefix_ts(m), text[m.end() :]
    return None, text


@dataclass
class Entry:
    stream: str  # "err" or "out"
    ts: str | None
    message: str
    file: str
    offset: int
    ino: int
    detail: list[str] = field(default_factory=list)
    stack_top: str | None = None
    code: str | None = None
    lines: int = 1
    _size: int = 0
    _depth: int = 0

    @property
    def detail_text(self) -> str:
        return "\n".join(self.detail)


class Grouper:
    """Feed lines of one stream in order; closed entries come out of `feed` and `flush`."""

    def __init__(self, stream: str, *, keep_stdout: bool = False) -> None:
        self.stream = stream
        self.keep_all = stream == "err" or keep_stdout
        self.current: Entry | None = None
        self.keep = False
        self.preamble: list[str] = []
        self.skipped = 0  # stdout lines dropped as noise
        self._prefix = ""
        self._prefix_ts: str | None = None

    @property
    def pending(self) -> Entry | None:
        """The entry still open (its stack may continue in bytes not yet read)."""
        return self.current if self.keep else None

    def feed(self, line: Line) -> list[Entry]:
        out: list[Entry] = []
        self._feed(line, out)
        return out

    def feed_all(self, lines: Iterable[Line]) -> list[Entry]:
        out: list[Entry] = []
        feed = self._feed
        for line in lines:
            feed(line, out)
        return out

    def flush(self) -> list[Entry]:
        out: list[Entry] = []
        self._close(out)
        return out

    def _feed(self, line: Line, out: list[Entry]) -> None:
        text = line.text
        if text[:2] == '{"':
            expanded = self._json(line)
            if expanded is not None:
                for ts, sub in expanded:
                    self._line(ts, sub, line, out)
                return
        # Lines written together share PM2's prefix: compare with the last one before any regex.
        prefix = self._prefix
        if prefix and text.startswith(prefix):
            ts, text = self._prefix_ts, text[len(prefix) :]
        elif text[:1].isdigit():
            m = _TS.match(text)
            if m:
                self._prefix = m.group(0)
                ts = self._prefix_ts = parse_prefix_ts(m)
                text = text[m.end() :]
            else:
                ts = None
        else:
            ts = None
        cur = self.current
        if cur is not None and cur._depth == 0 and text.startswith("    at ") and self.keep:
            # The common case, a stack frame: the fast path of _line/_add.
            cur.lines += 1
            if cur.stack_top is None:
                cur.stack_top = text[4:-2] if text.endswith(" {") else text[4:]
            if cur._size < DETAIL_LIMIT:
                cur.detail.append(text)
                cur._size += len(text) + 1
                if cur._size >= DETAIL_LIMIT:
                    cur.detail.append("…[detail truncated]")
            if text[-1:] == "{":
                cur._depth = 1
            return
        self._line(ts, text, line, out)

    def _json(self, line: Line) -> list[tuple[str | None, str]] | None:
        try:
            obj = json.loads(line.text)
        except ValueError:
            return None
        if not isinstance(obj, dict) or "message" not in obj:
            return None
        ts = None
        stamp = obj.get("timestamp")
        if isinstance(stamp, str):
            m = _TS.match(stamp + ": ")
            ts = parse_prefix_ts(m) if m else None
        message = str(obj["message"]).rstrip("\n")
        return [(ts, sub) for sub in message.split("\n")]

    def _line(self, ts: str | None, text: str, line: Line, out: list[Entry]) -> None:
        cur = self.current
        if cur is not None:
            if cur._depth > 0:
                self._add(cur, text)
                head = text.lstrip()[:1]
                if head in ("}", "]"):
                    cur._depth -= 1
                elif text.endswith(("{", "[")):
                    cur._depth += 1
                return
            if (
                (text[:1] in (" ", "\t") and not _NEXT_MARK.match(text))
                or _NODE_VERSION.match(text)
                or text in ("{", "}")
            ):
                self._add(cur, text)
                if text.endswith(("{", "[")):
                    cur._depth += 1
                return
        self._close(out)
        if not text.strip():
            return
        if text[:1] in (" ", "\t") and text.lstrip().startswith("at "):
            self.skipped += 1  # a stack frame whose message was before where reading started
            return
        keep = self.keep_all or bool(_LOOKS_LIKE_ERROR.search(text))
        if not keep:
            self.skipped += 1
        self.keep = keep
        cur = Entry(self.stream, ts, text.strip(), line.file, line.offset, line.ino)
        if text.endswith(("{", "[")):
            cur._depth = 1
        if keep and self.preamble:
            cur.detail = self.preamble
            cur._size = sum(len(p) + 1 for p in self.preamble)
            self.preamble = []
        self.current = cur

    def _add(self, cur: Entry, text: str) -> None:
        cur.lines += 1
        if not self.keep:
            if self.current is cur:
                self.skipped += 1
            return
        if cur.stack_top is None and text.lstrip().startswith("at "):
            top = text.strip()
            cur.stack_top = top[:-2] if top.endswith(" {") else top
        if cur.code is None and text.startswith("  code: "):
            m = _CODE.match(text)
            if m:
                cur.code = m.group(1)
        if cur._size < DETAIL_LIMIT:
            cur.detail.append(text)
            cur._size += len(text) + 1
            if cur._size >= DETAIL_LIMIT:
                cur.detail.append("…[detail truncated]")

    def _close(self, out: list[Entry]) -> None:
        cur, self.current = self.current, None
        if cur is None or not self.keep:
            return
        self.keep = False
        if _PREAMBLE.match(cur.message) and cur.stack_top is None:
            # `/app/server.js:10` + the source line + `^`: context for the error that follows.
            self.preamble = [cur.message, *cur.detail][:20]
            return
        if cur.message.endswith("{") and cur.detail and not cur.detail[0].lstrip().startswith("at "):
            # `Unhandled Rejection at: Promise {` + `  <rejected> Error: …`: the header alone says nothing.
            cur.message = f"{cur.message} {cur.detail[0].strip()}"
        out.append(cur)
