/*
 * config.h: one immutable snapshot of every setting.
 *
 * A config is built by nw_config_load() from the INI file and the command
 * line (flags win over the file), validated whole, and never changed after;
 * a reload builds a new one and swaps it in only if it is valid. Nothing here
 * touches sockets, processes or the event loop.
 */
#ifndef NW_CONFIG_H
#define NW_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* ready_host: a DNS name (253) with a port fits. */
#define NW_READY_HOST_MAX 255
/* ready_path and warmup_path: bytes at most */
#define NW_URLPATH_MAX 127

enum nw_interface {
	NW_INTERFACE_AUTO,
	NW_INTERFACE_WSGI,
	NW_INTERFACE_ASGI,
};

/*
 * How a worker runs requests at once (gunicorn's -k, as parsed). AUTO: no
 * class given, so whatever the interface needs (one request at a time in
 * place for WSGI, or a pool with threads > 1; asyncio for ASGI).
 */
enum nw_worker_kind {
	NW_WORKER_AUTO,
	NW_WORKER_SYNC,     /* WSGI: in place, or a pool when threads > 1 */
	NW_WORKER_GTHREAD,  /* WSGI: a pool of `threads` threads */
	NW_WORKER_GEVENT,   /* WSGI: monkey-patched, a greenlet a request */
	NW_WORKER_EVENTLET, /* WSGI: the same with eventlet */
	NW_WORKER_ASGI,     /* uvicorn's classes: ASGI on asyncio */
};

/* How a worker that boots beside serving ones competes for the CPU. */
enum nw_boot_priority {
	NW_BOOT_IDLE,   /* SCHED_IDLE until live: only spare CPU */
	NW_BOOT_LOW,    /* nice 19 until live */
	NW_BOOT_NORMAL, /* as the master */
};

enum nw_rollback {
	NW_ROLLBACK_SYMLINK, /* revert `chdir` when it is a symlink */
	NW_ROLLBACK_NONE,    /* only keep the old workers */
};

enum nw_snapshot {
	NW_SNAPSHOT_AUTO, /* chdir the top of a git work tree: snapshots */
	NW_SNAPSHOT_GIT,  /* chdir anywhere in a git work tree: snapshots */
	NW_SNAPSHOT_OFF,  /* every tree runs in place */
};

enum nw_loglevel {
	NW_LOG_DEBUG,
	NW_LOG_INFO,
	NW_LOG_WARNING,
	NW_LOG_ERROR,
	NW_LOG_CRITICAL,
};

struct nw_env_var {
	char *name;
	char *value;
};

struct nw_config {
	char *path;                 /* the INI or gunicorn.conf.py file */
	int path_is_python;         /* path is a gunicorn.conf.py */
	char *hooks;                /* server hooks it defines: "a,b", NULL */
	char *app;                  /* "module:callable" or "module:factory()" */
	enum nw_interface interface;
	char *worker_class;         /* gunicorn's -k as written, "sync" */
	enum nw_worker_kind worker_kind; /* ...what it means */
	int threads;                /* WSGI requests at once per worker */
	int worker_connections;     /* open connections per worker; gevent,
	                             * eventlet: also requests at once */
	char *asyncio_loop;         /* auto, asyncio, uvloop */
	char *python;               /* interpreter the workers run */
	char *python_why;           /* how it was picked, for the log */
	char *chdir;                /* code tree as written (may be a symlink) */
	enum nw_snapshot snapshot;
	char **pythonpath;          /* extra sys.path entries, in order */
	size_t npythonpath;
	char **binds;               /* as written: host:port, [v6]:port, unix:path */
	size_t nbinds;
	int backlog;

	int workers;
	double timeout;             /* s without heartbeat before SIGABRT */
	double graceful_timeout;    /* s a TERMed worker may drain */
	double keepalive;           /* s an idle keep-alive connection lives */
	double header_timeout;      /* s to receive a request's head */
	double write_timeout;       /* s a client may not read; <= timeout/2 */
	long long min_body_rate;    /* bytes/s a body must keep, 0: none */
	double boot_timeout;        /* s from spawn to live */

	long max_requests;          /* 0: never recycle for requests */
	long max_requests_jitter;
	double max_worker_lifetime; /* s, 0: off; jittered by 10% */
	long long max_worker_memory;/* bytes RSS, 0: off */
	int max_recycling;          /* replacements booting at once */
	enum nw_boot_priority boot_priority;

	char *ready_path;           /* NULL: `booted` is the only gate */
	double ready_interval;
	int ready_successes;
	double ready_timeout;       /* s for one probe request */
	int ready_failures;         /* failing answers in a row: fail; 0: off */
	double ready_grace;         /* s after `booted` failures don't count */
	char *warmup_path;          /* no ready_path: one GET; NULL: off */
	char *ready_host;           /* the Host header of both; "localhost" */

