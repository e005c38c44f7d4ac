"""Config files and flags: errors name the file, line and key (or the flag);
flags win over the file; --check-config runs the same validation."""

import os
import re
import signal
import subprocess

import pytest

from conftest import APPS, BIN, PYTHON, T


def good_lines(d):
    return [
        "[narwhal]",
        "python = %s" % PYTHON,
        "app = app:application",
        "chdir = %s" % os.path.join(APPS, "wsgi_basic"),
        "bind = 127.0.0.1:0",
        "workers = 1",
        "runtime_dir = %s" % os.path.join(d, "run"),
        "state_dir = %s" % os.path.join(d, "state"),
    ]


def write(d, lines, name="narwhal.ini"):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run(args, timeout=15):
    """Runs narwhal to completion; a run that does not end is killed (its
    whole process group, which this call created) and reported."""
    p = subprocess.Popen([BIN] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=T(timeout))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=T(5))
        raise AssertionError("narwhal %s did not exit:\n%s"
                             % (" ".join(args), err.decode(errors="replace")))
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture
def d(narwhal):
    return narwhal.workdir()


# (extra line, key named in the message)
BAD_LINES = [
    ("bogus_key = 1", "bogus_key"),
    ("workers = many", "workers"),
    ("workers = -2", "workers"),
    ("timeout = soon", "timeout"),
    ("graceful_timeout = -3", "graceful_timeout"),
    ("max_requests = lots", "max_requests"),
    ("loglevel = chatty", "loglevel"),
    ("interface = cgi", "interface"),
    ("bind = 127.0.0.1:notaport", "bind"),
    ("limit_request_body = huge", "limit_request_body"),
    ("keepalive = 1x", "keepalive"),
    ("ready_host = shop example.com", "ready_host"),
    ("ready_host = https://shop.example.com/", "ready_host"),
]


@pytest.mark.parametrize("line,key", BAD_LINES, ids=[b[1] + ":" + b[0].split("= ")[1]
                                                     for b in BAD_LINES])
def test_bad_config_is_refused(d, line, key):
    lines = good_lines(d)
    lines.insert(3, line)  # line 4 of the file
    path = write(d, lines)
    code, out, err = run(["-c", path])
    assert code == 1, err
    assert re.search(re.escape(path) + r":4: " + re.escape(key) + r"\b", err), err
    assert "listening at" not in err
    # one line, not a cascade
    assert len([l for l in err.splitlines() if l.strip()]) <= 2, err

    code, out, err2 = run(["--check-config", "-c", path])
    assert code == 1
    assert re.search(re.escape(path) + r":4: " + re.escape(key) + r"\b", err2), err2


def test_error_after_the_env_section(d):
    lines = good_lines(d) + ["", "[env]", "GOOD = 1", "", "[narwhal]",
                             "no_such = 2"]
    path = write(d, lines)
    code, _, err = run(["--check-config", "-c", path])
    assert code == 1
    assert re.search(re.escape(path) + r":%d: no_such\b" % len(lines), err), err


def test_unknown_section_is_refused(d):
    lines = good_lines(d) + ["[bogus]", "x = 1"]
    path = write(d, lines)
    code, _, err = run(["--check-config", "-c", path])
    assert code == 1
    assert "%s:%d" % (path, len(lines) - 1) in err or \
        "%s:%d" % (path, len(lines)) in err, err


def test_missing_config_file(d):
    path = os.path.join(d, "nope.ini")
    code, _, err = run(["-c", path])
    assert code == 1
    assert path in err


def test_check_config_good(d):
    path = write(d, good_lines(d))
    code, out, err = run(["--check-config", "-c", path])
    assert code == 0, err
    # checking starts nothing
    assert "listening at" not in err
    assert not os.path.exists(os.path.join(d, "run", "control.sock"))


def test_check_config_with_flag_error(d):
    path = write(d, good_lines(d))
    code, _, err = run(["--check-config", "-c", path, "--workers", "many"])
    assert code == 1
    assert "--workers" in err, err


@pytest.mark.parametrize("flag,value,named", [
    ("--workers", "many", ("--workers",)),
    ("-w", "many", ("-w", "--workers")),
    ("--timeout", "soon", ("--timeout",)),
    ("-t", "soon", ("-t", "--timeout")),
    ("--max-requests", "lots", ("--max-requests",)),
    ("--bind", "127.0.0.1:notaport", ("--bind",)),
    ("--log-level", "chatty", ("--log-level",)),
    ("--ready-host", "shop.example.com\r\nX-Evil: 1", ("--ready-host",)),
])
def test_bad_flag_value_is_refused(d, flag, value, named):
    path = write(d, good_lines(d))
    code, _, err = run(["-c", path, flag, value])
    assert code == 1, err
    assert any(name in err for name in named), err
    assert "listening at" not in err


def test_unknown_flag_is_a_usage_error(d):
    path = write(d, good_lines(d))
    code, _, err = run(["-c", path, "--no-such-flag"])
    assert code in (1, 2), err
    assert "--no-such-flag" in err


def test_help_exits_zero():
    code, out, err = run(["--help"])
    assert code == 0
    assert "-c" in out + err


def test_flags_win_over_the_file(narwhal):
    n = narwhal(settings={"workers": 1},
                args=["-w", "3", "-e", "NW_FLAG_ENV=flagged",
                      "--graceful-timeout", "7"])
    n.wait_for_log(r"generation 1: live, 3 workers", 5)
    assert len(n.worker_pids()) == 3
    r = n.get("/env?name=NW_FLAG_ENV")
    assert (r.status, r.body) == (200, b"flagged")


def test_gunicorn_style_command_line(narwhal):
    """The app as a positional argument and --chdir, -b, -w, -p as flags:
    a gunicorn ExecStart line with one word changed."""
    d = narwhal.workdir()
    pidfile = os.path.join(d, "master.pid")
    minimal = write(d, ["[narwhal]", "python = %s" % PYTHON,
                        "runtime_dir = %s" % os.path.join(d, "run"),
                        "state_dir = %s" % os.path.join(d, "state")])
    n = narwhal(use_config=False, args=[
        "-c", minimal, "--chdir", os.path.join(APPS, "wsgi_basic"),
        "-b", "127.0.0.1:0", "-w", "2", "-p", pidfile, "app:application"])
    assert len(n.worker_pids()) == 2
    assert n.get("/").body == b"Hello, world!\n"
    with open(pidfile) as f:
        assert int(f.read().strip()) == n.pid


def test_bad_app_module_does_not_kill_the_master(narwhal):
    """An app that cannot be imported: workers exit 3 and are respawned with
    backoff; the master stays up and never reports the generation live."""
    n = narwhal(app="no_such_module:application", settings={"workers": 1},
                wait=False)
    n.wait_for_log(r"worker \d+ pid \d+ gen 1: exited with status 3", 30)
    assert n.proc.poll() is None
    assert not n.find_logs(r"generation 1: live")
