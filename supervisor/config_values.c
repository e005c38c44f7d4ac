/*
 * config_values.c: turns the text of one setting into its value.
 *
 * Each parser checks the whole text (syntax, range, no trailing junk) and
 * either stores the value or says in plain words why it cannot; the caller
 * adds the file, line and key, or the flag. Paths are made absolute by
 * lexical rules only, never realpath(): a symlinked code tree must stay a
 * symlink here, because the master resolves it once per generation.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config_internal.h"
#include "core/front.h"

/* Larger timeouts are typos, and they would overflow milliseconds later. */
#define SECONDS_MAX 1e9

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

static int
all_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

static int
oom(char *why, size_t whylen)
{
	snprintf(why, whylen, "out of memory");
	return -1;
}

int
nw_parse_long(const char *s, long min, long max, long *out, char *why,
    size_t whylen)
{
	long v = 0;

	errno = 0;
	if (all_digits(s[0] == '-' ? s + 1 : s)) {
		v = strtol(s, NULL, 10);
		if (errno == 0 && v >= min && v <= max) {
			*out = v;
			return 0;
		}
	}
	/* The upper bound only when it is the problem: most keys have none. */
	if (errno == ERANGE ? v > 0 : v > max)
		snprintf(why, whylen,
		    "'%s' is not a whole number from %ld to %ld", s, min, max);
	else
		snprintf(why, whylen, "'%s' is not a whole number >= %ld", s,
		    min);
	return -1;
}

int
nw_parse_seconds(const char *s, int positive, double *out, char *why,
    size_t whylen)
{
	const char *p;
	int digits = 0, dots = 0;
	double v;

	/* Plain decimals only: strtod() would also take "inf", "1e3", hex. */
	for (p = s; *p != '\0'; p++) {
		if (isdigit((unsigned char)*p))
			digits++;
		else if (*p != '.' || dots++ > 0)
			break;
	}
	if (*p == '\0' && digits > 0) {
		v = strtod(s, NULL);
		if (v > SECONDS_MAX) {
			snprintf(why, whylen,
			    "'%s' is too long: at most %.0f seconds", s,
			    SECONDS_MAX);
			return -1;
		}
		if (!positive || v > 0) {
			*out = v;
			return 0;
		}
	}
	snprintf(why, whylen, "'%s' is not a number of seconds %s 0", s,
	    positive ? ">" : ">=");
	return -1;
}

int
nw_parse_size(const char *s, long long *out, char *why, size_t whylen)
{
	const char *p = s;
	unsigned long long v = 0;
	int shift = 0;

	if (!isdigit((unsigned char)*p))
		goto bad;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (ULLONG_MAX - 9) / 10)
			goto big;
		v = v * 10 + (unsigned)(*p - '0');
	}
	switch (*p) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	}
	if (shift != 0) {
		p++;
		if (*p == 'b' || *p == 'B') /* "512MB" means what it says */
			p++;
	}
	if (*p != '\0')
		goto bad;
	if (v > ((unsigned long long)LLONG_MAX >> shift))
		goto big;
	*out = (long long)(v << shift);
	return 0;
bad:
	snprintf(why, whylen,
	    "'%s' is not a size in bytes (a whole number, or with K, M or G "
	    "as in 512M)", s);
	return -1;
big:
	snprintf(why, whylen, "'%s' is too large", s);
	return -1;
}

int
nw_parse_mode(const char *s, int *out, char *why, size_t whylen)
{
	const char *p = s;
	int v = 0;

	if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O')) /* Python's 0o022 */
		p += 2;
	if (*p == '\0')
		goto bad;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '7')
			goto bad;
		v = v * 8 + (*p - '0');
		if (v > 0777)
			goto bad;
	}
	*out = v;
	return 0;
bad:
	snprintf(why, whylen, "'%s' is not an octal mode from 0000 to 0777", s);
	return -1;
}

