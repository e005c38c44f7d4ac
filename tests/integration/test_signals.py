"""Signals on the master, as operators know them from gunicorn."""

import os
import signal
import threading
import time
import uuid

import pytest

from conftest import T, pid_alive, wait_until


def test_term_lets_a_slow_request_finish(narwhal):
    n = narwhal(settings={"workers": 1, "graceful_timeout": 15})
    worker = n.worker_pids()[0]
    result = {}

    def slow():
        try:
            r = n.get("/slow?s=3&id=term", timeout=30)
            result["status"], result["body"] = r.status, r.body
            result["connection"] = r.header("Connection")
        except Exception as e:  # reported by the assertion below
            result["error"] = repr(e)

    mark = n.mark()
    t = threading.Thread(target=slow, daemon=True)
    t.start()
    # the worker's stderr, relayed by the master, says the request is in the app
    n.wait_for_log(r"worker \d+ pid %d gen 1 stderr: slow start term" % worker,
                   10, since=mark)
    n.signal(signal.SIGTERM)
    t.join(T(30))
    assert not t.is_alive()
    assert result.get("status") == 200, result
    assert result["body"] == b"slept 3\n"
    # README: in-flight requests are answered with `Connection: close`
    assert (result["connection"] or "").lower() == "close"
    assert n.wait_exit(20) == 0
    n.wait_for_log(r"worker \d+ pid %d gen 1: exited with status 0" % worker, 5)
    assert not pid_alive(worker)


def test_term_with_idle_workers_exits_zero(narwhal):
    n = narwhal(settings={"workers": 3})
    pids = n.worker_pids()
    assert len(pids) == 3
    assert sorted(n.children()) == pids
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0
    for pid in pids:
        assert not pid_alive(pid)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT],
                         ids=["INT", "QUIT"])
def test_int_and_quit_are_quick(narwhal, sig):
    n = narwhal(settings={"workers": 1, "graceful_timeout": 30})
    worker = n.worker_pids()[0]
    t = threading.Thread(target=lambda: _swallow(n.get, "/slow?s=20&id=quick"),
                         daemon=True)
    mark = n.mark()
    t.start()
    n.wait_for_log(r"stderr: slow start quick", 10, since=mark)
    start = time.monotonic()
    n.signal(sig)
    n.wait_exit(15)
    # did not wait for the 20 s request (nor graceful_timeout)
    assert time.monotonic() - start < T(15)
    wait_until(lambda: not pid_alive(worker), 5, what="worker gone")


def _swallow(fn, *a):
    try:
        fn(*a, timeout=40)
    except Exception:
        pass


def test_killed_worker_is_replaced(narwhal):
    n = narwhal(settings={"workers": 1})
    old = n.worker_pid_via_http()
    mark = n.mark()
    os.kill(old, signal.SIGKILL)
    n.wait_for_log(r"worker (\d+) pid %d gen 1: exited on signal 9" % old, 10,
                   since=mark)
    m = n.wait_for_log(r"worker \d+ pid (\d+) gen \d+: live", 20, since=mark)
    new = int(m.group(1))
    assert new != old
    assert n.worker_pids() == [new]
    assert n.worker_pid_via_http() == new
    # the master itself did not flinch
    assert n.proc.poll() is None


def test_killed_worker_keeps_its_slot_id(narwhal):
    n = narwhal(settings={"workers": 2})
    ev = [e for e in n.worker_events() if e[3] == "live"]
    wid, old = ev[0][0], ev[0][1]
    mark = n.mark()
    os.kill(old, signal.SIGKILL)
    n.wait_for_log(r"worker %d pid \d+ gen 1: live" % wid, 20, since=mark)
    assert len(n.worker_pids()) == 2


