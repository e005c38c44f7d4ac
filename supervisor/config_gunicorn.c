/*
 * config_gunicorn.c: what each of gunicorn's settings becomes here.
 *
 * One table, by gunicorn's setting name, with its command-line flags: a
 * narwhal key, a documented no-op (one log line, the start goes on), a
 * refusal (ignoring it would be unsafe), or a server hook. The flag scanner
 * and the gunicorn.conf.py reader both look settings up here, so a flag and
 * the same setting in a file always get the same fate. It holds no state.
 */
#include <string.h>

#include "config_internal.h"

#define NOPRELOAD "narwhal never preloads, by design: every worker imports " \
	"the app itself, so that a reload reads the new code"
#define NOSSLCTX "narwhal's TLS is OpenSSL in C, not Python's ssl module: " \
	"set certfile, keyfile, ca_certs, cert_reqs and ciphers instead; " \
	"ignoring the context would be unsafe"
#define STRICT "narwhal's HTTP parser is strict and has no switch for this"
#define NOLOGCFG "narwhal logs to errorlog and accesslog; the app's own " \
	"Python logging is the app's"
#define NOSYSLOG "log to stderr under systemd (the journal) instead"
#define NOSTATSD "the accept backlog is not measured: narwhal's metrics " \
	"(metrics_bind, statsd_host) count what the workers answered"
#define NOH2 "narwhal speaks HTTP/1.1; put an HTTP/2 proxy in front"
#define NODIRTY "gunicorn's dirty arbiters have no narwhal equivalent: " \
	"code that calls them would fail"

