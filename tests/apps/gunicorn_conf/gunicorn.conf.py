# A gunicorn.conf.py as real projects write it.
import multiprocessing
import os

from prometheus_client import multiprocess

bind = "127.0.0.1:0"
workers = int(os.environ.get("TEST_WORKERS", "2"))
timeout = 30
graceful_timeout = 10
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
forwarded_allow_ips = "*"
preload_app = True
raw_env = ["FROM_RAW_ENV=yes"]
watch = False  # narwhal's own: no canary window, a test reloads quickly
MARKERS = os.environ.get("MARKER_DIR", "/tmp")


def mark(name, text=""):
    with open(os.path.join(MARKERS, name), "a") as f:
        f.write(text + "\n")


def on_starting(server):
    mark("on_starting", str(server.pid))


def when_ready(server):
    mark("when_ready", str(server.num_workers))


def post_fork(server, worker):
    mark("post_fork", "%d %d" % (worker.pid, worker.age))
    server.log.info("worker %s forked", worker.pid)


def post_worker_init(worker):
    mark("post_worker_init", str(worker.pid))


def pre_request(worker, req):
    req.pre_seen = True
    mark("pre_request", "%s %s" % (req.method, req.path))


def post_request(worker, req, environ, resp):
    mark("post_request", "%s %s %s" % (req.path, resp.status_code,
                                       getattr(req, "pre_seen", False)))


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
    mark("child_exit", str(worker.pid))


def worker_exit(server, worker):
    mark("worker_exit", str(worker.pid))


def on_reload(server):
    mark("on_reload")


def on_exit(server):
    mark("on_exit")
