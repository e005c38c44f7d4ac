/*
 * config_flags.c: the command line: one flag per key, gunicorn's flags and
 * aliases, and the usage text.
 *
 * It only splits argv into (flag, value) pairs, in order, and picks out -c
 * and the app; config.c interprets the values, so that a flag and the same
 * key in the file are checked by one piece of code and fail with the same
 * words. It holds no state between calls (no getopt, no optind).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

/* gunicorn's names for keys whose flag is not simply the key. */
static const struct {
	const char *flag; /* with '-' already turned into '_' */
	const char *key;
} aliases[] = {
	{ "keep_alive", "keepalive" },
	{ "pid", "pidfile" },
	{ "access_logfile", "accesslog" },
	{ "error_logfile", "errorlog" },
	{ "log_file", "errorlog" },
	{ "log_level", "loglevel" },
};

static const struct {
	char letter;
	const char *key;
} shorts[] = {
	{ 'w', "workers" },
	{ 'b', "bind" },
	{ 't', "timeout" },
	{ 'p', "pidfile" },
	{ 'u', "user" },
	{ 'g', "group" },
	{ 'm', "umask" },
	{ 'k', "worker_class" },
};

enum special {
	NOT_SPECIAL,
	SPECIAL_CONFIG,
};

/* A flag of gunicorn's that is not simply a narwhal key's. */
static int
from_gunicorn(struct nw_cli_opt *opt)
{
	switch (opt->gu->fate) {
	case NW_GU_KEY:
		opt->key = nw_config_key_name(opt->gu->key);
		return opt->key == NULL ? -1 : 0;
	case NW_GU_NOOP:
		opt->kind = NW_CLI_NOOP;
		return 0;
	case NW_GU_SPECIAL: /* main.c takes --check-config, --print-config */
		return -1;
	case NW_GU_REFUSED:
		opt->kind = NW_CLI_REFUSED;
		return 0;
	case NW_GU_HOOK:
		break;
	}
	return -1;
}

/*
 * Fills opt (kind and key) from a long flag's name: "max-requests" and
 * "max_requests" are the same flag, which also covers gunicorn's own
 * "--limit-request-field_size" spelling.
 */
static int
lookup_long(const char *name, struct nw_cli_opt *opt, enum special *special)
{
	char norm[NW_FLAG_MAX];
	size_t i;

	for (i = 0; name[i] != '\0' && i < sizeof(norm) - 1; i++)
		norm[i] = name[i] == '-' ? '_' : name[i];
	norm[i] = '\0';
	*special = NOT_SPECIAL;
	opt->kind = NW_CLI_KEY;
	if (strcmp(norm, "config") == 0) {
		*special = SPECIAL_CONFIG;
		return 0;
	}
	if (strcmp(norm, "env") == 0) {
		opt->kind = NW_CLI_ENV;
		return 0;
	}
	for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
		if (strcmp(norm, aliases[i].flag) == 0) {
			opt->key = aliases[i].key;
			return 0;
		}
	}
	if ((opt->gu = nw_gunicorn_flag(opt->flag)) != NULL)
		return from_gunicorn(opt);
	opt->key = nw_config_key_name(norm);
	return opt->key == NULL ? -1 : 0;
}

static int
lookup_short(char letter, struct nw_cli_opt *opt, enum special *special)
{
	size_t i;

	*special = NOT_SPECIAL;
	opt->kind = NW_CLI_KEY;
	switch (letter) {
	case 'c':
		*special = SPECIAL_CONFIG;
		return 0;
	case 'e':
		opt->kind = NW_CLI_ENV;
		return 0;
	}
	for (i = 0; i < sizeof(shorts) / sizeof(shorts[0]); i++) {
		if (letter == shorts[i].letter) {
			opt->key = shorts[i].key;
			return 0;
		}
	}
	if ((opt->gu = nw_gunicorn_flag(opt->flag)) != NULL)
		return from_gunicorn(opt);
	return -1;
}

/*
 * Every option takes exactly one value ("--workers 4", "--workers=4", "-w 4"
 * or "-w4"): main.c has already taken the few that do not (--help,
 * --version, --check-config).
 */
