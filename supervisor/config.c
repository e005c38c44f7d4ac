/*
 * config.c: builds one config from the defaults, the INI file and the
 * command line, in that order, and says where the runtime and state
 * directories of that config are.
 *
 * Every key is described once, in keys[]; the file and the flags both go
 * through key_apply(), so they accept the same values and fail with the same
 * words. A load either returns a whole valid config or NULL and one line of
 * error; it never touches sockets, processes or another config.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#include "config_internal.h"

enum kind {
	K_APP,
	K_INTERFACE,
	K_LOOP,
	K_PYTHON,
	K_DIR,       /* chdir: must exist when loaded */
	K_PATHLIST,  /* comma-separated */
	K_BIND,      /* repeatable */
	K_INT,
	K_LONG,
	K_SECONDS,
	K_SIZE,
	K_MODE,
	K_ROLLBACK,
	K_BOOTPRIO,
	K_SNAPSHOT,
	K_ARGV,
	K_LOGLEVEL,
	K_URLPATH,
	K_PATH,      /* optional: empty means unset */
	K_SOCKPATH,
	K_LOG,       /* a path, or "-" for the standard stream */
	K_NAME,      /* user, group: resolved by the master */
	K_ADDR,      /* one host:port or unix:path; empty: unset */
	K_FRACTION,  /* 0 to 1 */
	K_BOOL,
	K_WORKER_CLASS, /* gunicorn's -k: also picks the interface */
	K_STRING,    /* any text; empty means unset */
	K_FILELIST,  /* comma-separated paths, repeatable */
	K_IPLIST,    /* "127.0.0.1,::1,10.0.0.0/8", or "*" */
	K_PROXYPROTO,
	K_ALOGFMT,   /* gunicorn's %(atom)s, or "json" */
	K_CERTREQS,  /* 0, 1, 2: none, optional, required */
	K_HOST,      /* a Host header: HOST or HOST:PORT */
};

struct key {
	const char *name;
	enum kind kind;
	size_t off;
	long min;  /* K_INT, K_LONG; K_SECONDS: 1 means > 0 */
	long max;
};

#define F(field) offsetof(struct nw_config, field)

