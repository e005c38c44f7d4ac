"""The ASGI serving loop: asyncio (uvloop when it can), lifespan, signals.

Order: the event loop, lifespan startup (a failure exits with status 3),
the C server on the private socket, signal handlers, then `booted`. The C
engine reads the control socket (`live` turns the public sockets on) and
sends the heartbeats from a timer of this loop, so an app that blocks the
loop (time.sleep in an async def) stops them and the master's watchdog
fires. TERM (or the master going away) stops accepting, lets the running
requests finish, then runs lifespan shutdown, all within graceful_timeout,
and a last heartbeat carries the final counts. The HTTP work, connections
included, is the C extension's (_http.ASGIServer); this file is glue.
"""

import asyncio
import gc
import inspect
import os
import signal
import sys

from narwhal_worker import control
from narwhal_worker._http import ASGIServer
from narwhal_worker.config import EXIT_APP_LOAD, engine_settings
from narwhal_worker.lifespan import Lifespan


def log(message):
    try:
        sys.stderr.write("narwhal worker: %s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # the master (which reads our stderr) may be gone


def new_loop(kind):
    """The event loop asyncio_loop asks for: auto, asyncio or uvloop."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def asgi3(app):
    """An ASGI 2 app (a class called with the scope) as an ASGI 3 one."""
    if not inspect.isclass(app):
        return app

    async def app3(scope, receive, send):
        instance = app(scope)
        await instance(receive, send)
    return app3


class Worker:
    def __init__(self, config, app, loop):
        self.config = config
        self.app = asgi3(app)
        self.loop = loop
        self.server = None
        self.stopped = None

    # -- signals and the master

    def request_stop(self, how):
        if how == "quit" and self.config.hooks is not None:
            self.config.hooks.worker_int()
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(how)
        elif how == "quit":
            self.quit_now()

    def quit_now(self):
        """INT, QUIT: leave now, without draining or shutdown."""
        if self.server is not None:
            self.server.quit()
            self.server.flush_logs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(0)

    def on_master_gone(self):
        """The engine read EOF on the control socket (or could not send)."""
        self.request_stop("term")

    def install_signals(self):
        # asyncio's handlers only wake the loop; TERM and USR1 do not
        # interrupt the app's system calls (signal.siginterrupt False).
        add = self.loop.add_signal_handler
        add(signal.SIGTERM, self.request_stop, "term")
        add(signal.SIGINT, self.request_stop, "quit")
        add(signal.SIGQUIT, self.request_stop, "quit")
        add(signal.SIGUSR1, self.server.reopen_logs)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    # -- the worker's life

    async def run(self):
        config, loop = self.config, self.loop
        state = {}
        lifespan = Lifespan(self.app, state)
        failure = await lifespan.startup()
        if failure is not None:
            sys.stderr.write(failure.rstrip() + "\n")
            log("lifespan startup failed: cannot serve app %r" % config.app)
            return EXIT_APP_LOAD

        self.server = ASGIServer(
            self.app, loop,
            **engine_settings(config),
            root_path=config.script_name,
            state=state,
            on_master_gone=self.on_master_gone,
            ws_max_size=config.ws_max_size,
            ws_max_queue=config.ws_max_queue,
            ws_ping_interval=config.ws_ping_interval,
            ws_ping_timeout=config.ws_ping_timeout,
            ws_per_message_deflate=config.ws_per_message_deflate,
        )
        # Everything so far (imports, startup) lives as long as the worker:
        # out of the collector's sight, a full collection no longer walks
        # it (25 ms for a FastAPI app's heap: a latency spike each time).
        gc.collect()
        gc.freeze()
        self.stopped = loop.create_future()
        self.install_signals()
        self.server.start()
        if not control.send(config.control_fd, "booted") and \
                config.control_fd >= 0:
            return 0  # the master is already gone

        how = await self.stopped
        if how == "quit":
            self.quit_now()

        # The master kills us at graceful_timeout: draining may take all
        # of it but a slice kept for lifespan shutdown (closing pools and
        # the like), which also gets whatever draining leaves over.
        graceful = config.graceful_timeout
        deadline = loop.time() + graceful
        drained = self.server.stop()
        try:
            await asyncio.wait_for(drained, max(graceful - min(1.0, graceful
                                                               / 5), 0.001))
        except asyncio.TimeoutError:
            log("graceful_timeout (%gs): closing %d connections, %d "
                "requests unfinished" % (config.graceful_timeout,
                                         self.server.connections,
                                         self.server.tasks))
        await lifespan.shutdown(deadline - loop.time())
        self.server.heartbeat()
        self.server.quit()
        self.server.flush_logs()
        return 0


def serve(config, app):
    try:
        loop = new_loop(config.asyncio_loop)
    except ImportError as e:
        log("asyncio_loop = %s, but it cannot be imported: %s"
            % (config.asyncio_loop, e))
        return EXIT_APP_LOAD
    asyncio.set_event_loop(loop)
    worker = Worker(config, app, loop)
    try:
        status = loop.run_until_complete(worker.run())
        # The loop put the default handlers back: a second TERM from the
        # master (or a process group signal) must not kill a worker that
        # is already on its way out.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        _cancel_leftovers(loop)
        return status
    finally:
        if worker.server is not None:
            worker.server.flush_logs()
        sys.stderr.flush()


def _cancel_leftovers(loop, timeout=1.0):
    """Tasks still running at exit (lifespan, background work) are
    cancelled and given a moment, so none is destroyed while pending."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
