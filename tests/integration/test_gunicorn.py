"""narwhal started exactly as gunicorn setups are written: a Procfile line
with $PORT and $WEB_CONCURRENCY, GUNICORN_CMD_ARGS, ./gunicorn.conf.py with
server hooks, prometheus_client's multiprocess cleanup, --reload, and a
virtualenv with the wheel installed.

No test passes --python unless the setup it copies would: the interpreter is
found as gunicorn's would be (PATH is /usr/bin:/bin here, so `python3 on
PATH` is the test interpreter).
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import APPS, BIN, PYTHON, REPO, T, wait_until

PATH = "/usr/bin:/bin"


def gunicorn_env(d, **extra):
    """A platform's environment: no narwhal knobs, dirs under the test's."""
    env = {"PATH": PATH, "XDG_RUNTIME_DIR": os.path.join(d, "xdg-run"),
           "XDG_STATE_HOME": os.path.join(d, "xdg-state"),
           "VIRTUAL_ENV": "", "GUNICORN_CMD_ARGS": "", "PORT": "",
           "WEB_CONCURRENCY": ""}
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    env.update(extra)
    return env


def run(args, env, cwd, timeout=20):
    p = subprocess.run([BIN] + args, env=dict(os.environ, **env), cwd=cwd,
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=T(timeout))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def copy_app(src, d, name="app"):
    dst = os.path.join(d, name)
    shutil.copytree(os.path.join(APPS, src), dst,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def markers(n, name):
    path = os.path.join(n.hook_markers, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n") for line in f]


# --- the environment -----------------------------------------------------------

# The canary watch (on by default) holds a reload for watch_window: the
# tests that reload here are about gunicorn's settings, not the watch.
NO_WATCH = ["--watch", "false"]


def test_procfile_port_and_web_concurrency(narwhal):
    """`web: narwhal app:application` on a Heroku-style platform: bind
    0.0.0.0:$PORT, $WEB_CONCURRENCY workers, python3 from PATH."""
    d = narwhal.workdir()
    app = os.path.join(APPS, "wsgi_basic")
    n = narwhal(use_config=False, args=["app:application"], cwd=app,
                process_env=gunicorn_env(d, PORT="0", WEB_CONCURRENCY="3"))
    assert n.listeners[0].startswith("http://0.0.0.0:"), n.listeners
    n.wait_for_log(r"generation 1: live, 3 workers")
    n.wait_for_log(r"python: /usr/bin/python3 \(python3 on PATH\)")
    assert n.get("/").body == b"Hello, world!\n"


def test_gunicorn_cmd_args_with_gunicorn_precedence(narwhal):
    """GUNICORN_CMD_ARGS over the defaults, the command line over it; the
    no-op flags are accepted with one line each; --timeout 0 works."""
    d = narwhal.workdir()
    env = gunicorn_env(d, WEB_CONCURRENCY="4", GUNICORN_CMD_ARGS=(
        "--bind 127.0.0.1:0 --workers 2 --timeout 0 --capture-output "
        "--preload --worker-tmp-dir /dev/shm --enable-stdio-inheritance "
        "--chdir '%s'" % os.path.join(APPS, "wsgi_basic")))
    n = narwhal(use_config=False, args=["-w", "3", "app:application"],
                cwd=d, process_env=env)
    n.wait_for_log(r"generation 1: live, 3 workers")
    for flag in ("--capture-output", "--preload", "--worker-tmp-dir",
                 "--enable-stdio-inheritance"):
        assert len(n.find_logs(r"GUNICORN_CMD_ARGS %s: ignored: " % flag)) \
            == 1, n.tail()
    n.wait_for_log(r"never preloads, by design")
    n.wait_for_log(r"timeout 0: no heartbeat timeout")
    assert n.get("/").status == 200


def test_refused_flag_names_the_reason(narwhal):
    d = narwhal.workdir()
    code, out, err = run(["--daemon", "app:application"], gunicorn_env(d),
                         os.path.join(APPS, "wsgi_basic"))
    assert code == 1, err
    assert "--daemon: not supported: narwhal stays in the foreground" in err
    code, out, err = run(["--no-such-flag", "app:application"],
                         gunicorn_env(d), d)
    assert code == 2 and "unknown option '--no-such-flag'" in err, err


# --- gunicorn.conf.py ------------------------------------------------------------

def test_gunicorn_conf_py_hooks_and_prometheus(narwhal):
    """./gunicorn.conf.py read by default (no -c), as gunicorn does: its
    settings, raw_env, its worker-side hooks in the workers and its master-
    side ones in helpers; child_exit's mark_process_dead removes a killed
    worker's live gauge file."""
    d = narwhal.workdir()
    app = copy_app("gunicorn_conf", d)
    prom = os.path.join(d, "prometheus")
    os.makedirs(prom)
    os.makedirs(os.path.join(d, "markers"))
    n = narwhal(use_config=False, args=NO_WATCH + ["app:application"],
                cwd=app,
                process_env=gunicorn_env(
                    d, PROMETHEUS_MULTIPROC_DIR=prom,
                    MARKER_DIR=os.path.join(d, "markers")))
    n.hook_markers = os.path.join(d, "markers")
    n.wait_for_log(r"generation 1: live, 2 workers")
    n.wait_for_log(r"gunicorn.conf.py:\d+: preload_app: ignored: narwhal "
                   r"never preloads")
    pids = n.worker_pids()
    assert len(pids) == 2
    wait_until(lambda: markers(n, "when_ready") == ["2"], 10,
               what="when_ready")
    assert markers(n, "on_starting") == [str(n.pid)]
    assert sorted(int(l.split()[0]) for l in markers(n, "post_fork")) == pids
    assert sorted(int(l) for l in markers(n, "post_worker_init")) == pids

    r = n.get("/env?FROM_RAW_ENV")
    assert (r.status, r.body) == (200, b"yes")
    wait_until(lambda: "/env 200 True" in markers(n, "post_request"), 10,
               what="post_request")
    assert "GET /env" in markers(n, "pre_request")
    # accesslog = "-" with gunicorn's format, on stdout
    wait_until(lambda: any('"GET /env?FROM_RAW_ENV HTTP/1.1" 200 3' in l
                           for l in n.stdout_lines()), 10, what="access log")

    # prometheus_client multiprocess mode: each worker has a live gauge
    for _ in range(6):
        n.get("/", headers={"Connection": "close"})
    victim = pids[0]
    live = os.path.join(prom, "gauge_livesum_%d.db" % victim)
    assert os.path.exists(live), os.listdir(prom)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(live), 20,
               what="child_exit to mark %d dead" % victim)
    # the hook writes its marker just after mark_process_dead
    wait_until(lambda: str(victim) in markers(n, "child_exit"), 10,
               what="child_exit's marker")
    # killed, so the master ran its worker_exit too
    wait_until(lambda: str(victim) in markers(n, "worker_exit"), 10,
               what="worker_exit")
    n.wait_for_log(r"generation 1: live|worker \d+ pid \d+ gen 1: live",
                   since=0)

    n.signal(signal.SIGHUP)
    n.wait_live(gen=2)
    assert markers(n, "on_reload") == [""]
    n.stop()
    assert markers(n, "on_exit") == [""]
    # graceful exits ran worker_exit in the workers themselves
    assert len(markers(n, "worker_exit")) >= 4