int
nw_parse_interface(const char *s, enum nw_interface *out, char *why,
    size_t whylen)
{
	if (strcmp(s, "auto") == 0)
		*out = NW_INTERFACE_AUTO;
	else if (strcmp(s, "wsgi") == 0)
		*out = NW_INTERFACE_WSGI;
	else if (strcmp(s, "asgi") == 0)
		*out = NW_INTERFACE_ASGI;
	else {
		snprintf(why, whylen, "'%s' is not one of auto, wsgi, asgi", s);
		return -1;
	}
	return 0;
}

/*
 * gunicorn's -k names a worker class: here it picks how a worker runs
 * requests at once and, with that, the interface (so that a unit's ExecStart
 * line keeps working when gunicorn becomes narwhal). gunicorn's dotted names
 * are taken too, as a gunicorn.conf.py writes them. Classes whose behaviour
 * narwhal does not have (tornado) are refused rather than silently served
 * as something else.
 */
int
nw_parse_worker_class(const char *s, enum nw_worker_kind *kind,
    enum nw_interface *interface, char *why, size_t whylen)
{
	static const struct {
		const char *name;
		enum nw_worker_kind class;
	} classes[] = {
		{ "sync", NW_WORKER_SYNC },
		{ "gthread", NW_WORKER_GTHREAD },
		{ "gevent", NW_WORKER_GEVENT },
		{ "eventlet", NW_WORKER_EVENTLET },
		{ "gunicorn.workers.sync.SyncWorker", NW_WORKER_SYNC },
		{ "gunicorn.workers.gthread.ThreadWorker", NW_WORKER_GTHREAD },
		{ "gunicorn.workers.ggevent.GeventWorker", NW_WORKER_GEVENT },
		{ "gunicorn.workers.geventlet.EventletWorker",
		    NW_WORKER_EVENTLET },
		{ "uvicorn.workers.UvicornWorker", NW_WORKER_ASGI },
		{ "uvicorn.workers.UvicornH11Worker", NW_WORKER_ASGI },
		{ "uvicorn_worker.UvicornWorker", NW_WORKER_ASGI },
		{ "uvicorn_worker.UvicornH11Worker", NW_WORKER_ASGI },
		{ "wsgi", NW_WORKER_SYNC },
		{ "asgi", NW_WORKER_ASGI },
		{ "auto", NW_WORKER_AUTO },
	};
	static const enum nw_interface interfaces[] = {
		[NW_WORKER_AUTO] = NW_INTERFACE_AUTO,
		[NW_WORKER_SYNC] = NW_INTERFACE_WSGI,
		[NW_WORKER_GTHREAD] = NW_INTERFACE_WSGI,
		[NW_WORKER_GEVENT] = NW_INTERFACE_WSGI,
		[NW_WORKER_EVENTLET] = NW_INTERFACE_WSGI,
		[NW_WORKER_ASGI] = NW_INTERFACE_ASGI,
	};
	size_t i;

	for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		if (strcmp(s, classes[i].name) == 0) {
			*kind = classes[i].class;
			*interface = interfaces[classes[i].class];
			return 0;
		}
	}
	snprintf(why, whylen,
	    "'%s' is not a supported worker class (sync, gthread, gevent, "
	    "eventlet, uvicorn.workers.UvicornWorker, "
	    "uvicorn.workers.UvicornH11Worker, wsgi, asgi or auto)", s);
	return -1;
}

/* Python's True/False as gunicorn.conf.py writes them, and INI words. */
int
nw_parse_bool(const char *s, int *out, char *why, size_t whylen)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0", "none" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(*yes); i++)
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
	for (i = 0; i < sizeof(no) / sizeof(*no); i++)
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	snprintf(why, whylen, "'%s' is not one of true, false", s);
	return -1;
}

/*
 * gunicorn's address lists: "*", "unix", or IPv4 and IPv6 addresses and
 * networks (10.0.0.0/8), comma-separated. Checked here with the workers' own
 * parser (core/front.c), so that what the master accepts a worker does.
 */
