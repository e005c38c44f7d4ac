"""systemd integration: sd_notify, socket activation, the journal, the
runtime and state directories, privileges, and the unit files.

What systemd would see is checked with systemd's own protocol and tools: a
real NOTIFY_SOCKET (a datagram socket this file binds and reads, with the
sender's credentials), systemd-socket-activate passing real sockets, and
`systemd-analyze verify` on every unit in packaging/. Nothing here needs
systemd as PID 1.
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import (BIN, REPO, T, Narwhal, NarwhalFactory, _unique_dir,
                      pid_alive, wait_until)

PACKAGING = os.path.join(REPO, "packaging")
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or \
    "/usr/bin/systemd-socket-activate"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
UNITS = sorted(f for f in os.listdir(PACKAGING)
               if f.endswith((".service", ".socket")))

# Worker state lines, also with a journal prefix instead of "[...] ".
WORKER_PID_RE = re.compile(r"(?:\] |^<\d>)worker \d+ pid (\d+) gen \d+: ")

APP_V1 = '''\
import os
from urllib.parse import parse_qs

VERSION = "%s"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    status, body = "200 OK", VERSION + "\\n"
    if path == "/pid":
        body = "%%d\\n" %% os.getpid()
    elif path == "/env":
        name = parse_qs(environ.get("QUERY_STRING", "")).get("name", [""])[0]
        if name in os.environ:
            body = os.environ[name]
        else:
            status, body = "404 Not Found", "unset\\n"
    body = body.encode()
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]
'''

APP_BROKEN = '''\
import narwhal_test_module_that_does_not_exist  # the deploy forgot a dependency

def application(environ, start_response):
    raise RuntimeError("never reached")
'''


# --- fixtures ----------------------------------------------------------------

class SystemdNarwhal(Narwhal):
    """A Narwhal started as systemd would start it.

    extra_env: variables for the master (NOTIFY_SOCKET, RUNTIME_DIRECTORY...);
    wrapper: a command that execs narwhal in its own place
    (systemd-socket-activate), so the pid stays the master's.

    The master's stderr goes to a real file, not a pipe, and a thread tails
    it into self.lines: a line the master wrote before it sent a datagram is
    then in the file when the datagram arrives, so the order of log lines and
    notifications can be checked, and JOURNAL_STREAM can name the file.
    """

    def __init__(self, workdir, extra_env=None, wrapper=(), **kw):
        super().__init__(workdir, **kw)
        self.extra_env = dict(extra_env or {})
        self.wrapper = list(wrapper)

    def command(self):
        return self.wrapper + super().command()

    def start(self, wait=True, timeout=30):
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        env = dict(os.environ)
        for name in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS",
                     "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                     "WATCHDOG_PID", "RUNTIME_DIRECTORY", "STATE_DIRECTORY",
                     "NARWHAL_SHIM_DIR"):
            env.pop(name, None)
        env.update(self.extra_env)
        self.stderr_file = open(self.stderr_path, "wb")
        st = os.fstat(self.stderr_file.fileno())
        self.stderr_id = "%d:%d" % (st.st_dev, st.st_ino)
        if env.get("JOURNAL_STREAM") == "@stderr":
            env["JOURNAL_STREAM"] = self.stderr_id
        self.proc = subprocess.Popen(
            self.command(), cwd=self.dir, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.stderr_file)
        self.pid = self.proc.pid
        readers = ((self._tail, ()),
                   (self._reader, (self.proc.stdout, self.out_lines,
                                   os.path.join(self.dir, "narwhal.stdout"))))
        for target, args in readers:
            t = threading.Thread(target=target, args=args, daemon=True)
            t.start()
            self.threads.append(t)
        if wait:
            self.wait_live(timeout=timeout)
        return self

    def _tail(self):
        with open(self.stderr_path, "rb") as f:
            partial = b""
            while True:
                chunk = f.readline()
                if chunk:
                    partial += chunk
                    if not partial.endswith(b"\n"):
                        continue
                    line = partial.decode("utf-8", "replace").rstrip("\n")
                    partial = b""
                    with self.cond:
                        self.lines.append(line)
                        m = WORKER_PID_RE.search(line)
                        if m:
                            self.seen_pids.add(int(m.group(1)))
                        self.cond.notify_all()
                    continue
                if self.proc.poll() is not None:
                    rest = f.read()
                    if not rest:
                        break
                    partial += rest
                    continue
                time.sleep(0.01)
        with self.cond:
            if partial:
                self.lines.append(partial.decode("utf-8", "replace"))
            self.cond.notify_all()

    def stop(self, timeout=20):
        rc = super().stop(timeout)
        self.stderr_file.close()
        return rc

    def file_text(self):
        """What the master has written to stderr so far, read right now."""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class SystemdFactory(NarwhalFactory):
    def __call__(self, start=True, wait=True, **kw):
        n = SystemdNarwhal(_unique_dir(self.name), **kw)
        self.started.append(n)
        if start:
            n.start(wait=wait)
        return n


@pytest.fixture
def sd_narwhal(request):
    factory = SystemdFactory(request.node.name)
    yield factory
    rep = getattr(request.node, "rep_call", None)
    factory.teardown(failed=rep is not None and rep.failed)


@pytest.fixture
def app_tree():
    """A code tree the test may rewrite, readable by any user (0755)."""
    d = tempfile.mkdtemp(prefix="nw-sd-app-", dir="/tmp")
    os.chmod(d, 0o755)
    tree = AppTree(d)
    tree.write(APP_V1 % "v1")
    yield tree
    shutil.rmtree(d, ignore_errors=True)


class AppTree:
    def __init__(self, path):
        self.path = path

    def write(self, text):
        tmp = os.path.join(self.path, ".app.py.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, os.path.join(self.path, "app.py"))


class NotifySocket:
    """A fake NOTIFY_SOCKET: every datagram, with the sender's pid.

    on_message(msg) runs in the reader thread as soon as a datagram arrives,
    before the next one is read: the moment systemd would act on it.
    """

    def __init__(self, path, on_message=None):
        self.path = path
        self.on_message = on_message
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.messages = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        creds_len = struct.calcsize("3i")
        while not self.closed:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(
                    65536, socket.CMSG_SPACE(creds_len))
            except socket.timeout:
                continue
            except OSError:
                break
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and \
                        kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:creds_len])[0]
            msg = Notification(data.decode("utf-8", "replace"), pid,
                               time.monotonic())
            if self.on_message is not None:
                try:
                    self.on_message(msg)
                except Exception as e:  # reported by the test
                    msg.hook_error = repr(e)
            with self.cond:
                self.messages.append(msg)
                self.cond.notify_all()

    def wait_for(self, predicate, timeout, since=0, what="a notification"):
        deadline = time.monotonic() + T(timeout)
        with self.cond:
            while True:
                for i in range(since, len(self.messages)):
                    if predicate(self.messages[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "no %s within %.1fs; got:\n%s" % (
                            what, T(timeout), "\n".join(
                                repr(m.text) for m in self.messages)))
                self.cond.wait(min(left, 0.2))

    def count(self):
        with self.cond:
            return len(self.messages)

    def since(self, i):
        with self.cond:
            return list(self.messages[i:])

    def close(self):
        self.closed = True
        self.thread.join(T(5))
        self.sock.close()


class Notification:
    def __init__(self, text, pid, at):
        self.text = text
        self.pid = pid
        self.at = at
        self.hook_error = None
        self.fields = {}
        for line in text.split("\n"):
            if "=" in line:
                k, _, v = line.partition("=")
                self.fields[k] = v

    def __repr__(self):
        return "<%r from %s>" % (self.text, self.pid)


@pytest.fixture
def notify_socket():
    d = tempfile.mkdtemp(prefix="nw-notify-", dir="/tmp")
    sockets = []

    def make(on_message=None):
        s = NotifySocket(os.path.join(d, "notify.sock"), on_message)
        sockets.append(s)
        return s
    yield make
    for s in sockets:
        s.close()
    shutil.rmtree(d, ignore_errors=True)


def http_get(port, path="/", host="127.0.0.1", timeout=5):
    """(status, body) over a fresh connection, or raises."""
    with socket.create_connection((host, port), timeout=T(timeout)) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    assert m, "not an HTTP response: %r" % data[:200]
    return int(m.group(1)), body


def skeleton(messages):
    """The datagrams without their STATUS= lines (and without empty ones)."""
    out = []
    for m in messages:
        rest = [l for l in m.text.split("\n")
                if l and not l.startswith("STATUS=")]
        if rest:
            out.append("\n".join(rest))
    return out


def statuses(messages):
    return [m.fields["STATUS"] for m in messages if "STATUS" in m.fields]


def monotonic_usec(msg):
    return int(msg.fields["MONOTONIC_USEC"])


def run_client(args, env=None, timeout=60):
    full_env = dict(os.environ)
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET"):
        full_env.pop(name, None)
    full_env.update(env or {})
    return subprocess.run([BIN] + args, capture_output=True, text=True,
                          env=full_env, timeout=T(timeout))


# --- sd_notify ---------------------------------------------------------------

def test_notify_sequence_start_reload_rollback_stop(sd_narwhal, notify_socket,
                                                    app_tree):
    ready_checks = []
    holder = {}

    def on_message(msg):
        # The moment systemd would start the units ordered after us.
        if msg.fields.get("READY") != "1" or ready_checks:
            return
        log = holder["n"].file_text()
        port = re.search(r"listening at http://127\.0\.0\.1:(\d+)", log)
        check = {"live_logged": "generation 1: live" in log,
                 "workers_live": len(re.findall(
                     r"worker \d+ pid \d+ gen 1: live$", log, re.M)),
                 "port": port and int(port.group(1))}
        try:
            check["http"] = http_get(check["port"], timeout=2)
        except Exception as e:
            check["http"] = repr(e)
        ready_checks.append(check)

    ns = notify_socket(on_message)
    n = sd_narwhal(start=False, chdir=app_tree.path,
                   settings={"workers": 2, "boot_retries": 0,
                             "min_uptime": 0.5, "boot_timeout": 20},
                   env={"PYTHONDONTWRITEBYTECODE": "1"},
                   extra_env={"NOTIFY_SOCKET": ns.path})
    holder["n"] = n
    n.start(wait=False)

    # Start: READY=1 only once both workers answer.
    ns.wait_for(lambda m: m.fields.get("READY") == "1", 30, what="READY=1")
    n.wait_live()
    start_msgs = ns.since(0)
    assert ready_checks, start_msgs
    check = ready_checks[0]
    assert check["live_logged"], \
        "READY=1 arrived before 'generation 1: live' was logged"
    assert check["workers_live"] == 2, \
        "READY=1 before every worker of generation 1 was live: %r" % (check,)
    assert check["port"] == n.port
    assert check["http"] == (200, b"v1\n"), \
        "the port did not answer when READY=1 arrived: %r" % (check,)
    first = start_msgs[0]
    assert first.fields.get("MAINPID") == str(n.pid), first
    assert "STATUS" in first.fields, first
    assert int(start_msgs[1].fields["EXTEND_TIMEOUT_USEC"]) >= 20 * 10**6
    assert skeleton(start_msgs) == [
        "MAINPID=%d" % n.pid,
        start_msgs[1].text,  # EXTEND_TIMEOUT_USEC=..., checked above
        "READY=1",
    ], start_msgs
    # What `systemctl status` shows once started.
    live_status = statuses(start_msgs)[-1]
    assert "generation 1" in live_status and "2/2" in live_status, live_status
    assert os.path.realpath(app_tree.path) in live_status, live_status

    # Workers see none of systemd's variables meant for the master.
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"):
        assert http_get(n.port, "/env?name=" + name)[0] == 404, name

    # A good reload: RELOADING=1 + MONOTONIC_USEC, then READY=1 once the new
    # generation serves.
    app_tree.write(APP_V1 % "v2")
    i = ns.count()
    before = time.monotonic()
    n.signal(signal.SIGHUP)
    j = ns.wait_for(lambda m: m.fields.get("READY") == "1", 30, since=i,
                    what="READY=1 after a good reload")
    n.wait_live(gen=2, timeout=10)
    # Retired workers may still answer what reached them as they were told
    # to stop; once they are gone, only generation 2 answers.
    for w in (1, 2):
        n.wait_for_log(r"worker %d pid \d+ gen 1: exited" % w, 15)
    reload_msgs = ns.since(i)[:j - i + 1]
    assert skeleton(reload_msgs)[0].startswith("RELOADING=1\nMONOTONIC_USEC="), \
        reload_msgs
    assert skeleton(reload_msgs)[1:] == ["READY=1"], reload_msgs
    (reloading,) = [m for m in reload_msgs if "RELOADING" in m.fields]
    usec = monotonic_usec(reloading)
    assert before * 1e6 - 1e6 <= usec <= reload_msgs[-1].at * 1e6 + 1e6, \
        "MONOTONIC_USEC %d is not CLOCK_MONOTONIC of the reload" % usec
    assert http_get(n.port) == (200, b"v2\n")
    assert "last reload: ok" in statuses(reload_msgs)[-1], reload_msgs
    assert "generation 2" in statuses(reload_msgs)[-1], reload_msgs

    # A reload whose workers cannot import the app: rolled back. systemd
    # still gets READY=1 (the service runs, on the old generation), and the
    # STATUS= it shows says what happened.
    app_tree.write(APP_BROKEN)
    i = ns.count()
    mark = n.mark()
    n.signal(signal.SIGHUP)
    j = ns.wait_for(lambda m: m.fields.get("READY") == "1", 30, since=i,
                    what="READY=1 after a rolled-back reload")
    n.wait_for_log(r"generation 3: failed", 10, since=mark)
    bad_msgs = ns.since(i)[:j - i + 1]
    assert [s.split("\n")[0] for s in skeleton(bad_msgs)] == \
        ["RELOADING=1", "READY=1"], bad_msgs
    assert "MONOTONIC_USEC" in [m for m in bad_msgs
                                if "RELOADING" in m.fields][0].fields
    rolled = [s for s in statuses(bad_msgs) if "rolled back" in s]
    assert rolled, "no STATUS= mentions the rollback: %r" % bad_msgs
    assert "generation 2" in rolled[-1], rolled
    assert http_get(n.port) == (200, b"v2\n"), "the old generation stopped"

    # Stop: STOPPING=1, and nothing after it claims readiness.
    i = ns.count()
    n.signal(signal.SIGTERM)
    assert n.wait_exit(30) == 0
    time.sleep(0.1)
    stop_msgs = ns.since(i)
    assert skeleton(stop_msgs) == ["STOPPING=1"], stop_msgs

    # Every message came from the master itself (NotifyAccess=main).
    everything = ns.since(0)
    assert {m.pid for m in everything} == {n.pid}, everything
    assert all(m.hook_error is None for m in everything), everything
    # The whole conversation, as systemd saw it.
    assert [s.split("\n")[0].split("=")[0] for s in skeleton(everything)] == [
        "MAINPID", "EXTEND_TIMEOUT_USEC", "READY",
        "RELOADING", "READY",
        "RELOADING", "READY",
        "STOPPING"], everything
    # STATUS= only when it changes.
    all_status = statuses(everything)
    for a, b in zip(all_status, all_status[1:]):
        assert a != b, "STATUS=%s sent twice in a row" % a


def test_notify_refused_reload_and_reload_wait_exit_codes(
        sd_narwhal, notify_socket, app_tree):
    """ExecReload= runs `narwhal reload --wait`: its exit status is what
    `systemctl reload` reports."""
    ns = notify_socket()
    n = sd_narwhal(chdir=app_tree.path,
                   settings={"workers": 1, "boot_retries": 0,
                             "min_uptime": 0.3},
                   env={"PYTHONDONTWRITEBYTECODE": "1"},
                   extra_env={"NOTIFY_SOCKET": ns.path})
    ns.wait_for(lambda m: m.fields.get("READY") == "1", 10)
    reload_cmd = ["reload", "--wait", "--timeout", str(T(40)),
                  "-c", n.config_path]

    app_tree.write(APP_V1 % "v2")
    before = ns.count()
    r = run_client(reload_cmd)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "result: ok" in r.stdout
    assert http_get(n.port) == (200, b"v2\n")
    # The master sent READY=1 before answering, but the reader thread may
    # not have picked it up yet: count from after it.
    ns.wait_for(lambda m: m.fields.get("READY") == "1", 10, since=before)

    # An invalid config: refused at once, nothing changes; systemd sees
    # RELOADING=1 then READY=1, and STATUS= says so. (`reload --wait` on an
    # invalid file: test_reload_wait_invalid_config_exits_3.)
    good_config = n.config_text
    with open(n.config_path, "w") as f:
        f.write(good_config.replace("[narwhal]", "[narwhal]\nworkers = many"))
    i = ns.count()
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_for_log(r"reload refused", 10, since=mark)
    j = ns.wait_for(lambda m: m.fields.get("READY") == "1", 10, since=i)
    msgs = ns.since(i)[:j - i + 1]
    assert [s.split("\n")[0] for s in skeleton(msgs)] == \
        ["RELOADING=1", "READY=1"], msgs
    assert any("refused" in s for s in statuses(msgs)), msgs
    assert http_get(n.port) == (200, b"v2\n")
    with open(n.config_path, "w") as f:
        f.write(good_config)

    # A broken app: rolled back (4), with the traceback in the output.
    app_tree.write(APP_BROKEN)
    r = run_client(reload_cmd)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "rolled-back" in r.stdout
    assert "narwhal_test_module_that_does_not_exist" in r.stdout
    assert http_get(n.port) == (200, b"v2\n")

    # A timeout shorter than the reload: 5 (the reload goes on).
    app_tree.write(APP_V1 % "v3")
    r = run_client(["reload", "--wait", "--timeout", "0.01",
                    "-c", n.config_path])
    assert r.returncode == 5, (r.stdout, r.stderr)
    n.wait_live(gen=4, timeout=20)

    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0
    # No master: 1.
    r = run_client(reload_cmd)
    assert r.returncode == 1, (r.stdout, r.stderr)


def test_reload_wait_invalid_config_exits_3(sd_narwhal):
    """`systemctl reload` after breaking the config: the documented 3
    (refused, nothing changed), not 2 (usage), and the master keeps
    serving."""
    n = sd_narwhal(settings={"workers": 1})
    with open(n.config_path, "w") as f:
        f.write(n.config_text.replace("[narwhal]",
                                      "[narwhal]\nworkers = many"))
    r = run_client(["reload", "--wait", "-c", n.config_path])
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "workers" in r.stdout + r.stderr
    assert n.get("/").status == 200


def test_reload_wait_fails_when_the_master_dies(sd_narwhal, app_tree):
    """A master killed during a reload: `reload --wait` must not report
    success (1: no outcome from the master)."""
    n = sd_narwhal(chdir=app_tree.path, settings={"workers": 1},
                   env={"PYTHONDONTWRITEBYTECODE": "1"})
    app_tree.write("import time\ntime.sleep(10)\n" + APP_V1 % "slow")
    mark = n.mark()
    client = subprocess.Popen([BIN, "reload", "--wait", "-c", n.config_path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        n.wait_for_log(r"generation 2: starting", 10, since=mark)
        n.proc.kill()
        out, err = client.communicate(timeout=T(10))
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 1, (client.returncode, out, err)


def test_watchdog_pings_from_the_loop(sd_narwhal, notify_socket):
    ns = notify_socket()
    n = sd_narwhal(settings={"workers": 1},
                   extra_env={"NOTIFY_SOCKET": ns.path,
                              "WATCHDOG_USEC": "400000"})
    ns.wait_for(lambda m: m.fields.get("READY") == "1", 10)
    i = ns.count()
    time.sleep(T(1.3))
    pings = [m for m in ns.since(i) if m.fields.get("WATCHDOG") == "1"]
    # every 0.2 s: about 6 in 1.3 s
    assert len(pings) >= 4, ns.since(i)
    # a WATCHDOG_PID naming another process is not for us
    n.stop()
    ns2_count = ns.count()
    m = sd_narwhal(settings={"workers": 1},
                   extra_env={"NOTIFY_SOCKET": ns.path,
                              "WATCHDOG_USEC": "400000",
                              "WATCHDOG_PID": "1"})
    ns.wait_for(lambda msg: msg.fields.get("READY") == "1" and
                msg.pid == m.pid, 10, since=ns2_count)
    time.sleep(T(0.6))
    assert not [x for x in ns.since(ns2_count)
                if x.fields.get("WATCHDOG") == "1"]


# --- socket activation -------------------------------------------------------

def free_ports(n):
    """n distinct free loopback TCP ports (free when this returns)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def start_activated(factory, names, **kw):
    """narwhal under systemd-socket-activate, one socket per name (None: no
    --fdname). Retries with other ports if one was taken meanwhile.
    Returns (narwhal, ports)."""
    for attempt in range(5):
        ports = free_ports(len(names))
        wrapper = [SOCKET_ACTIVATE]
        for p in ports:
            wrapper += ["-l", "127.0.0.1:%d" % p]
        if any(names):
            wrapper.append("--fdname=" + ":".join(names))
        n = factory(start=False, wrapper=wrapper, **kw)
        n.start(wait=False)
        try:
            n.wait_for_log(r"Listening on 127\.0\.0\.1:%d as %d\." %
                           (ports[-1], 2 + len(ports)), 10)
        except AssertionError:
            if "Address already in use" in "\n".join(n.log_lines()):
                n.stop()
                continue
            raise
        return n, ports
    raise AssertionError("no free ports after 5 attempts")


