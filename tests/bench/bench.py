#!/usr/bin/python3
"""Benchmarks narwhal against the servers it replaces, with wrk.

The `hello` scenario serves a hello-world app (tests/apps/hello) with the same
number of workers from each server, warms it up, then runs
`wrk -t2 -c64 -d10s --latency` twice: with keep-alive, and with
`Connection: close`. It prints requests/s, p50 and p99 latency, errors, the
ratio to narwhal, and the master's RSS and PSS beside the workers' RSS.

Every process is started here, in its own session, and every one is stopped
here: TERM, a bounded wait, then KILL of the pids it started (the server and
the descendants seen while it ran). Every step is bounded in time.

The `asgi` scenario serves a raw ASGI hello world and a FastAPI JSON
endpoint from narwhal, uvicorn (`--workers 2 --http httptools`) and gunicorn
with uvicorn's worker class, all at once, and runs wrk against them in turn
for --rounds rounds; it reports medians, ratios and each server's CPU time
per request. The `metrics` scenario serves hello world from two narwhal
masters at once, metrics off and on (/metrics scraped every second, statsd,
counters reported every second), and runs wrk against them in turn,
alternating, for --rounds rounds. The `ws` scenario is a WebSocket echo
(tests/apps/hello/ws_echo.py) from narwhal, uvicorn and gunicorn +
UvicornWorker, driven by tests/bench/wsbench.c (C, epoll): 64 connections,
small messages, messages/s and p99. The `tls` scenario serves hello world
over TLS (keep-alive) from narwhal beside nginx terminating TLS with
`return 200`, same certificate, each also in the clear, and reports the
requests/s ratio and what TLS costs each in CPU per request. The `threads`
scenario runs `threads = N` beside gunicorn's gthread worker (a
latency-bound app waiting 50 ms in time.sleep and in PostgreSQL's pg_sleep,
an I/O-bound one waiting 5 ms, hello world), and `gevent` the gevent and
eventlet workers beside gunicorn's, the same way: servers side by side, runs
alternating, medians, memory per worker. `make bench` runs these seven; the
others (reload under load, recycling under load) are functions of the same
shape: run them with
--scenario. Usage:

    bench.py [--duration S] [--quick] [--rounds N] [--scenario NAME[,NAME]]
             [--servers ...]
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
HELLO = os.path.join(REPO, "tests", "apps", "hello")
PYTHON = "/usr/bin/python3"
NARWHAL = os.environ.get("NARWHAL_BIN", os.path.join(REPO, "narwhal"))
WORKERS = 2


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


# Each server gets its own loopback address: the TIME-WAIT sockets that one
# server's Connection: close run leaves behind then do not slow the next one.
HOSTS = {"narwhal": "127.0.0.11", "gunicorn-sync": "127.0.0.12",
         "gunicorn-gthread": "127.0.0.13", "uwsgi": "127.0.0.14",
         "uvicorn": "127.0.0.15", "uwsgi-http": "127.0.0.16",
         "narwhal-asgi": "127.0.0.21", "narwhal-metrics": "127.0.0.23",
         "gunicorn-uvicorn": "127.0.0.22"}


def free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for tid in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return stat[stat.rfind(")") + 2:].split()[19]
    except OSError:
        return None


def tcp_passive_opens():
    """Connections the kernel has accepted so far (all addresses): over a
    run, divided by its requests, it tells whether the server really closed
    each connection."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Tcp:")]
        return int(rows[1][rows[0].index("PassiveOpens")])
    except (OSError, IndexError, ValueError):
        return None


def time_wait_sockets(host):
    """TCP sockets to or from host in TIME-WAIT: tens of thousands of them
    slow down a Connection: close run."""
    want = "%02X%02X%02X%02X" % tuple(reversed([int(x) for x in
                                                 host.split(".")]))
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "06" and (cols[1].startswith(want) or
                                        cols[2].startswith(want)):
                    n += 1
    except (OSError, StopIteration, IndexError):
        pass
    return n


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pss_kib(pid):
    """Proportional set size: each shared page counts 1/N for N mappers.

    A master's RSS counts every shared-library page it maps in full, though
    its workers and other processes map the same pages; PSS does not.
    """
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Server:
    """One server under test: started, checked, measured, stopped."""

    def __init__(self, name, label, argv, port, cwd=None, ready_log=None,
                 env=None, host="127.0.0.1", check=("/", b"Hello, world!\n")):
        self.host = host
        self.check = check  # (path, expected body or None for any 200)
        self.name = name
        self.label = label
        self.argv = argv
        self.port = port
        self.cwd = cwd
        self.ready_log = ready_log
        self.env = env
        self.proc = None
        self.seen = {}  # pid -> start time, for a safe final KILL
        self.tmp = None

    def start(self, timeout=60):
        self.log_path = os.path.join(self.tmp, "server.log")
        self.log_file = open(self.log_path, "wb")
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd or self.tmp, env=env,
            stdin=subprocess.DEVNULL, stdout=self.log_file,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s:\n%s" % (
                    self.name, self.proc.returncode, self.tail()))
            if self.port is None and self.ready_log:
                m = re.search(self.ready_log[0], self.read_log())
                if m:
                    self.port = int(m.group(1))
            ready = self.port is not None and (
                self.ready_log is None or
                re.search(self.ready_log[1], self.read_log()))
            if ready and self.ok():
                self.remember()
                return self
            time.sleep(0.1)
        raise RuntimeError("%s not ready within %ds:\n%s"
                           % (self.name, timeout, self.tail()))

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, n=20):
        return "\n".join(self.read_log().splitlines()[-n:])

    def ok(self):
        path, body = self.check
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path,
                                        timeout=2) as r:
                return r.status == 200 and (body is None or
                                            r.read() == body)
        except OSError:
            return False

    @property
    def url(self):
        return "http://%s:%d/" % (self.host, self.port)

    def remember(self):
        for pid in [self.proc.pid] + descendants(self.proc.pid):
            st = start_time(pid)
            if st:
                self.seen[pid] = st

    def rss(self):
        """(master RSS KiB, master PSS KiB, all workers' RSS KiB)."""
        kids = descendants(self.proc.pid)
        return (rss_kib(self.proc.pid), pss_kib(self.proc.pid),
                sum(rss_kib(p) or 0 for p in kids))

    def stop(self, timeout=20):
        if self.proc is None:
            return
        self.remember()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s did not stop within %ds: killing it" % (self.name,
                                                                timeout))
                self.proc.kill()
                self.proc.wait(10)
        time.sleep(0.2)
        for pid, st in self.seen.items():
            if start_time(pid) == st:  # still the process we started
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.log_file.close()


def narwhal_server(tmp, app="wsgi:application", interface=None, extra=None,
                   host=None, check=("/", b"Hello, world!\n"), chdir=HELLO):
    ini = os.path.join(tmp, "narwhal.ini")
    host = host or HOSTS["narwhal"]
    lines = ["[narwhal]", "python = %s" % PYTHON, "app = %s" % app,
             "chdir = %s" % chdir, "bind = %s:0" % host,
             "workers = %d" % WORKERS, "runtime_dir = %s" % os.path.join(tmp, "run"),
             "state_dir = %s" % os.path.join(tmp, "state")]
    if interface:
        lines.append("interface = %s" % interface)
    for k, v in (extra or {}).items():
        lines.append("%s = %s" % (k, v))
    with open(ini, "w") as f:
        f.write("\n".join(lines) + "\n")
    return Server("narwhal", "narwhal (%dw)" % WORKERS, [NARWHAL, "-c", ini],
                  None, host=host, check=check,
                  ready_log=(r"listening at http://[\d.]+:(\d+)",
                             r"generation 1: live"))


