"""Helpers for the reload, rollback and recycling tests: deploys under load.

* `Deploy`: release trees built from tests/apps/releases/ and a `current`
  symlink flipped atomically (a new link, then os.replace), as a deploy
  script does it.
* `Client`: a thread that requests without pause, alternating keep-alive
  batches and one-request connections, and keeps every outcome, so a test
  can count failed or refused requests and see which versions answered.
* `StatusPoller`: a thread that samples `status json` from the master's
  control socket, so a test sees generations, states and live workers change.
* `status()`, `status_cli()`, `reload_wait()`: one-shot control commands.

Everything is bounded in time and count, talks to loopback only, and starts
no process besides `narwhal reload`/`status` clients.
"""

import json
import os
import shutil
import socket
import subprocess
import threading
import time

from conftest import (APPS, BIN, HTTPReader, T, build_request, wait_until)

RELEASES = os.path.join(APPS, "releases")
USER_AGENT = "deploy-client"

# Settings that keep these tests fast; a test overrides what it needs.
# boot_timeout is the one a slow machine could trip over for a good release.
FAST = {
    "app": "app:application",
    "workers": 2,
    "graceful_timeout": 5,
    "boot_timeout": "%g" % T(5),
    "ready_interval": 0.2,
    "min_uptime": 0,
    "boot_retries": 1,
    "keepalive": 5,
    "timeout": 30,
}


# --- release trees ----------------------------------------------------------

class Deploy:
    """releases/<version>/ trees under root, and root/current pointing at one."""

    def __init__(self, root):
        self.root = root
        self.releases = os.path.join(root, "releases")
        self.current = os.path.join(root, "current")
        os.makedirs(self.releases, exist_ok=True)

    def make_release(self, version, variant="good"):
        """Builds releases/<version> from common/ plus the variant's files."""
        tree = os.path.join(self.releases, version)
        if os.path.exists(tree):
            shutil.rmtree(tree)
        os.makedirs(tree)
        for folder in ("common", variant):
            src = os.path.join(RELEASES, folder)
            for name in os.listdir(src):
                if name.endswith(".py"):
                    shutil.copy(os.path.join(src, name), tree)
        with open(os.path.join(tree, "VERSION"), "w") as f:
            f.write(version + "\n")
        return tree

    def tree(self, version):
        return os.path.realpath(os.path.join(self.releases, version))

    def flip(self, version):
        """Points current at releases/<version>: never a moment without."""
        tmp = "%s.tmp-%d" % (self.current, os.getpid())
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("releases", version), tmp)
        os.replace(tmp, self.current)

    def link(self):
        """What current points at (as written in the link)."""
        return os.readlink(self.current)

    def points_at(self):
        """The version current resolves to."""
        return os.path.basename(os.path.realpath(self.current))


def start_master(narwhal, deploy, settings=None, env=None, wait=True,
                 **kw):
    """A master serving deploy.current with the FAST settings."""
    s = dict(FAST)
    s["chdir"] = deploy.current
    s.update(settings or {})
    n = narwhal(start=False, settings=s, env=env, **kw)
    n.start(wait=wait)
    return n


def rewrite_config(n, text=None, **changes):
    """Writes n's config file again: changed settings, or a whole text."""
    if text is None:
        n.settings.update(changes)
        n.settings = {k: v for k, v in n.settings.items() if v is not None}
        text = n.render_config()
    n.config_text = text
    with open(n.config_path, "w") as f:
        f.write(text)


# --- control commands -------------------------------------------------------

def control_path(n):
    return os.path.join(n.run_dir, "control.sock")


def status(n, timeout=10):
    """One `status json` snapshot straight from the control socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(T(timeout))
    try:
        sock.connect(control_path(n))
        sock.sendall(b"status json\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return json.loads(data.decode())


def status_cli(n, timeout=20):
    """`narwhal status --json -c FILE`, parsed."""
    r = subprocess.run([BIN, "status", "--json", "-c", n.config_path],
                       capture_output=True, text=True, timeout=T(timeout))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


class ReloadResult:
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.output = stdout + stderr

    def __repr__(self):
        return "<reload exit %s\n--- stdout\n%s--- stderr\n%s>" % (
            self.returncode, self.stdout, self.stderr)


def reload_wait(n, timeout=60, config_path=None):
    """`narwhal reload --wait -c FILE`: its exit code and output."""
    cmd = [BIN, "reload", "--wait", "--timeout", "%g" % T(timeout),
           "-c", config_path or n.config_path]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=T(timeout) + 15)
    return ReloadResult(r.returncode, r.stdout, r.stderr)


def markers(n, prefix):
    """Marker files the apps wrote into $MARKER_DIR (not their temp files)."""
    return sorted(name for name in os.listdir(n.marker_dir)
                  if name.startswith(prefix) and ".tmp." not in name)


def crash_times(n):
    """When the app's segfault timers fired (from $MARKER_DIR/segfault-*)."""
    out = []
    for name in markers(n, "segfault-"):
        with open(os.path.join(n.marker_dir, name)) as f:
            out.append(float(f.read()))
    return sorted(out)