def fd_inode(pid, fd):
    return os.readlink("/proc/%d/fd/%d" % (pid, fd))


def test_socket_activation_one_socket(sd_narwhal):
    n, (port,) = start_activated(sd_narwhal, [None],
                                 settings={"workers": 2})
    # systemd-socket-activate execs narwhal on the first connection; that
    # connection waits in the backlog and is served once workers are live.
    first = {}

    def early():
        try:
            first["r"] = http_get(port, "/", timeout=30)
        except Exception as e:
            first["r"] = repr(e)
    t = threading.Thread(target=early, daemon=True)
    t.start()
    n.wait_live(timeout=30)
    t.join(T(30))
    assert first.get("r") == (200, b"Hello, world!\n"), first
    n.wait_for_log(r"adopted 1 socket from systemd", 5)
    assert n.listeners == ["http://127.0.0.1:%d" % port], n.listeners
    assert n.pid == n.proc.pid
    sock_before = fd_inode(n.pid, 3)

    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_live(gen=2, timeout=30)
    assert http_get(port) == (200, b"Hello, world!\n")
    assert fd_inode(n.pid, 3) == sock_before, "the adopted socket changed"
    assert not n.find_logs(r"listening at", since=mark), \
        "a reload bound a socket of its own"
    # workers get the socket, not systemd's variables
    assert http_get(port, "/env?name=LISTEN_FDS")[0] == 404
    assert http_get(port, "/env?name=LISTEN_PID")[0] == 404
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0


