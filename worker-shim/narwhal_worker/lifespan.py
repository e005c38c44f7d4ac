"""The ASGI lifespan protocol: startup before `booted`, shutdown at the end.

It follows uvicorn's `lifespan = "auto"` with one deliberate difference. An
app that raises before it ever called receive() does not speak the protocol
(Django's ASGI handler, `assert scope["type"] == "http"`): it is served
without startup or shutdown. An app that raises after it received
`lifespan.startup`, and one that answers `lifespan.startup.failed`, failed
its startup: that is a boot failure (exit status 3, a reload rolls back),
where uvicorn would call the protocol unsupported and serve it anyway. An
app that returns without answering is taken as having nothing to do.
"""

import asyncio
import sys
import traceback


def log(message):
    try:
        sys.stderr.write("narwhal worker: %s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # the master (which reads our stderr) may be gone


class Lifespan:
    """One lifespan scope for the life of the worker."""

    def __init__(self, app, state):
        self.app = app
        self.state = state
        self.inbox = asyncio.Queue()
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.received = 0          # messages the app took from receive()
        self.phase = "startup"     # "startup", "running", "shutdown"
        self.supported = True
        self.failure = None        # why startup failed, for the report
        self.shutdown_failure = None
        self.task = None

    # -- the app's side

    async def receive(self):
        message = await self.inbox.get()
        self.received += 1
        return message

    async def send(self, message):
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "lifespan.startup.complete" and self.phase == "startup":
            self.phase = "running"
            self.startup_event.set()
        elif kind == "lifespan.startup.failed" and self.phase == "startup":
            self.failure = message.get("message") or \
                "the app sent lifespan.startup.failed"
            self.startup_event.set()
        elif kind == "lifespan.shutdown.complete" and \
                self.phase == "shutdown":
            self.shutdown_event.set()
        elif kind == "lifespan.shutdown.failed" and self.phase == "shutdown":
            self.shutdown_failure = message.get("message") or \
                "the app sent lifespan.shutdown.failed"
            self.shutdown_event.set()
        else:
            raise RuntimeError("unexpected lifespan message %r during %s"
                               % (kind, self.phase))

    async def main(self):
        scope = {"type": "lifespan",
                 "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:  # noqa: B036 - the app's, reported
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._raised(exc)
        finally:
            self.startup_event.set()
            self.shutdown_event.set()

    def _raised(self, exc):
        if self.phase == "startup" and self.failure is None:
            if self.received == 0:
                # never took lifespan.startup: no lifespan support
                self.supported = False
                log("ASGI 'lifespan' protocol appears unsupported "
                    "(%s: %s); serving without startup and shutdown"
                    % (type(exc).__name__, exc))
                return
            self.failure = "".join(traceback.format_exception(
                type(exc), exc, exc.__traceback__)).rstrip()
            return
        if self.failure is not None or self.shutdown_failure is not None:
            return  # already reported with its own message
        text = "".join(traceback.format_exception(
            type(exc), exc, exc.__traceback__)).rstrip()
        if self.phase == "shutdown":
            self.shutdown_failure = text
        else:
            log("the lifespan task failed while serving; no shutdown "
                "will run:\n%s" % text)
            self.supported = False

    # -- the worker's side

    async def startup(self):
        """None when the app may serve; otherwise why it may not."""
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self.main())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.failure is not None:
            return self.failure
        if self.phase == "startup":
            # returned (or unsupported) without a word: nothing to run
            self.phase = "running"
            self.supported = False
        return None

    async def shutdown(self, timeout):
        """Runs lifespan.shutdown for at most timeout seconds."""
        if not self.supported or self.task is None or self.task.done():
            return
        self.phase = "shutdown"
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.shutdown_event.wait(),
                                   max(timeout, 0.001))
        except asyncio.TimeoutError:
            log("lifespan shutdown did not finish within graceful_timeout "
                "(%.3gs)" % timeout)
            return
        if self.shutdown_failure is not None:
            log("lifespan shutdown failed:\n%s" % self.shutdown_failure)