static const struct key keys[] = {
	{ "app", K_APP, F(app), 0, 0 },
	{ "interface", K_INTERFACE, F(interface), 0, 0 },
	{ "worker_class", K_WORKER_CLASS, F(worker_class), 0, 0 },
	{ "threads", K_INT, F(threads), 1, 10000 },
	{ "worker_connections", K_INT, F(worker_connections), 1, INT_MAX },
	{ "asyncio_loop", K_LOOP, F(asyncio_loop), 0, 0 },
	{ "python", K_PYTHON, F(python), 0, 0 },
	{ "chdir", K_DIR, F(chdir), 0, 0 },
	{ "snapshot", K_SNAPSHOT, F(snapshot), 0, 0 },
	{ "pythonpath", K_PATHLIST, F(pythonpath), 0, 0 },
	{ "bind", K_BIND, F(binds), 0, 0 },
	{ "backlog", K_INT, F(backlog), 1, INT_MAX },
	{ "workers", K_INT, F(workers), 1, 1024 },
	{ "timeout", K_SECONDS, F(timeout), 0, 0 }, /* 0: no watchdog */
	{ "graceful_timeout", K_SECONDS, F(graceful_timeout), 0, 0 },
	{ "keepalive", K_SECONDS, F(keepalive), 0, 0 },
	{ "header_timeout", K_SECONDS, F(header_timeout), 1, 0 },
	{ "min_body_rate", K_SIZE, F(min_body_rate), 0, 0 },
	{ "write_timeout", K_SECONDS, F(write_timeout), 1, 0 },
	{ "boot_timeout", K_SECONDS, F(boot_timeout), 1, 0 },
	{ "max_requests", K_LONG, F(max_requests), 0, LONG_MAX },
	{ "max_requests_jitter", K_LONG, F(max_requests_jitter), 0, LONG_MAX },
	{ "max_worker_lifetime", K_SECONDS, F(max_worker_lifetime), 0, 0 },
	{ "max_worker_memory", K_SIZE, F(max_worker_memory), 0, 0 },
	{ "max_recycling", K_INT, F(max_recycling), 1, 1024 },
	{ "boot_priority", K_BOOTPRIO, F(boot_priority), 0, 0 },
	{ "ready_path", K_URLPATH, F(ready_path), 0, 0 },
	{ "ready_interval", K_SECONDS, F(ready_interval), 1, 0 },
	{ "ready_successes", K_INT, F(ready_successes), 1, INT_MAX },
	{ "ready_timeout", K_SECONDS, F(ready_timeout), 1, 0 },
	{ "ready_failures", K_INT, F(ready_failures), 0, INT_MAX },
	{ "ready_grace", K_SECONDS, F(ready_grace), 0, 0 },
	{ "warmup_path", K_URLPATH, F(warmup_path), 0, 0 },
	{ "ready_host", K_HOST, F(ready_host), 0, 0 },
	{ "reload_batch", K_INT, F(reload_batch), 0, INT_MAX },
	{ "reload", K_BOOL, F(reload), 0, 0 },
	{ "reload_extra_files", K_FILELIST, F(reload_extra_files), 0, 0 },
	{ "min_uptime", K_SECONDS, F(min_uptime), 0, 0 },
	{ "boot_retries", K_INT, F(boot_retries), 0, INT_MAX },
	{ "rollback", K_ROLLBACK, F(rollback), 0, 0 },
	{ "on_rollback", K_ARGV, F(on_rollback), 0, 0 },
	{ "watch", K_BOOL, F(watch), 0, 0 },
	{ "watch_window", K_SECONDS, F(watch_window), 1, 0 },
	{ "watch_min_requests", K_LONG, F(watch_min_requests), 1, LONG_MAX },
	{ "watch_error_margin", K_FRACTION, F(watch_error_margin), 0, 0 },
	{ "limit_request_line", K_LONG, F(limit_request_line), 0, LONG_MAX },
	{ "limit_request_fields", K_LONG, F(limit_request_fields), 0,
	    LONG_MAX },
	{ "limit_request_field_size", K_LONG, F(limit_request_field_size), 0,
	    LONG_MAX },
	{ "limit_request_body", K_SIZE, F(limit_request_body), 0, 0 },
	{ "ws_max_size", K_SIZE, F(ws_max_size), 0, 0 },
	{ "ws_max_queue", K_INT, F(ws_max_queue), 1, 1000000 },
	{ "ws_ping_interval", K_SECONDS, F(ws_ping_interval), 0, 0 },
	{ "ws_ping_timeout", K_SECONDS, F(ws_ping_timeout), 0, 0 },
	{ "ws_per_message_deflate", K_BOOL, F(ws_per_message_deflate), 0, 0 },
	{ "forwarded_allow_ips", K_IPLIST, F(forwarded_allow_ips), 0, 0 },
	{ "secure_scheme_headers", K_STRING, F(secure_scheme_headers), 0, 0 },
	{ "proxy_protocol", K_PROXYPROTO, F(proxy_protocol), 0, 0 },
	{ "proxy_allow_ips", K_IPLIST, F(proxy_allow_ips), 0, 0 },
	{ "certfile", K_PATH, F(certfile), 0, 0 },
	{ "keyfile", K_PATH, F(keyfile), 0, 0 },
	{ "ca_certs", K_PATH, F(ca_certs), 0, 0 },
	{ "cert_reqs", K_CERTREQS, F(cert_reqs), 0, 0 },
	{ "ciphers", K_STRING, F(ciphers), 0, 0 },
	{ "pidfile", K_PATH, F(pidfile), 0, 0 },
	{ "user", K_NAME, F(user), 0, 0 },
	{ "group", K_NAME, F(group), 0, 0 },
	{ "umask", K_MODE, F(umask), 0, 0 },
	{ "runtime_dir", K_PATH, F(runtime_dir), 0, 0 },
	{ "state_dir", K_PATH, F(state_dir), 0, 0 },
	{ "control_socket", K_SOCKPATH, F(control_socket), 0, 0 },
	{ "metrics_bind", K_ADDR, F(metrics_bind), 0, 0 },
	{ "metrics_interval", K_SECONDS, F(metrics_interval), 1, 0 },
	{ "statsd_host", K_ADDR, F(statsd_host), 0, 0 },
	{ "statsd_prefix", K_NAME, F(statsd_prefix), 0, 0 },
	{ "dogstatsd_tags", K_NAME, F(dogstatsd_tags), 0, 0 },
	{ "accesslog", K_LOG, F(accesslog), 0, 0 },
	{ "access_log_format", K_ALOGFMT, F(access_log_format), 0, 0 },
	{ "errorlog", K_LOG, F(errorlog), 1, 0 },
	{ "loglevel", K_LOGLEVEL, F(loglevel), 0, 0 },
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Where a value came from, for the error that names it. */
struct origin {
	int line;         /* in the file; 0: not from the file */
	const char *flag; /* as written on the command line; NULL: not */
	const char *source; /* "GUNICORN_CMD_ARGS", "$PORT"; NULL: argv */
};

/* One load in progress; gone when nw_config_load() returns. */
struct load {
	struct nw_config *config;
	const char *file;            /* as the user named it: messages */
	char *file_dir;              /* base of relative paths in the file */
	char *cwd;                   /* base of relative paths in flags */
	struct origin origin[NKEYS]; /* of each key's current value */
	int *env_lines;              /* per config->env entry; 0: a flag */
	int bind_layer;              /* 0 default, 1 file, 2 env, 3 flags */

	FILE *fp;                    /* the file, read by file_read_line() */
	char *line;
	size_t linecap;
	int lineno;
	int indented;                /* this line starts with blanks */
	char last_name[64];          /* key of the previous pair: inih's */
	long cont_idx;               /* key whose value may go on, or -1 */
	char *cont_value;            /* ...its value so far (joined) */
	struct origin cont_origin;   /* ...its first line */

	char *err;
	size_t errlen;
	int failed;
	int failed_line;
	int lenient;                 /* only keys that locate the master count */
	FILE *print;                 /* --print-config: write the result */
	char **env_from;             /* per config->env entry: where, for print */
	int app_bare;                /* app had no colon: module:application */
};

/*
 * `narwhal reload` must reach the master even when the file is broken (that
 * is what the master will refuse, with the full error): only the keys that
 * say where the master is may stop it.
 */
static int
locates_master(const char *name)
{
	static const char *const locating[] = { "pidfile", "runtime_dir",
		"control_socket", "bind", "-p", "--pid", "-b", "--bind",
		"--runtime-dir", "--control-socket", "-c", "--config" };

	for (size_t i = 0; i < sizeof(locating) / sizeof(*locating); i++)
		if (strcmp(name, locating[i]) == 0)
			return 1;
	return 0;
}

static void
load_fail(struct load *ld, const struct origin *o, const char *name,
    const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ld->failed)
		return;
	if (ld->lenient && !locates_master(o->flag != NULL ? o->flag : name))
		return;
	ld->failed = 1;
	ld->failed_line = o->line;
	if (o->line > 0)
		n = snprintf(ld->err, ld->errlen, "%s:%d: %s: ", ld->file,
		    o->line, name);
	else if (o->source != NULL)
		n = snprintf(ld->err, ld->errlen, "%s: %s: ", o->source,
		    o->flag != NULL ? o->flag : name);
	else
		n = snprintf(ld->err, ld->errlen, "%s: ",
		    o->flag != NULL ? o->flag : name);
	if (n < 0 || (size_t)n >= ld->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static void
load_fail_plain(struct load *ld, const char *fmt, ...)
{
	va_list ap;

	if (ld->failed)
		return;
	ld->failed = 1;
	va_start(ap, fmt);
	vsnprintf(ld->err, ld->errlen, fmt, ap);
	va_end(ap);
}

static long
key_index(const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(name, keys[i].name) == 0)
			return (long)i;
	return -1;
}

const char *
nw_config_key_name(const char *name)
{
	long i = key_index(name);

	return i < 0 ? NULL : keys[i].name;
}

static void
set_str(void *field, char *s)
{
	char **p = field;

	free(*p);
	*p = s;
}

static void
binds_clear(struct nw_config *c)
{
	nw_strv_free(c->binds);
	c->binds = NULL;
	c->nbinds = 0;
}

static int
binds_add(struct nw_config *c, char *bind)
{
	char **grown = realloc(c->binds, (c->nbinds + 2) * sizeof(*grown));

	if (grown == NULL) {
		free(bind);
		return -1;
	}
	c->binds = grown;
	grown[c->nbinds++] = bind;
	grown[c->nbinds] = NULL;
	return 0;
}

/* An empty value unsets an optional path; anything else is made absolute. */
static int
set_path(void *field, const char *value, const char *base)
{
	char *abs = NULL;

	if (value[0] != '\0' && (abs = nw_path_resolve(base, value)) == NULL)
		return -1;
	set_str(field, abs);
	return 0;
}

/* Which layer a value came from: later layers win (gunicorn's order). */
static int
origin_layer(const struct origin *o)
{
	if (o->line > 0)
		return 1;
	if (o->flag == NULL)
		return 0;
	return o->source != NULL ? 2 : 3;
}

/* A comma-separated list of paths, added to what is there. */
static int
filelist_add(char ***field, size_t *count, const char *value,
    const char *base, char *why, size_t whylen)
{
	char **v = NULL, **grown;
	size_t n = 0, i;

	if (nw_parse_list(value, base, &v, &n, why, whylen) < 0)
		return -1;
	grown = realloc(*field, (*count + n + 1) * sizeof(*grown));
	if (grown == NULL) {
		nw_strv_free(v);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++)
		grown[(*count)++] = v[i];
	grown[*count] = NULL;
	free(v);
	*field = grown;
	return 0;
}

/* What the value means by its kind; 0 or -1 with why filled in. */
static int
kind_apply(struct load *ld, const struct key *k, const char *value,
    const struct origin *o, const char *base, char *why, size_t whylen)
{
	void *field = (char *)ld->config + k->off;
	char *s = NULL, **v = NULL;
	size_t n;
	long l;

	switch (k->kind) {
	case K_APP:
		if (nw_parse_app(value, &s, why, whylen) < 0)
			return -1;
		set_str(field, s);
		ld->app_bare = strchr(value, ':') == NULL;
		return 0;
	case K_INTERFACE:
		return nw_parse_interface(value, field, why, whylen);
	case K_LOOP:
		if (strcmp(value, "auto") != 0 &&
		    strcmp(value, "asyncio") != 0 &&
		    strcmp(value, "uvloop") != 0) {
			snprintf(why, whylen,
			    "'%s' is not one of auto, asyncio, uvloop", value);
			return -1;
		}
		set_str(field, strdup(value));
		break;
	case K_PYTHON:
	case K_DIR:
		if (value[0] == '\0') {
			snprintf(why, whylen, "must not be empty");
			return -1;
		}
		/* A bare "python3" is looked up in PATH when validating. */
		if (k->kind == K_PYTHON && strchr(value, '/') == NULL)
			set_str(field, strdup(value));
		else
			set_str(field, nw_path_resolve(base, value));
		break;
	case K_PATHLIST:
		if (nw_parse_list(value, base, &v, &n, why, whylen) < 0)
			return -1;
		nw_strv_free(ld->config->pythonpath);
		ld->config->pythonpath = v;
		ld->config->npythonpath = n;
		return 0;
	case K_BIND:
		if (nw_parse_bind(value, base, &s, why, whylen) < 0)
			return -1;
		/* gunicorn: binds of a later layer replace the earlier's. */
		if (origin_layer(o) > ld->bind_layer) {
			binds_clear(ld->config);
			ld->bind_layer = origin_layer(o);
		}
		if (binds_add(ld->config, s) < 0)
			goto nomem;
		return 0;
	case K_INT:
		if (nw_parse_long(value, k->min, k->max, &l, why, whylen) < 0)
			return -1;
		*(int *)field = (int)l;
		return 0;
	case K_LONG:
		return nw_parse_long(value, k->min, k->max, field, why, whylen);
	case K_SECONDS:
		return nw_parse_seconds(value, k->min > 0, field, why, whylen);
	case K_SIZE:
		return nw_parse_size(value, field, why, whylen);
	case K_MODE:
		if (value[0] == '\0') {
			*(int *)field = -1;
			return 0;
		}
		return nw_parse_mode(value, field, why, whylen);
	case K_ROLLBACK:
		if (strcmp(value, "symlink") == 0)
			ld->config->rollback = NW_ROLLBACK_SYMLINK;
		else if (strcmp(value, "none") == 0)
			ld->config->rollback = NW_ROLLBACK_NONE;
		else {
			snprintf(why, whylen,
			    "'%s' is not one of symlink, none", value);
			return -1;
		}
		return 0;
	case K_BOOTPRIO:
		if (strcmp(value, "idle") == 0)
			ld->config->boot_priority = NW_BOOT_IDLE;
		else if (strcmp(value, "low") == 0)
			ld->config->boot_priority = NW_BOOT_LOW;
		else if (strcmp(value, "normal") == 0)
			ld->config->boot_priority = NW_BOOT_NORMAL;
		else {
			snprintf(why, whylen,
			    "'%s' is not one of idle, low, normal", value);
			return -1;
		}
		return 0;
	case K_SNAPSHOT:
		if (strcmp(value, "auto") == 0)
			ld->config->snapshot = NW_SNAPSHOT_AUTO;
		else if (strcmp(value, "git") == 0)
			ld->config->snapshot = NW_SNAPSHOT_GIT;
		else if (strcmp(value, "off") == 0)
			ld->config->snapshot = NW_SNAPSHOT_OFF;
		else {
			snprintf(why, whylen, "'%s' is not one of auto, git, "
			    "off", value);
			return -1;
		}
		return 0;
	case K_ARGV:
		if (nw_parse_argv(value, base, &v, why, whylen) < 0)
			return -1;
		nw_strv_free(ld->config->on_rollback);
		ld->config->on_rollback = v;
		return 0;
	case K_LOGLEVEL:
		return nw_parse_loglevel(value, field, why, whylen);
	case K_URLPATH:
		if (value[0] == '\0') {
			set_str(field, NULL);
			return 0;
		}
		if (value[0] != '/' || strpbrk(value, " \t\r\n#") != NULL) {
			snprintf(why, whylen,
			    "'%s' is not a URL path starting with /", value);
			return -1;
		}
		if (strlen(value) > NW_URLPATH_MAX) {
			snprintf(why, whylen, "a health check path is at most %d "
			    "bytes (this one has %zu)", NW_URLPATH_MAX,
			    strlen(value));
			return -1;
		}
		set_str(field, strdup(value));
		break;
	case K_SOCKPATH:
	case K_PATH:
		if (set_path(field, value, base) < 0)
			goto nomem;
		s = *(char **)field;
		if (k->kind == K_SOCKPATH && s != NULL &&
		    strlen(s) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			snprintf(why, whylen,
			    "'%s': a Unix socket path has at most %zu bytes",
			    value,
			    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
			return -1;
		}
		return 0;
	case K_LOG:
		if (value[0] == '\0') {
			if (k->min > 0) {
				snprintf(why, whylen,
				    "needs a path, or - for stderr");
				return -1;
			}
			set_str(field, NULL);
			return 0;
		}
		set_str(field, strcmp(value, "-") == 0 ? strdup(value) :
		    nw_path_resolve(base, value));
		break;
	case K_STRING:
		set_str(field, value[0] == '\0' ? NULL : strdup(value));
		if (value[0] == '\0')
			return 0;
		break;
	case K_NAME:
		/* INI keeps quotes: user = "www-data" names `"www-data"`. */
		if (value[0] == '"' || value[0] == '\'') {
			snprintf(why, whylen, "%s: quotes are part of the value "
			    "in an INI file; write the name without them",
			    value);
			return -1;
		}
		set_str(field, value[0] == '\0' ? NULL : strdup(value));
		if (value[0] == '\0')
			return 0;
		break;
	case K_ADDR:
		if (value[0] == '\0') {
			set_str(field, NULL);
			return 0;
		}
		if (strncmp(value, "fd://", 5) == 0) {
			snprintf(why, whylen, "'%s' is not HOST:PORT or "
			    "unix:PATH", value);
			return -1;
		}
		if (nw_parse_bind(value, base, &s, why, whylen) < 0)
			return -1;
		set_str(field, s);
		return 0;
	case K_FRACTION:
		if (nw_parse_seconds(value, 0, field, why, whylen) < 0 ||
		    *(double *)field > 1) {
			snprintf(why, whylen, "'%s' is not a number from 0 to 1",
			    value);
			return -1;
		}
		return 0;
	case K_BOOL:
		return nw_parse_bool(value, field, why, whylen);
	case K_WORKER_CLASS:
		if (nw_parse_worker_class(value, &ld->config->worker_kind,
		    &ld->config->interface, why, whylen) < 0)
			return -1;
		ld->origin[key_index("interface")] = *o;
		set_str(field, strdup(value));
		break;
	case K_FILELIST:
		return filelist_add(field, &ld->config->nreload_extra_files,
		    value, base, why, whylen);
	case K_ALOGFMT:
		if (nw_parse_alogfmt(value, why, whylen) < 0)
			return -1;
		set_str(field, value[0] == '\0' ? NULL : strdup(value));
		if (value[0] == '\0')
			return 0;
		break;
	case K_IPLIST:
		if (nw_parse_iplist(value, why, whylen) < 0)
			return -1;
		set_str(field, strdup(value));
		break;
	case K_PROXYPROTO:
		return nw_parse_proxy_protocol(value, field, why, whylen);
	case K_CERTREQS:
		return nw_parse_cert_reqs(value, field, why, whylen);
	case K_HOST:
		if (nw_parse_host(value, why, whylen) < 0)
			return -1;
		set_str(field, strdup(value));
		break;
	}
	/* The string kinds that fall through here just stored a copy. */
	if (*(char **)field == NULL)
		goto nomem;
	return 0;
nomem:
	snprintf(why, whylen, "out of memory");
	return -1;
}

/* name is how the value was named: the key in the file, or the flag. */
static void
key_apply(struct load *ld, long idx, const char *name, const char *value,
    const struct origin *o, const char *base)
{
	char why[512];

	if (kind_apply(ld, &keys[idx], value, o, base, why, sizeof(why)) < 0)
		load_fail(ld, o, name, "%s", why);
	else
		ld->origin[idx] = *o;
}

/*
 * [env] and -e. A name twice in the file is a mistake worth an error; a
 * flag replaces the file's value in place, so the order stays the file's.
 */
static void
env_set(struct load *ld, const char *name, size_t namelen, const char *value,
    const struct origin *o, const char *written)
{
	struct nw_config *c = ld->config;
	struct nw_env_var *grown;
	int *lines;
	char *copy;
	size_t i;

	if (!nw_env_name_ok(name, namelen)) {
		load_fail(ld, o, written,
		    "'%.*s' is not a valid environment variable name",
		    (int)namelen, name);
		return;
	}
	if (namelen >= 8 && strncmp(name, "NARWHAL_", 8) == 0) {
		load_fail(ld, o, written,
		    "'%.*s': names starting with NARWHAL_ are narwhal's own",
		    (int)namelen, name);
		return;
	}
	if ((copy = strdup(value)) == NULL)
		goto nomem;
	for (i = 0; i < c->nenv; i++) {
		if (strlen(c->env[i].name) != namelen ||
		    strncmp(c->env[i].name, name, namelen) != 0)
			continue;
		if (o->line > 0 && ld->env_lines[i] > 0) {
			free(copy);
			load_fail(ld, o, written, "already set on line %d",
			    ld->env_lines[i]);
			return;
		}
		free(c->env[i].value);
		c->env[i].value = copy;
		ld->env_lines[i] = o->line;
		return;
	}
	lines = realloc(ld->env_lines, (c->nenv + 1) * sizeof(*lines));
	if (lines == NULL)
		goto nomem_copy;
	ld->env_lines = lines;
	grown = realloc(c->env, (c->nenv + 1) * sizeof(*grown));
	if (grown == NULL)
		goto nomem_copy;
	c->env = grown;
	if ((grown[c->nenv].name = strndup(name, namelen)) == NULL)
		goto nomem_copy;
	grown[c->nenv].value = copy;
	lines[c->nenv++] = o->line;
	return;
nomem_copy:
	free(copy);
nomem:
	load_fail(ld, o, written, "out of memory");
}

/*
 * Values that get long (a log format, an address or path list, a cipher
 * list, a command line) continue on indented lines, joined by one blank:
 * the kinds where a blank is text or separates items. Elsewhere a blank
 * would change the value, so an indented line stays an error.
 */
static int
continues(enum kind kind)
{
	return kind == K_ALOGFMT || kind == K_STRING || kind == K_IPLIST ||
	    kind == K_PATHLIST || kind == K_FILELIST || kind == K_ARGV;
}

/* The value of a key that may continue is applied once it is whole. */
static void
value_flush(struct load *ld)
{
	if (ld->cont_value == NULL)
		return;
	if (!ld->failed)
		key_apply(ld, ld->cont_idx, keys[ld->cont_idx].name,
		    ld->cont_value, &ld->cont_origin, ld->file_dir);
	free(ld->cont_value);
	ld->cont_value = NULL;
	ld->cont_idx = -1;
}

static void
value_continue(struct load *ld, const char *more)
{
	char *joined;
	size_t n;

	/* As on the key's line, whatever inih's version does here: a blank
	 * and a ; start a comment. */
	for (n = 1; more[0] != '\0' && more[n] != '\0'; n++)
		if (more[n] == ';' && isspace((unsigned char)more[n - 1]))
			break;
	while (n > 0 && isspace((unsigned char)more[n - 1]))
		n--;
	if (asprintf(&joined, "%s%s%.*s", ld->cont_value,
	    ld->cont_value[0] != '\0' ? " " : "", (int)n, more) < 0) {
		load_fail(ld, &ld->cont_origin, keys[ld->cont_idx].name,
		    "out of memory");
		return;
	}
	free(ld->cont_value);
	ld->cont_value = joined;
}

/*
 * inih calls the reader for every physical line, and the handler for a
 * line's pair before reading the next, so the reader's count is the line
 * of the pair. It also sees what inih would not report: section headers
 * (the handler is not called for them) and overlong lines (which inih
 * would silently split in two).
 */
static char *
file_read_line(char *str, int num, void *stream)
{
	struct load *ld = stream;
	struct origin o;
	ssize_t len;
	size_t n;
	char *p, *close, section[64];

	if ((len = getline(&ld->line, &ld->linecap, ld->fp)) < 0) {
		value_flush(ld);
		return NULL;
	}
	o.line = ++ld->lineno;
	o.flag = NULL;
	o.source = NULL;
	while (len > 0 && (ld->line[len - 1] == '\n' ||
	    ld->line[len - 1] == '\r'))
		ld->line[--len] = '\0';
	ld->indented = ld->line[0] == ' ' || ld->line[0] == '\t';
	p = ld->line + strspn(ld->line, " \t\f\v");
	/* Only indented lines, blank lines and comments go on a value. */
	if (!ld->indented && *p != '\0' && *p != ';' && *p != '#')
		value_flush(ld);
	if (len + 2 > num) {
		long idx;

		n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
		snprintf(section, sizeof(section), "%.*s",
		    (int)(n < sizeof(section) ? n : 0), p);
		idx = key_index(section);
		load_fail_plain(ld, "%s:%d: line is longer than %d characters%s",
		    ld->file, o.line, num - 2, idx >= 0 &&
		    continues(keys[idx].kind) ? " (continue a long value on "
		    "indented lines)" : "");
		ld->failed_line = o.line;
		strcpy(str, "\n");
		return str;
	}
	/* An indented line after a pair continues it: not a section. */
	if (*p == '[' && (!ld->indented || ld->last_name[0] == '\0')) {
		ld->last_name[0] = '\0';
		close = strchr(p, ']');
		n = close != NULL ? (size_t)(close - p) + 1 : 0;
		if (n > 0 && !(n == 9 && strncmp(p, "[narwhal]", n) == 0) &&
		    !(n == 5 && strncmp(p, "[env]", n) == 0)) {
			snprintf(section, sizeof(section), "%.*s", (int)n, p);
			load_fail(ld, &o, section,
			    "unknown section (expected [narwhal] or [env])");
		}
	}
	memcpy(str, ld->line, (size_t)len);
	strcpy(str + len, "\n");
	return str;
}

static int
file_pair(void *user, const char *section, const char *name,
    const char *value)
{
	struct load *ld = user;
	struct origin o = { ld->lineno, NULL, NULL };
	const char *eqname, *more;
	char dashed[64];
	long idx;
	size_t i, n;

	if (ld->failed)
		return 1;
	if (ld->indented && strcmp(name, ld->last_name) == 0) {
		/*
		 * inih takes an indented line for the previous value's
		 * continuation; name the key the line itself seems to set.
		 */
		const char *own = NULL;

		n = strcspn(value, "=:");
		while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
			n--;
		if (value[strcspn(value, "=:")] != '\0' && n > 0 &&
		    n < sizeof(dashed)) {
			memcpy(dashed, value, n);
			dashed[n] = '\0';
			own = dashed;
		}
		/* A key indented by mistake is not text of the value. */
		if (ld->cont_value != NULL &&
		    (own == NULL || key_index(own) < 0)) {
			value_continue(ld, value);
			return !ld->failed;
		}
		more = ld->cont_value != NULL ? "" :
		    "; a value fits on one line";
		value_flush(ld);
		load_fail(ld, &o, own != NULL ? own : name, "unexpected "
		    "indentation (keys start in the first column%s)", more);
		return !ld->failed;
	}
	value_flush(ld);
	snprintf(ld->last_name, sizeof(ld->last_name), "%s", name);
	if (strcmp(section, "env") == 0) {
		env_set(ld, name, strlen(name), value, &o, name);
		return !ld->failed;
	}
	if (strcmp(section, "narwhal") != 0) {
		load_fail(ld, &o, name, section[0] == '\0' ?
		    "outside any section (put it under [narwhal])" :
		    "in an unknown section");
		return !ld->failed;
	}
	if ((idx = key_index(name)) < 0) {
		for (i = 0; name[i] != '\0' && i < sizeof(dashed) - 1; i++)
			dashed[i] = name[i] == '-' ? '_' : name[i];
		dashed[i] = '\0';
		if (strchr(name, '-') != NULL &&
		    (eqname = nw_config_key_name(dashed)) != NULL)
			load_fail(ld, &o, name,
			    "unknown key (keys use underscores: %s)", eqname);
		else
			load_fail(ld, &o, name, "unknown key");
		return !ld->failed;
	}
	if (ld->origin[idx].line > 0 && keys[idx].kind != K_BIND) {
		load_fail(ld, &o, name, "already set on line %d",
		    ld->origin[idx].line);
		return !ld->failed;
	}
	if (continues(keys[idx].kind)) {
		if ((ld->cont_value = strdup(value)) == NULL) {
			load_fail(ld, &o, name, "out of memory");
			return 0;
		}
		ld->cont_idx = idx;
		ld->cont_origin = o;
		return 1;
	}
	key_apply(ld, idx, name, value, &o, ld->file_dir);
	return !ld->failed;
}

static void
load_file(struct load *ld)
{
	struct stat st;
	int rc;

	if ((ld->fp = fopen(ld->config->path, "r")) == NULL) {
		load_fail_plain(ld, "cannot read %s: %s", ld->file,
		    strerror(errno));
		return;
	}
	if (fstat(fileno(ld->fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		load_fail_plain(ld, "cannot read %s: %s", ld->file,
		    strerror(EISDIR));
		goto out;
	}
	ld->cont_idx = -1;
	rc = ini_parse_stream(file_read_line, ld, file_pair, ld);
	value_flush(ld);
	if (ferror(ld->fp)) {
		ld->failed = 0;
		load_fail_plain(ld, "cannot read %s: %s", ld->file,
		    strerror(errno));
	} else if (rc == -2) {
		ld->failed = 0;
		load_fail_plain(ld, "%s: out of memory", ld->file);
	} else if (rc > 0 && (!ld->failed || ld->failed_line > rc)) {
		/* inih found a line that is no pair, section or comment. */
		ld->failed = 0;
		load_fail_plain(ld, "%s:%d: syntax error: expected "
		    "KEY = VALUE, [SECTION] or a comment", ld->file, rc);
	}
out:
	fclose(ld->fp);
	ld->fp = NULL;
}

/* A warning to log when this config is taken (start-up or reload). */
static void
note(struct load *ld, const char *fmt, ...)
{
	struct nw_config *c = ld->config;
	char buf[640], **grown;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if ((grown = realloc(c->notes, (c->nnotes + 2) * sizeof(*grown))) ==
	    NULL)
		return;
	c->notes = grown;
	if ((grown[c->nnotes] = strdup(buf)) != NULL)
		c->nnotes++;
	grown[c->nnotes] = NULL;
}

static void
describe_origin(const struct load *ld, const struct origin *o, char *buf,
    size_t len)
{
	if (o->line > 0)
		snprintf(buf, len, "%s:%d", ld->file, o->line);
	else if (o->flag != NULL && o->source != NULL)
		snprintf(buf, len, "%s %s", o->source, o->flag);
	else if (o->flag != NULL)
		snprintf(buf, len, "command line %s", o->flag);
	else if (o->source != NULL)
		snprintf(buf, len, "%s", o->source);
	else
		snprintf(buf, len, "default");
}

/* source: NULL for argv, "GUNICORN_CMD_ARGS" for the environment's. */
static void
apply_flags(struct load *ld, const struct nw_cli *cli, const char *source)
{
	const struct nw_cli_opt *opt;
	struct origin o;
	const char *eq;
	size_t i;

	for (i = 0; i < cli->nopts && !ld->failed; i++) {
		opt = &cli->opts[i];
		o.line = 0;
		o.flag = opt->flag;
		o.source = source;
		switch (opt->kind) {
		case NW_CLI_KEY:
			key_apply(ld, key_index(opt->key), opt->flag,
			    opt->value, &o, ld->cwd);
			break;
		case NW_CLI_ENV:
			if ((eq = strchr(opt->value, '=')) == NULL) {
				load_fail(ld, &o, opt->flag,
				    "'%s' is not NAME=VALUE", opt->value);
				break;
			}
			env_set(ld, opt->value, (size_t)(eq - opt->value),
			    eq + 1, &o, opt->flag);
			break;
		case NW_CLI_NOOP:
			if (opt->gu->why != NULL)
				note(ld, "%s%s%s: ignored: %s",
				    source ? source : "", source ? " " : "",
				    opt->flag, opt->gu->why);
			break;
		case NW_CLI_REFUSED:
			load_fail(ld, &o, opt->flag, "not supported: %s",
			    opt->gu->why);
			break;
		}
	}
	if (cli->app != NULL && !ld->failed) {
		o.line = 0;
		o.flag = "app";
		o.source = source;
		key_apply(ld, key_index("app"), "app", cli->app, &o, ld->cwd);
	}
}

/* ---- gunicorn.conf.py ---- */

static int
falsy(const char *v)
{
	return v[0] == '\0' || strcmp(v, "false") == 0 ||
	    strcmp(v, "0") == 0 || strcmp(v, "none") == 0;
}

static void
hook_add(struct load *ld, const char *name)
{
	struct nw_config *c = ld->config;
	char *joined;

	if (asprintf(&joined, "%s%s%s", c->hooks ? c->hooks : "",
	    c->hooks ? "," : "", name) < 0) {
		load_fail_plain(ld, "out of memory");
		return;
	}
	free(c->hooks);
	c->hooks = joined;
}

/* One line of the helper's output: see gunicorn_conf.py. */
static void
python_line(struct load *ld, char *line)
{
	char *f[4] = { NULL, NULL, NULL, NULL }, *p = line;
	const struct nw_gunicorn *gu;
	struct origin o = { 0, NULL, NULL };
	const char *eq;
	int nf = 0;
	long idx;

	while (nf < 4) {
		f[nf++] = p;
		if (nf == 4 || (p = strchr(p, '\t')) == NULL)
			break;
		*p++ = '\0';
	}
	if (nf < 3)
		return;
	o.line = atoi(f[1]);
	if (strcmp(f[0], "E") == 0) {
		load_fail_plain(ld, "%s:%d: %s", ld->file, o.line, f[2]);
		ld->failed_line = o.line;
		return;
	}
	gu = nw_gunicorn_setting(f[2]);
	if (strcmp(f[0], "H") == 0) {
		if (gu == NULL)
			return; /* a function of the file's own */
		if (gu->fate == NW_GU_HOOK)
			hook_add(ld, f[2]);
		else if (gu->fate == NW_GU_REFUSED)
			load_fail(ld, &o, f[2], "not supported: %s", gu->why);
		else if (gu->fate == NW_GU_NOOP)
			note(ld, "%s:%d: %s: ignored: %s", ld->file, o.line,
			    f[2], gu->why);
		return;
	}
	if (strcmp(f[0], "S") != 0 || nf < 4)
		return;
	if (gu == NULL) {
		/* narwhal's own keys work in the file too (ready_path...) */
		if ((idx = key_index(f[2])) >= 0)
			key_apply(ld, idx, f[2], f[3], &o, ld->cwd);
		return; /* anything else is the file's own variable */
	}
	switch (gu->fate) {
	case NW_GU_KEY:
		key_apply(ld, key_index(gu->key), f[2], f[3], &o, ld->cwd);
		break;
	case NW_GU_SPECIAL:
		if (strcmp(gu->name, "raw_env") != 0)
			break;
		if ((eq = strchr(f[3], '=')) == NULL)
			load_fail(ld, &o, f[2], "'%s' is not NAME=VALUE", f[3]);
		else
			env_set(ld, f[3], (size_t)(eq - f[3]), eq + 1, &o,
			    f[2]);
		break;
	case NW_GU_NOOP:
		if (!falsy(f[3]))
			note(ld, "%s:%d: %s: ignored: %s", ld->file, o.line,
			    f[2], gu->why);
		break;
	case NW_GU_REFUSED:
		if (!falsy(f[3]))
			load_fail(ld, &o, f[2], "not supported: %s", gu->why);
		break;
	case NW_GU_HOOK:
		break;
	}
}

static void
load_python(struct load *ld, const char *python)
{
	char why[512], *out = NULL, *line, *next;

	if (nw_conf_py_run(python, ld->config->path, &out, why,
	    sizeof(why)) < 0) {
		load_fail_plain(ld, "%s: %s", ld->file, why);
		return;
	}
	for (line = out; line != NULL && *line != '\0' && !ld->failed;
	     line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		python_line(ld, line);
	}
	free(out);
}

/*
 * gunicorn reads -c FILE as Python whatever its name; narwhal's INI files
 * are told apart by their extension or their [sections].
 */
static int
is_python_config(const char *path)
{
	size_t n = strlen(path);
	char buf[256];
	struct stat st;
	FILE *f;
	int python = 1;

	if (strncmp(path, "python:", 7) == 0 || (n > 3 &&
	    strcmp(path + n - 3, ".py") == 0))
		return 1;
	if (n > 4 && strcmp(path + n - 4, ".ini") == 0)
		return 0;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (f = fopen(path, "r")) == NULL)
		return 0; /* the INI reader says why it cannot be read */
	while (fgets(buf, sizeof(buf), f) != NULL)
		if (buf[strspn(buf, " \t")] == '[')
			python = 0;
	fclose(f);
	return python;
}

/* ---- the interpreter ---- */

static void
set_python(struct load *ld, char *python, const char *fmt, ...)
{
	va_list ap;
	char *why;

	set_str(&ld->config->python, python);
	va_start(ap, fmt);
	if (vasprintf(&why, fmt, ap) < 0)
		why = NULL;
	va_end(ap);
	set_str(&ld->config->python_why, why);
}

/*
 * As gunicorn finds its interpreter: the environment narwhal was installed
 * into, else the active virtualenv's, else python3 on PATH.
 */
static void
default_python(struct load *ld)
{
	const char *venv = getenv("VIRTUAL_ENV");
	char *p;

	if ((p = nw_installed_python()) != NULL) {
		set_python(ld, p, "the environment narwhal is installed in");
		return;
	}
	if (venv != NULL && venv[0] == '/' &&
	    asprintf(&p, "%s/bin/python3", venv) >= 0) {
		if (access(p, X_OK) == 0) {
			set_python(ld, p, "$VIRTUAL_ENV");
			return;
		}
		free(p);
	}
	if ((p = nw_search_path("python3")) != NULL) {
		set_python(ld, p, "python3 on PATH");
		return;
	}
	load_fail_plain(ld, "no python3 in PATH: set python = (or --python) "
	    "to the interpreter the workers run");
}

/* --python from the flags, which a gunicorn.conf.py is read with. */
static char *
python_from_flags(const struct nw_cli *cli, const char *cwd)
{
	const char *v = NULL;

	for (size_t i = 0; i < cli->nopts; i++)
		if (cli->opts[i].kind == NW_CLI_KEY &&
		    strcmp(cli->opts[i].key, "python") == 0)
			v = cli->opts[i].value;
	if (v == NULL || v[0] == '\0')
		return NULL;
	return strchr(v, '/') == NULL ? nw_search_path(v) :
	    nw_path_resolve(cwd, v);
}

/* ---- gunicorn's environment ---- */

/* $PORT and $WEB_CONCURRENCY change gunicorn's defaults, not its flags. */
static void
apply_environment(struct load *ld)
{
	const char *port = getenv("PORT"), *n = getenv("WEB_CONCURRENCY");
	const char *fwd = getenv("FORWARDED_ALLOW_IPS");
	struct origin o = { 0, NULL, NULL };
	char bind[64];

	if (port != NULL && port[0] != '\0') {
		o.source = "$PORT";
		snprintf(bind, sizeof(bind), "0.0.0.0:%.16s", port);
		key_apply(ld, key_index("bind"), "bind", bind, &o, ld->cwd);
	}
	if (fwd != NULL && fwd[0] != '\0' && !ld->failed) {
		o.source = "$FORWARDED_ALLOW_IPS";
		key_apply(ld, key_index("forwarded_allow_ips"),
		    "forwarded_allow_ips", fwd, &o, ld->cwd);
	}
	if (n != NULL && n[0] != '\0' && !ld->failed) {
		o.source = "$WEB_CONCURRENCY";
		key_apply(ld, key_index("workers"), "workers", n, &o, ld->cwd);
	}
}

static const struct origin *
origin_of(const struct load *ld, const char *name)
{
	return &ld->origin[key_index(name)];
}

static void
check_python(struct load *ld)
{
	struct nw_config *c = ld->config;
	const struct origin *o = origin_of(ld, "python");
	struct stat st;
	char *found;
	int error = 0;

	/* Resolved now, so that the master can execve() without a PATH. */
	if (strchr(c->python, '/') == NULL) {
		if ((found = nw_search_path(c->python)) == NULL) {
			load_fail(ld, o, "python", "%s: not found in PATH",
			    c->python);
			return;
		}
		set_str(&c->python, found);
		return;
	}
	if (stat(c->python, &st) < 0)
		error = errno;
	else if (S_ISDIR(st.st_mode))
		error = EISDIR;
	else if (access(c->python, X_OK) < 0)
		error = errno;
	if (error != 0)
		load_fail(ld, o, "python", "%s: %s", c->python,
		    strerror(error));
}

static void
check_chdir(struct load *ld)
{
	struct nw_config *c = ld->config;
	const struct origin *o = origin_of(ld, "chdir");
	struct stat st;
	int error = 0;

	if (stat(c->chdir, &st) < 0)
		error = errno;
	else if (!S_ISDIR(st.st_mode))
		error = ENOTDIR;
	if (error != 0)
		load_fail(ld, o, "chdir", "%s: %s", c->chdir, strerror(error));
}

/* user and group name accounts that exist now (a reload checks again). */
static void
check_accounts(struct load *ld)
{
	struct nw_config *c = ld->config;
	char *end;

	if (c->user != NULL) {
		unsigned long id = strtoul(c->user, &end, 10);

		if ((*end == '\0' ? getpwuid((uid_t)id)
				   : getpwnam(c->user)) == NULL)
			load_fail(ld, origin_of(ld, "user"), "user",
			    "%s: no such user", c->user);
	}
	if (c->group != NULL) {
		unsigned long id = strtoul(c->group, &end, 10);

		if ((*end == '\0' ? getgrgid((gid_t)id)
				   : getgrnam(c->group)) == NULL)
			load_fail(ld, origin_of(ld, "group"), "group",
			    "%s: no such group", c->group);
	}
}

/* A Unix socket's directory must exist: narwhal creates no directories. */
static void
check_binds(struct load *ld)
{
	struct nw_config *c = ld->config;
	struct stat st;

	for (size_t i = 0; i < c->nbinds; i++) {
		char *dir;
		int error = 0;

		if (strncmp(c->binds[i], "unix:", 5) != 0)
			continue;
		if ((dir = nw_path_dirname(c->binds[i] + 5)) == NULL)
			continue;
		if (stat(dir, &st) < 0)
			error = errno;
		else if (!S_ISDIR(st.st_mode))
			error = ENOTDIR;
		if (error != 0)
			load_fail(ld, origin_of(ld, "bind"), "bind",
			    "%s: directory %s: %s", c->binds[i], dir,
			    strerror(error));
		free(dir);
	}
}

/*
 * TLS: the files load (tls.c), and what needs a certificate has one. A
 * reload with a broken file is refused here, so the old workers serve on.
 */
static void
check_tls(struct load *ld)
{
	struct nw_config *c = ld->config;
	const char *key, *without = c->keyfile != NULL ? "keyfile"
	    : c->ca_certs != NULL ? "ca_certs" : c->ciphers != NULL ? "ciphers"
	    : c->cert_reqs != 0 ? "cert_reqs" : NULL;
	char why[1024];

	if (c->certfile == NULL) {
		if (without != NULL)
			load_fail(ld, origin_of(ld, without), without,
			    "TLS needs certfile too (the server's certificate)");
		return;
	}
	if (c->cert_reqs > 0 && c->ca_certs == NULL) {
		load_fail(ld, origin_of(ld, "cert_reqs"), "cert_reqs",
		    "%d asks clients for certificates: set ca_certs to the "
		    "CAs that sign them", c->cert_reqs);
		return;
	}
	if (nw_tls_check(c, &key, why, sizeof why) < 0)
		load_fail(ld, origin_of(ld, key), key, "%s", why);
}

/* base/a/b/c as a module: c.py, c/ (a package), or a compiled one. */
static int
module_exists(const char *base, const char *dotted, size_t len)
{
	char path[PATH_MAX];
	struct stat st;
	size_t n;

	n = (size_t)snprintf(path, sizeof(path), "%s/%.*s", base, (int)len,
	    dotted);
	if (n >= sizeof(path) - 4)
		return 1; /* cannot tell: do not complain */
	for (char *p = path + strlen(base) + 1; *p != '\0'; p++)
		if (*p == '.')
			*p = '/';
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 1;
	strcat(path, ".py");
	return stat(path, &st) == 0;
}

/*
 * `app = mysite.wsgi.application` is gunicorn's bare-module form, so it
 * means module `mysite.wsgi.application`. When the tree has no such module
 * but has mysite/wsgi.py, the dot was meant as a colon: say so now rather
 * than at the first worker's import.
 */
static void
check_app_shape(struct load *ld)
{
	struct nw_config *c = ld->config;
	const char *colon = strchr(c->app, ':'), *dot;
	size_t len = (size_t)(colon - c->app);

	if (!ld->app_bare || colon == NULL)
		return;
	dot = memrchr(c->app, '.', len);
	if (dot == NULL)
		return;
	for (size_t i = 0; i <= c->npythonpath; i++) {
		const char *base = i == 0 ? c->chdir : c->pythonpath[i - 1];

		if (module_exists(base, c->app, len))
			return;
	}
	for (size_t i = 0; i <= c->npythonpath; i++) {
		const char *base = i == 0 ? c->chdir : c->pythonpath[i - 1];

		if (module_exists(base, c->app, (size_t)(dot - c->app))) {
			load_fail(ld, origin_of(ld, "app"), "app",
			    "'%.*s' is not MODULE:CALLABLE: there is no module "
			    "%.*s in %s, but there is %.*s (did you mean "
			    "%.*s:%.*s?)", (int)len, c->app, (int)len, c->app,
			    base, (int)(dot - c->app), c->app,
			    (int)(dot - c->app), c->app,
			    (int)(colon - dot - 1), dot + 1);
			return;
		}
	}
}

/*
 * worker_class also sets the interface, so they only disagree when both
 * were given: gthread, gevent and eventlet serve WSGI apps, as in gunicorn.
 */
static void
check_worker_kind(struct load *ld)
{
	struct nw_config *c = ld->config;
	const struct origin *o = origin_of(ld, "worker_class");

	if (c->interface == NW_INTERFACE_ASGI &&
	    (c->worker_kind == NW_WORKER_GTHREAD ||
	    c->worker_kind == NW_WORKER_GEVENT ||
	    c->worker_kind == NW_WORKER_EVENTLET))
		load_fail(ld, o, o->flag != NULL ? o->flag : "worker_class",
		    "a %s worker serves WSGI apps, but interface = asgi",
		    c->worker_kind == NW_WORKER_GTHREAD ? "gthread" :
		    c->worker_kind == NW_WORKER_GEVENT ? "gevent" : "eventlet");
}

/*
 * What no single key can check: the whole, after the flags. A lenient load
 * (`narwhal reload`, `status`) only needs the paths that find the master, so
 * it does not insist on an app or look at the code tree and interpreter,
 * which the operator's shell may not even be allowed to see.
 */
static void
finish(struct load *ld, int lenient)
{
	struct nw_config *c = ld->config;
	char *bind;

	if (c->app == NULL && !lenient) {
		load_fail_plain(ld, "no app given: set app = module:callable "
		    "or pass it as an argument");
		return;
	}
	if (c->nbinds == 0) {
		if ((bind = strdup(NW_DEFAULT_BIND)) == NULL ||
		    binds_add(c, bind) < 0) {
			load_fail_plain(ld, "out of memory");
			return;
		}
	}
	if (c->chdir == NULL && (c->chdir = strdup(ld->cwd)) == NULL) {
		load_fail_plain(ld, "out of memory");
		return;
	}
	if (lenient)
		return;
	check_worker_kind(ld);
	check_chdir(ld);
	if (c->python == NULL) {
		default_python(ld);
	} else if (c->python_why == NULL) {
		char where[300];

		describe_origin(ld, origin_of(ld, "python"), where,
		    sizeof(where));
		set_str(&c->python_why, strdup(where));
		check_python(ld);
	}
	check_accounts(ld);
	check_binds(ld);
	check_tls(ld);
	if (!ld->failed)
		check_app_shape(ld);
	if (c->timeout == 0)
		note(ld, "timeout 0: no heartbeat timeout, a hung worker is "
		    "never killed");
}

static struct nw_config *
config_defaults(void)
{
	struct nw_config *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->interface = NW_INTERFACE_AUTO;
	c->asyncio_loop = strdup("auto");
	c->worker_class = strdup("sync");
	c->forwarded_allow_ips = strdup(NW_DEFAULT_TRUSTED);
	c->proxy_allow_ips = strdup(NW_DEFAULT_TRUSTED);
	c->secure_scheme_headers = strdup(NW_DEFAULT_SECURE_HEADERS);
	c->threads = 1;
	c->worker_connections = 1000;
	c->backlog = 2048;
	c->workers = 1;
	c->timeout = 30;
	c->graceful_timeout = 30;
	c->keepalive = 2;
	c->header_timeout = 10;
	c->write_timeout = 10;
	c->min_body_rate = 1024;
	c->boot_timeout = 60;
	c->max_recycling = 1;
	c->boot_priority = NW_BOOT_IDLE;
	c->ready_interval = 0.5;
	c->ready_successes = 1;
	c->ready_timeout = 2;
	c->ready_failures = 5;
	c->warmup_path = strdup("/");
	c->ready_host = strdup("localhost");
	c->min_uptime = 2;
	c->boot_retries = 1;
	c->rollback = NW_ROLLBACK_SYMLINK;
	c->ws_max_size = 16 * 1024 * 1024; /* uvicorn's --ws-max-size */
	c->ws_max_queue = 32;
	c->ws_ping_interval = 20;
	c->ws_ping_timeout = 20;
	c->ws_per_message_deflate = 1;
	c->watch = 1;
	c->watch_window = 30;
	c->watch_min_requests = 50;
	c->watch_error_margin = 0.02;
	c->metrics_interval = 1;
	c->limit_request_line = 4094;
	c->limit_request_fields = 100;
	c->limit_request_field_size = 8190;
	c->limit_request_body = 100LL << 20;
	c->umask = -1;
	c->errorlog = strdup("-");
	c->loglevel = NW_LOG_INFO;
	if (c->asyncio_loop == NULL || c->worker_class == NULL ||
	    c->forwarded_allow_ips == NULL || c->proxy_allow_ips == NULL ||
	    c->secure_scheme_headers == NULL ||
	    c->errorlog == NULL || c->warmup_path == NULL ||
	    c->ready_host == NULL) {
		nw_config_free(c);
		return NULL;
	}
	return c;
}

static void print_config(struct load *ld);

/* The file gunicorn would read: -c, else GUNICORN_CMD_ARGS's, else ./ */
static const char *
config_file(const struct nw_cli *cli, const struct nw_cli *envcli,
    const char *cwd, char *buf, size_t len)
{
	struct stat st;

	if (cli->config != NULL)
		return cli->config;
	if (envcli->config != NULL)
		return envcli->config;
	snprintf(buf, len, "%s/gunicorn.conf.py", cwd);
	if (stat(buf, &st) == 0 && S_ISREG(st.st_mode))
		return "gunicorn.conf.py";
	return NULL;
}

static struct nw_config *
load(int argc, char **argv, char *err, size_t errlen, int lenient,
    FILE *print)
{
	struct load ld;
	struct nw_cli cli, envcli;
	const char *envargs = getenv("GUNICORN_CMD_ARGS"), *file;
	char found[4096], *python;

	if (errlen > 0)
		err[0] = '\0';
	memset(&ld, 0, sizeof(ld));
	memset(&envcli, 0, sizeof(envcli));
	ld.err = err;
	ld.errlen = errlen;
	ld.lenient = lenient;
	ld.print = print;
	if (nw_cli_scan(argc, argv, &cli, err, errlen) < 0)
		return NULL;
	if (envargs != NULL && nw_cli_scan_string(envargs, &envcli, err,
	    errlen) < 0) {
		memmove(err + 19, err, strnlen(err, errlen - 20) + 1);
		memcpy(err, "GUNICORN_CMD_ARGS: ", 19);
		nw_cli_free(&cli);
		return NULL;
	}
	if ((ld.config = config_defaults()) == NULL) {
		load_fail_plain(&ld, "out of memory");
		goto out;
	}
	if ((ld.cwd = nw_logical_cwd()) == NULL) {
		load_fail_plain(&ld, "cannot find the current directory: %s",
		    strerror(errno));
		goto out;
	}
	apply_environment(&ld);
	file = config_file(&cli, &envcli, ld.cwd, found, sizeof(found));
	if (file != NULL && !ld.failed) {
		ld.file = file;
		if (strncmp(file, "file:", 5) == 0)
			file += 5;
		ld.config->path = strncmp(file, "python:", 7) == 0 ?
		    strdup(file) : nw_path_resolve(ld.cwd, file);
		if (ld.config->path == NULL ||
		    (ld.file_dir = nw_path_dirname(ld.config->path)) == NULL) {
			load_fail_plain(&ld, "out of memory");
			goto out;
		}
		if (is_python_config(ld.config->path)) {
			ld.config->path_is_python = 1;
			python = python_from_flags(&cli, ld.cwd);
			if (python == NULL)
				python = python_from_flags(&envcli, ld.cwd);
			if (python != NULL)
				set_python(&ld, python, "--python");
			else
				default_python(&ld);
			if (!ld.failed)
				load_python(&ld, ld.config->python);
			/* Read with it; the workers' is decided below. */
			if (origin_of(&ld, "python")->line == 0)
				set_str(&ld.config->python, NULL);
			set_str(&ld.config->python_why, NULL);
		} else {
			load_file(&ld);
		}
	}
	if (!ld.failed)
		apply_flags(&ld, &envcli, "GUNICORN_CMD_ARGS");
	if (!ld.failed)
		apply_flags(&ld, &cli, NULL);
	if (!ld.failed)
		finish(&ld, lenient);
	if (!ld.failed && print != NULL)
		print_config(&ld);
out:
	nw_cli_free(&cli);
	nw_cli_free(&envcli);
	free(ld.cwd);
	free(ld.file_dir);
	free(ld.env_lines);
	free(ld.line);
	free(ld.cont_value);
	if (ld.failed) {
		nw_config_free(ld.config);
		return NULL;
	}
	return ld.config;
}

/* ---- --print-config ---- */

static const char *const interface_words[] = { "auto", "wsgi", "asgi" };
static const char *const loglevel_words[] = { "debug", "info", "warning",
	"error", "critical" };
static const char *const snapshot_words[] = { [NW_SNAPSHOT_AUTO] = "auto",
	[NW_SNAPSHOT_GIT] = "git", [NW_SNAPSHOT_OFF] = "off" };

static void
print_list(FILE *out, char **v, const char *sep)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		fprintf(out, "%s%s", i ? sep : "", v[i]);
}

static void
print_value(FILE *out, const struct load *ld, const struct key *k)
{
	const void *field = (const char *)ld->config + k->off;
	const char *s;

	switch (k->kind) {
	case K_INTERFACE:
		fputs(interface_words[*(const int *)field], out);
		break;
	case K_LOGLEVEL:
		fputs(loglevel_words[*(const int *)field], out);
		break;
	case K_ROLLBACK:
		fputs(*(const int *)field == NW_ROLLBACK_NONE ? "none" :
		    "symlink", out);
		break;
	case K_INT:
	case K_CERTREQS:
	case K_PROXYPROTO:
	case K_BOOL:
		if (k->kind == K_PROXYPROTO)
			fputs((const char *const[]){ "off", "v1", "v2", "auto" }
			    [*(const int *)field], out);
		else if (k->kind == K_BOOL)
			fputs(*(const int *)field ? "true" : "false", out);
		else
			fprintf(out, "%d", *(const int *)field);
		break;
	case K_LONG:
		fprintf(out, "%ld", *(const long *)field);
		break;
	case K_SECONDS:
	case K_FRACTION:
		fprintf(out, "%g", *(const double *)field);
		break;
	case K_SIZE:
		fprintf(out, "%lld", *(const long long *)field);
		break;
	case K_MODE:
		if (*(const int *)field >= 0)
			fprintf(out, "%04o", *(const int *)field);
		break;
	case K_PATHLIST:
	case K_FILELIST:
		print_list(out, *(char **const *)field, ", ");
		break;
	case K_ARGV:
		for (char **v = *(char **const *)field; v && *v; v++)
			fprintf(out, "%s%s%s%s", v == *(char **const *)field ?
			    "" : " ", strchr(*v, ' ') ? "\"" : "", *v,
			    strchr(*v, ' ') ? "\"" : "");
		break;
	case K_BOOTPRIO:
		fputs((const char *const[]){ [NW_BOOT_IDLE] = "idle",
		    [NW_BOOT_LOW] = "low", [NW_BOOT_NORMAL] = "normal" }
		    [*(const int *)field], out);
		break;
	case K_SNAPSHOT:
		fputs(snapshot_words[*(const int *)field], out);
		break;
	case K_BIND:
		break;
	/* No default: a new kind must say how it prints (-Wswitch). */
	case K_APP:
	case K_LOOP:
	case K_PYTHON:
	case K_DIR:
	case K_URLPATH:
	case K_PATH:
	case K_SOCKPATH:
	case K_LOG:
	case K_NAME:
	case K_WORKER_CLASS:
	case K_STRING:
	case K_IPLIST:
	case K_ALOGFMT:
	case K_ADDR:
	case K_HOST:
		if ((s = *(char *const *)field) != NULL)
			fputs(s, out);
		break;
	}
}

/*
 * A value too long for one of inih's lines, broken at single blanks into
 * lines of about 78 columns, so that the output loads again: reading joins
 * them with one blank. A line never starts with what would make it a
 * comment.
 */
static void
print_wrapped(FILE *out, const char *name, const char *v)
{
	int col = fprintf(out, "%s =", name);
	size_t n;

	if (col + 1 + strlen(v) <= INI_MAX_LINE - 2) {
		fprintf(out, " %s\n", v);
		return;
	}
	for (int first = 1; *v != '\0'; first = 0) {
		for (n = 1; v[n] != '\0'; n++)
			if (v[n] == ' ' && v[n - 1] != ' ' && v[n + 1] != ' ' &&
			    v[n + 1] != '\0' && v[n + 1] != ';' &&
			    v[n + 1] != '#')
				break;
		/* Every piece but the first follows a blank it may replace. */
		if (!first && col + 1 + (int)n > 78) {
			fputs("\n   ", out);
			col = 3;
		}
		col += fprintf(out, " %.*s", (int)n, v);
		v += n + (v[n] == ' ');
	}
	fputc('\n', out);
}

static void
print_config(struct load *ld)
{
	const struct nw_config *c = ld->config;
	FILE *out = ld->print;
	char where[300];
	size_t i;

	fprintf(out, "; narwhal --print-config: the effective settings, each "
	    "with where it came from.\n; Save it as an INI file and run "
	    "narwhal -c FILE.\n");
	if (c->hooks != NULL)
		fprintf(out, "; server hooks (stay in %s): %s\n", ld->file,
		    c->hooks);
	for (i = 0; i < c->nnotes; i++)
		fprintf(out, "; note: %s\n", c->notes[i]);
	fprintf(out, "\n[narwhal]\n");
	for (i = 0; i < NKEYS; i++) {
		describe_origin(ld, &ld->origin[i], where, sizeof(where));
		if (strcmp(keys[i].name, "python") == 0 &&
		    ld->origin[i].line == 0 && ld->origin[i].flag == NULL)
			snprintf(where, sizeof(where), "default: %s",
			    c->python_why ? c->python_why : "");
		if (strcmp(keys[i].name, "chdir") == 0 &&
		    ld->origin[i].line == 0 && ld->origin[i].flag == NULL)
			snprintf(where, sizeof(where),
			    "default: the current directory");
		fprintf(out, "; %s\n", where);
		if (keys[i].kind == K_BIND) {
			for (size_t j = 0; j < c->nbinds; j++)
				fprintf(out, "bind = %s\n", c->binds[j]);
			continue;
		}
		if (continues(keys[i].kind)) {
			char *text = NULL;
			size_t len = 0;
			FILE *mem = open_memstream(&text, &len);

			if (mem != NULL) {
				print_value(mem, ld, &keys[i]);
				fclose(mem);
				print_wrapped(out, keys[i].name, text);
				free(text);
				continue;
			}
		}
		fprintf(out, "%s = ", keys[i].name);
		print_value(out, ld, &keys[i]);
		fputc('\n', out);
	}
	if (c->nenv > 0)
		fprintf(out, "\n[env]\n");
	for (i = 0; i < c->nenv; i++)
		fprintf(out, "%s = %s\n", c->env[i].name, c->env[i].value);
}

int
nw_config_print(int argc, char **argv, FILE *out, char *err, size_t errlen)
{
	struct nw_config *c = load(argc, argv, err, errlen, 0, out);

	nw_config_free(c);
	return c == NULL ? 1 : 0;
}

struct nw_config *
nw_config_load(int argc, char **argv, char *err, size_t errlen)
{
	return load(argc, argv, err, errlen, 0, NULL);
}

struct nw_config *
nw_config_load_lenient(int argc, char **argv, char *err, size_t errlen)
{
	return load(argc, argv, err, errlen, 1, NULL);
}

void
nw_config_free(struct nw_config *c)
{
	size_t i;

	if (c == NULL)
		return;
	free(c->path);
	free(c->hooks);
	free(c->app);
	free(c->worker_class);
	free(c->asyncio_loop);
	free(c->python);
	free(c->python_why);
	nw_strv_free(c->reload_extra_files);
	free(c->access_log_format);
	free(c->forwarded_allow_ips);
	free(c->secure_scheme_headers);
	free(c->proxy_allow_ips);
	free(c->certfile);
	free(c->keyfile);
	free(c->ca_certs);
	free(c->ciphers);
	nw_strv_free(c->notes);
	free(c->chdir);
	nw_strv_free(c->pythonpath);
	nw_strv_free(c->binds);
	free(c->ready_path);
	free(c->warmup_path);
	free(c->ready_host);
	nw_strv_free(c->on_rollback);
	free(c->pidfile);
	free(c->user);
	free(c->group);
	free(c->runtime_dir);
	free(c->state_dir);
	free(c->control_socket);
	free(c->metrics_bind);
	free(c->statsd_host);
	free(c->statsd_prefix);
	free(c->dogstatsd_tags);
	free(c->accesslog);
	free(c->errorlog);
	for (i = 0; i < c->nenv; i++) {
		free(c->env[i].name);
		free(c->env[i].value);
	}
	free(c->env);
	free(c);
}

/*
 * A name for this instance that a separate `narwhal reload -c app.ini`
 * computes the same way as the running master: FNV-1a over the pidfile, else
 * the config file, else the binds. Paths are compared as absolute lexical
 * paths, not realpath()s, so that redeploying a symlinked config does not
 * move the control socket.
 */
static void
instance_name(const struct nw_config *c, char out[13])
{
	uint64_t h = 14695981039346656037ULL;
	const char *s;
	size_t i;

#define FNV(ch) (h = (h ^ (unsigned char)(ch)) * 1099511628211ULL)
	if (c->pidfile != NULL || c->path != NULL) {
		for (s = c->pidfile != NULL ? c->pidfile : c->path; *s; s++)
			FNV(*s);
	} else {
		for (i = 0; i < c->nbinds; i++) {
			for (s = c->binds[i]; *s; s++)
				FNV(*s);
			FNV('\n');
		}
	}
#undef FNV
	snprintf(out, 13, "%012llx", (unsigned long long)(h >> 16));
}

/* The first of systemd's colon-separated directories, if it set any. */
static char *
systemd_dir(const char *variable)
{
	const char *dir = getenv(variable);

	if (dir == NULL || dir[0] != '/')
		return NULL;
	return strndup(dir, strcspn(dir, ":"));
}

static char *
join_instance(char *parent, const struct nw_config *c)
{
	char name[13], *dir;

	if (parent == NULL)
		return NULL;
	instance_name(c, name);
	if (asprintf(&dir, "%s/%s", parent, name) < 0)
		dir = NULL;
	free(parent);
	return dir;
}

/*
 * The instance name is added under $RUNTIME_DIRECTORY too: with systemd's
 * RuntimeDirectory=narwhal, the master and a root shell running
 * `narwhal reload` then agree on /run/narwhal/<instance> without the shell
 * knowing the unit.
 */
char *
nw_config_runtime_dir(const struct nw_config *c)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char *parent;

	if (c->runtime_dir != NULL)
		return strdup(c->runtime_dir);
	if ((parent = systemd_dir("RUNTIME_DIRECTORY")) != NULL)
		return join_instance(parent, c);
	if (geteuid() == 0)
		parent = strdup("/run/narwhal");
	else if (xdg != NULL && xdg[0] == '/') {
		if (asprintf(&parent, "%s/narwhal", xdg) < 0)
			parent = NULL;
	} else if (asprintf(&parent, "/tmp/narwhal-%u",
	    (unsigned)geteuid()) < 0)
		parent = NULL;
	return join_instance(parent, c);
}

char *
nw_config_state_dir(const struct nw_config *c)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	struct passwd *pw;
	char *parent;

	if (c->state_dir != NULL)
		return strdup(c->state_dir);
	if ((parent = systemd_dir("STATE_DIRECTORY")) != NULL)
		return join_instance(parent, c);
	if (geteuid() == 0)
		return join_instance(strdup("/var/lib/narwhal"), c);
	if (xdg != NULL && xdg[0] == '/') {
		if (asprintf(&parent, "%s/narwhal", xdg) < 0)
			parent = NULL;
		return join_instance(parent, c);
	}
	if ((home == NULL || home[0] != '/') &&
	    (pw = getpwuid(geteuid())) != NULL)
		home = pw->pw_dir;
	if (home == NULL || home[0] != '/')
		home = "/tmp";
	if (asprintf(&parent, "%s/.local/state/narwhal", home) < 0)
		parent = NULL;
	return join_instance(parent, c);
}

char *
nw_config_control_path(const struct nw_config *c)
{
	char *dir, *path;

	if (c->control_socket != NULL)
		return strdup(c->control_socket);
	if ((dir = nw_config_runtime_dir(c)) == NULL)
		return NULL;
	if (asprintf(&path, "%s/control.sock", dir) < 0)
		path = NULL;
	free(dir);
	return path;
}
