#!/usr/bin/python3
"""Paired A/B runs of two narwhal builds: hello world, WSGI and ASGI.

For a change to the worker's hot path: build the baseline somewhere (for
example `git archive main | tar -x -C /tmp/nw-main && make -C /tmp/nw-main
all`), then

    ab.py --a /tmp/nw-main/narwhal --b ./narwhal [--rounds 5] [--duration 5]

Both builds serve tests/apps/hello with the same settings at once, each on
its own loopback address; wrk then runs against one and the other in turn,
alternating which goes first in each round, so drift on a shared machine
hits both alike. Keep-alive and Connection: close, WSGI then ASGI. Prints
each run and the medians side by side: requests/s, p99, and the servers'
CPU time per request (utime + stime of master and workers over the run:
steadier than requests/s when other work shares the machine). Every process
is started and stopped here (bench.py's Server), every step bounded.
"""

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "bench", os.path.join(HERE, "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

HOSTS = {"a": "127.0.0.31", "b": "127.0.0.32"}
KINDS = [
    ("wsgi", "wsgi:application", None, "/"),
    ("asgi", "asgi:application", "asgi", "/"),
]


def start(binary, which, app, interface):
    tmp = tempfile.mkdtemp(prefix="nwab-")
    srv = bench.narwhal_server(tmp, app=app, interface=interface,
                               host=HOSTS[which])
    srv.argv[0] = binary
    srv.name = srv.label = "%s (%s)" % (which, binary)
    srv.tmp = tmp
    srv.start(timeout=60)
    return srv


median = bench.median


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True, help="the baseline narwhal binary")
    p.add_argument("--b", required=True, help="the changed narwhal binary")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--kinds", default="wsgi,asgi")
    args = p.parse_args()
    table = []
    for kind, app, interface, path in KINDS:
        if kind not in args.kinds.split(","):
            continue
        servers = {}
        try:
            for which in ("a", "b"):
                binary = getattr(args, which)
                servers[which] = start(os.path.abspath(binary), which, app,
                                       interface)
            for srv in servers.values():
                bench.wrk(srv.url, 2)  # warm up
            for close in (False, True):
                mode = "close" if close else "keep-alive"
                runs = {"a": [], "b": []}
                for r in range(args.rounds):
                    order = ("a", "b") if r % 2 == 0 else ("b", "a")
                    for which in order:
                        cpu = bench.worker_cpu_seconds(servers[which])
                        res = bench.wrk(servers[which].url, args.duration,
                                        close=close)
                        cpu = bench.worker_cpu_seconds(servers[which]) - cpu
                        res["us_per_req"] = (cpu * 1e6 / res["requests"]
                                             if res["requests"] else None)
                        runs[which].append(res)
                        bench.log("%s %s round %d %s: %s req/s p99 %s ms "
                                  "%.1f us CPU/req%s"
                                  % (kind, mode, r, which, res["rps"],
                                     res["p99"], res["us_per_req"] or 0,
                                     " errors %d" % res["errors"]
                                     if res["errors"] else ""))
                table.append((kind, mode, runs))
        finally:
            for srv in servers.values():
                srv.stop()
                shutil.rmtree(srv.tmp, ignore_errors=True)
    print("%-6s %-10s %9s %9s %6s %8s %8s %9s %9s" % (
        "app", "mode", "a req/s", "b req/s", "b/a", "a p99", "b p99",
        "a us/req", "b us/req"))
    for kind, mode, runs in table:
        ra = median([x["rps"] for x in runs["a"]])
        rb = median([x["rps"] for x in runs["b"]])
        pa = median([x["p99"] for x in runs["a"]])
        pb = median([x["p99"] for x in runs["b"]])
        ca = median([x["us_per_req"] for x in runs["a"]])
        cb = median([x["us_per_req"] for x in runs["b"]])
        print("%-6s %-10s %9.0f %9.0f %6.3f %8.2f %8.2f %9.1f %9.1f" % (
            kind, mode, ra or 0, rb or 0, (rb or 0) / (ra or 1), pa or 0,
            pb or 0, ca or 0, cb or 0))
        print("       runs a: %s" % " ".join(
            "%.0f/%.2f" % (x["rps"] or 0, x["p99"] or 0) for x in runs["a"]))
        print("       runs b: %s" % " ".join(
            "%.0f/%.2f" % (x["rps"] or 0, x["p99"] or 0) for x in runs["b"]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
