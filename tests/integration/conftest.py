"""Fixtures that run the real narwhal binary against real apps.

A `Narwhal` writes an INI file into a temporary directory, starts the master
with subprocess.Popen, keeps every line it logs (a reader thread per pipe),
and waits for `generation 1: live` before a test sends traffic. Teardown sends
TERM, waits a bounded time, then SIGKILLs only the processes this fixture
started: the master and the worker pids it saw in the master's log.

Knobs, as nginx-tests has them:
  NARWHAL_BIN           the binary (default: <repo>/narwhal)
  NARWHAL_KEEP_TMP=1    keep the temporary directory (its path is printed)
  NARWHAL_TIMEOUT_MULT  multiplies every timeout (default 1)
"""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APPS = os.path.join(REPO, "tests", "apps")
BIN = os.path.abspath(os.environ.get("NARWHAL_BIN", os.path.join(REPO, "narwhal")))
PYTHON = "/usr/bin/python3"
KEEP_TMP = os.environ.get("NARWHAL_KEEP_TMP", "") not in ("", "0")
TIMEOUT_MULT = float(os.environ.get("NARWHAL_TIMEOUT_MULT", "1") or "1")

# `worker 3 pid 4242 gen 7: exited on signal 9, respawn in 2s`
WORKER_RE = re.compile(
    r"\] worker (?P<id>\d+) pid (?P<pid>\d+) gen (?P<gen>\d+): "
    r"(?P<state>[a-z]+)(?P<rest>.*)$")
LISTEN_RE = re.compile(r"listening at (?P<addr>\S+)")
GEN_LIVE_RE = r"generation {gen}: live, (\d+) workers?, tree (\S+)"
LOG_LINE_RE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(?P<pid>\d+)\] "
    r"\[(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")