def test_socket_activation_two_named_sockets(sd_narwhal):
    n, ports = start_activated(sd_narwhal, ["web", "admin"],
                               settings={"workers": 2, "min_uptime": 0.3})
    threading.Thread(target=lambda: http_get(ports[0], timeout=30),
                     daemon=True).start()
    n.wait_live(timeout=30)
    n.wait_for_log(r"adopted 2 sockets from systemd", 5)
    assert sorted(n.listeners) == sorted(
        "http://127.0.0.1:%d" % p for p in ports), n.listeners
    for p in ports:
        assert http_get(p) == (200, b"Hello, world!\n"), p
    inodes = [fd_inode(n.pid, 3), fd_inode(n.pid, 4)]

    # Requests on both sockets all through a reload: none refused, none lost.
    errors, served = [], [0]
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            for p in ports:
                try:
                    status, _ = http_get(p, timeout=10)
                    if status != 200:
                        errors.append((p, status))
                    served[0] += 1
                except Exception as e:
                    errors.append((p, repr(e)))
            time.sleep(0.01)
    t = threading.Thread(target=hammer, daemon=True)
    t.start()
    n.signal(signal.SIGHUP)
    n.wait_live(gen=2, timeout=30)
    wait_until(lambda: not n.worker_pids(states=("stopping",)), 15,
               what="the old generation to exit")
    stop.set()
    t.join(T(15))
    assert not errors, errors[:10]
    assert served[0] > 10
    assert [fd_inode(n.pid, 3), fd_inode(n.pid, 4)] == inodes
    for p in ports:
        assert http_get(p) == (200, b"Hello, world!\n"), p
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0


