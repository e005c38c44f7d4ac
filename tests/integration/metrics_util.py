"""Helpers for the metrics and watch tests: scrape GET /metrics, run
promtool on it, listen for statsd datagrams, and tell whether the worker shim
sends its counters with the heartbeat yet.

Everything talks to loopback (or a Unix socket) and is bounded in time.
"""

import os
import re
import shutil
import socket
import subprocess
import threading
import time

from conftest import REPO, T

METRICS_RE = r"metrics at (?:http://)?(\S+)/metrics"
SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def worker_sends_counters():
    """True once the worker shim's heartbeat carries key=value counters
    (PLAN.md's wire format: it has `latsum_us=`)."""
    src = os.path.join(REPO, "worker-shim", "src")
    for folder, _dirs, files in os.walk(src):
        for name in files:
            if name.endswith(".c"):
                with open(os.path.join(folder, name), errors="replace") as f:
                    if "latsum_us=" in f.read():
                        return True
    return False


def metrics_address(n):
    """Where n serves /metrics: ("tcp", (host, port)) or ("unix", path)."""
    m = n.wait_for_log(METRICS_RE)
    addr = m.group(1)
    if addr.startswith("unix:"):
        return ("unix", addr[len("unix:"):])
    host, _, port = addr.rpartition(":")
    return ("tcp", (host.strip("[]"), int(port)))


def http_get(where, path="/metrics", method="GET", timeout=10):
    """One request with Connection: close; returns (status, headers, body)."""
    kind, addr = where
    family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(T(timeout))
    try:
        sock.connect(addr)
        sock.sendall(("%s %s HTTP/1.1\r\nHost: x\r\n\r\n"
                      % (method, path)).encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict((k.lower(), v.strip()) for k, _, v in
                   (l.partition(":") for l in lines[1:]))
    return status, headers, body


def scrape_text(where):
    status, headers, body = http_get(where)
    assert status == 200, (status, body[:200])
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(headers["content-length"]) == len(body)
    return body.decode()


def parse(text):
    """{(name, frozenset of (label, value))): float} for every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        key = (m.group(1), labels)
        assert key not in out, "duplicate series %r" % line
        out[key] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def scrape(where):
    return parse(scrape_text(where))


def promtool_check(text):
    """Runs `promtool check metrics`; returns (returncode, output)."""
    tool = shutil.which("promtool")
    assert tool, "promtool not installed (Debian package prometheus)"
    r = subprocess.run([tool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=T(30))
    return r.returncode, r.stdout + r.stderr


class StatsdListener:
    """A UDP socket on 127.0.0.1 (port 0) that keeps every statsd line."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _run(self):
        deadline = time.monotonic() + T(300)
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                self.lines.extend(data.decode().split("\n"))

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def total(self, name):
        """The sum of a counter's values over every line received."""
        out = 0
        for line in self.snapshot():
            metric, _, rest = line.partition(":")
            if metric == name and "|c" in rest:
                out += int(rest.split("|")[0])
        return out

    def close(self):
        self._stop.set()
        self.thread.join(T(5))
        self.sock.close()
