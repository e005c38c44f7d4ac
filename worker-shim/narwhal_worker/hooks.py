"""gunicorn's server hooks from a gunicorn.conf.py, with stand-ins for the
`server` and `worker` objects gunicorn passes (the attributes apps use:
worker.pid, worker.ppid, worker.age, worker.log, worker.cfg, server.pid,
server.log, server.cfg, server.num_workers).

Two uses:
* in a worker (NARWHAL_HOOKS names the hooks the file defines): post_fork,
  post_worker_init, pre_request, post_request (WSGI), worker_int,
  worker_abort, worker_exit. Nothing is wrapped or called when a hook is not
  set, so an app without hooks pays nothing.
* for the master, which runs no Python: ``python -m narwhal_worker.hooks
  FILE HOOK[,HOOK] name=value...`` runs on_starting, when_ready, on_reload,
  child_exit, worker_exit, nworkers_changed or on_exit in a short-lived
  process.
"""

import logging
import os
import sys
import time

from narwhal_worker.gunicorn_conf import load_module

WORKER_HOOKS = ("post_fork", "post_worker_init", "pre_request",
                "post_request", "worker_int", "worker_abort", "worker_exit")


class Log:
    """gunicorn's logger interface, writing to stderr (the master's log)."""

    def __init__(self, name="narwhal.hooks"):
        self._log = logging.getLogger(name)
        if not self._log.handlers:
            h = logging.StreamHandler(sys.stderr)
            h.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            self._log.addHandler(h)
            self._log.setLevel(logging.INFO)
            self._log.propagate = False
        for name in ("debug", "info", "warning", "error", "critical",
                     "exception", "log"):
            setattr(self, name, getattr(self._log, name))
        self.warn = self._log.warning

    def reopen_files(self):
        pass

    def close_on_exec(self):
        pass


class Cfg:
    """The file's settings as attributes (cfg.workers, cfg.bind, ...)."""

    def __init__(self, mod=None):
        self.settings = {}
        if mod is not None:
            for k, v in vars(mod).items():
                if not k.startswith("_"):
                    setattr(self, k, v)
                    self.settings[k] = v

    def __getattr__(self, name):
        return None  # an unset setting: None, not an AttributeError


class Server:
    def __init__(self, cfg, log, pid, num_workers=0):
        self.cfg = cfg
        self.log = log
        self.pid = pid
        self.num_workers = num_workers
        self.WORKERS = {}
        self.app = None


class Worker:
    def __init__(self, cfg, log, pid, ppid, age, app=None):
        self.cfg = cfg
        self.log = log
        self.pid = pid
        self.ppid = ppid
        self.age = age
        self.alive = True
        self.booted = False
        self.aborted = False
        self.app = app
        self.wsgi = None
        self.nr = 0
        self.max_requests = 0
        self.timeout = 0
        self.exitcode = None
        self.tmp = None

    def notify(self):
        pass


class Request:
    """What pre_request and post_request see of a request (WSGI)."""

    def __init__(self, environ):
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path = environ.get("PATH_INFO", "")
        self.query = environ.get("QUERY_STRING", "")
        self.uri = environ.get("RAW_URI") or (
            self.path + ("?" + self.query if self.query else ""))
        self.fragment = ""
        proto = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        try:
            self.version = tuple(int(x) for x in proto[5:].split("."))
        except ValueError:
            self.version = (1, 1)
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.remote_addr = environ.get("REMOTE_ADDR")
        self.headers = [(k[5:].replace("_", "-"), v)
                        for k, v in environ.items() if k.startswith("HTTP_")]
        for k in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(k):
                self.headers.append((k.replace("_", "-"), environ[k]))
        self.body = environ.get("wsgi.input")


class Response:
    def __init__(self):
        self.status = None
        self.status_code = None
        self.headers = []
        self.sent = 0
        self.response_length = 0