# --- journal, runtime and state directories -----------------------------------

def test_journal_priority_prefixes(sd_narwhal):
    # JOURNAL_STREAM names the very file stderr is: lines carry <N> instead
    # of a time stamp, so `journalctl -p err` works.
    n = sd_narwhal(start=False, settings={"workers": 1},
                   extra_env={"JOURNAL_STREAM": "@stderr"})
    n.start(wait=True)
    lines = n.log_lines()
    assert lines[0].startswith("<6>narwhal "), lines[0]
    assert any(re.match(r"<6>worker 1 pid \d+ gen 1: live$", l)
               for l in lines), lines
    assert not any(l.startswith("[") for l in lines), lines
    with open(n.config_path, "a") as f:
        f.write("\n[narwhal_typo]\n")
    mark = n.mark()
    n.signal(signal.SIGHUP)
    m = n.wait_for_log(r"reload refused", 10, since=mark)
    assert m.string.startswith("<3>"), m.string
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0


def test_journal_stream_of_another_file_means_no_prefix(sd_narwhal):
    # stderr redirected away from the journal: plain lines again.
    st = os.stat("/dev/null")
    n = sd_narwhal(settings={"workers": 1},
                   extra_env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev,
                                                           st.st_ino)})
    assert n.log_lines()[0].startswith("["), n.log_lines()[0]


