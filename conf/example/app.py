"""The example app of conf/example.ini: plain WSGI, no framework.

/health/ready is what narwhal asks a new worker before giving it traffic
(ready_path in the config); every other path says hello.
"""


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/health/ready":
        body = b"ready\n"
    else:
        body = b"Hello from narwhal\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
