"""Deploys of real apps on a real PostgreSQL (issue 10), under load.

A FastAPI app on asyncpg and a Django project on psycopg2 (tests/apps/deploy/)
are deployed as symlinked releases while a client thread requests without
pause; no request may fail. What must hold:

* a release with a wrong database password is rolled back in seconds, not
  after boot_timeout, and the probe's answer is the reason given;
* with the database down, a deploy of good code is reported as a dependency
  failure (exit 6), the old generation keeps serving, and a worker that dies
  during the outage is replaced: capacity comes back;
* a Django release whose urls.py cannot import, with no ready_path, is
  rolled back by the warm-up request;
* a bad `user` on reload is refused with file, line and key, and the next
  reload runs; a worker runs with its user's HOME.
"""

import os
import re
import shutil
import signal
import time

import pytest

from conftest import APPS, T, session_dir, wait_until
from deploy import (Client, Deploy, reload_wait, rewrite_config,
                    start_master, status, wait_settled)
from pg import pg  # noqa: F401 (a fixture)

DEPLOY_APPS = os.path.join(APPS, "deploy")
READY = "/health/ready"
ROLLED_BACK, REFUSED, DEPENDENCY = 4, 3, 6


class AppDeploy(Deploy):
    """Release trees copied from one of tests/apps/deploy/."""

    def __init__(self, root, app):
        super().__init__(root)
        self.app = os.path.join(DEPLOY_APPS, app)

    def make_release(self, version, password=None, urls_import=None):
        tree = os.path.join(self.releases, version)
        if os.path.exists(tree):
            shutil.rmtree(tree)
        shutil.copytree(self.app, tree,
                        ignore=shutil.ignore_patterns("__pycache__"))
        with open(os.path.join(tree, "VERSION"), "w") as f:
            f.write(version + "\n")
        if password is not None:
            with open(os.path.join(tree, "db_password"), "w") as f:
                f.write(password + "\n")
        if urls_import is not None:
            path = os.path.join(tree, "shop", "urls.py")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write("import %s  # noqa\n%s" % (urls_import, text))
        return tree


def fastapi_master(narwhal, d, pg, settings=None, workers=2):
    s = {"app": "app:app", "workers": workers, "ready_path": READY,
         "boot_timeout": 60, "ready_interval": 0.5, "min_uptime": 1}
    s.update(settings or {})
    return start_master(narwhal, d, s, env=pg.env())


def test_wrong_db_password_rolls_back_in_seconds(narwhal, pg):
    d = AppDeploy(narwhal.workdir(), "fastapi_pg")
    d.make_release("v1")
    d.make_release("v2", password="not-the-password")
    d.flip("v1")
    n = fastapi_master(narwhal, d, pg)
    with Client(n.addr) as client:
        client.wait_requests(100)
        d.flip("v2")
        started = time.monotonic()
        r = reload_wait(n, timeout=90)
        took = time.monotonic() - started
        client.wait_requests(100)
        client.stop()
    print(r, "rolled back in %.1fs" % took, client.summary())
    assert r.returncode == ROLLED_BACK, r
    # boot_timeout is 60 s: the failing answers ended it
    assert took < T(15), took
    assert re.search(r"failed the probe 5 times: GET %s answered 503: "
                     r"db: InvalidPasswordError: password authentication "
                     r"failed for user \"app\"" % READY, r.stdout), r
    assert re.search(r"^probe: GET %s answered 503: db: InvalidPasswordError"
                     % READY, r.stdout, re.M), r
    assert "a dependency is down" not in r.stdout, r
    # progress while it ran said what the probe got
    assert re.search(r"^progress: worker \d+: GET %s answered 503" % READY,
                     r.stdout, re.M), r
    assert client.failures() == [], client.summary()
    assert set(client.versions()) == {"v1"}, client.summary()
    assert d.points_at() == "v1"
    # no stack dump of narwhal's own loop for a worker killed at the probe
    assert not n.find_logs(r"gen 2 stderr: .*(Current thread|"
                           r"most recent call first)")
    n.wait_for_log(r"gen 2 probe: %s answered 503: db: InvalidPasswordError"
                   % READY)


