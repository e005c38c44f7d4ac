"""A git work tree deployed in place (issue 10): `git pull` into the one
directory narwhal serves, as the deploy articles do it.

Each generation runs from a snapshot of its commit (git archive under the
state directory), so old workers never read the new files; a crashed worker
is replaced from its generation's snapshot; a broken commit is rolled back
and the work tree moved back to the good commit (git reset --keep); a cold
start on a broken commit serves the last good one. All under load, with
zero failed requests.
"""

import os
import re
import shutil
import signal
import subprocess

from conftest import APPS, T, wait_until
from deploy import Client, reload_wait, start_master, wait_settled

GIT_APP = os.path.join(APPS, "deploy", "git_app", "app.py")
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")


def git(repo, *args):
    return subprocess.run(["git", "-C", repo] + list(args), check=True,
                          capture_output=True, text=True, env=GIT_ENV,
                          timeout=T(30)).stdout.strip()


def commit(repo, version, broken=False):
    shutil.copy(GIT_APP, os.path.join(repo, "app.py"))
    if broken:
        with open(os.path.join(repo, "app.py"), "a") as f:
            f.write("\nimport narwhal_git_missing_module  # noqa\n")
    for name, text in (("VERSION", version), ("page.txt", "page " + version)):
        with open(os.path.join(repo, name), "w") as f:
            f.write(text + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", version)
    return git(repo, "rev-parse", "HEAD")


class Tree:
    """Only what start_master needs of a Deploy: the path to serve."""

    def __init__(self, path):
        self.current = path


def test_git_work_tree_broken_commit(narwhal):
    root = narwhal.workdir()
    repo = os.path.join(root, "app")
    os.makedirs(repo)
    git(repo, "init", "-q", "-b", "main")
    good = commit(repo, "v1")
    n = start_master(narwhal, Tree(repo), {"workers": 2})
    m = n.wait_for_log(r"generation 1: git work tree %s at commit %s, "
                       r"running from its snapshot (\S+)"
                       % (re.escape(repo), good[:12]))
    snapshot = m.group(1)
    assert os.path.isfile(os.path.join(snapshot, "app.py"))
    assert not os.path.exists(os.path.join(snapshot, ".git"))
    with Client(n.addr) as client:
        client.wait_requests(100)
        # git pull of a broken release into the served directory
        bad = commit(repo, "v2", broken=True)
        # old workers do not see the new files: no mixed pages
        for _ in range(10):
            assert n.get("/page", headers={"Connection": "close"}).body == \
                b"v1 page v1\n"
        # a worker that dies now is replaced from its generation's snapshot
        victim = n.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(n.worker_pids()) == 2 and
                   victim not in n.worker_pids(), 30,
                   what="the replacement of a killed worker")
        r = reload_wait(n, timeout=60)
        print(r)
        assert r.returncode == 4, r
        assert "No module named 'narwhal_git_missing_module'" in r.stdout, r
        assert "%s is back on commit %s" % (repo, good[:12]) in r.stdout, r
        client.wait_requests(100)
        client.stop()
    print(client.summary())
    assert client.failures_outside([]) == [] or \
        len(client.failures()) <= 1, client.summary()  # the killed one's
    assert set(client.versions()) == {"v1"}, client.summary()
    # the work tree is back on the good commit, with the good files
    assert git(repo, "rev-parse", "HEAD") == good
    assert git(repo, "rev-parse", "ORIG_HEAD") == bad
    with open(os.path.join(repo, "VERSION")) as f:
        assert f.read() == "v1\n"
    for _ in range(5):
        assert n.get("/page", headers={"Connection": "close"}).body == \
            b"v1 page v1\n"

    # cold start on the broken commit (someone pulled it again and the
    # host rebooted): narwhal serves the last good commit's snapshot
    state = n.settings["state_dir"]
    n.stop()
    git(repo, "reset", "-q", "--hard", bad)
    settings = {k: v for k, v in n.settings.items() if k != "runtime_dir"}
    n2 = narwhal(start=False, settings=dict(settings, state_dir=state))
    n2.start(wait=False)
    n2.wait_for_log(r"falling back to the last good tree %s"
                    % re.escape(snapshot), 60)
    n2.wait_live(gen=2, timeout=60)
    wait_settled(n2, 2, 2)
    for _ in range(5):
        assert n2.get("/page", headers={"Connection": "close"}).body == \
            b"v1 page v1\n"


def test_plain_directory_is_warned_about(narwhal):
    root = narwhal.workdir()
    tree = os.path.join(root, "app")
    os.makedirs(tree)
    shutil.copy(GIT_APP, tree)
    for name in ("VERSION", "page.txt"):
        with open(os.path.join(tree, name), "w") as f:
            f.write("v1\n")
    n = start_master(narwhal, Tree(tree), {"workers": 1})
    n.wait_for_log(r"\[WARNING\] generation 1: %s is a plain directory: "
                   r"old workers read new files" % re.escape(tree))