def capacity(snapshot):
    """Workers taking public traffic, whatever their generation."""
    return sum(1 for w in snapshot["workers"]
               if w["state"] in ("live", "retiring"))


def workers_of(snapshot, gen=None, states=None):
    return [w for w in snapshot["workers"]
            if (gen is None or w["generation"] == gen) and
            (states is None or w["state"] in states)]


def wait_settled(n, gen, workers, timeout=30):
    """Until generation gen is current with `workers` live and nothing else."""
    def settled():
        s = status(n)
        if s["reloading"] or s["generation"] != gen:
            return None
        live = workers_of(s, gen, ("live",))
        if len(live) == workers and len(s["workers"]) == workers:
            return s
        return None
    return wait_until(settled, timeout, interval=0.1,
                      what="generation %d settled with %d workers"
                      % (gen, workers))


# --- the continuous client ----------------------------------------------------

class Sample:
    __slots__ = ("t0", "t1", "mode", "status", "body", "pid", "gen", "error")

    def __init__(self, t0, t1, mode, status=None, body=None, pid=None,
                 gen=None, error=None):
        self.t0, self.t1, self.mode = t0, t1, mode
        self.status, self.body, self.pid, self.gen = status, body, pid, gen
        self.error = error

    @property
    def version(self):
        return self.body.strip() if self.body is not None else None

    def __repr__(self):
        return "<%s %.3f-%.3f %s %r pid %s gen %s %s>" % (
            self.mode, self.t0, self.t1, self.status, self.body, self.pid,
            self.gen, self.error or "")


class _Stale(Exception):
    """A reused keep-alive connection was closed before any answer."""


