"""boot_priority (issue 15.8): a recycling replacement, which boots while
the worker it relieves still serves, runs at SCHED_IDLE (or nice 19) until
it goes live, then, every thread of it, at the master's own priority. A cold
start, a respawn and a reload boot at full speed. What this buys in latency
is measured by `make bench` (recycling-paced), not here.
"""

import os
import signal

from conftest import T, wait_until

SCHED_OTHER, SCHED_IDLE = 0, 5


def sched(pid, tid=None):
    """(policy, nice) of a task."""
    path = "/proc/%d/task/%d/stat" % (pid, tid or pid)
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[38]), int(fields[16])


def tasks(pid):
    return [int(t) for t in os.listdir("/proc/%d/task" % pid)]


def start(narwhal, priority):
    n = narwhal(chdir="slow_boot", app="app:application",
                settings={"workers": 2, "boot_priority": priority,
                          "max_requests": 5},
                env={"BOOT_SLEEP": "2", "BOOT_THREAD": "1"})
    for pid in n.worker_pids():  # a cold start is not slowed down
        assert {sched(pid, t) for t in tasks(pid)} == {(SCHED_OTHER, 0)}
    return n


def while_booting(n, pid, mark):
    """Every thread's (policy, nice) while it boots, then once live."""
    wait_until(lambda: len(tasks(pid)) >= 2, 10,
               what="the app's thread started while booting")
    booting = {sched(pid, t) for t in tasks(pid)}
    n.wait_for_log(r"pid %d gen 1: live" % pid, T(20), since=mark)
    live = {sched(pid, t) for t in tasks(pid)}
    return booting, live


def recycle_one(narwhal, priority):
    n = start(narwhal, priority)
    mark = n.mark()
    for _ in range(12):
        n.get("/", headers={"Connection": "close"})
    m = n.wait_for_log(r"worker \d+ pid (\d+) gen 1: spawned \(replaces "
                       r"worker \d+\)", 10, since=mark)
    return while_booting(n, int(m.group(1)), mark)


def test_recycling_replacement_boots_at_sched_idle(narwhal):
    booting, live = recycle_one(narwhal, "idle")
    assert booting == {(SCHED_IDLE, 0)}, booting
    assert live == {(SCHED_OTHER, 0)}, live


def test_recycling_replacement_boots_at_nice_19(narwhal):
    booting, live = recycle_one(narwhal, "low")
    assert booting == {(SCHED_OTHER, 19)}, booting
    assert live == {(SCHED_OTHER, 0)}, live


def test_boot_priority_normal_leaves_it(narwhal):
    booting, live = recycle_one(narwhal, "normal")
    assert booting == live == {(SCHED_OTHER, 0)}, (booting, live)


def test_a_respawn_boots_at_full_speed(narwhal):
    """Capacity is missing: no reason to wait for spare CPU."""
    n = start(narwhal, "idle")
    mark = n.mark()
    os.kill(n.worker_pids()[0], signal.SIGKILL)
    m = n.wait_for_log(r"worker \d+ pid (\d+) gen 1: spawned", 10,
                       since=mark)
    booting, live = while_booting(n, int(m.group(1)), mark)
    assert booting == live == {(SCHED_OTHER, 0)}, (booting, live)


def test_a_master_that_could_not_raise_it_does_not_lower_it():
    """Without root (CAP_SYS_NICE) or an RLIMIT_NICE allowing nice 0, a
    process may lower its priority but never raise it back, SCHED_IDLE to
    SCHED_OTHER included: such a master boots everyone at its own."""
    import shutil

    from localusers import NarwhalAs, home_for, need_root, unused_uids

    need_root()
    uid, = unused_uids(1)
    home = home_for(uid)
    n = NarwhalAs(uid, home, chdir="slow_boot", app="app:application",
                  settings={"workers": 2, "boot_priority": "idle",
                            "max_requests": 5},
                  env={"BOOT_SLEEP": "1"})
    try:
        n.start()
        mark = n.mark()
        for _ in range(12):
            n.get("/", headers={"Connection": "close"})
        m = n.wait_for_log(r"worker \d+ pid (\d+) gen 1: spawned "
                           r"\(replaces worker \d+\)", 10, since=mark)
        assert sched(int(m.group(1))) == (SCHED_OTHER, 0)
        n.wait_for_log(r"gen 1: live", 20, since=mark)
    finally:
        n.stop()
        shutil.rmtree("/tmp/narwhal-%d" % uid, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
