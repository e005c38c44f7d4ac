"""A Flask app whose views wait while holding request state.

Each request stores its name in `g`, sleeps, and then reads everything back
from Flask's context-local proxies (request, g): on a thread
pool or under gevent, other requests run during the sleep, so a context
shared between them would answer with another request's name.

  /ctx/<name>?tag=&s=0.3   JSON: what request, g and the view saw after
                           the sleep
"""

import threading
import time

from flask import Flask, g, jsonify, request

app = Flask(__name__)


@app.before_request
def remember():
    g.started_for = request.path


@app.route("/ctx/<name>")
def ctx(name):
    g.name = name
    time.sleep(float(request.args.get("s", "0.3")))
    return jsonify(name=name, view_arg=request.view_args["name"],
                   tag=request.args.get("tag"), g_name=g.name,
                   g_path=g.started_for, path=request.path,
                   thread=threading.get_ident())