def T(seconds):
    """A timeout, scaled by NARWHAL_TIMEOUT_MULT."""
    return seconds * TIMEOUT_MULT


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate until it returns a true value; bounded in time."""
    deadline = time.monotonic() + T(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (T(timeout), what))
        time.sleep(interval)


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def pid_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def child_pids(pid):
    """The direct children of pid, from /proc/PID/task/*/children."""
    out = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return sorted(out)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- HTTP helpers -----------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), names as received
        self.body = body
        self.version = version

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def __repr__(self):
        return "<Response %s %r %d bytes>" % (self.status, self.reason,
                                              len(self.body))


class HTTPReader:
    """Reads HTTP/1.x responses, one after another, from one socket.

    http.client cannot read pipelined answers (each HTTPResponse buffers its
    own makefile); this keeps one buffer for the whole connection.
    """

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            self.eof = True
            raise EOFError("connection closed by the server")
        self.buf += data

    def readline(self, limit=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_eof(self):
        while True:
            try:
                self._fill()
            except EOFError:
                break
        data, self.buf = self.buf, b""
        return data

    def read_response(self, method="GET"):
        while True:
            line = self.readline()
            m = re.match(rb"^HTTP/(\d\.\d) (\d{3})(?: (.*))?\r?\n$", line)
            if not m:
                raise ValueError("bad status line %r" % line)
            version, status = m.group(1).decode(), int(m.group(2))
            reason = (m.group(3) or b"").decode("latin-1")
            headers = []
            while True:
                line = self.readline()
                if line in (b"\r\n", b"\n"):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers.append((k, v.strip()))
            if 100 <= status < 200 and status != 101:
                continue  # interim answer (100 Continue): the real one follows
            break
        resp = Response(status, reason, headers, b"", version)
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if method == "HEAD" or status in (204, 304):
            return resp
        if "chunked" in te:
            parts = []
            while True:
                size_line = self.readline()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.readline() not in (b"\r\n", b"\n"):
                        pass  # trailers
                    break
                parts.append(self.read(size))
                if self.read(2) != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
            resp.body = b"".join(parts)
        elif cl is not None:
            resp.body = self.read(int(cl))
        else:
            resp.body = self.read_to_eof()
        return resp


def build_request(method, path, headers=None, body=b"", version="HTTP/1.1",
                  host="localhost"):
    lines = ["%s %s %s" % (method, path, version)]
    names = {k.lower() for k, _ in (headers or [])}
    if host and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in headers or []:
        lines.append("%s: %s" % (k, v))
    if body and "content-length" not in names and \
            "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def raw_exchange(addr, data, timeout=10, family=socket.AF_INET):
    """Sends data, reads until the server closes (or timeout).

    Returns (bytes received, closed): closed is False when the server kept
    the connection open until the timeout. A reset counts as closed.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(T(timeout))
    try:
        sock.connect(addr)
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading it all
        received = b""
        deadline = time.monotonic() + T(timeout)
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
        return received, False
    finally:
        sock.close()


def status_of(raw):
    m = re.match(rb"^HTTP/1\.[01] (\d{3})[ \r]", raw)
    return int(m.group(1)) if m else None


# --- the master -------------------------------------------------------------

def ini_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Narwhal:
    """One narwhal master under test.

    settings: [narwhal] keys (a list value writes the key once per item, as
    for `bind`); env: the [env] section; args: extra command-line flags.
    """

    def __init__(self, workdir, app="app:application", chdir="wsgi_basic",
                 settings=None, env=None, args=(), config_text=None,
                 use_config=True, process_env=None, cwd=None):
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.run_dir = os.path.join(self.dir, "run")
        self.marker_dir = os.path.join(self.dir, "markers")
        os.makedirs(self.marker_dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "narwhal.ini")
        self.stderr_path = os.path.join(self.dir, "narwhal.stderr")
        chdir_path = chdir if os.path.isabs(chdir) else os.path.join(APPS, chdir)
        base = {
            "python": PYTHON,
            "app": app,
            "chdir": chdir_path,
            "bind": "127.0.0.1:0",
            "workers": 2,
            "graceful_timeout": 10,
            "boot_timeout": 30,
            "runtime_dir": self.run_dir,
            "state_dir": os.path.join(self.dir, "state"),
            # the canary watch (on by default) makes every reload last
            # watch_window: tests of the watch turn it on
            "watch": False,
        }
        base.update(settings or {})
        self.settings = {k: v for k, v in base.items() if v is not None}
        self.env = {"MARKER_DIR": self.marker_dir}
        self.env.update(env or {})
        self.args = list(args)
        self.use_config = use_config
        self.process_env = process_env or {}  # the master's, on top
        self.cwd = cwd or self.dir
        if config_text is None:
            config_text = self.render_config()
        self.config_text = config_text
        self.proc = None
        self.lines = []
        self.out_lines = []
        self.cond = threading.Condition()
        self.seen_pids = set()
        self.threads = []
        self.returncode = None

    def render_config(self):
        out = ["# written by tests/integration/conftest.py", "[narwhal]"]
        for k, v in self.settings.items():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                out.append("%s = %s" % (k, ini_value(item)))
        out.append("")
        out.append("[env]")
        for k, v in self.env.items():
            out.append("%s = %s" % (k, v))
        return "\n".join(out) + "\n"

    # -- process -----------------------------------------------------------

    def command(self):
        cmd = [BIN]
        if self.use_config:
            cmd += ["-c", self.config_path]
        return cmd + self.args

    def start(self, wait=True, timeout=30):
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("LISTEN_FDS", None)
        env.pop("LISTEN_PID", None)
        env.update(self.process_env)
        self.proc = subprocess.Popen(
            self.command(), cwd=self.cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        for stream, sink, path in (
                (self.proc.stderr, self.lines, self.stderr_path),
                (self.proc.stdout, self.out_lines,
                 os.path.join(self.dir, "narwhal.stdout"))):
            t = threading.Thread(target=self._reader, args=(stream, sink, path),
                                 daemon=True)
            t.start()
            self.threads.append(t)
        if wait:
            self.wait_live(timeout=timeout)
        return self

    def _reader(self, stream, sink, path):
        with open(path, "w") as copy:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                copy.write(line + "\n")
                copy.flush()
                with self.cond:
                    sink.append(line)
                    m = WORKER_RE.search(line)
                    if m and sink is self.lines:
                        self.seen_pids.add(int(m.group("pid")))
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_live(self, gen=1, timeout=30):
        m = self.wait_for_log(GEN_LIVE_RE.format(gen=gen), timeout)
        self.parse_listeners()
        return m

    def parse_listeners(self):
        self.listeners = []
        for line in self.log_lines():
            m = LISTEN_RE.search(line)
            if m:
                self.listeners.append(m.group("addr"))
        self.port = None
        self.unix_path = None
        for addr in self.listeners:
            m = re.match(r"http://(\[[^\]]+\]|[^:/]+):(\d+)$", addr)
            if m and self.port is None:
                self.host = m.group(1).strip("[]")
                self.port = int(m.group(2))
            elif addr.startswith("unix:") and self.unix_path is None:
                self.unix_path = addr[len("unix:"):]
        if self.port is not None:
            h = "[%s]" % self.host if ":" in self.host else self.host
            self.url = "http://%s:%d" % (h, self.port)

    @property
    def addr(self):
        return (self.host, self.port)

    @property
    def family(self):
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=20):
        try:
            self.returncode = self.proc.wait(T(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("master %d still running after %.1fs"
                                 % (self.pid, T(timeout)))
        for t in self.threads:
            t.join(T(5))
        return self.returncode

    def stop(self, timeout=20):
        """TERM, bounded wait, then KILL only what this fixture started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(T(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(T(10))
        self.returncode = self.proc.returncode
        self.kill_leftovers()
        for t in self.threads:
            t.join(T(5))
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except Exception:
                pass
        return self.returncode

    def kill_leftovers(self):
        """SIGKILLs worker pids this master started that outlived it."""
        with self.cond:
            pids = set(self.seen_pids)
        left = []
        for pid in pids:
            if pid_alive(pid) and "narwhal_worker" in pid_cmdline(pid):
                left.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return left

    # -- the log -------------------------------------------------------------

    def log_lines(self):
        with self.cond:
            return list(self.lines)

    def stdout_lines(self):
        with self.cond:
            return list(self.out_lines)

    def mark(self):
        """A position in the log: wait_for_log(..., since=mark) looks after it."""
        with self.cond:
            return len(self.lines)

    def wait_for_log(self, pattern, timeout=20, since=0):
        """Waits for a log line matching the regex; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + T(timeout)
        i = since
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                if self.proc.poll() is not None and \
                        not any(t.is_alive() for t in self.threads):
                    raise AssertionError(
                        "master exited (status %s) before logging /%s/:\n%s"
                        % (self.proc.returncode, pattern, self.tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "no log line /%s/ within %.1fs:\n%s"
                        % (pattern, T(timeout), self.tail()))
                self.cond.wait(min(left, 0.2))

    def find_logs(self, pattern, since=0):
        rx = re.compile(pattern)
        return [m for m in (rx.search(l) for l in self.log_lines()[since:]) if m]

    def tail(self, n=60):
        return "\n".join(self.log_lines()[-n:])

    def worker_events(self):
        """(id, pid, gen, state, rest) for every worker state line so far."""
        out = []
        for line in self.log_lines():
            m = WORKER_RE.search(line)
            if m:
                out.append((int(m.group("id")), int(m.group("pid")),
                            int(m.group("gen")), m.group("state"),
                            m.group("rest")))
        return out

    def worker_pids(self, states=("live",)):
        """Pids whose latest state line is one of states (and still alive)."""
        last = {}
        for _id, pid, _gen, state, _rest in self.worker_events():
            last[pid] = state
        return sorted(p for p, s in last.items() if s in states and pid_alive(p))

    def children(self):
        return child_pids(self.pid)

    # -- HTTP ------------------------------------------------------------------

    def connection(self, timeout=20):
        if self.port is None:
            raise AssertionError("no TCP listener")
        return http.client.HTTPConnection(self.host, self.port,
                                          timeout=T(timeout))

    def request(self, method="GET", path="/", body=None, headers=None,
                timeout=20):
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.reason, r.getheaders(), data,
                            "1.%d" % (r.version - 10))
        finally:
            conn.close()

    def get(self, path="/", **kw):
        return self.request("GET", path, **kw)

    def worker_pid_via_http(self):
        r = self.get("/pid", headers={"Connection": "close"})
        assert r.status == 200, r
        return int(r.body)


# --- pytest glue ------------------------------------------------------------

_session_dir = None


def session_dir():
    global _session_dir
    if _session_dir is None:
        # short: Unix socket paths must fit in 108 bytes
        _session_dir = tempfile.mkdtemp(prefix="nwt-", dir="/tmp")
    return _session_dir


@pytest.fixture(scope="session", autouse=True)
def narwhal_binary():
    if not os.access(BIN, os.X_OK):
        pytest.exit("narwhal binary not found at %s: run `make` first "
                    "(or set NARWHAL_BIN)" % BIN, returncode=1)
    return BIN


def pytest_sessionfinish(session, exitstatus):
    if _session_dir is None:
        return
    if KEEP_TMP:
        sys.stderr.write("\nNARWHAL_KEEP_TMP: kept %s\n" % _session_dir)
    else:
        shutil.rmtree(_session_dir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _unique_dir(name):
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40]
    return tempfile.mkdtemp(prefix=name + "-", dir=session_dir())


class NarwhalFactory:
    """Starts masters on demand and stops every one of them at teardown."""

    def __init__(self, name):
        self.name = name
        self.started = []

    def __call__(self, start=True, wait=True, **kw):
        n = Narwhal(_unique_dir(self.name), **kw)
        self.started.append(n)
        if start:
            n.start(wait=wait)
        return n

    def workdir(self):
        return _unique_dir(self.name)

    def teardown(self, failed):
        for n in self.started:
            n.stop()
            if failed:
                sys.stderr.write("\n--- narwhal %s log (%s) ---\n%s\n"
                                 % (n.pid if n.proc else "-", n.dir, n.tail(80)))


@pytest.fixture
def narwhal(request):
    """narwhal(**kw) starts a master for this test; stopped at teardown."""
    factory = NarwhalFactory(request.node.name)
    yield factory
    rep = getattr(request.node, "rep_call", None)
    factory.teardown(failed=rep is not None and rep.failed)


@pytest.fixture(scope="module")
def narwhal_module(request):
    """Like `narwhal`, shared by a module's tests (for servers they don't alter)."""
    factory = NarwhalFactory(request.module.__name__)
    yield factory
    factory.teardown(failed=request.session.testsfailed > 0)