def test_conf_py_errors_and_reload_keeps_the_old_config(narwhal):
    d = narwhal.workdir()
    app = copy_app("wsgi_basic", d)
    conf = os.path.join(app, "gunicorn.conf.py")

    def write(text):
        with open(conf, "w") as f:
            f.write(text)
    write("bind = '127.0.0.1:0'\nworkers = 1\nwsgi_app = 'app:application'\n")
    env = gunicorn_env(d)
    n = narwhal(use_config=False, args=NO_WATCH + ["-c", "gunicorn.conf.py"], cwd=app,
                process_env=env)
    n.wait_for_log(r"generation 1: live, 1 workers")

    write("bind = '127.0.0.1:0'\nworkers = 2\nif True\n")
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_for_log(r"reload refused, nothing changed: gunicorn.conf.py:3: "
                   r"cannot be read: SyntaxError", since=mark)
    assert n.get("/").status == 200

    write("bind = '127.0.0.1:0'\nworkers = 1\nwsgi_app = 'app:application'\n"
          "certfile = 'x.pem'\n")
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_for_log(r"reload refused, nothing changed: gunicorn.conf.py:4: "
                   r"certfile: /\S+/x\.pem: No such file or directory",
                   since=mark)

    write("bind = '127.0.0.1:0'\nworkers = 2\nwsgi_app = 'app:application'\n"
          "spew = True\nmy_own_variable = 'ignored'\nwatch = False\n")
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_live(gen=2)
    n.wait_for_log(r"gunicorn.conf.py:4: spew: ignored", since=mark)
    assert not n.find_logs(r"my_own_variable")
    assert len(n.worker_pids()) == 2


def test_a_master_busy_reading_its_config_kills_no_worker(narwhal):
    """A gunicorn.conf.py that takes longer than `timeout` to run on reload
    holds the master's loop (a config is whole or refused before anything
    else happens); the workers' heartbeats wait in their sockets meanwhile.
    The master's silence is not the workers': none is killed as hung."""
    d = narwhal.workdir()
    app = copy_app("wsgi_basic", d)
    conf = os.path.join(app, "gunicorn.conf.py")
    base = ("bind = '127.0.0.1:0'\nworkers = 2\ntimeout = 2\n"
            "wsgi_app = 'app:application'\n")
    with open(conf, "w") as f:
        f.write(base)
    n = narwhal(use_config=False, args=NO_WATCH + ["-c", "gunicorn.conf.py"],
                cwd=app, process_env=gunicorn_env(d))
    n.wait_for_log(r"generation 1: live, 2 workers")
    with open(conf, "w") as f:
        f.write("import time\ntime.sleep(5)\n" + base)
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_live(gen=2, timeout=40)
    n.wait_for_log(r"gen 1: exited", since=mark)
    assert not n.find_logs(r"no heartbeat", since=mark), n.tail()
    assert not n.find_logs(r"gen 1: exited .*signal", since=mark), n.tail()
    assert n.get("/").status == 200


