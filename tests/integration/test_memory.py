"""The master's memory: libcurl is loaded only for a config with ready_path.

Linking libcurl maps its TLS, Kerberos and LDAP libraries into the master at
start-up (about 6 MB of RSS), so the master dlopens it when a config that
sets ready_path is loaded, at start-up or on reload. These tests check what
the master has mapped (/proc/PID/maps), not how much memory it uses: that
depends on the machine. A ready_path of /log?msg=... makes every probe
request leave a line in the master's log (the app writes msg to stderr).
"""

import os
import re
import signal
import subprocess

from conftest import BIN, T

PROBE_MSG = "probed-by-narwhal"
READY = "/log?msg=" + PROBE_MSG
FAST = {"workers": 2, "ready_interval": 0.1, "min_uptime": 0,
        "boot_timeout": "%g" % T(15)}


def mapped(pid, name):
    """The files of pid's mappings whose name contains name."""
    with open("/proc/%d/maps" % pid) as f:
        return sorted({line.split()[-1] for line in f
                       if name in line.split()[-1]})


def probed_then_live(n, gen, since=0):
    """Pids of gen that went live after being probed, from the log."""
    probing = {int(m.group(1)) for m in n.find_logs(
        r"worker \d+ pid (\d+) gen %d: probing \(%s\)$"
        % (gen, re.escape(READY)), since)}
    live = {int(m.group(1)) for m in n.find_logs(
        r"worker \d+ pid (\d+) gen %d: live" % gen, since)}
    assert live <= probing, (live, probing)
    return live


def probe_hits(n, gen, since=0):
    return n.find_logs(r"pid \d+ gen %d stderr: %s$" % (gen, PROBE_MSG),
                       since)


def broken_libcurl(d):
    """A directory whose libcurl.so.4 cannot be loaded, for LD_LIBRARY_PATH."""
    lib = os.path.join(d, "badlib")
    os.makedirs(lib, exist_ok=True)
    with open(os.path.join(lib, "libcurl.so.4"), "w") as f:
        f.write("not a shared library\n")
    return lib


def test_no_ready_path_no_libcurl(narwhal):
    n = narwhal(settings=dict(FAST))
    assert n.get("/").body == b"Hello, world!\n"
    assert mapped(n.pid, "libcurl") == []


def test_ready_path_loads_libcurl_and_probes(narwhal):
    n = narwhal(settings=dict(FAST, ready_path=READY))
    assert mapped(n.pid, "libcurl") != []
    assert len(probed_then_live(n, 1)) == 2
    assert probe_hits(n, 1)
    assert n.get("/").body == b"Hello, world!\n"


def test_reload_that_adds_ready_path_probes(narwhal):
    n = narwhal(settings=dict(FAST))
    assert mapped(n.pid, "libcurl") == []
    # the warm-up gate (GET /) needs no libcurl
    assert n.find_logs(r"probing \(/\)")
    assert not n.find_logs(r"probing \(%s\)" % READY)
    n.settings["ready_path"] = READY
    n.config_text = n.render_config()
    with open(n.config_path, "w") as f:
        f.write(n.config_text)
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_live(gen=2, timeout=30)
    assert len(probed_then_live(n, 2, mark)) == 2
    assert probe_hits(n, 2, mark)
    assert mapped(n.pid, "libcurl") != []
    assert n.get("/").body == b"Hello, world!\n"


def test_unloadable_libcurl_refuses_ready_path(narwhal, monkeypatch):
    """At start-up, in --check-config and on reload: a config error."""
    n = narwhal(start=False, settings=dict(FAST, ready_path=READY))
    monkeypatch.setenv("LD_LIBRARY_PATH", broken_libcurl(n.dir))
    with open(n.config_path, "w") as f:
        f.write(n.config_text)
    check = subprocess.run([BIN, "--check-config", "-c", n.config_path],
                           capture_output=True, text=True, timeout=T(15))
    assert check.returncode == 1
    assert "ready_path needs libcurl: " in check.stderr, check.stderr

    n.start(wait=False)
    assert n.wait_exit() == 1
    assert n.find_logs(r"\[ERROR\] ready_path needs libcurl: .*libcurl\.so\.4")
    assert not n.find_logs(r"worker \d+ pid")

    # Without ready_path the same master starts; a reload adding it is
    # refused and the first generation keeps serving.
    n = narwhal(settings=dict(FAST))
    pids = n.worker_pids()
    n.settings["ready_path"] = READY
    with open(n.config_path, "w") as f:
        f.write(n.render_config())
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_for_log(r"reload refused, nothing changed: ready_path needs "
                   r"libcurl: ", 15, mark)
    assert not n.find_logs(r"generation 2", mark)
    assert n.worker_pids() == pids
    assert n.get("/").body == b"Hello, world!\n"
    assert mapped(n.pid, "libcurl") == []