static const struct nw_gunicorn table[] = {
	/* Config File */
	{ "config", "-c --config", 0, NW_GU_SPECIAL, NULL, NULL },
	{ "wsgi_app", NULL, 0, NW_GU_KEY, "app", NULL },
	/* Debugging */
	{ "reload", "--reload", 1, NW_GU_KEY, "reload", NULL },
	{ "reload_engine", "--reload-engine", 0, NW_GU_NOOP, NULL,
	    "narwhal always watches with inotify" },
	{ "reload_extra_files", "--reload-extra-file", 0, NW_GU_KEY,
	    "reload_extra_files", NULL },
	{ "spew", "--spew", 1, NW_GU_NOOP, NULL,
	    "no line tracing: use a debugger" },
	{ "check_config", "--check-config", 1, NW_GU_SPECIAL, NULL, NULL },
	{ "print_config", "--print-config", 1, NW_GU_SPECIAL, NULL, NULL },
	/* Server Socket */
	{ "bind", "-b --bind", 0, NW_GU_KEY, "bind", NULL },
	{ "backlog", "--backlog", 0, NW_GU_KEY, "backlog", NULL },
	/* Worker Processes */
	{ "workers", "-w --workers", 0, NW_GU_KEY, "workers", NULL },
	{ "worker_class", "-k --worker-class", 0, NW_GU_KEY, "worker_class",
	    NULL },
	{ "threads", "--threads", 0, NW_GU_KEY, "threads", NULL },
	{ "worker_connections", "--worker-connections", 0, NW_GU_KEY,
	    "worker_connections", NULL },
	{ "max_requests", "--max-requests", 0, NW_GU_KEY, "max_requests",
	    NULL },
	{ "max_requests_jitter", "--max-requests-jitter", 0, NW_GU_KEY,
	    "max_requests_jitter", NULL },
	{ "timeout", "-t --timeout", 0, NW_GU_KEY, "timeout", NULL },
	{ "graceful_timeout", "--graceful-timeout", 0, NW_GU_KEY,
	    "graceful_timeout", NULL },
	{ "keepalive", "--keep-alive", 0, NW_GU_KEY, "keepalive", NULL },
	{ "asgi_loop", "--asgi-loop", 0, NW_GU_KEY, "asyncio_loop", NULL },
	{ "asgi_lifespan", "--asgi-lifespan", 0, NW_GU_NOOP, NULL,
	    "lifespan runs when the app supports it (auto)" },
	{ "asgi_disconnect_grace_period", "--asgi-disconnect-grace-period", 0,
	    NW_GU_NOOP, NULL, "graceful_timeout bounds a stopping worker" },
	{ "http_parser", "--http-parser", 0, NW_GU_NOOP, NULL,
	    "narwhal has one HTTP parser, in C" },
	/* Security */
	{ "limit_request_line", "--limit-request-line", 0, NW_GU_KEY,
	    "limit_request_line", NULL },
	{ "limit_request_fields", "--limit-request-fields", 0, NW_GU_KEY,
	    "limit_request_fields", NULL },
	{ "limit_request_field_size", "--limit-request-field_size", 0,
	    NW_GU_KEY, "limit_request_field_size", NULL },
	/* Server Mechanics */
	{ "preload_app", "--preload", 1, NW_GU_NOOP, NULL, NOPRELOAD },
	{ "sendfile", "--no-sendfile", 1, NW_GU_NOOP, NULL,
	    "wsgi.file_wrapper always uses sendfile" },
	{ "reuse_port", "--reuse-port", 1, NW_GU_NOOP, NULL,
	    "the master binds each socket once and shares it" },
	{ "chdir", "--chdir", 0, NW_GU_KEY, "chdir", NULL },
	{ "daemon", "-D --daemon", 1, NW_GU_REFUSED, NULL,
	    "narwhal stays in the foreground: run it under systemd (or "
	    "another supervisor), which --daemon would defeat (Type=notify, "
	    "reload --wait)" },
	{ "raw_env", "-e --env", 0, NW_GU_SPECIAL, NULL, NULL },
	{ "pidfile", "-p --pid", 0, NW_GU_KEY, "pidfile", NULL },
	{ "worker_tmp_dir", "--worker-tmp-dir", 0, NW_GU_NOOP, NULL,
	    "heartbeats go over a socket, not a temp file" },
	{ "user", "-u --user", 0, NW_GU_KEY, "user", NULL },
	{ "group", "-g --group", 0, NW_GU_KEY, "group", NULL },
	{ "umask", "-m --umask", 0, NW_GU_KEY, "umask", NULL },
	{ "initgroups", "--initgroups", 1, NW_GU_NOOP, NULL,
	    "always on: workers get the user's supplementary groups" },
	{ "tmp_upload_dir", NULL, 0, NW_GU_NOOP, NULL,
	    "unused (as in gunicorn)" },
	{ "secure_scheme_headers", NULL, 0, NW_GU_KEY,
	    "secure_scheme_headers", NULL },
	{ "forwarded_allow_ips", "--forwarded-allow-ips", 0, NW_GU_KEY,
	    "forwarded_allow_ips", NULL },
	{ "pythonpath", "--pythonpath", 0, NW_GU_KEY, "pythonpath", NULL },
	{ "paste", "--paste --paster", 0, NW_GU_REFUSED, NULL,
	    "PasteDeploy is not supported: set app to a module that calls "
	    "paste.deploy.loadapp()" },
	{ "raw_paste_global_conf", "--paste-global", 0, NW_GU_REFUSED, NULL,
	    "PasteDeploy is not supported" },
	{ "proxy_protocol", "--proxy-protocol", 1, NW_GU_KEY,
	    "proxy_protocol", NULL },
	{ "proxy_allow_ips", "--proxy-allow-from", 0, NW_GU_KEY,
	    "proxy_allow_ips", NULL },
	{ "protocol", "--protocol", 0, NW_GU_REFUSED, NULL,
	    "narwhal speaks HTTP only (not uwsgi)" },
	{ "uwsgi_allow_ips", "--uwsgi-allow-from", 0, NW_GU_NOOP, NULL,
	    "narwhal speaks HTTP only" },
	{ "strip_header_spaces", "--strip-header-spaces", 1, NW_GU_NOOP, NULL,
	    STRICT },
	{ "tolerate_dangerous_framing", "--tolerate-dangerous-framing", 1,
	    NW_GU_NOOP, NULL, STRICT },
	{ "permit_obsolete_folding", "--permit-obsolete-folding", 1,
	    NW_GU_NOOP, NULL, STRICT },
	{ "permit_unconventional_http_method",
	    "--permit-unconventional-http-method", 1, NW_GU_NOOP, NULL,
	    STRICT },
	{ "permit_unconventional_http_version",
	    "--permit-unconventional-http-version", 1, NW_GU_NOOP, NULL,
	    STRICT },
	{ "casefold_http_method", "--casefold-http-method", 1, NW_GU_NOOP,
	    NULL, STRICT },
	{ "forwarder_headers", "--forwarder-headers", 0, NW_GU_NOOP, NULL,
	    "SCRIPT_NAME and PATH_INFO never come from headers here" },
	{ "header_map", "--header-map", 0, NW_GU_NOOP, NULL,
	    "headers with underscores are dropped, as gunicorn's default" },
	{ "root_path", "--root-path", 0, NW_GU_NOOP, NULL,
	    "set SCRIPT_NAME in [env] instead" },
	/* Logging */
	{ "accesslog", "--access-logfile", 0, NW_GU_KEY, "accesslog", NULL },
	{ "disable_redirect_access_to_syslog",
	    "--disable-redirect-access-to-syslog", 1, NW_GU_NOOP, NULL,
	    NOSYSLOG },
	{ "access_log_format", "--access-logformat", 0, NW_GU_KEY,
	    "access_log_format", NULL },
	{ "errorlog", "--error-logfile --log-file", 0, NW_GU_KEY, "errorlog",
	    NULL },
	{ "loglevel", "--log-level", 0, NW_GU_KEY, "loglevel", NULL },
	{ "capture_output", "--capture-output", 1, NW_GU_NOOP, NULL,
	    "always on: each worker's stderr is logged under its name" },
	{ "logger_class", "--logger-class", 0, NW_GU_NOOP, NULL, NOLOGCFG },
	{ "logconfig", "--log-config", 0, NW_GU_NOOP, NULL, NOLOGCFG },
	{ "logconfig_dict", NULL, 0, NW_GU_NOOP, NULL, NOLOGCFG },
	{ "logconfig_json", "--log-config-json", 0, NW_GU_NOOP, NULL,
	    NOLOGCFG },
	{ "syslog_addr", "--log-syslog-to", 0, NW_GU_NOOP, NULL, NOSYSLOG },
	{ "syslog", "--log-syslog", 1, NW_GU_NOOP, NULL, NOSYSLOG },
	{ "syslog_prefix", "--log-syslog-prefix", 0, NW_GU_NOOP, NULL,
	    NOSYSLOG },
	{ "syslog_facility", "--log-syslog-facility", 0, NW_GU_NOOP, NULL,
	    NOSYSLOG },
	{ "enable_stdio_inheritance", "-R --enable-stdio-inheritance", 1,
	    NW_GU_NOOP, NULL,
	    "workers' stderr always goes to the log, unbuffered" },
	{ "statsd_host", "--statsd-host", 0, NW_GU_KEY, "statsd_host", NULL },
	{ "dogstatsd_tags", "--dogstatsd-tags", 0, NW_GU_KEY, "dogstatsd_tags",
	    NULL },
	{ "statsd_prefix", "--statsd-prefix", 0, NW_GU_KEY, "statsd_prefix",
	    NULL },
	{ "enable_backlog_metric", "--enable-backlog-metric", 1, NW_GU_NOOP,
	    NULL, NOSTATSD },
	/* Process Naming */
	{ "proc_name", "-n --name", 0, NW_GU_NOOP, NULL,
	    "processes show as narwhal and python -m narwhal_worker" },
	{ "default_proc_name", NULL, 0, NW_GU_NOOP, NULL,
	    "processes show as narwhal and python -m narwhal_worker" },
	/* SSL */
	{ "keyfile", "--keyfile", 0, NW_GU_KEY, "keyfile", NULL },
	{ "certfile", "--certfile", 0, NW_GU_KEY, "certfile", NULL },
	{ "ssl_version", "--ssl-version", 0, NW_GU_NOOP, NULL,
	    "narwhal negotiates TLS 1.2 or 1.3 with every client, never an "
	    "older version" },
	{ "cert_reqs", "--cert-reqs", 0, NW_GU_KEY, "cert_reqs", NULL },
	{ "ca_certs", "--ca-certs", 0, NW_GU_KEY, "ca_certs", NULL },
	{ "suppress_ragged_eofs", "--suppress-ragged-eofs", 1, NW_GU_NOOP,
	    NULL, "always on: an EOF without close_notify ends the connection "
	    "as a TCP EOF does (a body cut short is never taken for whole)" },
	{ "do_handshake_on_connect", "--do-handshake-on-connect", 1,
	    NW_GU_NOOP, NULL, "the handshake always runs first, without "
	    "blocking, in the worker's event loop" },
	{ "ciphers", "--ciphers", 0, NW_GU_KEY, "ciphers", NULL },
	/* HTTP/2 */
	{ "http_protocols", "--http-protocols", 0, NW_GU_NOOP, NULL, NOH2 },
	{ "http2_cleartext", "--http2-cleartext", 0, NW_GU_NOOP, NULL, NOH2 },
	{ "http2_max_concurrent_streams", "--http2-max-concurrent-streams", 0,
	    NW_GU_NOOP, NULL, NOH2 },
	{ "http2_initial_window_size", "--http2-initial-window-size", 0,
	    NW_GU_NOOP, NULL, NOH2 },
	{ "http2_max_frame_size", "--http2-max-frame-size", 0, NW_GU_NOOP,
	    NULL, NOH2 },
	{ "http2_max_header_list_size", "--http2-max-header-list-size", 0,
	    NW_GU_NOOP, NULL, NOH2 },
	/* Control */
	{ "control_socket", "--control-socket", 0, NW_GU_KEY,
	    "control_socket", NULL },
	{ "control_socket_mode", "--control-socket-mode", 0, NW_GU_NOOP, NULL,
	    "narwhal's control socket is always owner-only (0600)" },
	{ "control_socket_disable", "--no-control-socket", 1, NW_GU_NOOP,
	    NULL, "narwhal reload and status need the control socket" },
	/* Dirty Arbiters */
	{ "dirty_apps", "--dirty-app", 0, NW_GU_REFUSED, NULL, NODIRTY },
	{ "dirty_workers", "--dirty-workers", 0, NW_GU_REFUSED, NULL,
	    NODIRTY },
	{ "dirty_timeout", "--dirty-timeout", 0, NW_GU_NOOP, NULL, NODIRTY },
	{ "dirty_threads", "--dirty-threads", 0, NW_GU_NOOP, NULL, NODIRTY },
	{ "dirty_graceful_timeout", "--dirty-graceful-timeout", 0, NW_GU_NOOP,
	    NULL, NODIRTY },
	/* Server Hooks: where each runs */
	{ "on_starting", NULL, 0, NW_GU_HOOK, "master", NULL },
	{ "on_reload", NULL, 0, NW_GU_HOOK, "master", NULL },
	{ "when_ready", NULL, 0, NW_GU_HOOK, "master", NULL },
	{ "pre_fork", NULL, 0, NW_GU_NOOP, NULL,
	    "the master forks in C and runs no Python: use post_fork, "
	    "which runs in the worker" },
	{ "post_fork", NULL, 0, NW_GU_HOOK, "worker", NULL },
	{ "post_worker_init", NULL, 0, NW_GU_HOOK, "worker", NULL },
	{ "worker_int", NULL, 0, NW_GU_HOOK, "worker", NULL },
	{ "worker_abort", NULL, 0, NW_GU_HOOK, "worker", NULL },
	{ "pre_exec", NULL, 0, NW_GU_NOOP, NULL,
	    "never called: narwhal does not re-exec itself (USR2); a reload "
	    "starts new workers instead" },
	{ "pre_request", NULL, 0, NW_GU_HOOK, "worker", NULL },
	{ "post_request", NULL, 0, NW_GU_HOOK, "worker", NULL },
	{ "child_exit", NULL, 0, NW_GU_HOOK, "master", NULL },
	{ "worker_exit", NULL, 0, NW_GU_HOOK, "worker", NULL },
	{ "nworkers_changed", NULL, 0, NW_GU_HOOK, "master", NULL },
	{ "on_exit", NULL, 0, NW_GU_HOOK, "master", NULL },
	{ "ssl_context", NULL, 0, NW_GU_REFUSED, NULL, NOSSLCTX },
	{ "on_dirty_starting", NULL, 0, NW_GU_NOOP, NULL, NODIRTY },
	{ "dirty_post_fork", NULL, 0, NW_GU_NOOP, NULL, NODIRTY },
	{ "dirty_worker_init", NULL, 0, NW_GU_NOOP, NULL, NODIRTY },
	{ "dirty_worker_exit", NULL, 0, NW_GU_NOOP, NULL, NODIRTY },
};

