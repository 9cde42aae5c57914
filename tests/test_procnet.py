"""recovery.procnet: the listening addresses of a process tree, from /proc/net/tcp{,6} and /proc/<pid>/fd."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from recovery import procnet

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5001 1 0 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5002 1 0 100 0 0 10 0
   2: 0100007F:0BB9 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 5003 1 0 20 4 30 10 -1
   3: garbage
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0BBA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6001 1 0 100 0 0 10 0
   1: 00000000000000000000000001000000:0BBB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6002 1 0 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0BBC 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6003 1 0 100 0 0 10 0
"""
LITTLE = sys.byteorder == "little"


@pytest.mark.skipif(not LITTLE, reason="the sample text is a little-endian host's")
def test_it_reads_ipv4_listening_sockets_and_skips_bad_lines() -> None:
    sockets = procnet.parse_tcp(TCP)
    assert [(s.local, s.state, s.inode) for s in sockets] == [
        (("127.0.0.1", 3001), "0A", 5001),
        (("0.0.0.0", 8080), "0A", 5002),
        (("127.0.0.1", 3001), "01", 5003),
    ]
    assert [s.listening for s in sockets] == [True, True, False]
    assert sockets[2].remote == ("127.0.0.1", 54000)


@pytest.mark.skipif(not LITTLE, reason="the sample text is a little-endian host's")
def test_it_reads_ipv6_any_loopback_and_ipv4_mapped_addresses() -> None:
    assert [s.local for s in procnet.parse_tcp(TCP6)] == [("::", 3002), ("::1", 3003), ("127.0.0.1", 3004)]


def test_it_formats_addresses_with_brackets_for_ipv6() -> None:
    assert procnet.format_address(("127.0.0.1", 3001)) == "127.0.0.1:3001"
    assert procnet.format_address(("::", 3001)) == "[::]:3001"


def test_it_reads_socket_links_and_parent_pids() -> None:
    assert procnet.socket_inode("socket:[12345]") == 12345
    assert procnet.socket_inode("/dev/null") is None
    assert procnet.socket_inode("pipe:[7]") is None
    assert procnet.parse_ppid("4242 (node (next) srv) S 4000 4242 4242 0 -1") == 4000
    assert procnet.parse_ppid("") is None


def test_it_joins_a_fake_proc_tree(tmp_path: Path) -> None:
    """A parent pid with no socket and a child holding the listening one (npm start -> next)."""
    proc = tmp_path
    (proc / "net").mkdir()
    (proc / "net" / "tcp").write_text(TCP)
    (proc / "net" / "tcp6").write_text(TCP6)
    for pid, ppid, links in ((100, 1, ["/dev/null"]), (101, 100, ["socket:[5001]", "socket:[5003]"]), (200, 1, [])):
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(f"{pid} (node) S {ppid} 0 0")
        for n, link in enumerate(links):
            os.symlink(link, proc / str(pid) / "fd" / str(n))
    expected = [("127.0.0.1", 3001)] if LITTLE else None
    found = procnet.listening([100], proc)
    if expected is not None:
        assert found == expected
    assert procnet.descendants([100], proc) == [100, 101]
    assert procnet.parents([101, 100], proc) == [100]  # pid 1 is no daemon of ours
    assert procnet.listening([200], proc) == []
    with pytest.raises(OSError):
        procnet.listening([999], proc)


def test_it_finds_the_real_port_a_child_process_listens_on() -> None:
    """A real listening socket in a real child: found from the parent's pid, by its real port."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',0));s.listen()\n"
            "print(s.getsockname()[1],flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        with socket.socket() as mine:
            mine.bind(("127.0.0.1", 0))
            mine.listen()
            own = mine.getsockname()[1]
            found = procnet.listening([os.getpid()])
        assert ("127.0.0.1", port) in found
        assert ("127.0.0.1", own) in found
        assert procnet.listening([child.pid]) == [("127.0.0.1", port)]
    finally:
        child.kill()
        child.wait()
