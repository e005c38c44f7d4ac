"""Reads a gunicorn.conf.py for the master: ``python -m
narwhal_worker.gunicorn_conf FILE`` (or ``python:MODULE``).

The master never runs Python, so it runs this, with the interpreter the
workers will use, and reads one tab-separated line per setting from stdout:

    S <line> <name> <value>   a setting (lists give one line per item)
    H <line> <name>           a function: a server hook if gunicorn has one
    E <line> <message>        the file cannot be used (status 1)

<line> is where the name is assigned at the top level (0 when unknown). The
master decides what each name means; names gunicorn does not know are the
file's own variables and are ignored, as gunicorn ignores them. Whatever the
file prints goes to stderr, so it cannot be taken for a setting.
"""

import ast
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import traceback
import types

# gunicorn's settings whose value is a list given as a comma-separated
# string on narwhal's side.
_COMMA_LISTS = ("pythonpath", "forwarded_allow_ips", "proxy_allow_ips",
                "reload_extra_files", "forwarder_headers")
# Repeatable keys: one line per item.
_REPEATED = ("bind", "raw_env")


def load_module(location, cwd=None):
    """Executes the file (or imports python:MODULE) as gunicorn does."""
    cwd = cwd or os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if location.startswith("python:"):
        return importlib.import_module(location[len("python:"):]), None
    if location.startswith("file:"):
        location = location[len("file:"):]
    if not os.path.exists(location):
        raise FileNotFoundError("%r doesn't exist" % location)
    name = "__config__"
    if location.endswith((".py", ".pyc")):
        spec = importlib.util.spec_from_file_location(name, location)
    else:
        loader = importlib.machinery.SourceFileLoader(name, location)
        spec = importlib.util.spec_from_file_location(name, location,
                                                      loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod, location


def assignment_lines(path):
    """name -> line of its last top-level assignment or def."""
    lines = {}
    if not path:
        return lines
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return lines
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines[node.name] = node.lineno
            continue
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    lines[n.id] = node.lineno
    return lines


def _scalar(value):
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def render(name, value):
    """The INI text of one value: a list of strings (one per line)."""
    if name == "umask" and isinstance(value, int) and \
            not isinstance(value, bool):
        return ["%04o" % value]
    if name == "secure_scheme_headers" and isinstance(value, dict):
        return [", ".join("%s=%s" % kv for kv in value.items())]
    if name in _REPEATED:
        if isinstance(value, str):
            return [value]
        return [_scalar(v) for v in (value or [])]
    if isinstance(value, (list, tuple, set)):
        return [", ".join(_scalar(v) for v in value)]
    if isinstance(value, dict):
        return [", ".join("%s=%s" % (k, _scalar(v))
                          for k, v in value.items())]
    return [_scalar(value)]


def settings(mod, lines):
    """(kind, line, name, value) for every name worth telling the master."""
    out = []
    for name, value in sorted(vars(mod).items()):
        if name.startswith("_") or isinstance(value, types.ModuleType) or \
                inspect.isclass(value):
            continue
        line = lines.get(name, 0)
        if callable(value):
            out.append(("H", line, name, None))
            continue
        for text in render(name, value):
            if "\n" in text or "\t" in text:
                raise ValueError("%s: a value on one line, please" % name)
            out.append(("S", line, name, text))
    return out


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: python -m narwhal_worker.gunicorn_conf "
                         "FILE\n")
        return 2
    # Our answer goes to the real stdout; the file's prints to stderr.
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    location = argv[1]
    try:
        mod, path = load_module(location)
        found = settings(mod, assignment_lines(path))
    except BaseException as e:
        tb = traceback.extract_tb(e.__traceback__)
        line = 0
        for frame in tb:
            if frame.filename == location:
                line = frame.lineno
        if isinstance(e, SyntaxError) and e.lineno:
            line = e.lineno
        traceback.print_exc()
        answer.write("E\t%d\tcannot be read: %s: %s\n"
                     % (line, type(e).__name__,
                        str(e).replace("\n", " ").replace("\t", " ")))
        answer.flush()
        return 1
    for kind, line, name, text in found:
        if kind == "H":
            answer.write("H\t%d\t%s\n" % (line, name))
        else:
            answer.write("S\t%d\t%s\t%s\n" % (line, name, text))
    answer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