def test_runtime_and_state_directory_from_systemd(sd_narwhal):
    base = tempfile.mkdtemp(prefix="nw-dirs-", dir="/tmp")
    try:
        run_dir, state_dir = os.path.join(base, "run"), os.path.join(base, "lib")
        os.makedirs(run_dir)
        os.makedirs(state_dir)
        env = {"RUNTIME_DIRECTORY": run_dir, "STATE_DIRECTORY": state_dir}
        n = sd_narwhal(settings={"workers": 1, "runtime_dir": None,
                                 "state_dir": None},
                       extra_env=env)
        (instance,) = os.listdir(run_dir)
        assert re.match(r"^[0-9a-f]{12}$", instance), instance
        control = os.path.join(run_dir, instance, "control.sock")
        assert os.path.exists(control)
        assert os.stat(control).st_mode & 0o777 == 0o600
        assert os.stat(os.path.join(run_dir, instance)).st_mode & 0o777 == 0o700
        good = os.path.join(state_dir, instance, "last-good-tree")
        wait_until(lambda: os.path.exists(good), 5, what=good)
        with open(good) as f:
            assert f.read().strip() == os.path.realpath(n.settings["chdir"])
        # ExecReload= runs with the same RUNTIME_DIRECTORY: it finds the master
        r = run_client(["reload", "--wait", "-c", n.config_path], env=env)
        assert r.returncode == 0, (r.stdout, r.stderr)
        r = run_client(["status", "--json", "-c", n.config_path], env=env)
        assert r.returncode == 0 and '"generation": 2' in r.stdout, r
        n.signal(signal.SIGTERM)
        assert n.wait_exit(20) == 0
        assert not os.path.exists(control)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- privileges --------------------------------------------------------------

