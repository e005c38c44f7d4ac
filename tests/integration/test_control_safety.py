"""The control socket against another local user (issue 15.3).

A non-root master without XDG_RUNTIME_DIR keeps its control socket under
/tmp/narwhal-<uid>. Another user who creates that directory first must not
get to answer `narwhal reload` or sit between the master and its workers:
the master refuses to start, and the client talks only to a master of its
own uid (or root's), whoever put the socket where it looks.
"""

import os
import re
import shutil
import socket
import subprocess
import textwrap

from conftest import APPS, BIN, PYTHON, Narwhal, T, wait_until
from localusers import (as_user, chown_tree, clean_env, home_for, need_root,
                        run_as, unused_uids)


class NarwhalAs(Narwhal):
    """A master run by uid, with the default runtime and state dirs."""

    def __init__(self, uid, home, **kw):
        self.uid = uid
        self.home = home
        settings = {"runtime_dir": None, "state_dir": None, "workers": 1}
        settings.update(kw.pop("settings", {}))
        super().__init__(os.path.join(home, "srv"), settings=settings, **kw)
        chown_tree(home, uid)

    def command(self):
        return as_user(self.uid, ["env", "-u", "XDG_RUNTIME_DIR",
                                  "HOME=%s" % self.home] + super().command())


def plant_dir(path, owner):
    """What the other user does first: a directory everyone may write to."""
    os.mkdir(path)
    os.chmod(path, 0o777)
    os.chown(path, owner, owner)


def test_master_refuses_a_runtime_dir_another_user_made():
    need_root()
    victim, attacker = unused_uids(2)
    home = home_for(victim)
    trap = "/tmp/narwhal-%d" % victim
    masters = []
    try:
        plant_dir(trap, attacker)
        n = NarwhalAs(victim, home)
        masters.append(n)
        n.start(wait=False)
        assert n.wait_exit(30) == 1, n.tail()
        n.wait_for_log(r"\[ERROR\] runtime dir %s/\w+: %s is owned by uid "
                       r"%d, not by uid %d or root" % (trap, trap, attacker,
                                                       victim), 5)
        assert not n.find_logs(r"worker \d+ pid"), n.tail()

        # the directory is the victim's own, but everyone may write to it
        os.chown(trap, victim, victim)
        n = NarwhalAs(victim, home)
        masters.append(n)
        n.start(wait=False)
        assert n.wait_exit(30) == 1, n.tail()
        n.wait_for_log(r"%s is writable by everyone \(mode 0777\)" % trap, 5)

        # once it is gone, the master makes its own and serves
        shutil.rmtree(trap)
        n = NarwhalAs(victim, home)
        masters.append(n)
        n.start()
        assert n.get("/").status == 200
        st = os.stat(trap)
        assert st.st_uid == victim and st.st_mode & 0o022 == 0
        r = run_as(victim, [BIN, "status", "-c", n.config_path],
                   env=clean_env(home))
        assert r.returncode == 0, r
        assert "1/1 workers live" in r.stdout, r.stdout
    finally:
        for n in masters:
            n.stop()
        shutil.rmtree(trap, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


FAKE_MASTER = textwrap.dedent("""
    import os, socket, sys
    path = sys.argv[1]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o777)
    s.listen(8)
    s.settimeout(60)
    while True:
        c, _ = s.accept()
        try:
            c.recv(128)
            c.sendall(b"result: ok generation 2 live, tree /fake\\n")
        except OSError:
            pass
        c.close()
""")


def test_client_refuses_a_master_of_another_user():
    need_root()
    victim, attacker = unused_uids(2)
    home = home_for(victim)
    trap = "/tmp/narwhal-%d" % victim
    config = os.path.join(home, "narwhal.ini")
    with open(config, "w") as f:
        f.write("[narwhal]\napp = app:application\nchdir = %s\n"
                "bind = 127.0.0.1:0\n" % os.path.join(APPS, "wsgi_basic"))
    chown_tree(home, victim)
    env = clean_env(home)
    fake = None
    try:
        r = run_as(victim, [BIN, "status", "-c", config], env=env)
        m = re.search(r"no master at (\S+): ", r.stderr)
        assert m, r
        path = m.group(1)
        assert path.startswith(trap + "/"), path
        plant_dir(trap, attacker)
        plant_dir(os.path.dirname(path), attacker)
        fake = subprocess.Popen(as_user(attacker, [PYTHON, "-c", FAKE_MASTER,
                                                   path]))
        wait_until(lambda: os.path.exists(path), 10, what="the fake master")

        # before: `reload --wait` printed the fake "ok" and exited 0
        r = run_as(victim, [BIN, "reload", "--wait", "--timeout", "10",
                            "-c", config], env=env)
        assert r.returncode == 1, r
        assert "result: ok" not in r.stdout, r
        assert "of uid %d, not by uid %d or root" % (attacker, victim) \
            in r.stderr, r
        r = run_as(victim, [BIN, "status", "-c", config], env=env)
        assert r.returncode == 1 and "not talking to it" in r.stderr, r
    finally:
        if fake is not None:
            fake.kill()
            fake.wait(T(10))
        shutil.rmtree(trap, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
