"""narwhal_worker: what runs inside a narwhal worker process.

The master execs ``<python> -m narwhal_worker``. This package is the glue:
read the environment contract (see worker-shim/README.md), set up the
process, load the app, then hand over to a serving loop. The hot path (accept,
HTTP parsing, the WSGI environ, response writing) is the C extension
``narwhal_worker._http``.
"""

__all__ = ["main"]


def main():
    from narwhal_worker.boot import main as _main

    return _main()