def gunicorn_server(tmp, kind, extra=None):
    host = HOSTS["gunicorn-" + kind]
    port = free_port(host)
    argv = [PYTHON, "-m", "gunicorn", "-w", str(WORKERS), "-b",
            "%s:%d" % (host, port), "--chdir", HELLO, "--log-level", "warning"]
    label = "gunicorn sync (%dw)" % WORKERS
    if kind == "gthread":
        argv += ["-k", "gthread", "--threads", "4"]
        label = "gunicorn gthread (%dw x 4t)" % WORKERS
    argv += extra or []
    argv.append("wsgi:application")
    return Server("gunicorn-" + kind, label, argv, port, host=host)


def uwsgi_server(tmp, socket="--http11-socket"):
    """--http11-socket keeps connections alive but ignores a client's
    Connection: close (its close run is really keep-alive: see conn/req);
    --http-socket closes every connection, whatever the client asks."""
    name = "uwsgi" if socket == "--http11-socket" else "uwsgi-http"
    host = HOSTS[name]
    port = free_port(host)
    argv = ["uwsgi", "--plugin", "python3", socket,
            "%s:%d" % (host, port), "--processes", str(WORKERS), "--master",
            "--wsgi-file", os.path.join(HELLO, "wsgi.py"), "--disable-logging",
            "--die-on-term"]
    return Server(name, "uWSGI %s (%dp)" % (socket, WORKERS), argv, port,
                  host=host)


def uvicorn_server(tmp):
    host = HOSTS["uvicorn"]
    port = free_port(host)
    argv = [PYTHON, "-m", "uvicorn", "--workers", str(WORKERS), "--host",
            host, "--port", str(port), "--app-dir", HELLO,
            "--no-access-log", "--log-level", "warning"]
    if importlib.util.find_spec("httptools"):
        argv += ["--http", "httptools"]
        label = "uvicorn httptools (%dw, ASGI)" % WORKERS
    else:
        label = "uvicorn h11 (%dw, ASGI)" % WORKERS
    argv.append("asgi:application")
    return Server("uvicorn", label, argv, port, host=host)


SERVERS = {
    "narwhal": narwhal_server,
    "gunicorn-sync": lambda tmp: gunicorn_server(tmp, "sync"),
    "gunicorn-gthread": lambda tmp: gunicorn_server(tmp, "gthread"),
    "uwsgi": uwsgi_server,
    "uwsgi-http": lambda tmp: uwsgi_server(tmp, "--http-socket"),
    "uvicorn": uvicorn_server,
}


# --- wrk --------------------------------------------------------------------

def to_ms(value):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", value)
    if not m:
        return None
    n = float(m.group(1))
    return {"us": n / 1000, "ms": n, "s": n * 1000, "m": n * 60000}[m.group(2)]


