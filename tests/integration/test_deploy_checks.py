"""The small things a first real deployment trips over (issue 10), each
fixed: what --check-config now refuses, --check-app's dry run, the warm-up
gate and ready_grace, `status` without -c and for workers with no process
or no budget, and a master started inside a symlinked release.
"""

import os
import re
import shutil
import signal
import subprocess
import time

from conftest import APPS, BIN, PYTHON, REPO, T, wait_until
from deploy import Client, Deploy, reload_wait, start_master, status

DJANGO = os.path.join(APPS, "django_project")
READY = "/health/ready"


def check(*args, cwd=None, timeout=60):
    # The default interpreter is the python3 on PATH, which on a CI machine
    # may not see Debian's packages: a dry run gets the one the tests use.
    if "--check-app" in args:
        args = ("--python", PYTHON) + args
    return subprocess.run([BIN] + list(args), capture_output=True,
                          text=True, timeout=T(timeout), cwd=cwd)


def test_shipped_example_passes_check_config(tmp_path):
    r = check("--check-config", "-c", os.path.join(REPO, "conf",
                                                  "example.ini"),
              cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "example.ini: ok" in r.stdout


def test_check_config_refuses_what_would_fail_later(tmp_path):
    ini = tmp_path / "n.ini"
    ini.write_text("[narwhal]\napp = mysite.wsgi.application\n"
                   "chdir = %s\n" % DJANGO)
    r = check("--check-config", "-c", str(ini))
    assert r.returncode == 1
    assert "%s:2: app: 'mysite.wsgi.application' is not MODULE:CALLABLE" \
        % ini in r.stderr, r.stderr
    assert "did you mean mysite.wsgi:application?" in r.stderr, r.stderr
    # gunicorn's bare module form still works when the module is there
    r = check("--check-config", "--chdir", DJANGO, "mysite.wsgi")
    assert r.returncode == 0, r.stderr

    ini.write_text("[narwhal]\napp = mysite.wsgi:application\nchdir = %s\n"
                   "bind = unix:%s/missing/app.sock\n" % (DJANGO, tmp_path))
    r = check("--check-config", "-c", str(ini))
    assert r.returncode == 1
    assert re.search(r":4: bind: unix:\S+/missing/app.sock: directory "
                     r"\S+/missing: No such file or directory", r.stderr), \
        r.stderr

    for value, why in (("wwwdata", "wwwdata: no such user"),
                       ('"www-data"', "quotes are part of the value")):
        ini.write_text("[narwhal]\napp = mysite.wsgi:application\n"
                       "chdir = %s\nuser = %s\n" % (DJANGO, value))
        r = check("--check-config", "-c", str(ini))
        assert r.returncode == 1
        assert "%s:4: user: " % ini in r.stderr and why in r.stderr, \
            r.stderr
    ini.write_text("[narwhal]\napp = mysite.wsgi:application\nchdir = %s\n"
                   "group = nosuchgroup\n" % DJANGO)
    r = check("--check-config", "-c", str(ini))
    assert "%s:4: group: nosuchgroup: no such group" % ini in r.stderr


def test_check_app_imports_the_app(tmp_path):
    r = check("--check-app", "--chdir", DJANGO,
              "mysite.wsgi:application")
    assert r.returncode == 0, r.stderr
    assert "mysite.wsgi:application imports from %s: ok" % DJANGO \
        in r.stdout
    tree = tmp_path / "broken"
    tree.mkdir()
    (tree / "app.py").write_text("import narwhal_check_missing  # noqa\n")
    r = check("--check-app", "--chdir", str(tree),
              "app:application")
    assert r.returncode == 1
    assert "Traceback (most recent call last):" in r.stderr, r.stderr
    assert "ModuleNotFoundError: No module named 'narwhal_check_missing'" \
        in r.stderr
    assert 'File "%s/app.py", line 1' % tree in r.stderr
    # Django imports urls.py only at the first request: the check loads it
    shop = tmp_path / "shop_release"
    shutil.copytree(os.path.join(APPS, "deploy", "django_pg"), str(shop))
    urls = shop / "shop" / "urls.py"
    urls.write_text("import narwhal_urls_missing  # noqa\n" +
                    urls.read_text())
    (shop / "VERSION").write_text("v1\n")
    r = check("--check-app", "--chdir", str(shop), "shop.wsgi:application")
    assert r.returncode == 1, r.stdout
    assert "No module named 'narwhal_urls_missing'" in r.stderr, r.stderr
    (tree / "app.py").write_text("application = 42\n")
    r = check("--check-app", "--chdir", str(tree),
              "app:application")
    assert r.returncode == 1 and "is not callable" in r.stderr, r.stderr


def test_status_without_c_says_what_to_pass(tmp_path):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    r = subprocess.run([BIN, "status"], capture_output=True, text=True,
                       timeout=T(10), env=env, cwd=str(tmp_path))
    assert r.returncode == 1
    assert "no master at " in r.stderr
    assert "pass the -c FILE (or --pid FILE) the master was started with" \
        in r.stderr, r.stderr


def test_status_text_for_backoff_and_unlimited_budget(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1", "crash_loop")
    d.flip("v1")
    n = start_master(narwhal, d, {"workers": 2})
    victim = n.worker_pids()[0]
    open(os.path.join(n.marker_dir, "crash-loop"), "w").close()
    os.kill(victim, signal.SIGSEGV)
    n.wait_for_log(r"exited on signal 11, respawn in", 10)
    wait_until(lambda: any(w["state"] == "backoff"
                           for w in status(n)["workers"]), 20,
               what="a slot in backoff")
    out = subprocess.run([BIN, "status", "-c", n.config_path],
                         capture_output=True, text=True, timeout=T(10)).stdout
    rows = [l.split() for l in out.splitlines()
            if re.match(r"^\s+\d+\s+\d+\s+[a-z]+\s", l)]
    backoff = [r for r in rows if r[2] == "backoff"]
    assert backoff, out
    assert backoff[0][6] == "-", out  # RSS of no process: not 0K
    assert all(r[7] == "-" for r in rows), out  # no max_requests: no budget


def test_warmup_gate_and_ready_grace(narwhal):
    # an app whose health answers 503 for its first 8 s goes live with
    # ready_grace, and is given up on in about 4 s without it
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "slow_ready")
    d.flip("v1")
    n = start_master(narwhal, d, {"ready_path": READY, "ready_interval": 0.5,
                                  "boot_timeout": 30, "boot_retries": 0},
                     env={"READY_DELAY": "8"})
    with Client(n.addr) as client:
        client.wait_requests(50)
        d.flip("v2")
        r = reload_wait(n, timeout=60)
        assert r.returncode == 4, r
        assert "failed the probe 5 times: GET %s answered 503: not ready" \
            % READY in r.stdout, r
        assert d.points_at() == "v1"
        n.settings["ready_grace"] = 12
        with open(n.config_path, "w") as f:
            f.write(n.render_config())
        d.flip("v2")
        started = time.monotonic()
        r = reload_wait(n, timeout=60)
        assert r.returncode == 0, r
        assert time.monotonic() - started >= 7, "live before 8 s of 503"
        client.wait_requests(50)
        client.stop()
    assert client.failures() == [], client.summary()
    assert client.versions().get("v2"), client.summary()


def test_started_inside_a_symlinked_release_without_chdir(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = narwhal(start=False, settings={"chdir": None, "workers": 1,
                                        "min_uptime": 0})
    with open(n.config_path, "w") as f:
        f.write(n.config_text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PWD", "NOTIFY_SOCKET", "LISTEN_FDS")}
    # as systemd's WorkingDirectory= does it: no PWD, the path resolved
    n.proc = subprocess.Popen([BIN, "-c", n.config_path], cwd=d.current,
                              env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    n.pid = n.proc.pid
    import threading
    for stream, sink in ((n.proc.stderr, n.lines), (n.proc.stdout,
                                                     n.out_lines)):
        t = threading.Thread(target=n._reader,
                             args=(stream, sink, os.devnull), daemon=True)
        t.start()
        n.threads.append(t)
    n.wait_live()
    n.wait_for_log(r"\[WARNING\] generation 1: %s is a plain directory"
                   % re.escape(d.tree("v1")))
    d.flip("v2")
    r = reload_wait(n, timeout=30)
    assert r.returncode == 0, r
    assert "(the same directory: chdir is neither a symlink nor a git work " \
        "tree; if narwhal was started inside a symlinked release, set " \
        "chdir to the symlink)" in r.stdout, r


def test_recycling_held_back_is_shown(narwhal):
    # a plain directory whose files break under running workers: their
    # replacements cannot boot, so they serve past their budget, and
    # status says so instead of "2/2 live" alone
    tree = os.path.join(narwhal.workdir(), "app")
    os.makedirs(tree)
    for name in ("release_base.py", "app.py"):
        src = os.path.join(APPS, "releases",
                           "common" if name == "release_base.py" else "good",
                           name)
        with open(src) as f, open(os.path.join(tree, name), "w") as out:
            out.write(f.read())
    with open(os.path.join(tree, "VERSION"), "w") as f:
        f.write("v1\n")
    n = start_master(narwhal, Deploy(narwhal.workdir()),
                     {"chdir": tree, "max_requests": 40, "workers": 2,
                      "timeout": 4})
    with Client(n.addr) as client:
        client.wait_requests(20)
        with open(os.path.join(tree, "app.py"), "a") as f:
            f.write("\nimport narwhal_recycle_missing  # noqa\n")
        s = wait_until(lambda: (lambda s: s if s["recycle_held"] and
                                s["past_budget"] > 0 else None)(status(n)),
                       40, interval=0.2, what="recycling held back")
        assert re.search(r"replacement worker \d+ for worker \d+: exited "
                         r"with status 3 while spawned", s["recycle_held"]), s
        out = subprocess.run([BIN, "status", "-c", n.config_path],
                             capture_output=True, text=True,
                             timeout=T(10)).stdout
        assert "recycling held back: replacement worker" in out, out
        assert re.search(r"past budget: \d live workers? served past "
                         r"max_requests", out), out
        client.wait_requests(50)
        client.stop()
    assert client.failures() == [], client.summary()


def test_fd_exhaustion_on_reload_does_not_wedge(narwhal):
    # the master runs out of file descriptors: the new generation cannot
    # even be spawned; the reload ends rolled back, the old workers serve,
    # and once the limit is raised the next reload runs
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = start_master(narwhal, d, {"workers": 2})
    used = len(os.listdir("/proc/%d/fd" % n.pid))
    soft = subprocess.run(["prlimit", "--pid", str(n.pid), "--nofile",
                           "--noheadings", "--output=SOFT"], check=True,
                          capture_output=True, text=True).stdout.strip()
    # room to accept `reload --wait` and read the config, not to spawn
    subprocess.run(["prlimit", "--pid", str(n.pid),
                    "--nofile=%d:" % (used + 3)], check=True)
    with Client(n.addr) as client:
        client.wait_requests(50)
        d.flip("v2")
        started = time.monotonic()
        r = reload_wait(n, timeout=60)
        assert r.returncode == 4, r
        assert "cannot spawn: " in r.stdout, r
        assert "Too many open files" in r.stdout, r
        assert time.monotonic() - started < T(20)
        subprocess.run(["prlimit", "--pid", str(n.pid),
                        "--nofile=%s:" % soft], check=True)
        d.flip("v2")
        r = reload_wait(n, timeout=60)
        assert r.returncode == 0, r
        client.wait_requests(50)
        client.stop()
    assert client.failures() == [], client.summary()
    assert client.versions().get("v2"), client.summary()