int
nw_cli_scan(int argc, char **argv, struct nw_cli *cli, char *err,
    size_t errlen)
{
	struct nw_cli_opt opt, *grown;
	enum special special;
	const char *arg, *eq;
	size_t namelen;
	int i, only_args = 0, found;

	memset(cli, 0, sizeof(*cli));
	for (i = 1; i < argc; i++) {
		arg = argv[i];
		if (only_args || arg[0] != '-' || arg[1] == '\0') {
			if (cli->app != NULL) {
				snprintf(err, errlen,
				    "more than one app given: '%s' and '%s'",
				    cli->app, arg);
				goto fail;
			}
			cli->app = arg;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_args = 1;
			continue;
		}
		memset(&opt, 0, sizeof(opt));
		if (arg[1] == '-') {
			eq = strchr(arg, '=');
			namelen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
			if (namelen >= sizeof(opt.flag)) {
				snprintf(err, errlen, "unknown option '%.*s'",
				    (int)namelen, arg);
				goto fail;
			}
			memcpy(opt.flag, arg, namelen);
			opt.flag[namelen] = '\0';
			opt.value = eq != NULL ? eq + 1 : NULL;
			found = lookup_long(opt.flag + 2, &opt, &special) == 0;
		} else {
			memcpy(opt.flag, arg, 2);
			opt.flag[2] = '\0';
			opt.value = arg[2] != '\0' ? arg + 2 : NULL;
			found = lookup_short(arg[1], &opt, &special) == 0;
		}
		if (!found) {
			snprintf(err, errlen, "unknown option '%s'", opt.flag);
			goto fail;
		}
		if (opt.value == NULL && opt.gu != NULL && opt.gu->boolean)
			opt.value = "true";
		if (opt.value == NULL) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "%s: requires a value",
				    opt.flag);
				goto fail;
			}
			opt.value = argv[++i];
		}
		if (special == SPECIAL_CONFIG) {
			if (cli->config != NULL) {
				snprintf(err, errlen,
				    "%s: more than one config file given",
				    opt.flag);
				goto fail;
			}
			cli->config = opt.value;
			continue;
		}
		grown = realloc(cli->opts, (cli->nopts + 1) * sizeof(*grown));
		if (grown == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		cli->opts = grown;
		cli->opts[cli->nopts++] = opt;
	}
	return 0;
fail:
	nw_cli_free(cli);
	return -1;
}

void
nw_cli_free(struct nw_cli *cli)
{
	free(cli->opts);
	nw_strv_free(cli->words);
	memset(cli, 0, sizeof(*cli));
}

/* Shell words: blanks separate, '...' and "..." quote, \ escapes. */
static char **
split_words(const char *s, int *count)
{
	char **v = calloc(strlen(s) / 2 + 3, sizeof(*v)), *w;
	int n = 1, quote;

	if (v == NULL)
		return NULL;
	v[0] = strdup("GUNICORN_CMD_ARGS");
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		if (*s == '\0' || v[n - 1] == NULL)
			break;
		if ((w = v[n++] = malloc(strlen(s) + 1)) == NULL)
			break;
		for (quote = 0; *s != '\0'; s++) {
			if (quote == 0 && (*s == ' ' || *s == '\t' ||
			    *s == '\n'))
				break;
			if (quote == 0 && (*s == '\'' || *s == '"'))
				quote = *s;
			else if (quote != 0 && *s == quote)
				quote = 0;
			else if (*s == '\\' && quote != '\'' && s[1] != '\0')
				*w++ = *++s;
			else
				*w++ = *s;
		}
		*w = '\0';
	}
	if (v[n - 1] == NULL) {
		nw_strv_free(v);
		return NULL;
	}
	*count = n;
	return v;
}