def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root "
                    "(CI runs as root)")
def test_workers_run_as_the_configured_user(sd_narwhal, app_tree):
    import grp
    import pwd
    uid = pwd.getpwnam("nobody").pw_uid
    gid = grp.getgrnam("nogroup").gr_gid
    n = sd_narwhal(chdir=app_tree.path,
                   settings={"workers": 2, "user": "nobody",
                             "group": "nogroup", "umask": "0027"},
                   env={"PYTHONDONTWRITEBYTECODE": "1"})
    pids = n.worker_pids()
    assert len(pids) == 2
    served = set()
    for _ in range(20):
        served.add(int(http_get(n.port, "/pid")[1]))
    assert served <= set(pids), (served, pids)
    for pid in pids:
        st = proc_status(pid)
        assert st["Uid"] == [str(uid)] * 4, st["Uid"]
        assert st["Gid"] == [str(gid)] * 4, st["Gid"]
        # root's supplementary groups are gone
        assert set(st["Groups"]) <= {str(gid)}, st["Groups"]
        assert st["Umask"] == ["0027"], st["Umask"]
        # and it cannot get root back
        assert st["CapEff"] == ["0000000000000000"], st["CapEff"]
    # the master keeps root, to bind and to signal its workers
    assert proc_status(n.pid)["Uid"][0] == "0"
    # a reload's workers too
    n.signal(signal.SIGHUP)
    n.wait_live(gen=2, timeout=30)
    wait_until(lambda: all(proc_status(p)["Uid"][0] == str(uid)
                           for p in n.worker_pids()), 5)
    # TTIN's extra worker too, and the master still stops them all
    n.signal(signal.SIGTERM)
    assert n.wait_exit(20) == 0
    for pid in pids:
        assert not pid_alive(pid)