def test_database_down_is_a_dependency_failure(narwhal, pg):
    d = AppDeploy(narwhal.workdir(), "fastapi_pg")
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = fastapi_master(narwhal, d, pg)
    try:
        with Client(n.addr) as client:
            client.wait_requests(100)
            pg.stop()
            d.flip("v2")
            r = reload_wait(n, timeout=90)
            print(r)
            assert r.returncode == DEPENDENCY, r
            assert "the old generation fails the same check: a dependency " \
                "is down" in r.stdout, r
            assert re.search(r"old worker \d+: GET %s answered 503: db: "
                             % READY, r.stdout), r
            assert d.points_at() == "v1"
            s = status(n)
            assert s["last_reload"]["outcome"] == "dependency-down", s
            assert "a dependency is down" in s["last_reload"]["reason"]

            # a worker dies during the outage: its replacement fails the
            # check as the others do, and serves anyway
            victim = n.worker_pids()[0]
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            n.wait_for_log(r"gen 1: live \(the live workers fail the same "
                           r"check: a dependency is down; serving to keep "
                           r"capacity\)", 40)
            wait_settled(n, 1, 2)
            client.wait_requests(50)
            pg.start()
            r2 = reload_wait(n, timeout=90)
            assert r2.returncode == 0, r2
            client.wait_requests(50)
            client.stop()
    finally:
        pg.start()
    print(client.summary())
    assert client.failures_outside([killed_at]) == [], client.summary()
    assert len(client.failures()) <= 1, client.summary()
    assert d.points_at() == "v1"  # put back; the second deploy used it
    assert set(client.versions()) == {"v1"}, client.summary()


def test_django_bad_urls_import_without_ready_path(narwhal, pg):
    d = AppDeploy(narwhal.workdir(), "django_pg")
    d.make_release("v1")
    d.make_release("v2", urls_import="shop_missing_module")
    d.flip("v1")
    n = start_master(narwhal, d, {"app": "shop.wsgi:application",
                                  "boot_timeout": 60, "min_uptime": 1},
                     env=pg.env())
    assert n.find_logs(r"gen 1: probing \(/\)")  # the warm-up gate
    with Client(n.addr) as client:
        client.wait_requests(100)
        d.flip("v2")
        started = time.monotonic()
        r = reload_wait(n, timeout=90)
        took = time.monotonic() - started
        client.wait_requests(100)
        client.stop()
    print(r, "rolled back in %.1fs" % took, client.summary())
    assert r.returncode == ROLLED_BACK, r
    assert re.search(r"failed the warm-up request: GET / answered 500",
                     r.stdout), r
    assert client.failures() == [], client.summary()
    assert set(client.versions()) == {"v1"}, client.summary()
    assert d.points_at() == "v1"
    assert took < T(15), took


def test_bad_user_on_reload_is_refused_and_the_next_reload_runs(narwhal):
    d = AppDeploy(narwhal.workdir(), "fastapi_pg")
    d.make_release("v1")
    d.flip("v1")
    n = start_master(narwhal, d, {"app": "app:app", "workers": 1,
                                  "warmup_path": ""})
    with Client(n.addr) as client:
        client.wait_requests(50)
        for bad, why in (("wwwdata", "wwwdata: no such user"),
                         ('"nobody"', "quotes are part of the value")):
            rewrite_config(n, user=bad)
            line = [i for i, l in enumerate(n.config_text.splitlines(), 1)
                    if l.startswith("user =")][0]
            started = time.monotonic()
            r = reload_wait(n, timeout=30)
            assert r.returncode == REFUSED, r
            assert "%s:%d: user: " % (n.config_path, line) in r.stdout, r
            assert why in r.stdout, r
            assert time.monotonic() - started < T(10)
        rewrite_config(n, user=None)
        r = reload_wait(n, timeout=30)
        assert r.returncode == 0, r
        client.wait_requests(50)
        client.stop()
    assert client.failures() == [], client.summary()
    wait_settled(n, 2, 1)  # refused reloads make no generation


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_worker_gets_its_users_home(narwhal):
    # nobody must be able to read the tree
    for path in (session_dir(),):
        os.chmod(path, 0o755)
    root = narwhal.workdir()
    os.chmod(root, 0o755)
    d = AppDeploy(root, "fastapi_pg")
    d.make_release("v1")
    d.flip("v1")
    n = start_master(narwhal, d, {"app": "app:app", "workers": 1,
                                  "user": "nobody", "warmup_path": ""},
                     env={"PYTHONDONTWRITEBYTECODE": "1"})
    import pwd
    home = pwd.getpwnam("nobody").pw_dir
    body = n.get("/env").body.decode()
    assert body == "HOME=%s USER=nobody\n" % home, body
