/*
 * config_internal.h: what config.c, config_flags.c and config_values.c share.
 *
 * Only the config*.c files include it: the rest of the master sees config.h
 * alone. The value parsers here are pure (no config, no origin, no globals):
 * on a bad value they return -1 and say why in a buffer that the caller
 * prefixes with the file, line and key, or the flag.
 */
#ifndef NW_CONFIG_INTERNAL_H
#define NW_CONFIG_INTERNAL_H

#include <stddef.h>

#include "config.h"

/* Longest flag name kept for messages: longer ones are unknown anyway. */
#define NW_FLAG_MAX 48

/* The defaults that more than one file needs. */
#define NW_DEFAULT_PORT "8000"
#define NW_DEFAULT_BIND "127.0.0.1:" NW_DEFAULT_PORT
#define NW_DEFAULT_TRUSTED "127.0.0.1,::1"
#define NW_DEFAULT_SECURE_HEADERS "X-FORWARDED-PROTOCOL=ssl, " \
	"X-FORWARDED-PROTO=https, X-FORWARDED-SSL=on"

/* What one of gunicorn's settings becomes here (config_gunicorn.c). */
enum nw_gunicorn_fate {
	NW_GU_KEY,     /* a narwhal key of its own */
	NW_GU_SPECIAL, /* -c, -e, --check-config, --print-config */
	NW_GU_NOOP,    /* accepted; one log line says why it changes nothing */
	NW_GU_REFUSED, /* ignoring it would be unsafe: the load fails */
	NW_GU_HOOK,    /* a server hook from gunicorn.conf.py */
};

struct nw_gunicorn {
	const char *name;   /* as in gunicorn.conf.py */
	const char *flags;  /* "-D --daemon"; NULL: file only */
	int boolean;        /* the flag takes no value */
	enum nw_gunicorn_fate fate;
	const char *key;    /* NW_GU_KEY: narwhal's key; NW_GU_HOOK: where */
	const char *why;    /* NW_GU_NOOP, NW_GU_REFUSED: one line */
};

const struct nw_gunicorn *nw_gunicorn_setting(const char *name);
const struct nw_gunicorn *nw_gunicorn_flag(const char *flag);
const struct nw_gunicorn *nw_gunicorn_each(size_t i); /* NULL at the end */

enum nw_cli_kind {
	NW_CLI_KEY,          /* --max-requests 5: key "max_requests" */
	NW_CLI_ENV,          /* -e NAME=VALUE */
	NW_CLI_NOOP,         /* a gunicorn flag that changes nothing here */
	NW_CLI_REFUSED,      /* a gunicorn flag narwhal cannot honour */
};

/* One option from the command line, in the order given. */
struct nw_cli_opt {
	enum nw_cli_kind kind;
	const char *key;         /* canonical key name, for NW_CLI_KEY */
	const struct nw_gunicorn *gu; /* gunicorn's setting, if it is one */
	char flag[NW_FLAG_MAX];  /* as written, without "=VALUE": messages */
	const char *value;       /* points into argv (or words) */
};

/* The command line, split but not yet interpreted. */
struct nw_cli {
	struct nw_cli_opt *opts;
	size_t nopts;
	const char *config;      /* -c FILE, NULL when none */
	const char *app;         /* the positional MODULE:CALLABLE */
	char **words;            /* GUNICORN_CMD_ARGS split, owned; or NULL */
};

/* config_flags.c */
int nw_cli_scan(int argc, char **argv, struct nw_cli *cli, char *err,
    size_t errlen);
void nw_cli_free(struct nw_cli *cli);
/* GUNICORN_CMD_ARGS: split as a shell would (quotes, backslashes). */
int nw_cli_scan_string(const char *s, struct nw_cli *cli, char *err,
    size_t errlen);

/* config.c: the canonical name of a key, or NULL when there is none. */
const char *nw_config_key_name(const char *name);

/* config_python.c: runs the gunicorn.conf.py reader; its output in *out */
int nw_conf_py_run(const char *python, const char *file, char **out,
    char *err, size_t errlen);

/* config_values.c */
int nw_parse_long(const char *s, long min, long max, long *out, char *why,
    size_t whylen);
int nw_parse_seconds(const char *s, int positive, double *out, char *why,
    size_t whylen);
int nw_parse_size(const char *s, long long *out, char *why, size_t whylen);
int nw_parse_mode(const char *s, int *out, char *why, size_t whylen);
int nw_parse_interface(const char *s, enum nw_interface *out, char *why,
    size_t whylen);
int nw_parse_worker_class(const char *s, enum nw_worker_kind *kind,
    enum nw_interface *interface, char *why, size_t whylen);
int nw_parse_bool(const char *s, int *out, char *why, size_t whylen);
int nw_parse_iplist(const char *s, char *why, size_t whylen);
int nw_parse_alogfmt(const char *s, char *why, size_t whylen);
int nw_parse_proxy_protocol(const char *s, int *out, char *why,
    size_t whylen);
int nw_parse_cert_reqs(const char *s, int *out, char *why, size_t whylen);
int nw_parse_host(const char *s, char *why, size_t whylen);

/* tls.c: the TLS files, loaded as the workers will (dlopen'd libssl) */
int nw_tls_check(const struct nw_config *c, const char **key, char *why,
    size_t whylen);
int nw_parse_loglevel(const char *s, enum nw_loglevel *out, char *why,
    size_t whylen);
int nw_parse_app(const char *s, char **out, char *why, size_t whylen);
int nw_parse_bind(const char *s, const char *base, char **out, char *why,
    size_t whylen);
int nw_parse_argv(const char *s, const char *base, char ***out, char *why,
    size_t whylen);
int nw_parse_list(const char *s, const char *base, char ***out, size_t *n,
    char *why, size_t whylen);
int nw_env_name_ok(const char *name, size_t len);

char *nw_path_resolve(const char *base, const char *path);
char *nw_path_dirname(const char *path);
char *nw_logical_cwd(void);
char *nw_search_path(const char *name);
void nw_strv_free(char **v); /* NULL-terminated */

#endif
