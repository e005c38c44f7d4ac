#!/usr/bin/python3
"""Instructions per request of a worker's C extension, counted by callgrind.

Throughput on a shared machine moves with whatever else runs; the work a
request costs does not. This runs one worker loop (the extension of a given
tree, tests/apps/hello) under `valgrind --tool=callgrind` in a process of its
own, sends it N hello-world requests from a client outside valgrind, and
does it again with 2N: the difference over N is the instructions one request
costs the worker (start-up cancels out); the median of --repeat tries, with
a fixed PYTHONHASHSEED. Usage:

    instr.py TREE [TREE ...] [--n 2000] [--kinds wsgi-ka,wsgi-close,...]

Kinds: wsgi, asgi, and wsgitN (WSGI with threads = N, its pool threads
started as the glue starts them), each -ka (one keep-alive connection) or
-close (a connection per request).

where TREE is a checkout with a built worker-shim/narwhal_worker. Every
process is started and stopped here, bounded in time.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO = os.path.join(HERE, "..", "apps", "hello")

# The worker side: the serving loop of narwhal_worker, cut down to a Unix
# socket and SIGTERM (no master).
SERVER = r'''
import asyncio, os, signal, socket, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from narwhal_worker import _http
kind, path = sys.argv[3], sys.argv[4]
ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ls.bind(path)
ls.listen(128)
if kind.startswith("wsgi"):
    import threading
    from wsgi import application
    threads = int(kind[5:]) if kind.startswith("wsgit") else 1
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    srv = _http.Server(application, private_fd=ls.fileno(), wakeup_fd=r,
                       threads=threads)
    for _ in range(threads if threads > 1 else 0):
        threading.Thread(target=srv.run_thread, daemon=True).start()
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda *a: srv.stop())
    print("ready", flush=True)
    srv.serve()
else:
    from asgi import application
    loop = asyncio.new_event_loop()
    srv = _http.ASGIServer(application, loop, private_fd=ls.fileno())
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, done.set_result, None)
    srv.start()
    print("ready", flush=True)
    loop.run_until_complete(done)
    loop.run_until_complete(srv.stop())
    srv.quit()
'''

REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
REQ_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def read_answer(sock, buf):
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(rest) < n:
        rest += sock.recv(65536)
    return rest[n:]


def client(path, n, close):
    if close:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(REQ_CLOSE)
            read_answer(s, b"")
            s.close()
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    buf = b""
    for _ in range(n):
        s.sendall(REQ)
        buf = read_answer(s, buf)
    s.close()


def count(tree, kind, n, close):
    tmp = tempfile.mkdtemp(prefix="nwinstr-")
    path = os.path.join(tmp, "s")
    out = os.path.join(tmp, "callgrind.out")
    shim = os.path.join(os.path.abspath(tree), "worker-shim")
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
         sys.executable, "-c", SERVER, shim, os.path.abspath(HELLO), kind,
         path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, env=env)
    try:
        line = proc.stdout.readline()
        if not line.startswith(b"ready"):
            raise RuntimeError("the server did not start")
        time.sleep(0.5)
        client(path, n, close)
        proc.send_signal(signal.SIGTERM)
        proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    with open(out) as f:
        m = re.search(r"^summary: (\d+)", f.read(), re.M)
    return int(m.group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", nargs="+")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--kinds", default="wsgi-ka,wsgi-close,asgi-ka,asgi-close")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each; the median is shown")
    args = p.parse_args()
    print("%-12s %s" % ("kind", " ".join("%14s" % os.path.basename(
        t.rstrip("/")) for t in args.trees)))
    for kind in args.kinds.split(","):
        iface, mode = kind.split("-")
        row = []
        for tree in args.trees:
            runs = []
            for _ in range(args.repeat):
                a = count(tree, iface, args.n, mode == "close")
                b = count(tree, iface, 2 * args.n, mode == "close")
                runs.append((b - a) / args.n)
            row.append(sorted(runs)[len(runs) // 2])
        print("%-12s %s" % (kind, " ".join("%14.0f" % v for v in row)),
              flush=True)


if __name__ == "__main__":
    main()
