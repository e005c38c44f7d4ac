"""`narwhal status`: what the master reports about itself over the control
socket, and the socket's permissions."""

import json
import os
import stat
import subprocess

from conftest import BIN, T, wait_until

WORKER_KEYS = {"id", "pid", "generation", "state", "age", "requests", "rss",
               "budget"}


def status(n):
    out = subprocess.run([BIN, "status", "--json", "-c", n.config_path],
                         capture_output=True, text=True, timeout=T(15))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_status_json(narwhal):
    n = narwhal(settings={"workers": 2, "timeout": 4})
    st = status(n)
    assert st["master_pid"] == n.pid
    assert st["generation"] == 1
    assert st["tree"] == n.settings["chdir"]
    assert "last_reload" in st
    workers = st["workers"]
    assert sorted(w["pid"] for w in workers) == n.worker_pids()
    for w in workers:
        assert WORKER_KEYS <= set(w), w
        assert w["state"] == "live"
        assert w["generation"] == 1
        assert w["rss"] > 0
        assert w["age"] >= 0

    for _ in range(20):
        assert n.get("/").status == 200
    # request counts arrive with heartbeats (every timeout/4 s)
    wait_until(lambda: sum(w["requests"] for w in status(n)["workers"]) >= 20,
               15, interval=0.5, what="the request counts in status")


def test_status_text(narwhal):
    n = narwhal(settings={"workers": 1})
    out = subprocess.run([BIN, "status", "-c", n.config_path],
                         capture_output=True, text=True, timeout=T(15))
    assert out.returncode == 0, out.stderr
    assert str(n.worker_pids()[0]) in out.stdout


def test_control_socket_is_owner_only(narwhal):
    n = narwhal(settings={"workers": 1})
    path = os.path.join(n.run_dir, "control.sock")
    assert os.path.exists(path)
    mode = os.stat(path).st_mode
    parent = os.stat(os.path.dirname(path)).st_mode
    assert stat.S_ISSOCK(mode)
    assert (mode & 0o077) == 0 or (parent & 0o077) == 0, \
        "control socket %o in a dir %o" % (mode & 0o777, parent & 0o777)


def test_status_without_a_master(narwhal):
    d = narwhal.workdir()
    ini = os.path.join(d, "n.ini")
    with open(ini, "w") as f:
        f.write("[narwhal]\nruntime_dir = %s\n" % os.path.join(d, "run"))
    out = subprocess.run([BIN, "status", "--json", "-c", ini],
                         capture_output=True, text=True, timeout=T(15))
    assert out.returncode != 0
    assert out.stderr.strip()