class Client:
    """Requests without pause until stopped (bounded in time and count).

    Each round makes `batch` requests on one keep-alive connection, then
    `singles` requests on a new connection each (Connection: close). As
    every HTTP client does (RFC 9112, 9.3.1), a GET that finds a reused
    connection closed before any byte of its answer is retried once on a
    new connection; those retries are counted in `stale_retries`. Anything
    else (refused, reset, timeout, a non-200 answer) is a failure.

    It paces itself to at most `rate` requests a second, so that its count
    bound outlasts its time bound: unpaced, a quiet machine reached the
    count in 20 s and the client stopped in the middle of a test.
    """

    def __init__(self, addr, path="/", batch=20, singles=5, max_seconds=120,
                 max_requests=200000, timeout=10, family=socket.AF_INET,
                 rate=1500):
        self.addr = addr
        self.path = path
        self.batch = batch
        self.singles = singles
        self.max_seconds = T(max_seconds)
        self.max_requests = max_requests
        self.timeout = T(timeout)
        self.family = family
        self.rate = rate
        self.samples = []
        self.stale_retries = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.crashed = None

    # -- control
    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(self.timeout + T(10))
        assert not self.thread.is_alive(), "client thread did not stop"
        if self.crashed is not None:
            raise self.crashed
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(self.timeout + T(10))

    def wait_requests(self, n, timeout=30):
        """Until n more requests have answered."""
        start = len(self.snapshot())

        def done():
            assert self.thread.is_alive(), (
                "the client stopped at its bound (%d requests in %.0f s)"
                % (len(self.samples), self.max_seconds))
            return len(self.snapshot()) >= start + n
        wait_until(done, timeout, what="%d more client requests" % n)

    # -- results
    def snapshot(self):
        with self.lock:
            return list(self.samples)

    def failures(self):
        return [s for s in self.snapshot()
                if s.error is not None or s.status != 200]

    def versions(self, since=None, until=None):
        out = {}
        for s in self.snapshot():
            if s.error is not None:
                continue
            if since is not None and s.t0 < since:
                continue
            if until is not None and s.t1 > until:
                continue
            out[s.version] = out.get(s.version, 0) + 1
        return out

    def ok_count(self):
        return sum(1 for s in self.snapshot()
                   if s.error is None and s.status == 200)

    def summary(self):
        samples = self.snapshot()
        fails = [s for s in samples if s.error is not None or s.status != 200]
        return ("%d requests, %d failed, %d stale keep-alive retries, "
                "versions %s; first failures: %s"
                % (len(samples), len(fails), self.stale_retries,
                   self.versions(), fails[:5]))

    def failures_outside(self, instants, slack=0.5):
        """Failures not in flight at any of instants (monotonic times).

        A request a worker was serving when it crashed dies with it; no
        supervisor can save it. slack: a crashing worker may still accept
        for a moment (faulthandler writes its dump first).
        """
        return [s for s in self.failures()
                if not any(s.t0 - slack <= t <= s.t1 for t in instants)]

    def max_gap(self):
        """The longest time between two answered requests (a stall)."""
        ends = sorted(s.t1 for s in self.snapshot() if s.error is None)
        return max((b - a for a, b in zip(ends, ends[1:])), default=0.0)

    # -- the loop
    def _record(self, sample):
        with self.lock:
            self.samples.append(sample)

    def _connect(self):
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(self.addr)
        return sock

    def _exchange(self, sock, reader, close, reused):
        headers = [("User-Agent", USER_AGENT)]
        if close:
            headers.append(("Connection", "close"))
        try:
            sock.sendall(build_request("GET", self.path, headers))
        except (BrokenPipeError, ConnectionResetError):
            if reused:
                raise _Stale()
            raise
        try:
            return reader.read_response()
        except (EOFError, ConnectionResetError):
            if reused and not reader.buf:
                raise _Stale()
            raise

    def _done(self):
        return (self._stop.is_set() or
                time.monotonic() >= self.deadline or
                len(self.samples) >= self.max_requests)

    def _one(self, conn, close):
        """One request; conn is [sock, reader, requests_on_it] or empties."""
        t0 = time.monotonic()
        for attempt in (0, 1):
            try:
                if conn[0] is None:
                    conn[0] = self._connect()
                    conn[1] = HTTPReader(conn[0])
                    conn[2] = 0
                reused = conn[2] > 0
                r = self._exchange(conn[0], conn[1], close, reused)
            except _Stale:
                self._drop(conn)
                self.stale_retries += 1
                if attempt == 0:
                    continue
                self._record(Sample(t0, time.monotonic(), "keepalive",
                                    error="stale twice"))
                return
            except (OSError, EOFError, ValueError) as e:
                self._drop(conn)
                self._record(Sample(t0, time.monotonic(),
                                    "close" if close else "keepalive",
                                    error="%s: %s" % (type(e).__name__, e)))
                return
            conn[2] += 1
            body = r.body.decode("latin-1")
            self._record(Sample(t0, time.monotonic(),
                                "close" if close else "keepalive",
                                status=r.status, body=body,
                                pid=r.header("X-Pid"),
                                gen=r.header("X-Generation")))
            if close or (r.header("Connection") or "").lower() == "close":
                self._drop(conn)
            return

    @staticmethod
    def _drop(conn):
        if conn[0] is not None:
            try:
                conn[0].close()
            except OSError:
                pass
        conn[0] = conn[1] = None
        conn[2] = 0

    def _pace(self):
        """Sleep while ahead of `rate` requests a second."""
        ahead = (self.started + len(self.samples) / self.rate
                 - time.monotonic())
        if ahead > 0.005:
            self._stop.wait(ahead)

    def _run(self):
        self.started = time.monotonic()
        self.deadline = self.started + self.max_seconds
        try:
            while not self._done():
                self._pace()
                conn = [None, None, 0]
                for _ in range(self.batch):
                    if self._done():
                        break
                    self._one(conn, close=False)
                self._drop(conn)
                for _ in range(self.singles):
                    if self._done():
                        break
                    self._one([None, None, 0], close=True)
        except Exception as e:  # a bug in the client itself
            self.crashed = e


# --- the status poller --------------------------------------------------------

class StatusPoller:
    """Samples `status json` every interval until stopped (bounded).

    cli: run `narwhal status --json` each time instead of asking the control
    socket directly (slower, but what an operator's script sees).
    """

    def __init__(self, n, interval=0.05, max_seconds=120, max_samples=20000,
                 cli=False):
        self.n = n
        self.cli = cli
        self.interval = interval
        self.max_seconds = T(max_seconds)
        self.max_samples = max_samples
        self.samples = []   # (monotonic time, snapshot)
        self.errors = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(T(15))
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while (not self._stop.is_set() and time.monotonic() < deadline and
               len(self.samples) < self.max_samples):
            try:
                s = (status_cli(self.n, timeout=10) if self.cli
                     else status(self.n, timeout=5))
                with self.lock:
                    self.samples.append((time.monotonic(), s))
            except (OSError, ValueError, AssertionError,
                    subprocess.SubprocessError) as e:
                self.errors.append(repr(e))
            self._stop.wait(self.interval)

    def snapshot(self):
        with self.lock:
            return list(self.samples)

    def states_seen(self, gen):
        """Every state a worker of generation gen was seen in."""
        seen = set()
        for _, s in self.snapshot():
            for w in s["workers"]:
                if w["generation"] == gen:
                    seen.add(w["state"])
        return seen

    def min_capacity(self):
        return min((capacity(s) for _, s in self.snapshot()), default=None)

    def min_live(self):
        return min((s["live"] for _, s in self.snapshot()), default=None)

    def generations_seen(self):
        gens = set()
        for _, s in self.snapshot():
            gens.add(s["generation"])
            gens.update(w["generation"] for w in s["workers"])
        return gens