int
nw_parse_iplist(const char *s, char *why, size_t whylen)
{
	struct nw_iplist l;

	if (nw_iplist_parse(&l, s, why, whylen) < 0)
		return -1;
	nw_iplist_free(&l);
	return 0;
}

/*
 * access_log_format: "json", or text with gunicorn's %(atom)s (any Python
 * conversion: %(s)d, %(h)-15s) and %% for a percent sign. The atoms are the
 * workers' business (an unknown one logs "-", as in gunicorn).
 */
int
nw_parse_alogfmt(const char *s, char *why, size_t whylen)
{
	const char *p = s, *close;

	while ((p = strchr(p, '%')) != NULL) {
		if (p[1] == '%') {
			p += 2;
			continue;
		}
		if (p[1] != '(' || (close = strchr(p, ')')) == NULL)
			goto bad;
		for (close++; *close != '\0' && strchr("#0- +", *close); close++)
			;
		while (isdigit((unsigned char)*close) || *close == '.')
			close++;
		if (*close == '\0' || strchr("sdirf", *close) == NULL)
			goto bad;
		p = close + 1;
	}
	return 0;
bad:
	snprintf(why, whylen, "'%.30s' is not a %%(atom)s of gunicorn's "
	    "access log format (write %%%% for a percent sign)", p);
	return -1;
}

/* gunicorn 20's --proxy-protocol is a switch; 26's says which version. */
int
nw_parse_proxy_protocol(const char *s, int *out, char *why, size_t whylen)
{
	static const char *const names[] = { "off", "v1", "v2", "auto" };
	int b;

	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	if (nw_parse_bool(s, &b, why, whylen) == 0) {
		*out = b ? 3 : 0;
		return 0;
	}
	snprintf(why, whylen, "'%s' is not one of off, v1, v2, auto", s);
	return -1;
}

/*
 * gunicorn's cert_reqs: ssl.CERT_NONE (0), CERT_OPTIONAL (1), CERT_REQUIRED
 * (2), as the number, the name, or as a gunicorn.conf.py prints the enum.
 */
int
nw_parse_cert_reqs(const char *s, int *out, char *why, size_t whylen)
{
	static const char *const names[] = { "none", "optional", "required" };
	const char *p = s;

	if (strncmp(p, "VerifyMode.", 11) == 0)
		p += 11;
	if (strncasecmp(p, "CERT_", 5) == 0)
		p += 5;
	for (int i = 0; i < 3; i++)
		if (strcasecmp(p, names[i]) == 0 ||
		    (p[0] == '0' + i && p[1] == '\0')) {
			*out = i;
			return 0;
		}
	snprintf(why, whylen, "'%s' is not one of 0 (none), 1 (optional), "
	    "2 (required)", s);
	return -1;
}

/*
 * ready_host: what the probe sends as its Host header, HOST or HOST:PORT
 * ([::1]:8000 too). Only the characters of a URI's host and port, so that
 * the value can neither split the request's header lines nor be anything
 * an application would take for a host name.
 */
int
nw_parse_host(const char *s, char *why, size_t whylen)
{
	size_t len = strlen(s), ok = strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:[]");
	unsigned char bad = (unsigned char)s[ok];

	if (len == 0)
		snprintf(why, whylen, "needs a host name, as in "
		    "www.example.com");
	else if (len > NW_READY_HOST_MAX)
		snprintf(why, whylen, "'%.32s...' is longer than %d "
		    "characters", s, NW_READY_HOST_MAX);
	else if (bad == '\0')
		return 0;
	else if (bad == ' ' || bad == '\t')
		snprintf(why, whylen, "a host name has no blanks");
	else if (bad < 0x20 || bad == 0x7f)
		snprintf(why, whylen, "a host name has no control characters");
	else if (bad >= 0x80)
		snprintf(why, whylen, "a host name is ASCII (an "
		    "internationalized one is written xn--...)");
	else
		snprintf(why, whylen, "'%s' is not HOST or HOST:PORT ('%c' "
		    "cannot be in a host name)", s, bad);
	return -1;
}

