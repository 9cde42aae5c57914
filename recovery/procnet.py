"""Which TCP sockets a process owns, from /proc: `/proc/net/tcp{,6}` joined with `/proc/<pid>/fd`.

Observe layer, read only on failure paths (a refused URL, later a worker whose connection hung).
The parsers are pure functions over the text the kernel writes; `listening` does the reading.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # TCP_LISTEN in the `st` column
TABLES = ("net/tcp", "net/tcp6")


@dataclass(frozen=True)
class Socket:
    """One row of /proc/net/tcp or tcp6."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str  # two hex digits, e.g. "0A" for LISTEN, "01" for ESTABLISHED
    inode: int

    @property
    def listening(self) -> bool:
        return self.state == LISTEN


def parse_address(text: str) -> tuple[str, int]:
    """'0100007F:0BB8' -> ('127.0.0.1', 3000); the 32-hex-digit IPv6 form too.

    The kernel prints each 32-bit word of the address as a native-endian number, so each word is
    packed back in native order to get the bytes in network order.
    """
    hex_ip, _, hex_port = text.partition(":")
    raw = b"".join(struct.pack("=I", int(hex_ip[i : i + 8], 16)) for i in range(0, len(hex_ip), 8))
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip = ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(hex_port, 16)


def parse_tcp(text: str) -> list[Socket]:
    """The sockets of a /proc/net/tcp or tcp6 file; malformed lines are skipped."""
    out: list[Socket] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            out.append(Socket(parse_address(fields[1]), parse_address(fields[2]), fields[3].upper(), int(fields[9])))
        except ValueError:
            continue
    return out


def socket_inode(link: str) -> int | None:
    """'socket:[12345]' (a /proc/<pid>/fd link) -> 12345; None for anything else."""
    if link.startswith("socket:[") and link.endswith("]"):
        try:
            return int(link[8:-1])
        except ValueError:
            return None
    return None


def parse_ppid(stat: str) -> int | None:
    """The parent pid from the text of /proc/<pid>/stat (the command name may hold spaces and parens)."""
    _, _, rest = stat.rpartition(")")
    fields = rest.split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def format_address(address: tuple[str, int]) -> str:
    """('127.0.0.1', 3001) -> '127.0.0.1:3001'; ('::', 3001) -> '[::]:3001'."""
    ip, port = address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# -- reading /proc ------------------------------------------------------------------------------


def descendants(pids: Iterable[int], proc: Path = PROC) -> list[int]:
    """`pids` and every process below them (an app under `npm start` listens in a child)."""
    roots = [p for p in pids if p]
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return roots
    for name in entries:
        if not name.isdigit():
            continue
        try:
            ppid = parse_ppid((proc / name / "stat").read_text(errors="replace"))
        except OSError:
            continue  # ended meanwhile
        if ppid is not None:
            children.setdefault(ppid, []).append(int(name))
    out: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop(0)
        if pid in out:
            continue
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def parents(pids: Iterable[int], proc: Path = PROC) -> list[int]:
    """The parent pids of `pids` (PM2's daemon holds the listening socket of a cluster-mode app)."""
    out: list[int] = []
    for pid in pids:
        try:
            ppid = parse_ppid((proc / str(pid) / "stat").read_text(errors="replace"))
        except OSError:
            continue
        if ppid and ppid > 1 and ppid not in out:
            out.append(ppid)
    return out


def socket_inodes(pid: int, proc: Path = PROC) -> set[int]:
    """The inodes of the sockets `pid` holds open; raises OSError when its fds cannot be read."""
    fd_dir = proc / str(pid) / "fd"
    out: set[int] = set()
    for fd in os.listdir(fd_dir):
        try:
            inode = socket_inode(os.readlink(fd_dir / fd))
        except OSError:
            continue  # closed meanwhile
        if inode is not None:
            out.add(inode)
    return out


def tcp_sockets(proc: Path = PROC) -> list[Socket]:
    """Every TCP socket of the host (IPv4 and IPv6) as the kernel lists them."""
    out: list[Socket] = []
    for table in TABLES:
        try:
            out.extend(parse_tcp((proc / table).read_text(errors="replace")))
        except OSError:
            continue  # no IPv6 on this host
    return out


def listening(pids: Iterable[int], proc: Path = PROC) -> list[tuple[str, int]]:
    """The (ip, port) pairs that `pids` or their descendants listen on, sorted, each once.

    Raises OSError (PermissionError for another user's processes) when no pid's fds could be read.
    """
    inodes: set[int] = set()
    readable, error = 0, None
    for pid in descendants(pids, proc):
        try:
            inodes |= socket_inodes(pid, proc)
            readable += 1
        except OSError as exc:
            error = exc
    if not readable:
        raise error or FileNotFoundError("no process to read")
    found = {s.local for s in tcp_sockets(proc) if s.listening and s.inode in inodes}
    return sorted(found, key=lambda a: (a[1], a[0]))


def connection_inodes(sockets: Iterable[Socket], server_port: int, client_ports: Iterable[int]) -> dict[int, int]:
    """inode -> client port, for the server side of each connection from one of `client_ports` to
    `server_port` (local = the app's port, remote = the probe's port). Pure."""
    wanted = set(client_ports)
    return {
        s.inode: s.remote[1]
        for s in sockets
        if s.inode and s.local[1] == server_port and s.remote[1] in wanted and not s.listening
    }


def connection_owners(
    server_port: int, client_ports: Iterable[int], pids: Iterable[int], proc: Path = PROC
) -> dict[int, int]:
    """client port -> the pid (among `pids`) holding the server side of that connection.

    A cluster worker that took a probe's connection holds its socket; a connection PM2's master
    accepted but could not hand over (its worker is blocked) is in none of `pids`, so not named.
    """
    inodes = connection_inodes(tcp_sockets(proc), server_port, client_ports)
    owners: dict[int, int] = {}
    if not inodes:
        return owners
    for pid in pids:
        try:
            held = socket_inodes(pid, proc)
        except OSError:
            continue  # gone, or another user's
        for inode in held & inodes.keys():
            owners[inodes[inode]] = pid
    return owners