	int reload_batch;           /* 0: the whole generation at once */
	int reload;                 /* --reload: watch the tree (dev mode) */
	char **reload_extra_files;  /* more files to watch, NULL-terminated */
	size_t nreload_extra_files;
	double min_uptime;          /* s a new worker must live to count */
	int boot_retries;           /* extra boot attempts per reload slot */
	enum nw_rollback rollback;
	char **on_rollback;         /* argv, NULL-terminated; NULL: none */
	int watch;                  /* canary after a reload, judged on 5xx */
	double watch_window;        /* s the canary serves before the rest */
	long watch_min_requests;    /* canary answers needed to judge */
	double watch_error_margin;  /* 5xx ratio points above the old one */

	long limit_request_line;
	long limit_request_fields;
	long limit_request_field_size;
	long long limit_request_body; /* bytes, 0: unlimited */
	long long ws_max_size;      /* bytes of a WebSocket message, 0: any */
	int ws_max_queue;           /* messages waiting for the app */
	double ws_ping_interval;    /* s between keep-alive pings, 0: none */
	double ws_ping_timeout;     /* s a pong may take, 0: forever */
	int ws_per_message_deflate; /* offer-able compression, as uvicorn */

	char *forwarded_allow_ips;  /* peers whose scheme headers count */
	char *secure_scheme_headers;/* "X-FORWARDED-PROTO=https, ..." */
	int proxy_protocol;         /* 0 off, 1 v1, 2 v2, 3 either */
	char *proxy_allow_ips;      /* peers that may send a PROXY header */

	char *certfile;             /* TLS on the public sockets; NULL: off */
	char *keyfile;              /* NULL: the key is in certfile */
	char *ca_certs;             /* CAs of client certificates; NULL: none */
	int cert_reqs;              /* client certificates: 0 none, 1 optional,
				     * 2 required (gunicorn's ssl.CERT_*) */
	char *ciphers;              /* OpenSSL's list; NULL: its default */

	char *pidfile;
	char *user;
	char *group;
	int umask;                  /* -1: inherit */
	char *runtime_dir;          /* NULL: derived, see nw_config_runtime_dir */
	char *state_dir;
	char *control_socket;       /* NULL: <runtime_dir>/control.sock */

	char *metrics_bind;         /* host:port or unix:path; NULL: off */
	double metrics_interval;    /* s between workers' counter reports */
	char *statsd_host;          /* host:port; NULL: off */
	char *statsd_prefix;        /* NULL: none */
	char *dogstatsd_tags;       /* "k:v,k2:v2"; NULL: none */

	char *accesslog;            /* NULL: off, "-": stdout */
	char *access_log_format;    /* gunicorn's atoms; NULL: built in */
	char *errorlog;             /* "-": stderr */
	enum nw_loglevel loglevel;

	struct nw_env_var *env;     /* [env] and -e, in order */
	size_t nenv;

	char **notes;               /* warnings to log when it is taken */
	size_t nnotes;
};

/*
 * Builds a config from argv: `-c FILE` (if any) first, then every flag on top.
 * argv[0] is skipped; positional argument: the app. On error returns NULL
 * and writes one line naming the file, line and key (or the flag) into err.
 */
struct nw_config *nw_config_load(int argc, char **argv, char *err,
    size_t errlen);

/* The same, for `narwhal reload` and `status`: no app is required. */
struct nw_config *nw_config_load_lenient(int argc, char **argv, char *err,
    size_t errlen);

void nw_config_free(struct nw_config *config);

/*
 * `narwhal --print-config`: loads as nw_config_load() does and writes the
 * effective settings as an INI file, each with where it came from. 0 or 1.
 */
int nw_config_print(int argc, char **argv, FILE *out, char *err,
    size_t errlen);

/* The runtime and state directories this config resolves to (malloc'd). */
char *nw_config_runtime_dir(const struct nw_config *config);
char *nw_config_state_dir(const struct nw_config *config);
char *nw_config_control_path(const struct nw_config *config);

/*
 * install.c: the worker shim's directory, and for a narwhal installed from a
 * wheel into a Python environment, that environment's interpreter (or NULL).
 */
char *nw_shim_dir(void);
char *nw_installed_python(void);
int nw_shim_in_site_packages(const char *shim_dir);
/* config_python.c: this process's environment, the shim on PYTHONPATH. */
char **nw_helper_env(const char *shim_dir, const char *python);

/* Writes the usage text for `narwhal --help`. */
void nw_config_usage(FILE *out);

#endif