int
nw_parse_loglevel(const char *s, enum nw_loglevel *out, char *why,
    size_t whylen)
{
	static const char *names[] = {
		[NW_LOG_DEBUG] = "debug",
		[NW_LOG_INFO] = "info",
		[NW_LOG_WARNING] = "warning",
		[NW_LOG_ERROR] = "error",
		[NW_LOG_CRITICAL] = "critical",
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum nw_loglevel)i;
			return 0;
		}
	}
	snprintf(why, whylen,
	    "'%s' is not one of debug, info, warning, error, critical", s);
	return -1;
}

static int
ident_start(int c)
{
	/* Python identifiers may be non-ASCII: leave those to the import. */
	return isalpha(c) || c == '_' || c >= 0x80;
}

static int
ident_char(int c)
{
	return ident_start(c) || isdigit(c);
}

int
nw_parse_app(const char *s, char **out, char *why, size_t whylen)
{
	const unsigned char *p = (const unsigned char *)s;
	const char *colon = strchr(s, ':');

	/* The module: dotted identifiers. The callable is left to Python. */
	for (;;) {
		if (!ident_start(*p))
			goto bad;
		while (ident_char(*p))
			p++;
		if (*p != '.')
			break;
		p++;
	}
	if (colon == NULL && *p == '\0') {
		/* gunicorn's rule: a bare module means module:application. */
		if ((*out = malloc(strlen(s) + sizeof(":application"))) == NULL)
			return oom(why, whylen);
		sprintf(*out, "%s:application", s);
		return 0;
	}
	if ((const char *)p != colon || !ident_start((unsigned char)colon[1]))
		goto bad;
	if ((*out = strdup(s)) == NULL)
		return oom(why, whylen);
	return 0;
bad:
	snprintf(why, whylen,
	    "'%s' is not MODULE:CALLABLE (for example app:application)", s);
	return -1;
}

static int
hostname_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' &&
		    s[i] != '.' && s[i] != '_')
			return 0;
	}
	return 1;
}

static int
ipv6_ok(const char *s, size_t len)
{
	char buf[INET6_ADDRSTRLEN + 1];
	struct in6_addr addr;
	const char *zone = memchr(s, '%', len);

	/* A zone ("fe80::1%eth0") names an interface; inet_pton has no say. */
	if (zone != NULL)
		len = (size_t)(zone - s);
	if (len == 0 || len >= sizeof(buf))
		return 0;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, &addr) == 1;
}

static int
bind_unix(const char *s, const char *base, char **out, char *why,
    size_t whylen)
{
	const char *path = s + strlen("unix:");
	char *abs;

	if (strncmp(path, "//", 2) == 0) /* gunicorn also takes unix://PATH */
		path += 2;
	if (*path == '\0') {
		snprintf(why, whylen, "'%s' has no socket path", s);
		return -1;
	}
	if ((abs = nw_path_resolve(base, path)) == NULL)
		return oom(why, whylen);
	if (strlen(abs) >= SUN_PATH_MAX) {
		snprintf(why, whylen,
		    "'%s': a Unix socket path has at most %zu bytes", s,
		    SUN_PATH_MAX - 1);
		free(abs);
		return -1;
	}
	*out = malloc(strlen("unix:") + strlen(abs) + 1);
	if (*out != NULL)
		sprintf(*out, "unix:%s", abs);
	free(abs);
	return *out == NULL ? oom(why, whylen) : 0;
}

/*
 * Every accepted form is written back in one of three shapes: HOST:PORT,
 * [V6]:PORT or unix:/ABSOLUTE, so that the listener code and the instance
 * name see one spelling per address. Nothing is resolved here.
 */
