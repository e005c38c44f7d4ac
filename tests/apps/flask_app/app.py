"""A small Flask app: routing, JSON, forms, request bodies, errors."""

import hashlib
import os

from flask import Flask, abort, jsonify, request

app = Flask(__name__)


@app.route("/")
def index():
    return "flask ok\n"


@app.route("/json")
def as_json():
    return jsonify(framework="flask", pid=os.getpid(), args=request.args)


@app.route("/form", methods=["POST"])
def form():
    return jsonify(dict(request.form))


@app.route("/upload", methods=["POST", "PUT"])
def upload():
    data = request.get_data()
    return jsonify(length=len(data))


@app.route("/files", methods=["POST"])
def files():
    f = request.files["f"]
    return jsonify(note=request.form["note"], name=f.filename,
                   sha256=hashlib.sha256(f.read()).hexdigest())


@app.route("/user/<name>")
def user(name):
    return "hello %s\n" % name


@app.route("/teapot")
def teapot():
    abort(418)