int
nw_cli_scan_string(const char *s, struct nw_cli *cli, char *err,
    size_t errlen)
{
	char **words;
	int n;

	if ((words = split_words(s, &n)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (nw_cli_scan(n, words, cli, err, errlen) < 0) {
		nw_strv_free(words);
		return -1;
	}
	cli->words = words;
	return 0;
}

void
nw_config_usage(FILE *out)
{
	/* The text is laid out as it prints. */
	/* clang-format off */
	fputs(
"usage: narwhal [-c FILE] [OPTIONS] [MODULE:CALLABLE]\n"
"       narwhal --check-config -c FILE\n"
"       narwhal --print-config [-c FILE] [OPTIONS]\n"
"       narwhal reload [--wait] [--timeout S] [-c FILE | --pid FILE]\n"
"       narwhal status [--json] [-c FILE | --pid FILE]\n"
"\n"
"Runs MODULE:CALLABLE (a WSGI or ASGI app) in pre-forked Python workers.\n"
"gunicorn's flags, $PORT, $WEB_CONCURRENCY and GUNICORN_CMD_ARGS work too.\n"
"Every setting of the config file is also a flag: max_requests is\n"
"--max-requests N or --max-requests=N. Flags win over the file; -b given\n"
"on the command line replaces the file's binds. See narwhal.ini(5).\n"
"\n"
"options:\n"
"  -c, --config FILE         read the settings from the INI file FILE, or\n"
"                            a gunicorn.conf.py (default: ./gunicorn.conf.py\n"
"                            if it exists)\n"
"  -b, --bind ADDRESS        listen on HOST:PORT, [IPV6]:PORT or unix:PATH;\n"
"                            repeatable (default 127.0.0.1:8000)\n"
"  -w, --workers N           worker processes (default 1)\n"
"  -k, --worker-class CLASS  sync, gthread, gevent or eventlet (WSGI),\n"
"                            uvicorn.workers.UvicornWorker (ASGI), or\n"
"                            wsgi, asgi, auto\n"
"      --threads N           WSGI requests a worker runs at once, each on\n"
"                            a thread of its own (default 1)\n"
"      --worker-connections N\n"
"                            connections a worker keeps open; gevent and\n"
"                            eventlet: also requests at once (default 1000)\n"
"      --python PATH         interpreter the workers run (default: the\n"
"                            venv narwhal is installed in, $VIRTUAL_ENV's,\n"
"                            or python3 in PATH)\n"
"      --chdir DIR           the code tree (default: the current directory)\n"
"      --pythonpath DIRS     comma-separated additions to sys.path\n"
"  -e, --env NAME=VALUE      set a variable in the workers' environment;\n"
"                            repeatable\n"
"  -t, --timeout S           kill a worker silent for S seconds (default 30;\n"
"                            0: never)\n"
"      --reload              development mode: reload when a .py file changes\n"
"      --graceful-timeout S  time a stopping worker may drain (default 30)\n"
"      --keep-alive S        idle keep-alive connections live S (default 2)\n"
"      --max-requests N      recycle a worker after N requests (default 0:\n"
"                            never)\n"
"      --max-requests-jitter N\n"
"                            add up to N to each worker's max-requests\n"
"      --ready-path PATH     health check a new worker must pass before it\n"
"                            takes traffic, e.g. /health/ready\n"
"      --ready-host HOST     its Host header, and the warm-up's, e.g. one\n"
"                            of Django's ALLOWED_HOSTS (default localhost)\n"
"      --boot-timeout S      time a new worker has to become ready\n"
"                            (default 60)\n"
"  -p, --pid FILE            write the master's pid to FILE\n"
"  -u, --user USER           run the workers as USER\n"
"  -g, --group GROUP         run the workers as GROUP\n"
"  -m, --umask MODE          octal umask of the workers\n"
"      --certfile FILE       serve TLS on the public sockets with this PEM\n"
"                            certificate (chain); the health probe stays\n"
"                            plain HTTP on the private socket\n"
"      --keyfile FILE        its private key (default: in the certfile)\n"
"      --ca-certs FILE       CAs that sign client certificates\n"
"      --cert-reqs N         client certificates: 0 none (default),\n"
"                            1 optional, 2 required\n"
"      --ciphers LIST        OpenSSL cipher list for TLS 1.2\n"
"      --access-logfile FILE access log: a path, or - for stdout\n"
"      --error-logfile FILE  error log: a path, or - for stderr (default)\n"
"      --log-level LEVEL     debug, info, warning, error or critical\n"
"                            (default info)\n"
"      --check-config        check the config and exit: 0 if it is valid,\n"
"                            1 and the error if not\n"
"      --print-config        print the effective settings, and where each\n"
"                            came from, as an INI file\n"
"  -h, --help                print this text\n"
"      --version             print the version\n"
"\n"
"reload: start a new generation of workers and retire the old one once the\n"
"new one is ready; with --wait, exit 0 only if it went live.\n"
"status: list the workers (--json: as JSON).\n",
	    out);
	/* clang-format on */
}
