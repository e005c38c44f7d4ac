"""Other local users, for the tests of what one user can do to another.

The tests run as root (CI does): `setpriv` runs a command as a uid that no
account uses, so nothing is added to /etc/passwd and nothing is left behind
but what a test removes itself. Not root: the tests that need this skip.
"""

import os
import pwd
import random
import shutil
import subprocess
import tempfile

import pytest

from conftest import T


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root, to act as two other local users")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")


def unused_uids(n):
    """n uids no account has, and that no /tmp/narwhal-<uid> exists for."""
    rng = random.Random()
    out = []
    while len(out) < n:
        uid = rng.randrange(47000, 48000)
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        if uid in out or os.path.lexists("/tmp/narwhal-%d" % uid):
            continue
        out.append(uid)
    return out


def as_user(uid, argv):
    """argv run as uid (and gid uid, no supplementary groups)."""
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
            "--clear-groups", "--"] + list(argv)


def home_for(uid):
    """A fresh directory owned by uid that others may traverse."""
    d = tempfile.mkdtemp(prefix="nwu-%d-" % uid, dir="/tmp")
    os.chmod(d, 0o755)
    os.chown(d, uid, uid)
    return d


def chown_tree(path, uid):
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)
    os.lchown(path, uid, uid)


def run_as(uid, argv, env=None, timeout=30):
    return subprocess.run(as_user(uid, argv), capture_output=True, text=True,
                          env=env, timeout=T(timeout))


def clean_env(home):
    """The environment a user's shell would have, minus XDG_RUNTIME_DIR."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "NOTIFY_SOCKET", "LISTEN_",
                                "JOURNAL_STREAM", "RUNTIME_DIRECTORY",
                                "STATE_DIRECTORY"))}
    env["HOME"] = home
    return env
