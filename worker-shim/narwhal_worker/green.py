"""The gevent and eventlet serving loop: the hub drives the C server.

boot.py has monkey-patched the standard library before the app was
imported. Here the hub watches the engine's epoll set as one reader and
keeps one timer for the engine's deadlines (heartbeats included: a hub that
an app blocks sends none, and the master's watchdog fires); each request
runs in a greenlet of its own, in C, with at most worker_connections at
once (green.c). TERM (or the master going away) stops accepting and lets
the running requests finish within graceful_timeout. Each library gets one
small adapter with the same five primitives; the rest is shared.
"""

import os
import signal
import sys

from narwhal_worker import control
from narwhal_worker.config import engine_settings
from narwhal_worker._http import Server


def log(message):
    try:
        sys.stderr.write("narwhal worker: %s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Runners:
    """Greenlets that run request after request.

    A new greenlet per request costs its creation and, on Python 3.11, a
    fresh frame stack (an mmap and a munmap each time): a request's greenlet
    waits for the next request instead, at most worker_connections of them
    (the C side never runs more requests at once).
    """

    def __init__(self, new, resume, hub_switch):
        self.idle = []
        self.new = new                # new(fn, arg): a greenlet runs it
        self.resume = resume          # resume(greenlet, arg), from the hub
        self.hub_switch = hub_switch  # the current greenlet waits

    def spawn(self, job):
        if self.idle:
            self.resume(self.idle.pop(), job)
        else:
            self.new(self.run, job)

    def run(self, job):
        import greenlet
        me = greenlet.getcurrent()
        while True:
            try:
                job()
            except BaseException:  # the C side has answered: go on
                import traceback
                traceback.print_exc()
            job = None
            self.idle.append(me)
            job = self.hub_switch()


class GeventHub:
    """gevent's hub: libev (or libuv) watchers, raw greenlets."""

    def __init__(self):
        import gevent
        import gevent.event
        import gevent.socket
        self.gevent = gevent
        hub = gevent.get_hub()
        self.loop = hub.loop
        self.runners = Runners(
            gevent.spawn_raw,
            lambda g, job: self.loop.run_callback(g.switch, job),
            hub.switch)
        self.spawn = self.runners.spawn
        self._wait_write = gevent.socket.wait_write
        self.stopped = gevent.event.Event()
        self.timer = None
        self.io = None
        self.on_timer = None

    def wait_write(self, fd, timeout):
        self._wait_write(fd, timeout, TimeoutError)

    def arm(self, delay):
        if self.timer is not None:
            self.timer.stop()
        self.timer = self.loop.timer(delay)
        self.timer.start(self.on_timer)

    def call_soon(self, fn):
        self.loop.run_callback(fn)

    def watch(self, fd, on_events):
        self.io = self.loop.io(fd, 1)
        self.io.start(on_events)

    def unwatch(self):
        for w in (self.io, self.timer):
            if w is not None:
                w.stop()

    def on_signal(self, signum, handler):
        self.gevent.signal_handler(signum, handler)

    def sleep(self, seconds):
        self.gevent.sleep(seconds)

    def wait_stopped(self, timeout):
        return self.stopped.wait(timeout)


class EventletHub:
    """eventlet's hub: its own epoll in Python, green threads."""

    def __init__(self):
        import eventlet
        import eventlet.event
        import eventlet.hubs
        self.eventlet = eventlet
        self.hub = eventlet.hubs.get_hub()
        self.runners = Runners(
            eventlet.spawn_n,
            lambda g, job: self.hub.schedule_call_global(0, g.switch, job),
            self.hub.switch)
        self.spawn = self.runners.spawn
        self._trampoline = eventlet.hubs.trampoline
        self.stopped = False
        self.timer = None
        self.listener = None
        self.on_timer = None

    def wait_write(self, fd, timeout):
        self._trampoline(fd, write=True, timeout=timeout,
                         timeout_exc=TimeoutError)

    def arm(self, delay):
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.hub.schedule_call_global(delay, self.on_timer)

    def call_soon(self, fn):
        self.hub.schedule_call_global(0, fn)

    def watch(self, fd, on_events):
        self.listener = self.hub.add(self.hub.READ, fd,
                                     lambda _fd: on_events(),
                                     lambda *exc: None, lambda: None)

    def unwatch(self):
        if self.listener is not None:
            self.hub.remove(self.listener)
        if self.timer is not None:
            self.timer.cancel()

    def on_signal(self, signum, handler):
        signal.signal(signum, lambda s, f: handler())

    def sleep(self, seconds):
        self.eventlet.sleep(seconds)

    def wait_stopped(self, timeout):
        if not self.stopped:
            self.eventlet.sleep(timeout)
        return self.stopped


HUBS = {"gevent": GeventHub, "eventlet": EventletHub}


def serve(config, app):
    hub = HUBS[config.worker_class]()
    server = Server(
        app,
        **engine_settings(config),
        graceful_timeout=config.graceful_timeout,
        script_name=config.script_name,
        errors=sys.stderr,
        green=hub,
        worker_connections=config.worker_connections,
    )
    hub.on_timer = server.on_timer
    how = {}

    def request_stop(kind):
        how.setdefault("how", kind)
        if isinstance(hub.stopped, bool):
            hub.stopped = True
        else:
            hub.stopped.set()

    def on_quit():
        server.quit()
        server.flush_logs()
        sys.stderr.flush()
        os._exit(0)

    hub.on_signal(signal.SIGTERM, lambda: request_stop("term"))
    hub.on_signal(signal.SIGINT, on_quit)
    hub.on_signal(signal.SIGQUIT, on_quit)
    hub.on_signal(signal.SIGUSR1, server.reopen_logs)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    fd = server.start()
    hub.watch(fd, server.on_events)
    if not control.send(config.control_fd, "booted") and \
            config.control_fd >= 0:
        return 0  # the master is already gone
    # The master going away (EOF on the control socket) is the engine's
    # news: it is polled, a stop is no hurry.
    while not hub.wait_stopped(0.5):
        if server.green_state[1]:
            request_stop("term")
    server.begin_stop()
    step = 0.01
    waited = 0.0
    while waited < config.graceful_timeout:
        _, _, drained, running = server.green_state
        if drained and running == 0:
            break
        hub.sleep(step)
        waited += step
        step = min(step * 2, 0.1)
    else:
        log("graceful_timeout (%gs): %d requests unfinished"
            % (config.graceful_timeout, server.green_state[3]))
    server.close()
    hub.unwatch()
    server.flush_logs()
    sys.stderr.flush()
    return 0