def test_print_config_says_where_each_setting_came_from(narwhal):
    d = narwhal.workdir()
    app = copy_app("wsgi_basic", d)
    with open(os.path.join(app, "gunicorn.conf.py"), "w") as f:
        f.write("import os\nworkers = 3\ntimeout = 45\nbind = ['127.0.0.1:0']"
                "\nraw_env = ['A=1']\npreload_app = True\n")
    env = gunicorn_env(d, GUNICORN_CMD_ARGS="--timeout 50",
                       WEB_CONCURRENCY="9")
    code, out, err = run(["--print-config", "-w", "4", "app:application"],
                         env, app)
    assert code == 0, err
    assert "; command line -w\nworkers = 4\n" in out
    assert "; GUNICORN_CMD_ARGS --timeout\ntimeout = 50\n" in out
    assert "; gunicorn.conf.py:4\nbind = 127.0.0.1:0\n" in out
    assert "; default: python3 on PATH\npython = /usr/bin/python3\n" in out
    assert "preload_app: ignored" in out
    assert "[env]\nA = 1\n" in out
    # it is an INI file that narwhal takes
    saved = os.path.join(d, "saved.ini")
    with open(saved, "w") as f:
        f.write(out)
    code, out2, err = run(["--check-config", "-c", saved], env, d)
    assert code == 0, err


# --- --reload ----------------------------------------------------------------

def test_reload_flag_picks_up_an_edit_and_survives_a_syntax_error(narwhal):
    d = narwhal.workdir()
    app = os.path.join(d, "app")
    os.makedirs(app)
    src = os.path.join(app, "app.py")

    def write(version):
        with open(src + ".tmp", "w") as f:
            f.write("def application(environ, start_response):\n"
                    "    start_response('200 OK', [])\n"
                    "    return [b'%s']\n" % version)
        os.rename(src + ".tmp", src)
    write("v1")
    n = narwhal(use_config=False, cwd=app, process_env=gunicorn_env(d),
                args=NO_WATCH + ["--reload", "-b", "127.0.0.1:0",
                                 "app:application"])
    n.wait_for_log(r"reload: watching 1 directories under ")
    assert n.get("/").body == b"v1"
    write("v2")
    n.wait_live(gen=2, timeout=30)
    # The old worker may answer what reached it as it was told to stop.
    n.wait_for_log(r"gen 1: exited", timeout=30)
    assert n.get("/").body == b"v2"
    with open(src, "w") as f:
        f.write("def application(environ, start_response:\n")
    n.wait_for_log(r"generation 3: failed: ", timeout=30)
    assert n.get("/").body == b"v2"


# --- the wheel in a virtualenv -----------------------------------------------------

@pytest.fixture(scope="module")
def wheel():
    subprocess.run(["make", "-s", "wheel"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, timeout=T(120))
    found = sorted(glob.glob(os.path.join(REPO, "dist", "narwhal-*.whl")),
                   key=os.path.getmtime)
    assert found, "make wheel made no wheel"
    return found[-1]


def test_venv_with_the_wheel_runs_the_venvs_python(narwhal, wheel):
    """`venv/bin/pip install narwhal-*.whl`, then `venv/bin/narwhal` as
    `venv/bin/gunicorn` was: the workers run the venv's python, and the app,
    importable only from the venv, loads."""
    d = narwhal.workdir()
    venv = os.path.join(d, "venv")
    subprocess.run([PYTHON, "-m", "venv", venv], check=True,
                   timeout=T(120))
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q",
                    "--no-index", wheel], check=True, timeout=T(120))
    site = glob.glob(os.path.join(venv, "lib", "python3*",
                                  "site-packages"))[0]
    with open(os.path.join(site, "venv_only_app.py"), "w") as f:
        f.write("import sys\n"
                "def application(environ, start_response):\n"
                "    start_response('200 OK', [])\n"
                "    return [sys.prefix.encode()]\n")
    empty = os.path.join(d, "srv")
    os.makedirs(empty)
    n = Venv(narwhal, venv, use_config=False, cwd=empty,
             process_env=gunicorn_env(d),
             args=["-b", "127.0.0.1:0", "venv_only_app:application"])
    n.wait_for_log(r"python: %s/bin/python3 \(the environment narwhal is "
                   r"installed in\)" % re.escape(venv))
    assert n.get("/").body == venv.encode()
    # The system's python3 cannot import it: the venv did it.
    assert subprocess.run([PYTHON, "-c", "import venv_only_app"],
                          cwd=empty, capture_output=True).returncode != 0


def Venv(factory, venv, **kw):
    """A master started from the venv's own bin/narwhal."""
    n = factory(start=False, **kw)
    n.command = lambda: [os.path.join(venv, "bin", "narwhal")] + n.args
    n.start()
    return n
