"""The control socket's limits (issue 15.5): a flood of idle connections,
or running out of file descriptors, never starves the master.

Before: every connection was accepted and kept for ever; past the fd limit
accept() failed with EMFILE on a socket that stayed readable, so the master
spun at 100% CPU, could not answer `status`, and could not replace a killed
worker (no fds left for its pipes).
"""

import os
import resource
import signal
import socket
import subprocess
import time

from conftest import T, wait_until
from deploy import control_path, status

CLIENT_TIMEOUT = 5  # control.c


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_over(pid, seconds):
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def flood(path, count):
    """count idle connections (as many as the backlog lets in)."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def closed_by_peer(s, timeout):
    s.setblocking(True)
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def replace_a_worker(n):
    victim = n.worker_pids()[0]
    mark = n.mark()
    os.kill(victim, signal.SIGKILL)
    n.wait_for_log(r"pid %d gen 1: exited on signal 9, respawn in 0s"
                   % victim, 10, since=mark)
    n.wait_for_log(r"gen 1: live", 30, since=mark)
    return mark


def test_idle_flood_leaves_the_master_free(narwhal):
    n = narwhal(start=False, settings={"workers": 2})
    command = n.command
    # the 20,000 connections against 20,000 fds, scaled down
    n.command = lambda: ["prlimit", "--nofile=256", "--"] + command()
    n.start()
    socks = []
    try:
        # more than the master's fds, however fast it accepts
        for _ in range(100):
            socks += flood(control_path(n), 50)
            if len(socks) >= 260:
                break
            time.sleep(0.01)
        assert len(socks) >= 250, len(socks)
        time.sleep(0.5)
        busy = cpu_over(n.pid, 2)
        assert busy < 1.0, "master used %.2fs of CPU in 2s" % busy
        # the master still answers, and replaces a killed worker at once
        assert status(n)["live"] == 2
        mark = replace_a_worker(n)
        assert not n.find_logs(r"cannot spawn|Too many open files", mark)
        # silent clients are dropped after CLIENT_TIMEOUT
        assert closed_by_peer(socks[-1], T(CLIENT_TIMEOUT + 10))
        assert len(os.listdir("/proc/%d/fd" % n.pid)) < 64
    finally:
        for s in socks:
            s.close()


def test_accept_out_of_fds_pauses_instead_of_spinning(narwhal):
    n = narwhal(settings={"workers": 1})
    used = len(os.listdir("/proc/%d/fd" % n.pid))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    subprocess.run(["prlimit", "--pid", str(n.pid),
                    "--nofile=%d:%s" % (used + 2, hard)], check=True)
    socks = []
    try:
        mark = n.mark()
        socks = flood(control_path(n), 10)
        n.wait_for_log(r"control socket: accept: Too many open files; "
                       r"pausing 0.5s", 10, since=mark)
        busy = cpu_over(n.pid, 2)
        assert busy < 1.0, "master used %.2fs of CPU in 2s" % busy
        subprocess.run(["prlimit", "--pid", str(n.pid),
                        "--nofile=%s:%s" % (hard, hard)], check=True)
        for s in socks:
            s.close()
        socks = []
        wait_until(lambda: status(n)["live"] == 1, 15,
                   what="status once fds are back")
    finally:
        for s in socks:
            s.close()