int
nw_parse_bind(const char *s, const char *base, char **out, char *why,
    size_t whylen)
{
	const char *host, *port, *colon;
	size_t hostlen;
	int v6 = 0;
	long portnum;

	if (strncmp(s, "unix:", 5) == 0)
		return bind_unix(s, base, out, why, whylen);
	/* fd://NAME: the socket systemd passes with FileDescriptorName=NAME */
	if (strncmp(s, "fd://", 5) == 0) {
		if (s[5] == '\0' || strchr(s + 5, ':') != NULL) {
			snprintf(why, whylen, "'%s' needs a socket name, as in "
			    "fd://http", s);
			return -1;
		}
		*out = strdup(s);
		if (*out == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			goto bad;
		host = s + 1;
		hostlen = (size_t)(close - host);
		port = close[1] == ':' ? close + 2 : NW_DEFAULT_PORT;
		if (!ipv6_ok(host, hostlen)) {
			snprintf(why, whylen,
			    "'%s': '%.*s' is not an IPv6 address", s,
			    (int)hostlen, host);
			return -1;
		}
		v6 = 1;
	} else {
		colon = strrchr(s, ':');
		if (colon != NULL && strchr(s, ':') != colon) {
			snprintf(why, whylen,
			    "'%s': put an IPv6 address in brackets, as in "
			    "[::1]:8000", s);
			return -1;
		}
		if (colon != NULL) {
			host = s;
			hostlen = (size_t)(colon - s);
			port = colon + 1;
		} else if (all_digits(s)) {
			host = "";
			hostlen = 0;
			port = s;
		} else {
			host = s;
			hostlen = strlen(s);
			port = NW_DEFAULT_PORT;
		}
		/* ":8000", "8000" and "*:8000": every IPv4 interface. */
		if (hostlen == 0 || (hostlen == 1 && host[0] == '*')) {
			host = "0.0.0.0";
			hostlen = strlen(host);
		}
		if (!hostname_ok(host, hostlen))
			goto bad;
	}
	if (!all_digits(port) || strlen(port) > 5 ||
	    (portnum = strtol(port, NULL, 10)) > 65535) {
		snprintf(why, whylen,
		    "'%s': the port must be a number from 0 to 65535", s);
		return -1;
	}
	*out = malloc(hostlen + 16);
	if (*out == NULL)
		return oom(why, whylen);
	sprintf(*out, v6 ? "[%.*s]:%ld" : "%.*s:%ld", (int)hostlen, host,
	    portnum);
	return 0;
bad:
	snprintf(why, whylen,
	    "'%s' is not HOST:PORT, [IPV6]:PORT, unix:PATH or fd://NAME", s);
	return -1;
}

static int
strv_push(char ***v, size_t *n, char *s)
{
	char **grown;

	if (s == NULL)
		return -1;
	/* Always one slot more: the lists stay NULL-terminated. */
	if ((grown = realloc(*v, (*n + 2) * sizeof(*grown))) == NULL) {
		free(s);
		return -1;
	}
	*v = grown;
	grown[(*n)++] = s;
	grown[*n] = NULL;
	return 0;
}

void
nw_strv_free(char **v)
{
	char **p;

	if (v == NULL)
		return;
	for (p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

/*
 * A command line without a shell: words split on whitespace, and double
 * quotes keep spaces (inside them \" and \\ stand for " and \). A relative
 * program path is taken against the config's directory, as every other path.
 */
int
nw_parse_argv(const char *s, const char *base, char ***out, char *why,
    size_t whylen)
{
	const char *p = s;
	char *word, **v = NULL;
	size_t n = 0, len;

	if ((word = malloc(strlen(s) + 1)) == NULL)
		return oom(why, whylen);
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		len = 0;
		while (*p != '\0' && !isspace((unsigned char)*p)) {
			if (*p != '"') {
				word[len++] = *p++;
				continue;
			}
			for (p++; *p != '\0' && *p != '"'; p++) {
				if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
					p++;
				word[len++] = *p;
			}
			if (*p != '"') {
				snprintf(why, whylen,
				    "'%s' has an unterminated double quote", s);
				goto fail;
			}
			p++;
		}
		word[len] = '\0';
		if (n == 0 && word[0] != '/' && strchr(word, '/') != NULL) {
			if (strv_push(&v, &n, nw_path_resolve(base, word)) < 0)
				goto nomem;
		} else if (strv_push(&v, &n, strdup(word)) < 0)
			goto nomem;
	}
	free(word);
	*out = v;
	return 0;
nomem:
	oom(why, whylen);
fail:
	free(word);
	nw_strv_free(v);
	return -1;
}

/* gunicorn's --pythonpath: comma-separated, blanks around entries ignored. */
int
nw_parse_list(const char *s, const char *base, char ***out, size_t *n,
    char *why, size_t whylen)
{
	const char *p = s, *end, *next;
	char *entry, **v = NULL;
	size_t count = 0;

	while (*p != '\0') {
		while (isspace((unsigned char)*p) || *p == ',')
			p++;
		if (*p == '\0')
			break;
		for (end = p; *end != '\0' && *end != ','; end++)
			;
		next = end;
		while (isspace((unsigned char)end[-1]))
			end--;
		if ((entry = strndup(p, (size_t)(end - p))) == NULL)
			goto nomem;
		if (strv_push(&v, &count, nw_path_resolve(base, entry)) < 0) {
			free(entry);
			goto nomem;
		}
		free(entry);
		p = next;
	}
	*out = v;
	*n = count;
	return 0;
nomem:
	nw_strv_free(v);
	return oom(why, whylen);
}

int
nw_env_name_ok(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || isdigit((unsigned char)name[0]))
		return 0;
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)name[i]) && name[i] != '_')
			return 0;
	}
	return 1;
}