# --- the unit files ------------------------------------------------------------

def read_unit(name):
    """{section: {key: [values]}}: systemd allows a key more than once."""
    out, section = {}, None
    with open(os.path.join(PACKAGING, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = out.setdefault(line.strip("[]"), {})
                continue
            k, _, v = line.partition("=")
            section.setdefault(k.strip(), []).append(v.strip())
    return out


def verify_root(tmp):
    """A file system root systemd-analyze can verify our units in, without
    systemd running: systemd's own units (for the default dependencies),
    our units in etc/, the binary at /usr/bin/narwhal, our man pages."""
    root = os.path.join(tmp, "root")
    shutil.copytree("/lib/systemd/system",
                    os.path.join(root, "usr/lib/systemd/system"),
                    symlinks=True)
    units = os.path.join(root, "etc/systemd/system")
    os.makedirs(units)
    for u in UNITS:
        shutil.copy(os.path.join(PACKAGING, u), units)
    os.makedirs(os.path.join(root, "usr/bin"))
    shutil.copy(BIN, os.path.join(root, "usr/bin/narwhal"))
    for page, section in (("narwhal.8", "man8"), ("narwhal.ini.5", "man5")):
        d = os.path.join(root, "usr/share/man", section)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(REPO, "supervisor", page), d)
    return root


def analyze(root, *args):
    env = dict(os.environ)
    # our pages in the root, then the system's (the trailing colon)
    env["MANPATH"] = os.path.join(root, "usr/share/man") + ":"
    env["SYSTEMD_LOG_LEVEL"] = "notice"
    env["SYSTEMD_PAGER"] = ""
    return subprocess.run([SYSTEMD_ANALYZE] + list(args), env=env,
                          capture_output=True, text=True, timeout=T(60))


def as_instance(unit):
    return unit.replace("@.", "@test.")


def test_units_pass_systemd_analyze_verify(tmp_path):
    assert set(UNITS) >= {"narwhal.service", "narwhal@.service",
                          "narwhal.socket", "narwhal-hardened.service"}, UNITS
    root = verify_root(str(tmp_path))
    # The Documentation= pages of systemd itself, when installed here.
    have_man = subprocess.run(["man", "-w", "systemd.socket.5"],
                              capture_output=True).returncode == 0
    man = "--man=yes" if have_man else "--man=no"
    names = [as_instance(u) for u in UNITS]
    r = analyze(root, "verify", "--root=" + root, man, *names)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and out == "", out
    if not have_man:
        for page in ("narwhal.8", "narwhal.ini.5"):
            r = subprocess.run(["man", "-w", page], capture_output=True,
                               env=dict(os.environ, MANPATH=os.path.join(
                                   root, "usr/share/man")))
            assert r.returncode == 0, page

    # The check has teeth: a missing binary and an unknown key are reported.
    os.rename(os.path.join(root, "usr/bin/narwhal"),
              os.path.join(root, "usr/bin/narwhal.away"))
    with open(os.path.join(root, "etc/systemd/system/narwhal-typo.service"),
              "w") as f:
        f.write("[Service]\nType=notify\nExecStart=/usr/bin/narwhal\n"
                "KillMod=mixed\n")
    r = analyze(root, "verify", "--root=" + root, "--man=no",
                "narwhal.service", "narwhal-typo.service")
    assert r.returncode != 0
    assert "/usr/bin/narwhal is not executable" in r.stderr, r.stderr
    assert "Unknown key" in r.stderr and "KillMod" in r.stderr, r.stderr


def test_units_say_what_narwhal_needs():
    for name in ("narwhal.service", "narwhal@.service",
                 "narwhal-hardened.service"):
        s = read_unit(name)["Service"]
        config = "/etc/narwhal/%i.ini" if "@" in name \
            else "/etc/narwhal/narwhal.ini"
        assert s["Type"] == ["notify"], name
        assert s["NotifyAccess"] == ["main"], name
        assert s["ExecStart"] == ["/usr/bin/narwhal -c " + config], name
        assert s["ExecReload"] == [
            "/usr/bin/narwhal reload --wait -c " + config], name
        assert s["KillMode"] == ["mixed"], name
        # graceful_timeout (30 s) + the master's 5 s, with room to spare
        stop = int(s["TimeoutStopSec"][0].rstrip("s"))
        assert stop >= 40, name
        assert s["Restart"] == ["on-failure"], name
        assert s["RuntimeDirectory"] == (["narwhal/%i"] if "@" in name
                                         else ["narwhal"]), name
        assert s["StateDirectory"] == (["narwhal/%i"] if "@" in name
                                       else ["narwhal"]), name
        if "@" not in name:
            # stopping it must not delete /run/narwhal/<instance> of the
            # template's instances
            assert s["RuntimeDirectoryPreserve"] == ["yes"], name
    for name in ("narwhal.socket", "narwhal@.socket"):
        s = read_unit(name)["Socket"]
        assert s["FileDescriptorName"], name
        assert s["ListenStream"], name
    # the template's socket lives outside RuntimeDirectory=narwhal/%i,
    # which systemd deletes when the service stops
    (listen,) = read_unit("narwhal@.socket")["Socket"]["ListenStream"]
    assert not listen.startswith("/run/narwhal/"), listen
    h = read_unit("narwhal-hardened.service")["Service"]
    for key, value in (("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                       ("PrivateTmp", "yes"), ("ProtectHome", "yes")):
        assert h[key] == [value], key
    assert h["ReadWritePaths"], "the deploy root must stay writable"


def test_hardened_unit_exposure(tmp_path):
    root = verify_root(str(tmp_path))
    r = analyze(root, "security", "--offline=yes", "--root=" + root,
                "--no-pager", "narwhal-hardened.service")
    m = re.search(r"Overall exposure level for narwhal-hardened\.service: "
                  r"([\d.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.5, r.stdout
