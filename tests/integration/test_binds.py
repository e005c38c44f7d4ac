"""Listening sockets: Unix, IPv6, several binds; the pidfile."""

import os
import signal
import socket
import subprocess

import pytest

from conftest import T, build_request, raw_exchange, status_of


def unix_get(path, target="/"):
    data, closed = raw_exchange(path, build_request(
        "GET", target, headers=[("Connection", "close")]),
        family=socket.AF_UNIX)
    return data


def test_unix_socket_bind(narwhal):
    d = narwhal.workdir()
    sock = os.path.join(d, "s.sock")
    n = narwhal(settings={"bind": "unix:" + sock, "workers": 2})
    assert n.listeners == ["unix:" + sock]
    data = unix_get(sock)
    assert status_of(data) == 200
    assert data.endswith(b"Hello, world!\n")
    # curl, as an operator would
    out = subprocess.run(["curl", "-sS", "--max-time", str(T(10)),
                          "--unix-socket", sock, "http://localhost/pid"],
                         capture_output=True, timeout=T(20))
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) in n.worker_pids()
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0
    assert not os.path.exists(sock), "socket file left behind"


def test_unix_socket_replaces_stale_file(narwhal):
    d = narwhal.workdir()
    sock = os.path.join(d, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()  # a dead server's leftover
    narwhal(settings={"bind": "unix:" + sock, "workers": 1})
    assert status_of(unix_get(sock)) == 200


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_bind(narwhal):
    n = narwhal(settings={"bind": "[::1]:0", "workers": 1})
    assert n.listeners[0].startswith("http://[::1]:")
    assert n.host == "::1"
    data, _ = raw_exchange(n.addr, build_request(
        "GET", "/environ", headers=[("Connection", "close")]),
        family=socket.AF_INET6)
    assert status_of(data) == 200
    assert b'"REMOTE_ADDR": "::1"' in data


def test_several_binds(narwhal):
    d = narwhal.workdir()
    sock = os.path.join(d, "multi.sock")
    n = narwhal(settings={"bind": ["127.0.0.1:0", "unix:" + sock],
                          "workers": 2})
    assert len(n.listeners) == 2
    assert n.get("/").status == 200
    assert status_of(unix_get(sock)) == 200


def test_pidfile_written_and_removed(narwhal):
    d = narwhal.workdir()
    pidfile = os.path.join(d, "narwhal.pid")
    n = narwhal(settings={"pidfile": pidfile, "workers": 1})
    with open(pidfile) as f:
        assert int(f.read().strip()) == n.pid
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0
    assert not os.path.exists(pidfile)


def test_port_in_use_is_fatal(narwhal):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        n = narwhal(settings={"bind": "127.0.0.1:%d" % port}, wait=False)
        code = n.wait_exit(20)
        assert code == 1
        assert any(("127.0.0.1:%d" % port) in l for l in n.log_lines())
    finally:
        s.close()