#define NTABLE (sizeof(table) / sizeof(table[0]))

const struct nw_gunicorn *
nw_gunicorn_setting(const char *name)
{
	for (size_t i = 0; i < NTABLE; i++)
		if (strcmp(table[i].name, name) == 0)
			return &table[i];
	return NULL;
}

/* flag: "--daemon" or "-D"; "--no_sendfile" matches "--no-sendfile". */
const struct nw_gunicorn *
nw_gunicorn_flag(const char *flag)
{
	char norm[NW_FLAG_MAX], word[NW_FLAG_MAX];
	const char *p;
	size_t i, n;

	for (i = 0; flag[i] != '\0' && i < sizeof(norm) - 1; i++)
		norm[i] = flag[i] == '_' ? '-' : flag[i];
	norm[i] = '\0';
	for (i = 0; i < NTABLE; i++) {
		for (p = table[i].flags; p != NULL && *p != '\0'; p += n) {
			p += strspn(p, " ");
			n = strcspn(p, " ");
			if (n == 0 || n >= sizeof(word))
				break;
			memcpy(word, p, n);
			word[n] = '\0';
			/* gunicorn's own "--limit-request-field_size" */
			for (size_t j = 0; j < n; j++)
				if (word[j] == '_')
					word[j] = '-';
			if (strcmp(word, norm) == 0)
				return &table[i];
		}
	}
	return NULL;
}

const struct nw_gunicorn *
nw_gunicorn_each(size_t i)
{
	return i < NTABLE ? &table[i] : NULL;
}