class _Finished:
    """The app's iterable, calling post_request once it is closed."""

    def __init__(self, result, resp, done):
        self._result = result
        self._resp = resp
        self._done = done

    def __iter__(self):
        for chunk in self._result:
            self._resp.sent += len(chunk)
            self._resp.response_length = self._resp.sent
            yield chunk

    def close(self):
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class WorkerHooks:
    """The worker-side hooks of one gunicorn.conf.py."""

    def __init__(self, path, names):
        mod, _ = load_module(path)
        self.cfg = Cfg(mod)
        self.log = Log("narwhal.worker")
        self.hooks = {n: getattr(mod, n) for n in names
                      if n in WORKER_HOOKS and callable(getattr(mod, n, None))}
        self.server = Server(self.cfg, self.log, os.getppid())
        self.worker = Worker(self.cfg, self.log, os.getpid(), os.getppid(),
                             int(os.environ.get("NARWHAL_WORKER_ID") or 0))

    def call(self, name, *args):
        hook = self.hooks.get(name)
        if hook is not None:
            hook(*args)

    def post_fork(self):
        self.call("post_fork", self.server, self.worker)

    def post_worker_init(self, app):
        self.worker.app = self.worker.wsgi = app
        self.worker.booted = True
        self.call("post_worker_init", self.worker)

    def worker_int(self):
        self.call("worker_int", self.worker)

    def worker_abort(self):
        self.worker.aborted = True
        self.call("worker_abort", self.worker)

    def worker_exit(self):
        self.worker.alive = False
        self.call("worker_exit", self.server, self.worker)

    def wrap_wsgi(self, app):
        """The app, calling pre_request and post_request, if either is
        set; otherwise the app itself."""
        pre = self.hooks.get("pre_request")
        post = self.hooks.get("post_request")
        if pre is None and post is None:
            return app
        worker = self.worker

        def hooked(environ, start_response):
            req = Request(environ)
            worker.nr += 1
            if pre is not None:
                pre(worker, req)
            if post is None:
                return app(environ, start_response)
            resp = Response()

            def sr(status, headers, exc_info=None):
                resp.status = status
                try:
                    resp.status_code = int(status.split(None, 1)[0])
                except (ValueError, IndexError):
                    resp.status_code = None
                resp.headers = list(headers)
                if exc_info is not None:
                    return start_response(status, headers, exc_info)
                return start_response(status, headers)
            result = app(environ, sr)
            return _Finished(result, resp,
                             lambda: post(worker, req, environ, resp))
        return hooked


def from_environment():
    """The worker's hooks, or None when the file defines none of them."""
    path = os.environ.get("NARWHAL_GUNICORN_CONF")
    names = [n for n in os.environ.get("NARWHAL_HOOKS", "").split(",")
             if n in WORKER_HOOKS]
    if not path or not names:
        return None
    return WorkerHooks(path, names)


def main(argv):
    """The master's helper: FILE HOOK[,HOOK] name=value..."""
    if len(argv) < 3:
        sys.stderr.write("usage: python -m narwhal_worker.hooks FILE "
                         "HOOK[,HOOK] [name=value...]\n")
        return 2
    path, names = argv[1], argv[2].split(",")
    values = dict(a.split("=", 1) for a in argv[3:] if "=" in a)
    mod, _ = load_module(path)
    cfg = Cfg(mod)
    log = Log("narwhal.master")
    master_pid = int(os.environ.get("NARWHAL_MASTER_PID") or os.getppid())
    server = Server(cfg, log, master_pid,
                    int(values.get("num_workers", 0) or 0))
    worker = Worker(cfg, log, int(values.get("pid", 0) or 0), master_pid,
                    int(values.get("age", 0) or 0))
    if "exitcode" in values:
        worker.exitcode = int(values["exitcode"])
    worker.alive = False
    status = 0
    for name in names:
        hook = getattr(mod, name, None)
        if not callable(hook):
            continue
        started = time.monotonic()
        try:
            if name in ("child_exit", "worker_exit"):
                hook(server, worker)
            elif name == "nworkers_changed":
                hook(server, int(values.get("new_value", 0)),
                     int(values.get("old_value", 0)))
            else:  # on_starting, when_ready, on_reload, on_exit
                hook(server)
        except Exception:
            log.exception("hook %s failed", name)
            status = 1
        else:
            log.debug("hook %s: %.3fs", name, time.monotonic() - started)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
