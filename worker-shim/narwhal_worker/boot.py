"""Worker start-up: environment, code tree, sys.path, the app, the loop.

Order matters: the shim leaves PYTHONPATH first (so the app's subprocesses
do not inherit it), then the worker moves into its code tree, puts the tree
and NARWHAL_PYTHONPATH first on sys.path, arms faulthandler (SIGABRT from
the master's watchdog dumps every thread's stack), monkey-patches for a
gevent or eventlet worker, and loads the app. A failure to load exits with
status 3 after printing the traceback.
"""

import faulthandler
import inspect
import os
import signal
import sys
import traceback

from narwhal_worker.config import EXIT_APP_LOAD, Config, ConfigError
from narwhal_worker.loader import AppLoadError, load_app


def log(message):
    sys.stderr.write("narwhal worker: %s\n" % message)
    sys.stderr.flush()


def _strip_shim_path(shim_path):
    if not shim_path:
        return
    shim = os.path.normpath(shim_path)
    parts = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    kept = [p for p in parts if p and os.path.normpath(p) != shim]
    if kept:
        os.environ["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        os.environ.pop("PYTHONPATH", None)
    os.environ.pop("NARWHAL_SHIM_PATH", None)


def _setup_paths(config):
    start_cwd = os.getcwd()
    if config.chdir:
        os.chdir(config.chdir)
    tree = os.getcwd()
    # `python -m` put the master's working directory first; that may be an
    # older code tree, so it goes, and the worker's own tree comes first.
    if sys.path and sys.path[0] in (start_cwd, "") and start_cwd != tree:
        del sys.path[0]
    front = [tree] + [os.path.abspath(p) for p in config.pythonpath]
    rest = [p for p in sys.path if p not in front]
    sys.path[:] = front + rest


def _close_on_exec(config):
    # The app's own subprocesses must not hold the sockets: a child that
    # kept the control socket open would hide this worker's death.
    for fd in [config.control_fd, config.private_fd] + config.listen_fds:
        if fd >= 0:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def looks_asgi(app):
    """True for an ASGI 3 callable: `async def app(scope, receive, send)`,
    or an object (FastAPI, Starlette, middleware) whose __call__ is one."""
    if inspect.iscoroutinefunction(app):  # functions, partials of them
        return True
    if inspect.isfunction(app) or inspect.ismethod(app) or \
            inspect.isclass(app):
        return False
    return inspect.iscoroutinefunction(getattr(app, "__call__", None))


GREEN = ("gevent", "eventlet")


def monkey_patch(worker_class):
    """gevent and eventlet workers patch the standard library before the
    app is imported, as gunicorn's do: its sockets, sleeps and locks then
    yield to the hub instead of blocking the worker."""
    if worker_class == "gevent":
        from gevent import monkey
        monkey.patch_all()
    elif worker_class == "eventlet":
        import eventlet
        eventlet.monkey_patch()


def pick_serving_loop(interface, app, worker_class="auto"):
    """The function that serves `app`: (config, app) -> exit status."""
    if worker_class in GREEN:
        from narwhal_worker.green import serve
        return serve
    if interface == "wsgi" or (interface == "auto" and not looks_asgi(app)):
        from narwhal_worker.wsgi import serve
        return serve
    if interface in ("asgi", "auto"):
        from narwhal_worker.asgi import serve
        return serve
    raise AppLoadError("unknown interface %r (wsgi, asgi or auto)"
                       % interface)


def _on_abort(hooks):
    """gunicorn's worker_abort: on the watchdog's SIGABRT, the stack, the
    hook, then exit (the master SIGKILLs a worker that does not)."""
    def handler(signum, frame):
        faulthandler.dump_traceback(all_threads=True)
        try:
            hooks.worker_abort()
        finally:
            sys.stderr.flush()
            os._exit(1)
    signal.signal(signal.SIGABRT, handler)


def main():
    try:
        config = Config()
    except ConfigError as e:
        log("bad environment: %s" % e)
        return EXIT_APP_LOAD
    _strip_shim_path(config.shim_path)
    _close_on_exec(config)
    faulthandler.enable(all_threads=True)
    try:
        monkey_patch(config.worker_class)
        _setup_paths(config)
        if os.environ.get("NARWHAL_HOOKS"):
            from narwhal_worker.hooks import from_environment
            config.hooks = from_environment()
        if config.hooks is not None:
            config.hooks.post_fork()
            if "worker_abort" in config.hooks.hooks:
                _on_abort(config.hooks)
        app = load_app(config.app)
        serve = pick_serving_loop(config.interface, app,
                                  config.worker_class)
        if config.hooks is not None:
            config.hooks.post_worker_init(app)
            if serve.__module__ in ("narwhal_worker.wsgi",
                                    "narwhal_worker.green"):
                app = config.hooks.wrap_wsgi(app)
    except AppLoadError as e:
        log("cannot load app %r: %s" % (config.app, e))
        return EXIT_APP_LOAD
    except BaseException:
        # The traceback is the reload report: print all of it.
        traceback.print_exc()
        sys.stderr.flush()
        log("cannot load app %r" % config.app)
        return EXIT_APP_LOAD
    if config.hooks is None:
        return serve(config, app)
    try:
        return serve(config, app)
    finally:
        config.hooks.worker_exit()