def wrk(url, duration, connections=64, threads=2, close=False):
    argv = ["wrk", "-t%d" % threads, "-c%d" % connections,
            "-d%ds" % duration, "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(url)
    out = subprocess.run(argv, capture_output=True, text=True,
                         timeout=duration + 60)
    text = out.stdout
    res = {"rps": None, "p50": None, "p99": None, "errors": 0, "non2xx": 0,
           "requests": 0, "raw": text}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        res["requests"] = int(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+(\S+)" % pct, text, re.M)
        if m:
            res[key] = to_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
        res["socket_errors"] = m.group(0)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    if out.returncode != 0 or res["rps"] is None:
        res["failed"] = (out.stderr or text).strip()[-300:]
    return res


# --- scenarios ----------------------------------------------------------------

def with_server(make, args, fn):
    tmp = tempfile.mkdtemp(prefix="nwbench-")
    srv = make(tmp)
    srv.tmp = tmp
    try:
        srv.start(timeout=60)
        return fn(srv)
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def scenario_hello(args):
    """Hello world, keep-alive and Connection: close, every server."""
    results = []
    for name in args.servers:
        if name not in SERVERS:
            log("unknown server %s" % name)
            continue
        log("%s: starting" % name)

        def measure(srv):
            row = {"name": name, "label": srv.label}
            wrk(srv.url, args.warmup)  # warm up: imports, caches, JIT-less
            (row["rss_master"], row["pss_master"],
             row["rss_workers"]) = srv.rss()
            log("%s: keep-alive, %ds" % (name, args.duration))
            row["keepalive"] = wrk(srv.url, args.duration)
            log("%s: Connection: close, %ds" % (name, args.duration))
            row["time_wait"] = time_wait_sockets(srv.host)
            opens = tcp_passive_opens()
            row["close"] = wrk(srv.url, args.duration, close=True)
            if opens is not None and row["close"]["requests"]:
                row["close"]["conn_per_req"] = (
                    (tcp_passive_opens() - opens) / row["close"]["requests"])
            row["time_wait_after"] = time_wait_sockets(srv.host)
            return row

        try:
            results.append(with_server(SERVERS[name], args, measure))
        except Exception as e:
            log("%s: skipped: %s" % (name, e))
            results.append({"name": name, "label": name, "skipped": str(e)})
    print_hello(results)
    return results


def fmt_ms(v):
    return "-" if v is None else ("%.2f" % v if v < 100 else "%.0f" % v)


def print_hello(results):
    base = next((r for r in results if r["name"] == "narwhal" and
                 "skipped" not in r), None)
    print()
    print("hello world, %d workers each, wrk -t2 -c64 (p50/p99 in ms)" % WORKERS)
    hdr = ("%-32s | %9s %6s %7s %7s | %9s %6s %7s %7s %8s | %6s | %s"
           % ("server", "ka req/s", "ratio", "p50", "p99", "cl req/s",
              "ratio", "p50", "p99", "conn/req", "errors",
              "KiB master RSS (PSS) / workers RSS"))
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        if "skipped" in r:
            print("%-32s | skipped: %s" % (r["label"], r["skipped"][:80]))
            continue
        cols = []
        for mode in ("keepalive", "close"):
            w = r[mode]
            ref = base[mode]["rps"] if base else None
            ratio = ("%.2fx" % (w["rps"] / ref)) if ref and w["rps"] else "-"
            cols.append("%9s %6s %7s %7s" % (
                "%.0f" % w["rps"] if w["rps"] else "FAIL", ratio,
                fmt_ms(w["p50"]), fmt_ms(w["p99"])))
        cpr = r["close"].get("conn_per_req")
        cols[1] += " %8s" % ("-" if cpr is None else "%.2f" % cpr)
        errors = sum(r[m]["errors"] + r[m]["non2xx"] for m in ("keepalive",
                                                              "close"))
        print("%-32s | %s | %s | %6d | %s (%s) / %s" % (
            r["label"], cols[0], cols[1], errors, r["rss_master"],
            "-" if r["pss_master"] is None else r["pss_master"],
            r["rss_workers"]))
    print()
    print("ratio: requests/s relative to narwhal; errors: wrk socket errors "
          "plus non-2xx answers, both runs.")
    print("PSS: the master's RSS with each shared page divided among the "
          "processes that map it.")
    print("gunicorn sync does not keep connections alive, so its keep-alive "
          "run reconnects.")
    print("conn/req: connections accepted per request in the close run; "
          "well under 1 means the server\nignored Connection: close and "
          "kept the connection alive (uWSGI --http11-socket does).")
    tw = [(r["label"].split(" (")[0], r["time_wait"], r["time_wait_after"])
          for r in results if "time_wait" in r]
    if tw:
        print("TIME-WAIT sockets on the server's address before/after its "
              "close run: " + ", ".join("%s %d/%d" % t for t in tw))
        print("(a server whose connections end without TIME-WAIT skips the "
              "TCP teardown the others pay; tens of thousands left before a "
              "run slow it down)")


def wrk_with_hups(srv, duration, every=2.0):
    """wrk for `duration` s while the master gets HUP every `every` s."""
    proc = subprocess.Popen(
        ["wrk", "-t2", "-c64", "-d%ds" % duration, "--latency", srv.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hups = 0
    deadline = time.monotonic() + duration - 1
    while time.monotonic() < deadline and hups < 100:
        time.sleep(every)
        srv.proc.send_signal(signal.SIGHUP)
        srv.remember()
        hups += 1
    out, _ = proc.communicate(timeout=duration + 60)
    srv.remember()
    res = parse_wrk_text(out)
    res["hups"] = hups
    return res


def print_compare(title, rows):
    """rows: (label, wrk result) with narwhal's first: ratios against it."""
    base = rows[0][1]["rps"] if rows and rows[0][1] else None
    print()
    print(title)
    hdr = "%-44s | %9s %6s %8s | %7s" % ("run", "req/s", "ratio", "p99 ms",
                                         "errors")
    print(hdr)
    print("-" * len(hdr))
    for label, res in rows:
        if res is None or res.get("rps") is None:
            print("%-44s | failed" % label)
            continue
        ratio = "%.2fx" % (res["rps"] / base) if base else "-"
        print("%-44s | %9.0f %6s %8s | %7d" % (
            label, res["rps"], ratio, fmt_ms(res["p99"]),
            res["errors"] + res["non2xx"]))
    print("errors: wrk socket errors plus non-2xx answers.")


def scenario_reload_under_load(args):
    """HUP every 2 s under wrk: errors and p99 beside steady state, narwhal
    against gunicorn's own HUP, in one run."""
    rows = []
    for name in ("narwhal", "gunicorn-sync"):
        def run(srv):
            wrk(srv.url, args.warmup)
            steady = wrk(srv.url, args.duration)
            reload = wrk_with_hups(srv, args.duration)
            return steady, reload
        try:
            steady, reload = with_server(SERVERS[name], args, run)
        except Exception as e:
            log("%s: skipped: %s" % (name, e))
            steady = reload = None
        rows.append(("%s steady" % name, steady))
        rows.append(("%s HUP every 2 s (%s HUPs)" % (
            name, reload["hups"] if reload else "-"), reload))
    print_compare("reload under load, %d workers, wrk -t2 -c64" % WORKERS,
                  rows)
    return rows


def scenario_recycling(args):
    """max_requests 1000 + jitter 50 against no recycling and against
    gunicorn with the same settings, in one run."""
    recycle = {"max_requests": 1000, "max_requests_jitter": 50}
    runs = (
        ("narwhal max_requests 1000 jitter 50",
         lambda tmp: narwhal_server(tmp, extra=recycle)),
        ("narwhal without recycling", narwhal_server),
        ("gunicorn sync max_requests 1000 jitter 50",
         lambda tmp: gunicorn_server(tmp, "sync", extra=[
             "--max-requests", "1000", "--max-requests-jitter", "50"])),
    )
    rows = []
    for label, make in runs:
        def run(srv):
            wrk(srv.url, args.warmup)
            return wrk(srv.url, args.duration)
        try:
            rows.append((label, with_server(make, args, run)))
        except Exception as e:
            log("%s: skipped: %s" % (label, e))
            rows.append((label, None))
    print_compare("recycling, %d workers, wrk -t2 -c64" % WORKERS, rows)
    return rows


# Paced load: each wrk connection waits before its next request, so the rate
# is fixed below capacity and latency is not the queue's but the server's.
PACED_LUA = """
local d = tonumber(os.getenv("NW_DELAY_MS") or "10")
function delay()
   return d
end
"""


def wrk_paced(url, seconds, rate, connections, script):
    env = dict(os.environ, NW_DELAY_MS="%g" % (connections * 1000.0 / rate))
    out = subprocess.run(
        ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "--latency",
         "-s", script, url],
        capture_output=True, text=True, env=env, timeout=seconds + 60)
    return parse_wrk_text(out.stdout)


def scenario_recycling_paced(args):
    """max_requests 1000 at a paced rate below capacity, beside the same
    server without recycling: all run at once, bursts go round them in
    turn (so the machine's noise falls on each alike), and each burst's p99
    is kept. Reported: the median p99 of each, its ratio to the one without
    recycling, the worst burst, and the rate each achieved. One recycling
    server per --boot-priority value (comma-separated)."""
    rate, conns, burst = args.rate, 18, 2
    bursts = max(4, args.duration * 3 // burst)
    variants = [v for v in args.boot_priority.split(",") if v]
    tmps = [tempfile.mkdtemp(prefix="nwbench-")
            for _ in range(len(variants) + 1)]
    script = os.path.join(tmps[0], "paced.lua")
    with open(script, "w") as f:
        f.write(PACED_LUA)
    servers, labels = [], []
    for i, v in enumerate(variants):
        servers.append(narwhal_server(
            tmps[i], host="127.0.0.%d" % (41 + i),
            extra={"max_requests": 1000, "max_requests_jitter": 50,
                   "boot_priority": v}))
        labels.append("max_requests 1000, boot_priority %s" % v)
    servers.append(narwhal_server(tmps[-1], host="127.0.0.31",
                                  extra={"boot_priority": "normal"}))
    labels.append("without recycling")
    n = len(servers)
    p99s, rates = [[] for _ in servers], [[] for _ in servers]
    errors, recycled = [0] * n, [0] * n
    try:
        for srv, tmp in zip(servers, tmps):
            srv.tmp = tmp
            srv.start(timeout=60)
        for srv in servers:
            wrk_paced(srv.url, args.warmup, rate, conns, script)
        for i in range(bursts):
            for j in range(n):
                k = (i + j) % n
                res = wrk_paced(servers[k].url, burst, rate, conns, script)
                if res["p99"] is not None:
                    p99s[k].append(res["p99"])
                if res["rps"] is not None:
                    rates[k].append(res["rps"])
                errors[k] += res["errors"] + res["non2xx"]
        for k, srv in enumerate(servers):
            recycled[k] = len(re.findall(r"retiring \(max_requests",
                                         srv.read_log()))
    finally:
        for srv in servers:
            srv.stop()
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
    med = [median(v) for v in p99s]
    base = med[-1]
    print()
    print("recycling at a paced %d req/s (wrk -t1 -c%d with a delay; %d "
          "workers; %d bursts of %d s per server, in turn)"
          % (rate, conns, WORKERS, bursts, burst))
    hdr = "%-40s | %6s %8s %8s %6s %8s %6s | %6s" % (
        "narwhal", "req/s", "p99 med", "p99 max", "ratio", "worst/med",
        "recyc", "errors")
    print(hdr)
    print("-" * len(hdr))
    for k in range(n):
        ratio = "%.2f" % (med[k] / base) if med[k] and base else "-"
        worst = "%.2fx" % (max(p99s[k]) / base) if p99s[k] and base else "-"
        print("%-40s | %6.0f %8s %8s %6s %8s %6d | %6d" % (
            labels[k], median(rates[k]) or 0, fmt_ms(med[k]),
            fmt_ms(max(p99s[k]) if p99s[k] else None), ratio, worst,
            recycled[k], errors[k]))
    print("ratio: median p99 over the one without recycling (goal <= 1.3); "
          "worst/med: the worst burst's p99 over that median (goal <= 3).")
    return [{"label": labels[k], "p99": p99s[k], "rps": rates[k],
             "errors": errors[k], "recycled": recycled[k]}
            for k in range(n)]


# The ASGI scenario: (name, label, app for narwhal/uvicorn, check).
ASGI_ENDPOINTS = [
    ("hello", "hello world (raw ASGI app)", "asgi:application", "/",
     b"Hello, world!\n"),
    ("json", "JSON endpoint (FastAPI)", "asgi_json:app", "/json", None),
]


def asgi_servers(app, path, body):
    """narwhal, uvicorn and gunicorn + UvicornWorker serving one app."""
    check = (path, body)

    def narwhal(tmp):
        srv = narwhal_server(tmp, app=app, interface="asgi",
                             host=HOSTS["narwhal-asgi"], check=check)
        srv.label = "narwhal asgi (%dw)" % WORKERS
        return srv

    def uvicorn(tmp):
        srv = uvicorn_server(tmp)
        srv.argv[-1] = app
        srv.check = check
        srv.label = srv.label.replace(", ASGI", "")
        return srv

    def gunicorn(tmp):
        host = HOSTS["gunicorn-uvicorn"]
        port = free_port(host)
        argv = [PYTHON, "-m", "gunicorn", "-w", str(WORKERS), "-k",
                "uvicorn.workers.UvicornWorker", "-b", "%s:%d" % (host, port),
                "--chdir", HELLO, "--log-level", "warning", app]
        return Server("gunicorn-uvicorn", "gunicorn + UvicornWorker (%dw)"
                      % WORKERS, argv, port, host=host, check=check)
    return [("narwhal", narwhal), ("uvicorn", uvicorn),
            ("gunicorn-uvicorn", gunicorn)]


def worker_cpu_seconds(srv):
    """utime + stime of the server's processes (master included)."""
    total = 0
    for pid in [srv.proc.pid] + descendants(srv.proc.pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        cols = stat[stat.rfind(")") + 2:].split()
        total += int(cols[11]) + int(cols[12])
    return total / os.sysconf("SC_CLK_TCK")


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else \
        (values[mid - 1] + values[mid]) / 2


class _Sink:
    """A statsd listener that reads and drops every datagram (bounded)."""

    def __init__(self):
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.datagrams = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 3600
        while not self.stopped and time.monotonic() < deadline:
            try:
                self.sock.recv(65536)
                self.datagrams += 1
            except socket.timeout:
                pass

    def close(self):
        self.stopped = True
        self.thread.join(5)
        self.sock.close()


class _Scraper:
    """GET /metrics once a second while a run lasts, as Prometheus would."""

    def __init__(self, url):
        import threading
        self.url = url
        self.scrapes = 0
        self.failures = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 3600
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                    self.scrapes += 1
            except OSError:
                self.failures += 1
            self.stopped.wait(1.0)

    def close(self):
        self.stopped.set()
        self.thread.join(10)


def master_cpu_seconds(srv):
    """utime + stime of the master alone."""
    try:
        with open("/proc/%d/stat" % srv.proc.pid) as f:
            stat = f.read()
    except OSError:
        return 0.0
    cols = stat[stat.rfind(")") + 2:].split()
    return (int(cols[11]) + int(cols[12])) / os.sysconf("SC_CLK_TCK")


def scenario_metrics(args):
    """Hello world with metrics on against off, same run, paired.

    Two narwhal masters serve hello world at once, each with WORKERS
    workers: "off" reports every timeout/4 s (7.5 s), serves no /metrics and
    sends no statsd; "on" reports every second, serves /metrics (scraped once
    a second during its runs) and sends statsd to a local sink. wrk runs
    against them in turn, alternating which goes first, for --rounds
    rounds; the medians and each round's ratio are printed.
    """
    sink = _Sink()
    tmps = [tempfile.mkdtemp(prefix="nwbench-"), tempfile.mkdtemp(
        prefix="nwbench-")]
    off = narwhal_server(tmps[0], extra={"metrics_interval": 7.5})
    on = narwhal_server(tmps[1], host=HOSTS["narwhal-metrics"], extra={
        "metrics_bind": "127.0.0.1:0", "metrics_interval": 1,
        "statsd_host": "127.0.0.1:%d" % sink.port})
    off.label, on.label = "narwhal, metrics off", "narwhal, metrics on"
    rows = {"off": [], "on": []}
    try:
        for srv, tmp in ((off, tmps[0]), (on, tmps[1])):
            srv.tmp = tmp
            srv.start(timeout=60)
        m = re.search(r"metrics at (http://\S+/metrics)", on.read_log())
        metrics_url = m.group(1) if m else None
        for srv in (off, on):
            wrk(srv.url, args.warmup)
        for rnd in range(args.rounds):
            order = (("off", off), ("on", on)) if rnd % 2 == 0 else \
                (("on", on), ("off", off))
            for key, srv in order:
                scraper = _Scraper(metrics_url) \
                    if key == "on" and metrics_url else None
                log("metrics %s, round %d: keep-alive, %ds"
                    % (key, rnd + 1, args.duration))
                cpu0, wcpu0 = master_cpu_seconds(srv), worker_cpu_seconds(srv)
                res = wrk(srv.url, args.duration)
                res["master_cpu"] = master_cpu_seconds(srv) - cpu0
                res["cpu_per_req_us"] = (
                    (worker_cpu_seconds(srv) - wcpu0) * 1e6 / res["requests"]
                    if res["requests"] else None)
                if scraper:
                    scraper.close()
                    res["scrapes"] = scraper.scrapes
                    res["scrape_failures"] = scraper.failures
                rows[key].append(res)
        rss = {"off": off.rss(), "on": on.rss()}
    finally:
        for srv in (off, on):
            srv.stop()
        sink.close()
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("hello world, %d workers, keep-alive, wrk -t2 -c64 -d%ds, metrics "
          "off and on in turn, %d rounds" % (WORKERS, args.duration,
                                               args.rounds))
    print("%-22s | %9s %7s %7s | %6s | %9s %12s | %s" % (
        "server", "req/s", "p50", "p99", "errors", "CPU us/req",
        "master CPU s", "master RSS KiB"))
    for key in ("off", "on"):
        rs = rows[key]
        print("%-22s | %9s %7s %7s | %6d | %9.1f %12.2f | %s" % (
            "narwhal, metrics " + key,
            "%.0f" % median([r["rps"] for r in rs]),
            fmt_ms(median([r["p50"] for r in rs])),
            fmt_ms(median([r["p99"] for r in rs])),
            sum(r["errors"] + r["non2xx"] for r in rs),
            median([r["cpu_per_req_us"] for r in rs]) or 0,
            sum(r["master_cpu"] for r in rs), rss[key][0]))
    print("CPU us/req: the master's and workers' CPU time per request "
          "(median of the rounds): steadier than req/s on a shared "
          "machine; master CPU s: the master's, all rounds together.")
    pairs = ["%.3f" % (b["rps"] / a["rps"]) for a, b in
             zip(rows["off"], rows["on"]) if a["rps"] and b["rps"]]
    print("on/off req/s per round: %s; scrapes %d (failed %d), statsd "
          "datagrams %d" % (", ".join(pairs),
                            sum(r.get("scrapes", 0) for r in rows["on"]),
                            sum(r.get("scrape_failures", 0)
                                for r in rows["on"]), sink.datagrams))
    return rows


def scenario_asgi(args):
    """ASGI: narwhal against uvicorn (httptools) and gunicorn with
    uvicorn's worker, hello world and a FastAPI JSON endpoint.

    All three servers run at once and wrk visits them in turn, round after
    round, so a noisy machine slows them alike; each figure is the median
    of the rounds. CPU us/req is the servers' own CPU time per answered
    request, the figure least disturbed by other load on the machine.
    """
    results = {}
    for key, title, app, path, body in ASGI_ENDPOINTS:
        started = []
        rows = []
        try:
            for name, make in asgi_servers(app, path, body):
                tmp = tempfile.mkdtemp(prefix="nwbench-")
                srv = make(tmp)
                srv.tmp = tmp
                log("asgi %s: starting %s" % (key, name))
                try:
                    srv.start(timeout=60)
                except Exception as e:
                    log("asgi %s: %s skipped: %s" % (key, name, e))
                    rows.append({"name": name, "label": srv.label,
                                 "skipped": str(e)})
                    srv.stop()
                    shutil.rmtree(tmp, ignore_errors=True)
                    continue
                started.append((name, srv))
            runs = {name: [] for name, _ in started}
            for name, srv in started:
                wrk(srv.url.rstrip("/") + path, args.warmup)
            for r in range(args.rounds):
                # a different server goes first each round
                order = started[r % len(started):] + \
                    started[:r % len(started)]
                for name, srv in order:
                    log("asgi %s: round %d/%d, %s, %ds" % (
                        key, r + 1, args.rounds, name, args.duration))
                    cpu0 = worker_cpu_seconds(srv)
                    w = wrk(srv.url.rstrip("/") + path, args.duration)
                    cpu = worker_cpu_seconds(srv) - cpu0
                    srv.remember()
                    w["cpu_us"] = (cpu * 1e6 / w["requests"]
                                   if w["requests"] else None)
                    runs[name].append(w)
            for name, srv in started:
                ws = runs[name]
                rows.append({
                    "name": name, "label": srv.label,
                    "rps": median([w["rps"] for w in ws]),
                    "p50": median([w["p50"] for w in ws]),
                    "p99": median([w["p99"] for w in ws]),
                    "cpu_us": median([w["cpu_us"] for w in ws]),
                    "errors": sum(w["errors"] + w["non2xx"] for w in ws),
                    "rounds": [{k: w.get(k) for k in ("rps", "p50", "p99",
                                                       "cpu_us", "errors",
                                                       "non2xx")}
                               for w in ws]})
        finally:
            for name, srv in started:
                srv.stop()
                shutil.rmtree(srv.tmp, ignore_errors=True)
        results[key] = rows
        print_asgi(title, path, rows, args)
    return results


def print_asgi(title, path, rows, args):
    order = {"narwhal": 0, "uvicorn": 1, "gunicorn-uvicorn": 2}
    rows = sorted(rows, key=lambda r: order.get(r["name"], 9))
    base = next((r for r in rows if r["name"] == "narwhal" and
                 "skipped" not in r and r["rps"]), None)
    print()
    print("ASGI %s, GET %s, %d workers each, wrk -t2 -c64 -d%ds, median of "
          "%d rounds (ms)" % (title, path, WORKERS, args.duration,
                               args.rounds))
    hdr = "%-34s | %9s %6s %7s %7s | %10s | %6s" % (
        "server", "req/s", "ratio", "p50", "p99", "CPU us/req", "errors")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "skipped" in r:
            print("%-34s | skipped: %s" % (r["label"], r["skipped"][:80]))
            continue
        ratio = "%.2fx" % (r["rps"] / base["rps"]) if base and r["rps"] \
            else "-"
        print("%-34s | %9s %6s %7s %7s | %10s | %6d" % (
            r["label"], "%.0f" % r["rps"] if r["rps"] else "FAIL", ratio,
            fmt_ms(r["p50"]), fmt_ms(r["p99"]),
            "%.1f" % r["cpu_us"] if r["cpu_us"] else "-", r["errors"]))
    for r in rows:
        if base and r is not base and "skipped" not in r and r["rps"]:
            print("narwhal vs %s: %.2fx the requests/s, p99 %s ms vs %s ms, "
                  "%.2fx the CPU per request" % (
                      r["name"], base["rps"] / r["rps"], fmt_ms(base["p99"]),
                      fmt_ms(r["p99"]),
                      base["cpu_us"] / r["cpu_us"] if base["cpu_us"] and
                      r["cpu_us"] else float("nan")))
    print("ratio: requests/s relative to narwhal.")


# The WebSocket scenario: a C client (wsbench.c), because wrk cannot speak
# WebSocket and a Python client would be slower than the servers.
WSBENCH = os.path.join(HERE, "wsbench")
WS_APP = "ws_echo:application"
WS_MESSAGE = 32  # bytes of text per message


def wsbench(srv, duration, warmup=1, connections=64, size=WS_MESSAGE):
    """Runs the C client against srv's /echo: messages/s, p50, p99 (ms)."""
    argv = [WSBENCH, "-c", str(connections), "-d", str(duration), "-w",
            str(warmup), "-s", str(size), srv.host, str(srv.port), "/echo"]
    p = subprocess.run(argv, capture_output=True, text=True,
                       timeout=duration + warmup + 60)
    out = dict(kv.split("=", 1) for kv in p.stdout.split())
    if p.returncode != 0 or "rate" not in out:
        raise RuntimeError("wsbench failed: %s %s" % (p.stdout, p.stderr))
    return {"rate": float(out["rate"]), "messages": int(out["messages"]),
            "p50": int(out["p50_us"]) / 1000.0,
            "p99": int(out["p99_us"]) / 1000.0,
            "errors": int(out["errors"]),
            "client_cpu": float(out["cpu_s"]) / float(out["seconds"])}


def scenario_ws(args):
    """WebSocket echo: narwhal against uvicorn (websockets) and gunicorn
    with uvicorn's worker, 2 workers each, 64 connections each sending a
    32-byte text and waiting for its echo, median of --rounds rounds.

    As in the asgi scenario all servers run at once and the client visits
    them in turn. `client CPU` is the load generator's own CPU share during
    the run: below the server's 2 workers' share, so it is not what limits.
    """
    rows, started = [], []
    try:
        for name, make in asgi_servers(WS_APP, "/", b"Hello, world!\n"):
            tmp = tempfile.mkdtemp(prefix="nwbench-")
            srv = make(tmp)
            srv.tmp = tmp
            if name == "uvicorn":
                # what it uses by default when websockets is installed,
                # made explicit
                srv.argv[-1:-1] = ["--ws", "websockets"]
                srv.label = "uvicorn + websockets (%dw)" % WORKERS
            log("ws: starting %s" % name)
            try:
                srv.start(timeout=60)
            except Exception as e:
                log("ws: %s skipped: %s" % (name, e))
                rows.append({"name": name, "label": srv.label,
                             "skipped": str(e)})
                srv.stop()
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            started.append((name, srv))
        runs = {name: [] for name, _ in started}
        for name, srv in list(started):
            try:
                wsbench(srv, args.warmup, warmup=0)
            except Exception as e:
                log("ws: %s failed: %s" % (name, e))
                rows.append({"name": name, "label": srv.label,
                             "skipped": str(e)})
                started.remove((name, srv))
                srv.stop()
        for r in range(args.rounds):
            order = started[r % len(started):] + started[:r % len(started)]
            for name, srv in order:
                log("ws: round %d/%d, %s, %ds" % (r + 1, args.rounds, name,
                                                  args.duration))
                cpu0 = worker_cpu_seconds(srv)
                w = wsbench(srv, args.duration)
                cpu = worker_cpu_seconds(srv) - cpu0
                srv.remember()
                w["cpu_us"] = cpu * 1e6 / w["messages"] if w["messages"] \
                    else None
                runs[name].append(w)
        for name, srv in started:
            ws = runs[name]
            rows.append({
                "name": name, "label": srv.label,
                "rate": median([w["rate"] for w in ws]),
                "p50": median([w["p50"] for w in ws]),
                "p99": median([w["p99"] for w in ws]),
                "cpu_us": median([w["cpu_us"] for w in ws]),
                "client_cpu": median([w["client_cpu"] for w in ws]),
                "errors": sum(w["errors"] for w in ws),
                "rounds": ws})
    finally:
        for name, srv in started:
            srv.stop()
            shutil.rmtree(srv.tmp, ignore_errors=True)
    print_ws(rows, args)
    return rows


def print_ws(rows, args):
    order = {"narwhal": 0, "uvicorn": 1, "gunicorn-uvicorn": 2}
    rows = sorted(rows, key=lambda r: order.get(r["name"], 9))
    base = next((r for r in rows if r["name"] == "narwhal" and
                 "skipped" not in r and r["rate"]), None)
    print()
    print("WebSocket echo, %d-byte text messages, 64 connections, one "
          "message in flight each, %d workers each, %ds, median of %d "
          "rounds (ms)" % (WS_MESSAGE, WORKERS, args.duration, args.rounds))
    hdr = "%-34s | %9s %6s %7s %7s | %10s %10s | %6s" % (
        "server", "msg/s", "ratio", "p50", "p99", "CPU us/msg", "client CPU",
        "errors")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "skipped" in r:
            print("%-34s | skipped: %s" % (r["label"], r["skipped"][:80]))
            continue
        ratio = "%.2fx" % (r["rate"] / base["rate"]) if base and r["rate"] \
            else "-"
        print("%-34s | %9.0f %6s %7s %7s | %10s %9.0f%% | %6d" % (
            r["label"], r["rate"], ratio, fmt_ms(r["p50"]), fmt_ms(r["p99"]),
            "%.1f" % r["cpu_us"] if r["cpu_us"] else "-",
            100 * r["client_cpu"], r["errors"]))
    for r in rows:
        if base and r is not base and "skipped" not in r and r["rate"]:
            print("narwhal vs %s: %.2fx the messages/s, p99 %s ms vs %s ms"
                  % (r["name"], base["rate"] / r["rate"], fmt_ms(base["p99"]),
                     fmt_ms(r["p99"])))
    print("ratio: messages/s relative to narwhal; client CPU: the load "
          "generator's share of one core.")


def parse_wrk_text(text):
    res = {"rps": None, "p99": None, "errors": 0, "non2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"^\s+99(?:\.000)?%\s+(\S+)", text, re.M)
    if m:
        res["p99"] = to_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
        res["socket_errors"] = m.group(0)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    return res


# --- TLS: narwhal's TLS in the workers beside nginx terminating TLS ----------

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes %(workers)d;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(tmp)s/body;
    proxy_temp_path %(tmp)s/proxy;
    fastcgi_temp_path %(tmp)s/fastcgi;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    server {
        listen %(host)s:%(port)d %(ssl)s;
        default_type text/plain;
        location / { return 200 "Hello, world!\n"; }
    }
}
"""


def make_test_cert(tmp):
    """A self-signed P-256 certificate for 127.0.0.1: (cert, key)."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
         cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1"], check=True, timeout=60,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o644)  # nginx's workers are another user when root
    return cert, key


class TLSServer(Server):
    """A Server spoken to over https (wrk does TLS; the check skips the
    verification of the self-signed certificate)."""

    scheme = "https"

    @property
    def url(self):
        return "%s://%s:%d/" % (self.scheme, self.host, self.port)

    def ok(self):
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        path, body = self.check
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path,
                                        timeout=2, context=ctx) as r:
                return r.status == 200 and (body is None or
                                            r.read() == body)
        except OSError:
            return False


def tls_servers(cert, key):
    """narwhal and nginx, each over TLS and in the clear."""
    def narwhal(tls, host):
        def make(tmp):
            extra = {"certfile": cert, "keyfile": key} if tls else {}
            srv = narwhal_server(tmp, extra=extra, host=host)
            if tls:
                srv.__class__ = TLSServer
            srv.label = "narwhal%s (%dw)" % (" TLS" if tls else "", WORKERS)
            return srv
        return make

    def nginx(tls, host):
        def make(tmp):
            port = free_port(host)
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF % {
                    "workers": WORKERS, "tmp": tmp, "cert": cert,
                    "key": key, "host": host, "port": port,
                    "ssl": "ssl" if tls else ""})
            cls = TLSServer if tls else Server
            return cls("nginx%s" % ("-tls" if tls else ""),
                       "nginx%s return 200 (%dw)" % (
                           " TLS" if tls else "", WORKERS),
                       ["nginx", "-p", tmp, "-c", conf], port, host=host)
        return make

    return [("narwhal-tls", narwhal(True, "127.0.0.31")),
            ("nginx-tls", nginx(True, "127.0.0.32")),
            ("narwhal", narwhal(False, "127.0.0.33")),
            ("nginx", nginx(False, "127.0.0.34"))]


def scenario_tls(args):
    """Hello world over TLS with keep-alive: narwhal (TLS in its workers,
    the WSGI app behind it) beside nginx terminating TLS with `return 200`,
    same certificate (P-256), same workers, wrk -t2 -c64 over https.

    All four run at once (each also in the clear) and wrk visits them in
    turn, a different one first each round; medians of --rounds rounds.
    The TLS cost is the CPU per request over TLS less the CPU per request
    in the clear, for each server: nginx answers without an app, so its
    requests/s are a ceiling, while the TLS cost is what both pay alike.
    """
    if not shutil.which("nginx"):
        log("tls: nginx not found: skipped")
        return []
    certdir = tempfile.mkdtemp(prefix="nwbench-cert-")
    rows, started = [], []
    try:
        cert, key = make_test_cert(certdir)
        for name, make in tls_servers(cert, key):
            tmp = tempfile.mkdtemp(prefix="nwbench-")
            srv = make(tmp)
            srv.tmp = tmp
            log("tls: starting %s" % name)
            try:
                srv.start(timeout=60)
            except Exception as e:
                log("tls: %s skipped: %s" % (name, e))
                rows.append({"name": name, "label": srv.label,
                             "skipped": str(e)})
                srv.stop()
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            started.append((name, srv))
        runs = {name: [] for name, _ in started}
        for name, srv in started:
            wrk(srv.url, args.warmup)
        for r in range(args.rounds):
            order = started[r % len(started):] + started[:r % len(started)]
            for name, srv in order:
                log("tls: round %d/%d, %s, %ds" % (r + 1, args.rounds, name,
                                                   args.duration))
                cpu0 = worker_cpu_seconds(srv)
                w = wrk(srv.url, args.duration)
                cpu = worker_cpu_seconds(srv) - cpu0
                srv.remember()
                w["cpu_us"] = cpu * 1e6 / w["requests"] if w["requests"] \
                    else None
                runs[name].append(w)
        for name, srv in started:
            ws = runs[name]
            rows.append({
                "name": name, "label": srv.label,
                "rps": median([w["rps"] for w in ws]),
                "p50": median([w["p50"] for w in ws]),
                "p99": median([w["p99"] for w in ws]),
                "cpu_us": median([w["cpu_us"] for w in ws]),
                "errors": sum(w["errors"] + w["non2xx"] for w in ws),
                "rounds": [{k: w.get(k) for k in ("rps", "p50", "p99",
                                                   "cpu_us", "errors")}
                           for w in ws]})
    finally:
        for name, srv in started:
            srv.stop()
            shutil.rmtree(srv.tmp, ignore_errors=True)
        shutil.rmtree(certdir, ignore_errors=True)
    print_tls(rows, args)
    return rows


def print_tls(rows, args):
    by = {r["name"]: r for r in rows if "skipped" not in r and r.get("rps")}
    print()
    print("hello world, keep-alive, TLS (P-256, TLS 1.3) and clear, %d "
          "workers each, wrk -t2 -c64 -d%ds, median of %d rounds (ms)"
          % (WORKERS, args.duration, args.rounds))
    hdr = "%-32s | %9s %8s %7s %7s | %10s | %6s" % (
        "server", "req/s", "vs nginx", "p50", "p99", "CPU us/req", "errors")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "skipped" in r:
            print("%-32s | skipped: %s" % (r["label"], r["skipped"][:80]))
            continue
        peer = by.get("nginx-tls" if r["name"].endswith("tls") else "nginx")
        ratio = "%.2fx" % (r["rps"] / peer["rps"]) if peer and r["rps"] \
            else "-"
        print("%-32s | %9s %8s %7s %7s | %10s | %6d" % (
            r["label"], "%.0f" % r["rps"] if r["rps"] else "FAIL", ratio,
            fmt_ms(r["p50"]), fmt_ms(r["p99"]),
            "%.1f" % r["cpu_us"] if r["cpu_us"] else "-", r["errors"]))
    for who in ("narwhal", "nginx"):
        t, c = by.get(who + "-tls"), by.get(who)
        if t and c and t["cpu_us"] and c["cpu_us"]:
            print("%s: TLS costs %.1f us of CPU per request (%.1f over TLS, "
                  "%.1f in the clear); requests/s over TLS %.2fx of clear" % (
                      who, t["cpu_us"] - c["cpu_us"], t["cpu_us"],
                      c["cpu_us"], t["rps"] / c["rps"]))
    t, n = by.get("narwhal-tls"), by.get("nginx-tls")
    if t and n:
        print("narwhal TLS vs nginx TLS: %.2fx the requests/s" % (
            t["rps"] / n["rps"]))
    print("vs nginx: requests/s relative to nginx in the same mode; nginx "
          "answers from its config, narwhal calls a Python WSGI app.")


# --- concurrency inside a worker: threads, gevent, eventlet (issue 14) -----

THREADS_APP = os.path.join(REPO, "tests", "apps", "threads")


def nw_concurrent(label, settings, app="app:application", chdir=THREADS_APP,
                  env=None, check=("/", b"Hello, world!\n")):
    """A maker of a narwhal server with these [narwhal] settings."""
    def make(tmp, host):
        srv = narwhal_server(tmp, app=app, extra=settings, host=host,
                             check=check, chdir=chdir)
        srv.label = label
        srv.env = env
        return srv
    return make


def gu_concurrent(label, flags, app="app:application", chdir=THREADS_APP,
                  env=None, check=("/", b"Hello, world!\n")):
    """A maker of a gunicorn server with these flags."""
    def make(tmp, host):
        port = free_port(host)
        argv = [PYTHON, "-m", "gunicorn", "-w", str(WORKERS), "-b",
                "%s:%d" % (host, port), "--chdir", chdir, "--log-level",
                "warning"] + flags + [app]
        return Server("gunicorn", label, argv, port, host=host, env=env,
                      check=check)
    return make


def worker_rss_kib(srv):
    """RSS of each worker process (the master's descendants)."""
    return [r for r in (rss_kib(p) for p in descendants(srv.proc.pid))
            if r is not None]


def paired_runs(title, path, connections, makers, args, ceiling=None):
    """Runs every server at once and wrk against each in turn, round after
    round, a different one first each round; medians of the rounds.

    makers: (name, maker) pairs, narwhal's first (ratios are against it).
    Returns one row per server.
    """
    started, rows = [], []
    try:
        for i, (name, make) in enumerate(makers):
            tmp = tempfile.mkdtemp(prefix="nwbench-")
            srv = make(tmp, "127.0.0.%d" % (40 + i))
            srv.tmp = tmp
            log("%s: starting %s" % (title, srv.label))
            try:
                srv.start(timeout=60)
            except Exception as e:
                log("%s: %s skipped: %s" % (title, srv.label, e))
                rows.append({"name": name, "label": srv.label,
                             "skipped": str(e)})
                srv.stop()
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            started.append((name, srv))
        def url(srv):
            return srv.url.rstrip("/") + path
        for name, srv in started:
            wrk(url(srv), args.warmup, connections=connections)
        runs = {name: [] for name, _ in started}
        for r in range(args.rounds):
            k = r % max(1, len(started))
            for name, srv in started[k:] + started[:k]:
                log("%s: round %d/%d, %s, %ds" % (title, r + 1, args.rounds,
                                                  srv.label, args.duration))
                cpu0 = worker_cpu_seconds(srv)
                w = wrk(url(srv), args.duration, connections=connections)
                cpu = worker_cpu_seconds(srv) - cpu0
                srv.remember()
                w["cpu_us"] = (cpu * 1e6 / w["requests"]
                               if w["requests"] else None)
                w.pop("raw", None)
                runs[name].append(w)
        for name, srv in started:
            ws = runs[name]
            rss = worker_rss_kib(srv)
            rows.append({
                "name": name, "label": srv.label,
                "rps": median([w["rps"] for w in ws]),
                "p50": median([w["p50"] for w in ws]),
                "p99": median([w["p99"] for w in ws]),
                "cpu_us": median([w["cpu_us"] for w in ws]),
                "errors": sum(w["errors"] + w["non2xx"] for w in ws),
                "rss_worker": sum(rss) / len(rss) if rss else None,
                "rounds": ws})
    finally:
        for name, srv in started:
            srv.stop()
            shutil.rmtree(srv.tmp, ignore_errors=True)
    print_paired(title, path, connections, rows, args, ceiling)
    return rows


def print_paired(title, path, connections, rows, args, ceiling):
    base = next((r for r in rows if "skipped" not in r and r["rps"]), None)
    print()
    print("%s: GET %s, %d workers each, wrk -t2 -c%d -d%ds, median of %d "
          "rounds (ms)" % (title, path, WORKERS, connections, args.duration,
                           args.rounds))
    hdr = "%-40s | %9s %6s %7s | %7s %7s | %7s | %7s | %6s" % (
        "server", "req/s", "ratio", "ceiling", "p50", "p99", "CPU us",
        "MiB/wkr", "errors")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "skipped" in r:
            print("%-40s | skipped: %s" % (r["label"], r["skipped"][:80]))
            continue
        print("%-40s | %9s %6s %7s | %7s %7s | %7s | %7s | %6d" % (
            r["label"], "%.0f" % r["rps"] if r["rps"] else "FAIL",
            "%.2fx" % (r["rps"] / base["rps"]) if base and r["rps"] else "-",
            "%.0f%%" % (100 * r["rps"] / ceiling) if ceiling and r["rps"]
            else "-", fmt_ms(r["p50"]), fmt_ms(r["p99"]),
            "%.0f" % r["cpu_us"] if r["cpu_us"] else "-",
            "%.1f" % (r["rss_worker"] / 1024) if r["rss_worker"] else "-",
            r["errors"]))
    print("ratio: req/s relative to the first row; ceiling: req/s as a share "
          "of what the concurrency allows; CPU us: the server's CPU time per "
          "request; MiB/wkr: mean RSS of a worker after the runs.")


def scenario_threads(args):
    """threads = N against gunicorn's gthread worker, same settings: a
    latency-bound app (50 ms: time.sleep, and pg_sleep through psycopg2),
    an I/O-bound one (5 ms), and hello world with threads 4 beside
    threads 1 and gunicorn's sync worker."""
    from pgserver import PgServer, find_pg_bin
    results = {}

    def gthread_pair(threads, env=None):
        return [("narwhal", nw_concurrent(
                    "narwhal threads %d (%dw)" % (threads, WORKERS),
                    {"threads": threads}, env=env)),
                ("gunicorn", gu_concurrent(
                    "gunicorn gthread %d (%dw)" % (threads, WORKERS),
                    ["-k", "gthread", "--threads", str(threads)], env=env))]

    ceiling = WORKERS * 16 / 0.05
    results["sleep50"] = paired_runs(
        "latency-bound, time.sleep(0.05), threads 16", "/io?s=0.05", 64,
        gthread_pair(16), args, ceiling)
    pg = None
    if find_pg_bin() is None:
        log("no PostgreSQL installed: the pg_sleep run is skipped")
    else:
        try:
            pg = PgServer().start()
            results["pg50"] = paired_runs(
                "latency-bound, pg_sleep(0.05) via psycopg2, threads 16",
                "/pg?s=0.05", 64, gthread_pair(16, env=pg.env()), args,
                ceiling)
        except Exception as e:
            log("pg_sleep run skipped: %s" % e)
        finally:
            if pg is not None:
                pg.stop()
    results["io5"] = paired_runs(
        "I/O-bound, time.sleep(0.005), threads 32", "/io?s=0.005", 128,
        gthread_pair(32), args, WORKERS * 32 / 0.005)
    hello = dict(app="wsgi:application", chdir=HELLO)
    results["hello"] = rows = paired_runs(
        "hello world, threads 4 and 1", "/", 64, [
            ("narwhal-t4", nw_concurrent("narwhal threads 4 (%dw)" % WORKERS,
                                         {"threads": 4}, **hello)),
            ("narwhal-t1", nw_concurrent("narwhal threads 1 (%dw)" % WORKERS,
                                         {"threads": 1}, **hello)),
            ("gunicorn-gthread", gu_concurrent(
                "gunicorn gthread 4 (%dw)" % WORKERS,
                ["-k", "gthread", "--threads", "4"], **hello)),
            ("gunicorn-sync", gu_concurrent(
                "gunicorn sync (%dw)" % WORKERS, ["-k", "sync"], **hello)),
        ], args)
    rps = {r["name"]: r.get("rps") for r in rows}
    if all(rps.get(k) for k in ("narwhal-t4", "narwhal-t1",
                                "gunicorn-gthread", "gunicorn-sync")):
        print("threads 4 / threads 1: %.2fx; narwhal threads 4 / gunicorn "
              "gthread 4: %.2fx; narwhal threads 1 / gunicorn sync: %.2fx" % (
                  rps["narwhal-t4"] / rps["narwhal-t1"],
                  rps["narwhal-t4"] / rps["gunicorn-gthread"],
                  rps["narwhal-t1"] / rps["gunicorn-sync"]))
    return results


def scenario_gevent(args):
    """gevent and eventlet workers against gunicorn's, -k CLASS
    --worker-connections 1000: hello world, and an I/O-bound app (5 ms)."""
    results = {}
    for kind in ("gevent", "eventlet"):
        def pair(app, chdir):
            return [("narwhal", nw_concurrent(
                        "narwhal %s (%dw)" % (kind, WORKERS),
                        {"worker_class": kind, "worker_connections": 1000},
                        app=app, chdir=chdir)),
                    ("gunicorn", gu_concurrent(
                        "gunicorn %s (%dw)" % (kind, WORKERS),
                        ["-k", kind, "--worker-connections", "1000"],
                        app=app, chdir=chdir))]
        results[kind + "-hello"] = paired_runs(
            "%s, hello world" % kind, "/", 64,
            pair("wsgi:application", HELLO), args)
        results[kind + "-io5"] = paired_runs(
            "%s, I/O-bound, time.sleep(0.005)" % kind, "/io?s=0.005", 128,
            pair("app:application", THREADS_APP), args)
    return results


SCENARIOS = {
    "hello": scenario_hello,
    "reload": scenario_reload_under_load,
    "recycling": scenario_recycling,
    "recycling-paced": scenario_recycling_paced,
    "asgi": scenario_asgi,
    "ws": scenario_ws,
    "metrics": scenario_metrics,
    "tls": scenario_tls,
    "threads": scenario_threads,
    "gevent": scenario_gevent,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=int, default=10,
                   help="seconds per measured wrk run (default 10)")
    p.add_argument("--quick", action="store_true",
                   help="3 s runs, 1 s warm-up")
    p.add_argument("--scenario",
                   default="hello,asgi,metrics,ws,tls,threads,gevent",
                   help="comma-separated: %s, or all" % ", ".join(SCENARIOS))
    p.add_argument("--servers", default=",".join(SERVERS),
                   help="comma-separated, for hello (default: all)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of the asgi, threads and gevent scenarios; "
                        "medians are reported (default 3)")
    p.add_argument("--rate", type=int, default=1800,
                   help="req/s of the recycling-paced scenario "
                        "(default 1800)")
    p.add_argument("--boot-priority", default="normal,idle,low",
                   help="recycling-paced: one recycling server per "
                        "boot_priority (default normal,idle,low)")
    p.add_argument("--json", metavar="FILE", help="also write results here")
    args = p.parse_args()
    if args.quick:
        args.duration = min(args.duration, 3)
        args.rounds = 1
    args.warmup = 1 if args.quick else 3
    args.servers = [s for s in args.servers.split(",") if s]
    if not shutil.which("wrk"):
        sys.exit("bench: wrk not found (make deps installs it)")
    if not os.access(NARWHAL, os.X_OK):
        sys.exit("bench: %s not found: run make" % NARWHAL)
    if "ws" in args.scenario and not os.access(WSBENCH, os.X_OK):
        sys.exit("bench: %s not found: run make tests/bench/wsbench"
                 % WSBENCH)
    names = list(SCENARIOS) if args.scenario == "all" else \
        args.scenario.split(",")
    out = {}
    for name in names:
        if name not in SCENARIOS:
            sys.exit("bench: unknown scenario %s" % name)
        out[name] = SCENARIOS[name](args)
    if args.json:
        for rows in out.values():
            if isinstance(rows, dict):  # asgi: rows per endpoint
                rows = [r for v in rows.values() for r in v]
            for r in rows if isinstance(rows, list) else [rows]:
                for mode in ("keepalive", "close"):
                    if isinstance(r, dict) and mode in r:
                        r[mode].pop("raw", None)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
