"""An app module outside the code tree, found through `pythonpath`."""


def application(environ, start_response):
    body = b"from the extra path\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
