"""Incremental, exact reading of log files that get rotated, truncated, replaced and garbled.

Each file is remembered as a `FileState`: device, inode, the offset just after the last
complete line read, and a fingerprint (SHA-256 of up to the first 1 KB). A call to
`read()` returns only complete lines after that offset and the state to remember next:

- first sight: read from the start (or from the end with `start="end"`);
- rotation by rename (logrotate, a new file at the path): the old inode is found again in
  the same folder and finished from the remembered offset, then the new file is read from 0;
- copy-and-truncate (pm2-logrotate, logrotate `copytruncate`): the file is shorter than the
  offset or its first bytes changed; the rest of the old contents is read from the copy
  (found in the folder by fingerprint) if there is one, then the file from 0;
- a partial last line stays unread until its newline arrives (except in a rotated-away file,
  which will not grow any more);
- a line longer than `LINE_LIMIT` keeps its head plus ` …[truncated N bytes]`;
- invalid UTF-8 and NUL bytes are replaced, never dropped; a file that vanishes or a folder
  that cannot be read gives a `ReadWarning`, never an exception.

At most `max_bytes` are read per call, so a huge backlog is worked off over several calls.
"""

from __future__ import annotations

import hashlib
import os
import stat as _stat
from dataclasses import dataclass, field, replace
from typing import NamedTuple

FP_BYTES = 1024
LINE_LIMIT = 64 * 1024
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileState:
    """Where reading of one path stopped."""

    path: str
    dev: int = 0
    ino: int = 0
    offset: int = 0
    fp: str = ""  # sha256 hex of the first fp_len bytes
    fp_len: int = 0
    skip: int = 0  # >0: inside an over-long line, this many bytes of it already passed


class Line(NamedTuple):
    text: str
    offset: int  # byte offset of the line's start in its file
    file: str  # the path it was read from (a rotated file's own path)
    ino: int


@dataclass(frozen=True)
class ReadWarning:
    path: str
    kind: str  # missing, permission, io, not-a-file
    message: str


@dataclass
class ReadResult:
    lines: list[Line] = field(default_factory=list)
    state: FileState | None = None
    warnings: list[ReadWarning] = field(default_factory=list)
    eof: bool = True  # False when the byte budget ran out before the end
    bytes_read: int = 0
    rotations: list[str] = field(default_factory=list)  # what happened: renamed, truncated, replaced
    # inode -> the file's mtime taken after its lines were read: every byte read existed by then
    mtimes: dict[int, float] = field(default_factory=dict)


def _fingerprint(fd: int, length: int) -> tuple[str, int]:
    head = os.pread(fd, length, 0)
    return hashlib.sha256(head).hexdigest(), len(head)


