"""A WSGI app committed into a git work tree by test_deploy_git.py.

/      the version, read from VERSION at import
/page  page.txt, read from the tree at every request: a worker whose tree
       changed under it would answer the new page with the old code
/pid   the worker's pid
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "VERSION")) as f:
    VERSION = f.read().strip()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/page":
        with open(os.path.join(HERE, "page.txt")) as f:
            body = "%s %s\n" % (VERSION, f.read().strip())
    elif path == "/pid":
        body = "%d" % os.getpid()
    else:
        body = VERSION + "\n"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(data)))])
    return [data]
