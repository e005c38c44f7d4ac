"""The worker's settings, read once from the NARWHAL_* environment.

Only parsing lives here: no side effects, so a serving loop (WSGI or ASGI)
gets one immutable object with everything the master decided.
"""

import os

# Exit status when the app cannot be loaded (the contract's "3").
EXIT_APP_LOAD = 3


class ConfigError(Exception):
    pass


def _int(env, name, default):
    value = env.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError("%s=%r is not an integer" % (name, value))


def _float(env, name, default):
    value = env.get(name, "")
    if value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError("%s=%r is not a number" % (name, value))


def _fds(env, name):
    value = env.get(name, "").strip()
    if not value:
        return []
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ConfigError("%s=%r is not a list of fds" % (name, value))


class Config:
    """Everything the master told this worker, with gunicorn's defaults."""

    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.app = env.get("NARWHAL_APP", "")
        self.interface = (env.get("NARWHAL_INTERFACE", "") or "auto").lower()
        self.asyncio_loop = env.get("NARWHAL_ASYNCIO_LOOP", "") or "auto"
        # sync, gthread, gevent, eventlet, asgi or auto; threads: WSGI
        # requests at once on threads; worker_connections: green ones
        self.worker_class = (env.get("NARWHAL_WORKER_CLASS", "") or
                             "auto").lower()
        self.threads = max(1, _int(env, "NARWHAL_THREADS", 1))
        self.worker_connections = max(
            1, _int(env, "NARWHAL_WORKER_CONNECTIONS", 1000))
        self.chdir = env.get("NARWHAL_CHDIR", "")
        self.pythonpath = [p for p in
                           env.get("NARWHAL_PYTHONPATH", "").split(":") if p]
        self.shim_path = env.get("NARWHAL_SHIM_PATH", "")
        self.control_fd = _int(env, "NARWHAL_CONTROL_FD", -1)
        self.private_fd = _int(env, "NARWHAL_PRIVATE_FD", -1)
        self.listen_fds = _fds(env, "NARWHAL_LISTEN_FDS")
        self.max_requests = max(0, _int(env, "NARWHAL_MAX_REQUESTS", 0))
        self.heartbeat = _float(env, "NARWHAL_HEARTBEAT", 5.0)
        self.keepalive = _float(env, "NARWHAL_KEEPALIVE", 2.0)
        self.header_timeout = _float(env, "NARWHAL_HEADER_TIMEOUT", 10.0)
        self.graceful_timeout = _float(env, "NARWHAL_GRACEFUL_TIMEOUT", 30.0)
        self.limit_request_line = max(
            0, _int(env, "NARWHAL_LIMIT_REQUEST_LINE", 4094))
        self.limit_request_fields = max(
            0, _int(env, "NARWHAL_LIMIT_REQUEST_FIELDS", 100))
        self.limit_request_field_size = max(
            0, _int(env, "NARWHAL_LIMIT_REQUEST_FIELD_SIZE", 8190))
        self.limit_request_body = max(
            0, _int(env, "NARWHAL_LIMIT_REQUEST_BODY", 0))
        self.ws_max_size = max(0, _int(env, "NARWHAL_WS_MAX_SIZE", 16777216))
        self.ws_max_queue = max(1, _int(env, "NARWHAL_WS_MAX_QUEUE", 32))
        self.ws_ping_interval = _float(env, "NARWHAL_WS_PING_INTERVAL", 20.0)
        self.ws_ping_timeout = _float(env, "NARWHAL_WS_PING_TIMEOUT", 20.0)
        self.ws_per_message_deflate = env.get(
            "NARWHAL_WS_PER_MESSAGE_DEFLATE", "1") not in ("0", "false", "")
        self.accesslog = env.get("NARWHAL_ACCESSLOG") or None
        # gunicorn.conf.py's worker-side hooks (hooks.py), set by boot.
        self.hooks = None
        # Like gunicorn: SCRIPT_NAME comes from the process environment.
        self.script_name = env.get("SCRIPT_NAME", "")


ENGINE_SETTINGS = (
    "listen_fds", "private_fd", "control_fd", "keepalive", "header_timeout",
    "heartbeat", "max_requests", "limit_request_line", "limit_request_fields",
    "limit_request_field_size", "limit_request_body", "accesslog")


def engine_settings(config):
    """The keyword arguments every Server type takes for its engine."""
    return {name: getattr(config, name) for name in ENGINE_SETTINGS}