/*
 * base + path, absolute, with "." components and repeated or trailing
 * slashes removed. ".." stays: only the kernel knows what it means when a
 * symlink precedes it.
 */
char *
nw_path_resolve(const char *base, const char *path)
{
	size_t baselen = path[0] == '/' ? 0 : strlen(base);
	char *joined, *r, *w;

	if ((joined = malloc(baselen + strlen(path) + 2)) == NULL)
		return NULL;
	if (baselen == 0)
		strcpy(joined, path);
	else
		sprintf(joined, "%s/%s", base, path);
	for (r = w = joined; *r != '\0';) {
		if (*r != '/') {
			*w++ = *r++;
			continue;
		}
		while (*r == '/')
			r++;
		if (r[0] == '.' && (r[1] == '/' || r[1] == '\0')) {
			r++;
			continue;
		}
		if (*r == '\0')
			break;
		*w++ = '/';
	}
	if (w == joined)
		*w++ = '/';
	*w = '\0';
	return joined;
}

char *
nw_path_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int
has_dot_component(const char *path)
{
	const char *p;

	for (p = path; (p = strchr(p, '.')) != NULL; p++) {
		if (p[-1] != '/')
			continue;
		if (p[1] == '/' || p[1] == '\0')
			return 1;
		if (p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
			return 1;
	}
	return 0;
}

/*
 * The directory the user started us in, as they named it: $PWD when it is
 * absolute, clean and really is ".", like `pwd -L`. getcwd() would resolve
 * a "current -> releases/v42" symlink and pin the first code tree forever.
 */
char *
nw_logical_cwd(void)
{
	const char *pwd = getenv("PWD");
	struct stat named, dot;

	if (pwd != NULL && pwd[0] == '/' && !has_dot_component(pwd) &&
	    stat(pwd, &named) == 0 && stat(".", &dot) == 0 &&
	    named.st_dev == dot.st_dev && named.st_ino == dot.st_ino)
		return nw_path_resolve("/", pwd);
	return getcwd(NULL, 0);
}

/* The first executable "name" in PATH, or NULL. */
char *
nw_search_path(const char *name)
{
	const char *path = getenv("PATH"), *p, *end;
	struct stat st;
	char *candidate;

	if (path == NULL || path[0] == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	for (p = path;; p = end + 1) {
		end = strchrnul(p, ':');
		if (end > p && asprintf(&candidate, "%.*s/%s", (int)(end - p),
		    p, name) >= 0) {
			if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode) &&
			    access(candidate, X_OK) == 0)
				return candidate;
			free(candidate);
		}
		if (*end == '\0')
			return NULL;
	}
}
