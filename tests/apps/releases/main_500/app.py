"""A release whose health check passes but whose main route answers 500,
as a Django release with an unapplied migration does."""
from release_base import make_app

inner = make_app()


def application(environ, start_response):
    if environ.get("PATH_INFO", "/") == "/" and \
            environ.get("HTTP_USER_AGENT", "") != "narwhal-probe":
        body = b"v500: relation does not exist\n"
        start_response("500 Internal Server Error", [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Version", "v500")])
        return [body]
    return inner(environ, start_response)
