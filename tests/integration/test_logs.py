"""The master's log lines, the access log and USR1."""

import os
import re
import signal
import time
import uuid

from conftest import LOG_LINE_RE, T, wait_until

# gunicorn's default access_log_format:
#   %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"
ACCESS_RE = re.compile(
    r'^(?P<h>\S+) (?P<l>\S+) (?P<u>\S+) '
    r'\[(?P<t>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
    r'"(?P<r>[^"]*)" (?P<s>\d{3}) (?P<b>\d+|-) "(?P<f>[^"]*)" "(?P<a>[^"]*)"$')

STATE_ORDER = ["spawned", "booted", "probing", "live", "retiring", "stopping",
               "exited"]


def read_lines(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def lines_with(path, word):
    return [l for l in read_lines(path) if word in l]


def test_master_log_format_and_one_line_per_state(narwhal):
    n = narwhal(settings={"workers": 2})
    n.get("/")
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0
    lines = n.log_lines()
    assert lines
    for line in lines:
        m = LOG_LINE_RE.match(line)
        assert m, "not in the log format: %r" % line
        assert int(m["pid"]) == n.pid, line
    assert any(re.search(r"listening at http://127\.0\.0\.1:%d$" % n.port, l)
               for l in lines)
    per_pid = {}
    for _id, pid, gen, state, rest in n.worker_events():
        per_pid.setdefault(pid, []).append(state)
    assert len(per_pid) == 2
    for pid, states in per_pid.items():
        assert len(states) == len(set(states)), \
            "a state logged twice for pid %d: %s" % (pid, states)
        assert [s for s in states if s not in STATE_ORDER] == [], states
        idx = [STATE_ORDER.index(s) for s in states]
        assert idx == sorted(idx), "states out of order: %s" % states
        assert states[0] == "spawned" and "live" in states
        assert states[-1] == "exited"


def test_access_log_in_gunicorn_format(narwhal):
    pre = narwhal(start=False)
    path = os.path.join(pre.dir, "access.log")
    n = narwhal(settings={"workers": 1, "accesslog": path})
    word = uuid.uuid4().hex
    r = n.get("/?w=" + word, headers={"Referer": "http://ref.example/",
                                      "User-Agent": "nwtest/1.0"})
    assert r.status == 200
    lines = wait_until(lambda: lines_with(path, word), 10,
                       what="the access log line")
    assert len(lines) == 1
    m = ACCESS_RE.match(lines[0])
    assert m, "not gunicorn's format: %r" % lines[0]
    assert m["h"] == "127.0.0.1"
    assert m["l"] == "-" and m["u"] == "-"
    assert m["r"] == "GET /?w=%s HTTP/1.1" % word
    assert m["s"] == "200"
    assert m["b"] == "14"
    assert m["f"] == "http://ref.example/"
    assert m["a"] == "nwtest/1.0"

    n.request("POST", "/status?code=404&w=" + word + "x", body=b"abc")
    line = wait_until(lambda: lines_with(path, word + "x"), 10,
                      what="the second access log line")[0]
    m = ACCESS_RE.match(line)
    assert m and m["s"] == "404" and m["r"].startswith("POST ")
    assert m["f"] == "-"
    # the master's warm-up GET / on the private socket is not a visitor
    with open(path) as f:
        logged = f.read()
    assert "narwhal-probe" not in logged, logged
    assert logged.count("\n") == 2, logged


def test_long_access_log_format_on_indented_lines(narwhal):
    """A format longer than an INI line (198 characters) is written over
    indented lines of narwhal.ini, and they are joined by one blank."""
    lines = ['%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
             'method=%(m)s path=%(U)s query=%(q)s proto=%(H)s',
             'request-id="%({x-request-id}i)s"',
             'forwarded-for="%({x-forwarded-for}i)s"',
             'language="%({accept-language}i)s" end']
    fmt = "\n    ".join(lines)
    assert len(" ".join(lines)) > 198
    n = narwhal(settings={"workers": 1, "accesslog": "-",
                          "access_log_format": fmt})
    assert "access_log_format = %s\n    method=" % lines[0] in n.config_text
    word = uuid.uuid4().hex
    n.get("/?w=" + word, headers={"X-Request-Id": "rid-1",
                                  "X-Forwarded-For": "192.0.2.9",
                                  "Accept-Language": "nl"})
    line = wait_until(lambda: [l for l in n.stdout_lines() if word in l],
                      10, what="the access log line")[0]
    head, _, tail = line.partition('" method=')
    assert ACCESS_RE.match(head + '"'), line
    assert tail == ('GET path=/ query=w=%s proto=HTTP/1.1 request-id="rid-1" '
                    'forwarded-for="192.0.2.9" language="nl" end' % word), line


def test_access_log_to_stdout_by_flag(narwhal):
    n = narwhal(settings={"workers": 1}, args=["--access-logfile", "-"])
    word = uuid.uuid4().hex
    n.get("/?w=" + word)
    line = wait_until(lambda: [l for l in n.stdout_lines() if word in l], 10,
                      what="an access log line on stdout")[0]
    assert ACCESS_RE.match(line), line


def test_usr1_reopens_the_access_log(narwhal):
    pre = narwhal(start=False)
    path = os.path.join(pre.dir, "access.log")
    n = narwhal(settings={"workers": 2, "accesslog": path})

    word = uuid.uuid4().hex
    for i in range(4):
        n.get("/?before=%s&i=%d" % (word, i), headers={"Connection": "close"})
    wait_until(lambda: len(lines_with(path, word)) == 4, 10,
               what="4 lines in the access log")
    os.rename(path, path + ".1")

    n.signal(signal.SIGUSR1)

    def reopened():
        w = uuid.uuid4().hex
        n.get("/?after=" + w, headers={"Connection": "close"})
        time.sleep(0.05)
        return lines_with(path, w)

    wait_until(reopened, 10, interval=0.1, what="a line in the new access log")

    # once every worker has had the signal, all new lines go to the new file
    def all_new():
        w = uuid.uuid4().hex
        for i in range(10):
            n.get("/?batch=%s&i=%d" % (w, i), headers={"Connection": "close"})
        deadline = time.monotonic() + T(5)
        while time.monotonic() < deadline:
            if len(lines_with(path, w)) == 10:
                return True
            if lines_with(path + ".1", w):
                return False
            time.sleep(0.05)
        return False

    wait_until(all_new, 20, interval=0.2, what="every worker to reopen")
    assert len(lines_with(path + ".1", word)) == 4
    assert n.proc.poll() is None
    assert n.find_logs(r"exited") == []


def test_errorlog_file_and_usr1(narwhal):
    pre = narwhal(start=False)
    path = os.path.join(pre.dir, "error.log")
    n = narwhal(settings={"workers": 1, "errorlog": path}, wait=False)
    wait_until(lambda: any("generation 1: live" in l for l in read_lines(path)),
               30, what="generation 1 live in the error log")
    for line in read_lines(path):
        assert LOG_LINE_RE.match(line), line
    port = None
    for line in read_lines(path):
        m = re.search(r"listening at http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
    assert port
    n.port, n.host = port, "127.0.0.1"
    os.rename(path, path + ".1")
    n.signal(signal.SIGUSR1)
    word = uuid.uuid4().hex
    # a worker's stderr line goes to the reopened file
    wait_until(lambda: n.get("/log?msg=" + word) and lines_with(path, word),
               10, interval=0.2, what="a line in the new error log")
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0