def _decode(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    text = raw.decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class _Budget:
    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes


def _read_lines(
    fd: int, path: str, ino: int, offset: int, skip: int, budget: _Budget, out: list[Line], *, final: bool
) -> tuple[int, int, bool]:
    """Read complete lines from `offset`; return (new offset, new skip, reached eof).

    With `final` (a file that will not grow), a trailing partial line is returned too.
    """
    pending = b""  # bytes of a line not yet ended, starting at pending_at
    pending_at = offset
    pos = offset
    eof = False
    long_head: bytes | None = None  # the head of an over-long line whose end is not yet seen
    long_at = 0
    while budget.left > 0:
        chunk = os.pread(fd, min(CHUNK, budget.left), pos)
        if not chunk:
            eof = True
            break
        budget.left -= len(chunk)
        pos += len(chunk)
        start = 0
        if skip:
            nl = chunk.find(b"\n")
            if nl < 0:
                skip += len(chunk)
                pending_at = pos
                continue
            if long_head is not None:
                cut = skip + nl - LINE_LIMIT
                out.append(Line(_decode(long_head) + f" …[truncated {cut} bytes]", long_at, path, ino))
                long_head = None
            skip = 0
            start = nl + 1
            pending_at = pos - len(chunk) + start
        data = pending + chunk[start:] if pending else chunk[start:]
        at = pending_at
        cut = data.rfind(b"\n") + 1
        parts = []
        tail = data[cut:]
        if cut and b"\x00" not in data and b"\r" not in data:
            # The common case: one decode for all complete lines of the chunk.
            try:
                texts = data[:cut].decode("utf-8").split("\n")
            except UnicodeDecodeError:
                parts = data[:cut].split(b"\n")
                parts.pop()
            else:
                texts.pop()
                append = out.append
                for text in texts:
                    n = len(text) if text.isascii() else len(text.encode("utf-8"))
                    if n > LINE_LIMIT:
                        raw = text.encode("utf-8")
                        text = _decode(raw[:LINE_LIMIT]) + f" …[truncated {n - LINE_LIMIT} bytes]"
                    append(Line(text, at, path, ino))
                    at += n + 1
        elif cut:
            parts = data[:cut].split(b"\n")
            parts.pop()
        for raw in parts:
            if len(raw) > LINE_LIMIT:
                text = _decode(raw[:LINE_LIMIT]) + f" …[truncated {len(raw) - LINE_LIMIT} bytes]"
            else:
                text = _decode(raw)
            out.append(Line(text, at, path, ino))
            at += len(raw) + 1
        pending, pending_at = tail, at
        if len(pending) > LINE_LIMIT:
            # An over-long line: keep its head, skip the rest up to its newline.
            long_head, long_at, skip = pending[:LINE_LIMIT], pending_at, len(pending)
            pending = b""
            pending_at = pos
    if long_head is not None:  # its end is not in sight: say so, skip the rest next time
        out.append(Line(_decode(long_head) + f" …[truncated {skip - LINE_LIMIT}+ bytes]", long_at, path, ino))
    if final and pending:
        out.append(Line(_decode(pending), pending_at, path, ino))
        pending_at += len(pending)
    return pending_at, skip, eof


def _find_by_inode(directory: str, stem: str, dev: int, ino: int) -> str | None:
    """A file in `directory` (named like the log) that is the given inode: the renamed old log."""
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    for name in sorted(names):
        if not name.startswith(stem):
            continue
        candidate = os.path.join(directory, name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if st.st_ino == ino and st.st_dev == dev:
            return candidate
    return None


def _find_copy(directory: str, stem: str, exclude: str, fp: str, fp_len: int, offset: int) -> str | None:
    """A rotated copy of a truncated log: same first bytes and at least `offset` long."""
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    best: tuple[float, str] | None = None
    for name in names:
        candidate = os.path.join(directory, name)
        if not name.startswith(stem) or candidate == exclude or name.endswith((".gz", ".bz2", ".xz", ".zst")):
            continue
        try:
            with open(candidate, "rb") as f:
                st = os.fstat(f.fileno())
                if not _stat.S_ISREG(st.st_mode) or st.st_size < offset:
                    continue
                if hashlib.sha256(f.read(fp_len)).hexdigest() != fp:
                    continue
        except OSError:
            continue
        # The newest matching copy is the one made at this rotation.
        if best is None or st.st_mtime > best[0]:
            best = (st.st_mtime, candidate)
    return best[1] if best else None


def _stem(path: str) -> str:
    base = os.path.basename(path)
    return base[: -len(".log")] if base.endswith(".log") else base


def read(path: str, state: FileState | None, *, max_bytes: int = 64 << 20, start: str = "beginning") -> ReadResult:
    """Read what is new in `path` since `state` (None: never read); never raises for I/O trouble."""
    result = ReadResult(state=state)
    budget = _Budget(max_bytes)
    directory, stem = os.path.dirname(path) or ".", _stem(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        result.warnings.append(ReadWarning(path, "missing", f"{path}: no such file"))
        if state is not None and state.ino:
            # Renamed away and not yet recreated: finish what is there, keep following it.
            old = _find_by_inode(directory, stem, state.dev, state.ino)
            if old is not None:
                result.state, result.eof = _continue(old, state, budget, result, final=False)
        return result
    except PermissionError as exc:
        result.warnings.append(ReadWarning(path, "permission", f"{path}: permission denied ({exc.strerror})"))
        return result
    except OSError as exc:
        result.warnings.append(ReadWarning(path, "io", f"{path}: {exc.strerror or exc}"))
        return result
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            result.warnings.append(ReadWarning(path, "not-a-file", f"{path}: not a regular file"))
            return result
        if state is None or not state.ino:
            offset = st.st_size if start == "end" else 0
            fp, fp_len = _fingerprint(fd, FP_BYTES)
            state = FileState(path, st.st_dev, st.st_ino, 0, fp, fp_len)
            if offset:
                # Start at the end, but only after a complete line.
                head = os.pread(fd, min(offset, CHUNK), max(0, offset - CHUNK))
                offset -= len(head) - (head.rfind(b"\n") + 1) if b"\n" in head else 0
                state = replace(state, offset=offset)
        elif (st.st_dev, st.st_ino) != (state.dev, state.ino):
            old = _find_by_inode(directory, stem, state.dev, state.ino)
            result.rotations.append("renamed" if old else "replaced")
            if old is not None:
                done, eof = _continue(old, state, budget, result, final=True)
                if not eof:  # budget spent on the old file: the new one waits for the next call
                    result.state, result.eof = done, False
                    return result
            fp, fp_len = _fingerprint(fd, FP_BYTES)
            state = FileState(path, st.st_dev, st.st_ino, 0, fp, fp_len)
        else:
            fp_now = hashlib.sha256(os.pread(fd, state.fp_len, 0)).hexdigest() if state.fp_len else state.fp
            if st.st_size < state.offset or fp_now != state.fp:
                result.rotations.append("truncated")
                copy = _find_copy(directory, stem, path, state.fp, state.fp_len, state.offset) if state.fp_len else None
                if copy is not None:
                    done, eof = _continue(copy, state, budget, result, final=True, match_inode=False)
                    if not eof:
                        result.state, result.eof = done, False
                        return result
                fp, fp_len = _fingerprint(fd, FP_BYTES)
                state = FileState(path, st.st_dev, st.st_ino, 0, fp, fp_len)
        # A fingerprint taken while the file was shorter than FP_BYTES grows with it.
        if state.fp_len < FP_BYTES and st.st_size > state.fp_len:
            fp, fp_len = _fingerprint(fd, FP_BYTES)
            state = replace(state, fp=fp, fp_len=fp_len)
        try:
            offset, skip, eof = _read_lines(
                fd, path, st.st_ino, state.offset, state.skip, budget, result.lines, final=False
            )
        except OSError as exc:
            result.warnings.append(ReadWarning(path, "io", f"{path}: read failed: {exc.strerror or exc}"))
            result.state = state
            result.eof = False
            return result
        result.bytes_read += offset - state.offset
        result.mtimes[st.st_ino] = os.fstat(fd).st_mtime
        result.eof = eof
        result.state = replace(state, offset=offset, skip=skip)
        return result
    finally:
        os.close(fd)


def _continue(
    old_path: str, state: FileState, budget: _Budget, result: ReadResult, *, final: bool, match_inode: bool = True
) -> tuple[FileState, bool]:
    """Read the rest of a rotated-away file from the remembered offset; return the state and whether it ended."""
    try:
        fd = os.open(old_path, os.O_RDONLY)
    except OSError as exc:
        result.warnings.append(ReadWarning(old_path, "io", f"{old_path}: cannot finish the rotated log: {exc}"))
        return state, True
    try:
        st = os.fstat(fd)
        if match_inode and (st.st_dev, st.st_ino) != (state.dev, state.ino):
            return state, True
        offset, skip, eof = _read_lines(
            fd, old_path, st.st_ino, state.offset, state.skip, budget, result.lines, final=final
        )
        result.bytes_read += offset - state.offset
        result.mtimes[st.st_ino] = os.fstat(fd).st_mtime
        return replace(state, offset=offset, skip=skip), eof
    except OSError as exc:
        result.warnings.append(ReadWarning(old_path, "io", f"{old_path}: read failed: {exc.strerror or exc}"))
        return state, True
    finally:
        os.close(fd)
