"""A release whose main route answers 500 to every 100th request of each
worker: 1% errors, deterministically, on the old release and the new."""
import itertools
import threading

from release_base import make_app

inner = make_app()
counter = itertools.count(1)
lock = threading.Lock()


def application(environ, start_response):
    if environ.get("PATH_INFO", "/") == "/":
        with lock:
            n = next(counter)
        if n % 100 == 0:
            body = b"one in a hundred\n"
            start_response("500 Internal Server Error", [
                ("Content-Type", "text/plain"),
                ("Content-Length", str(len(body)))])
            return [body]
    return inner(environ, start_response)
