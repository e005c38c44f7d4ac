"""Finding the application object from ``module:callable``.

Accepted forms (gunicorn's): ``module`` (meaning ``module:application``),
``module:name``, ``module:obj.attr`` and ``module:factory(args)`` where the
arguments are Python literals. Loading failures raise AppLoadError; the caller
prints the traceback and exits with status 3.
"""

import ast
import importlib


class AppLoadError(Exception):
    pass


def _parse_call(expr):
    """'factory(1, x="a")' -> ('factory', args, kwargs); no call -> None."""
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppLoadError("cannot parse %r as a name or a call" % expr)
    if isinstance(node, ast.Call):
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value)
                      for k in node.keywords}
        except ValueError:
            raise AppLoadError(
                "the arguments of %r must be Python literals" % expr)
        return node.func, args, kwargs
    return node, None, None


def _dotted(node, expr):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppLoadError("%r is not a name or a call of one" % expr)
    parts.append(node.id)
    return list(reversed(parts))


def load_app(spec):
    if not spec:
        raise AppLoadError("no application given (NARWHAL_APP is empty)")
    module_name, _, expr = spec.partition(":")
    expr = expr.strip() or "application"
    func, args, kwargs = _parse_call(expr)
    names = _dotted(func, expr)

    # Import errors propagate with their own traceback: that is what the
    # operator needs to see in the reload report.
    module = importlib.import_module(module_name)

    obj = module
    for name in names:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppLoadError("%r has no attribute %r (app %r)"
                               % (module_name, ".".join(names), spec))
    if args is not None:
        obj = obj(*args, **kwargs)
    if obj is None or not callable(obj):
        raise AppLoadError("app %r is not callable (got %r)" % (spec, obj))
    return obj