def test_ttin_ttou_change_the_worker_count(narwhal):
    n = narwhal(settings={"workers": 2})
    assert len(n.worker_pids()) == 2

    mark = n.mark()
    n.signal(signal.SIGTTIN)
    m = n.wait_for_log(r"worker \d+ pid (\d+) gen 1: live", 20, since=mark)
    added = int(m.group(1))
    wait_until(lambda: len(n.worker_pids()) == 3, 10, what="3 live workers")
    assert added in n.worker_pids()
    wait_until(lambda: len(n.children()) == 3, 10, what="3 children")

    mark = n.mark()
    n.signal(signal.SIGTTIN)
    wait_until(lambda: len(n.worker_pids()) == 4, 20, what="4 live workers")

    mark = n.mark()
    n.signal(signal.SIGTTOU)
    m = n.wait_for_log(r"worker \d+ pid (\d+) gen 1: exited", 20, since=mark)
    wait_until(lambda: len(n.worker_pids()) == 3, 10, what="3 live workers")
    wait_until(lambda: len(n.children()) == 3, 10, what="3 children")
    assert not pid_alive(int(m.group(1)))

    n.signal(signal.SIGTTOU)
    wait_until(lambda: len(n.worker_pids()) == 2 and len(n.children()) == 2,
               20, what="2 workers")
    # the count stays where the operator put it
    time.sleep(1)
    assert len(n.worker_pids()) == 2
    assert n.get("/").status == 200


def test_usr2_reloads_in_place_instead_of_killing_the_master(narwhal):
    """gunicorn's binary upgrade starts with USR2; a deploy script sending it
    to narwhal gets a reload (new workers, the same master), not a dead
    service: USR2's default action would have ended the master."""
    n = narwhal(settings={"workers": 2})
    old = n.worker_pids()
    mark = n.mark()
    n.signal(signal.SIGUSR2)
    n.wait_for_log(r"SIGUSR2 \(gunicorn's binary upgrade\): reloading in "
                   r"place", since=mark)
    n.wait_live(gen=2)
    wait_until(lambda: not any(pid_alive(p) for p in old), 20,
               what="generation 1's workers gone")
    assert pid_alive(n.pid)
    assert n.get("/").status == 200
    assert len(n.worker_pids()) == 2


def test_ttou_never_goes_below_one(narwhal):
    n = narwhal(settings={"workers": 1})
    pid = n.worker_pids()[0]
    n.signal(signal.SIGTTOU)
    time.sleep(1)
    assert n.worker_pids() == [pid]
    assert n.get("/").status == 200


def test_worker_stderr_is_relayed(narwhal):
    n = narwhal(settings={"workers": 1})
    pid = n.worker_pids()[0]
    word = uuid.uuid4().hex
    assert n.get("/log?msg=" + word).status == 200
    m = n.wait_for_log(r"\[(\d+)\] \[\w+\] worker (\d+) pid (\d+) gen 1 stderr: "
                       + word + "$", 10)
    assert int(m.group(1)) == n.pid
    assert int(m.group(3)) == pid


# --- signals while the workers are still importing the app -------------------

def booting(narwhal, workers=2):
    n = narwhal(chdir="slow_boot", settings={"workers": workers},
                env={"BOOT_SLEEP": "3"}, wait=False)
    n.wait_for_log(r"stderr: importing, sleeping", 15)
    return n


def test_term_during_boot(narwhal):
    n = booting(narwhal)
    start = time.monotonic()
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0
    assert time.monotonic() - start < T(10)
    assert n.kill_leftovers() == [], "workers outlived the master"


def test_usr1_during_boot_kills_no_worker(narwhal):
    """Workers that have not installed their USR1 handler yet must not be
    killed by a log reopen (Python's default action for USR1 is to exit).
    One USR1 right after the fork (the interpreter is still starting), one
    while the app is being imported."""
    n = narwhal(chdir="slow_boot", settings={"workers": 2},
                env={"BOOT_SLEEP": "2"}, wait=False)
    n.wait_for_log(r"worker 2 pid \d+ gen 1: spawned", 15)
    n.signal(signal.SIGUSR1)
    n.wait_for_log(r"stderr: importing, sleeping", 15)
    n.signal(signal.SIGUSR1)
    n.wait_live(timeout=30)
    exits = n.find_logs(r"worker \d+ pid \d+ gen 1: exited.*")
    assert exits == [], [m.group(0) for m in exits]
    assert len(n.worker_pids()) == 2


def test_ttin_during_boot(narwhal):
    n = booting(narwhal)
    n.signal(signal.SIGTTIN)
    n.wait_live(timeout=30)
    wait_until(lambda: len(n.worker_pids()) == 3, 20, what="3 live workers")
    assert n.get("/").body == b"booted slowly\n"
