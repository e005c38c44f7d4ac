/*
 * test_config.c: nw_config_load() from the file and the flags, every kind of
 * value good and bad, the exact error lines, and the runtime and state
 * directories a config resolves to.
 *
 * The error lines are asserted whole because operators and the integration
 * tests read them. Files live in one mkdtemp() directory, removed at exit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* 128 bytes of path after the slash: one past NW_URLPATH_MAX with it */
#define LONG_PATH_16 "abcdefghijklmnop"
#define LONG_PATH_128 LONG_PATH_16 LONG_PATH_16 LONG_PATH_16 LONG_PATH_16 \
	LONG_PATH_16 LONG_PATH_16 LONG_PATH_16 LONG_PATH_16
#include "tap.h"

/* Any executable passes the python check; this one exists everywhere. */
#define PY "/bin/sh"

static char tmpdir[64];
static char inipath[128];
static char err[1024];

static struct nw_config *
loadv(const char *const *args)
{
	char *argv[64];
	int argc = 0;

	argv[argc++] = "narwhal";
	while (*args != NULL && argc < 63)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	return nw_config_load(argc, argv, err, sizeof(err));
}

#define LOAD(...) loadv((const char *[]){ __VA_ARGS__, NULL })

/* Loads, expects failure with exactly `want`, and frees what it must. */
static void
fails_with(const char *want, const char *const *args, int line)
{
	struct nw_config *c = loadv(args);

	tap_ok(c == NULL, __FILE__, line, "fails: %s", want);
	tap_is_str(err, want, __FILE__, line, "error line");
	nw_config_free(c);
}

#define FAILS(want, ...)                                                       \
	fails_with(want, (const char *[]){ __VA_ARGS__, NULL }, __LINE__)

static const char *
fmt(const char *f, ...)
{
	static char buf[1024];
	va_list ap;

	va_start(ap, f);
	vsnprintf(buf, sizeof(buf), f, ap);
	va_end(ap);
	return buf;
}

static const char *
write_file(const char *name, const char *content)
{
	static char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if ((fp = fopen(path, "w")) == NULL) {
		perror(path);
		exit(2);
	}
	fputs(content, fp);
	fclose(fp);
	return path;
}

/* The config file every file test uses; returns its path. */
static const char *
ini(const char *content)
{
	snprintf(inipath, sizeof(inipath), "%s",
	    write_file("app.ini", content));
	return inipath;
}

static int
remove_entry(const char *path, const struct stat *st, int type,
    struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void
cleanup(void)
{
	if (tmpdir[0] != '\0')
		nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *
cwd(void)
{
	static char buf[4096];

	/* The test runs where its PWD says, so both spellings agree. */
	if (getcwd(buf, sizeof(buf)) == NULL)
		exit(2);
	return buf;
}

static void
test_defaults(void)
{
	struct nw_config *c;

	if (access("/usr/bin/python3", X_OK) != 0) {
		skip("no /usr/bin/python3: the default python cannot load");
		return;
	}
	/* No python set: python3 on PATH, as gunicorn's would be. */
	setenv("PATH", "/usr/bin:/bin", 1);
	unsetenv("VIRTUAL_ENV");
	c = LOAD("app:application");
	if (!ok(c != NULL, "defaults load: %s", err))
		return;
	is_str(c->python_why, "python3 on PATH", "python: how it was found");
	is_str(c->path, NULL, "no config file");
	is_str(c->app, "app:application", "app");
	is_int(c->interface, NW_INTERFACE_AUTO, "interface");
	is_str(c->asyncio_loop, "auto", "asyncio_loop");
	is_str(c->python, "/usr/bin/python3", "python");
	is_str(c->chdir, cwd(), "chdir is the current directory");
	is_int(c->npythonpath, 0, "pythonpath");
	is_int(c->nbinds, 1, "one bind");
	is_str(c->binds[0], "127.0.0.1:8000", "bind");
	is_int(c->backlog, 2048, "backlog");
	is_int(c->workers, 1, "workers");
	is_str(c->worker_class, "sync", "worker_class");
	is_int(c->worker_kind, NW_WORKER_AUTO, "worker_kind");
	is_int(c->threads, 1, "threads");
	is_int(c->worker_connections, 1000, "worker_connections");
	is_double(c->timeout, 30, "timeout");
	is_double(c->graceful_timeout, 30, "graceful_timeout");
	is_double(c->keepalive, 2, "keepalive");
	is_double(c->header_timeout, 10, "header_timeout");
	is_double(c->boot_timeout, 60, "boot_timeout");
	is_int(c->max_requests, 0, "max_requests");
	is_int(c->max_requests_jitter, 0, "max_requests_jitter");
	is_double(c->max_worker_lifetime, 0, "max_worker_lifetime");
	is_int(c->max_worker_memory, 0, "max_worker_memory");
	is_int(c->max_recycling, 1, "max_recycling");
	is_str(c->ready_path, NULL, "ready_path");
	is_str(c->ready_host, "localhost", "ready_host");
	is_double(c->ready_interval, 0.5, "ready_interval");
	is_int(c->ready_successes, 1, "ready_successes");
	is_double(c->ready_timeout, 2, "ready_timeout");
	is_int(c->reload_batch, 0, "reload_batch");
	is_double(c->min_uptime, 2, "min_uptime");
	is_int(c->boot_retries, 1, "boot_retries");
	is_int(c->rollback, NW_ROLLBACK_SYMLINK, "rollback");
	ok(c->on_rollback == NULL, "on_rollback");
	is_int(c->limit_request_line, 4094, "limit_request_line");
	is_int(c->limit_request_fields, 100, "limit_request_fields");
	is_int(c->limit_request_field_size, 8190, "limit_request_field_size");
	is_int(c->limit_request_body, 100LL << 20, "limit_request_body");
	is_str(c->pidfile, NULL, "pidfile");
	is_str(c->user, NULL, "user");
	is_str(c->group, NULL, "group");
	is_int(c->umask, -1, "umask");
	is_str(c->runtime_dir, NULL, "runtime_dir");
	is_str(c->state_dir, NULL, "state_dir");
	is_str(c->control_socket, NULL, "control_socket");
	is_str(c->accesslog, NULL, "accesslog");
	is_str(c->errorlog, "-", "errorlog");
	is_int(c->loglevel, NW_LOG_INFO, "loglevel");
	is_int(c->nenv, 0, "env");
	nw_config_free(c);
}

static void
test_missing_app(void)
{
	FAILS("no app given: set app = module:callable or pass it as an "
	      "argument",
	    "--python", PY);
	FAILS(fmt("%s:1: syntax error: expected KEY = VALUE, [SECTION] or a "
		  "comment", ini("workers 2\n")),
	    "-c", inipath);
}

/* A whole file: every key set to something other than its default. */
static void
test_file(void)
{
	struct nw_config *c;
	char dir[256];

	snprintf(dir, sizeof(dir), "%s/code", tmpdir);
	mkdir(dir, 0755);
	ini("; narwhal test config\n"
	    "# both comment styles\n"
	    "[narwhal]\n"
	    "app = mysite.wsgi:application\n"
	    "interface = wsgi\n"
	    "asyncio_loop = uvloop\n"
	    "python = " PY "\n"
	    "chdir = code\n"
	    "pythonpath = lib, /opt/shared\n"
	    "bind = 127.0.0.1:0\n"
	    "bind = unix:app.sock\n"
	    "backlog = 128\n"
	    "workers = 4   ; inline comment\n"
	    "timeout = 12.5\n"
	    "graceful_timeout = 0\n"
	    "keepalive = 5\n"
	    "header_timeout = 3\n"
	    "boot_timeout = 90\n"
	    "max_requests = 1000\n"
	    "max_requests_jitter = 50\n"
	    "max_worker_lifetime = 3600\n"
	    "max_worker_memory = 512M\n"
	    "max_recycling = 2\n"
	    "ready_path = /health/ready\n"
	    "ready_interval = 0.25\n"
	    "ready_successes = 3\n"
	    "ready_timeout = 1.5\n"
	    "reload_batch = 2\n"
	    "min_uptime = 0\n"
	    "boot_retries = 0\n"
	    "rollback = none\n"
	    "on_rollback = /usr/bin/logger -t narwhal \"rolled back\"\n"
	    "limit_request_line = 0\n"
	    "limit_request_fields = 50\n"
	    "limit_request_field_size = 4096\n"
	    "limit_request_body = 10m\n"
	    "pidfile = run/app.pid\n"
	    "user = www-data\n"
	    "group = www-data\n"
	    "umask = 0027\n"
	    "runtime_dir = rt\n"
	    "state_dir = /var/lib/app\n"
	    "control_socket = ctl.sock\n"
	    "accesslog = -\n"
	    "errorlog = logs/error.log\n"
	    "loglevel = warning\n"
	    "\n"
	    "[env]\n"
	    "DJANGO_SETTINGS_MODULE = mysite.settings\n"
	    "EMPTY =\n"
	    "WITH_SPACES = a b  c\n");
	c = LOAD("-c", inipath);
	if (!ok(c != NULL, "full file loads: %s", err))
		return;
	is_str(c->path, inipath, "path is absolute");
	is_str(c->app, "mysite.wsgi:application", "app");
	is_int(c->interface, NW_INTERFACE_WSGI, "interface");
	is_str(c->asyncio_loop, "uvloop", "asyncio_loop");
	is_str(c->python, PY, "python");
	is_str(c->chdir, dir, "chdir relative to the file");
	is_int(c->npythonpath, 2, "pythonpath: two entries");
	is_str(c->pythonpath[0], fmt("%s/lib", tmpdir), "pythonpath[0]");
	is_str(c->pythonpath[1], "/opt/shared", "pythonpath[1]");
	ok(c->pythonpath[2] == NULL, "pythonpath NULL-terminated");
	is_int(c->nbinds, 2, "bind repeats");
	is_str(c->binds[0], "127.0.0.1:0", "bind port 0");
	is_str(c->binds[1], fmt("unix:%s/app.sock", tmpdir),
	    "unix bind relative to the file");
	is_int(c->backlog, 128, "backlog");
	is_int(c->workers, 4, "workers, inline comment stripped");
	is_double(c->timeout, 12.5, "timeout");
	is_double(c->graceful_timeout, 0, "graceful_timeout");
	is_double(c->keepalive, 5, "keepalive");
	is_double(c->header_timeout, 3, "header_timeout");
	is_double(c->boot_timeout, 90, "boot_timeout");
	is_int(c->max_requests, 1000, "max_requests");
	is_int(c->max_requests_jitter, 50, "max_requests_jitter");
	is_double(c->max_worker_lifetime, 3600, "max_worker_lifetime");
	is_int(c->max_worker_memory, 512LL << 20, "max_worker_memory");
	is_int(c->max_recycling, 2, "max_recycling");
	is_str(c->ready_path, "/health/ready", "ready_path");
	is_double(c->ready_interval, 0.25, "ready_interval");
	is_int(c->ready_successes, 3, "ready_successes");
	is_double(c->ready_timeout, 1.5, "ready_timeout");
	is_int(c->reload_batch, 2, "reload_batch");
	is_double(c->min_uptime, 0, "min_uptime");
	is_int(c->boot_retries, 0, "boot_retries");
	is_int(c->rollback, NW_ROLLBACK_NONE, "rollback");
	if (ok(c->on_rollback != NULL, "on_rollback")) {
		is_str(c->on_rollback[0], "/usr/bin/logger", "argv[0]");
		is_str(c->on_rollback[1], "-t", "argv[1]");
		is_str(c->on_rollback[2], "narwhal", "argv[2]");
		is_str(c->on_rollback[3], "rolled back", "quoted argv[3]");
		ok(c->on_rollback[4] == NULL, "argv NULL-terminated");
	}
	is_int(c->limit_request_line, 0, "limit_request_line 0: unlimited");
	is_int(c->limit_request_fields, 50, "limit_request_fields");
	is_int(c->limit_request_field_size, 4096, "limit_request_field_size");
	is_int(c->limit_request_body, 10LL << 20, "limit_request_body");
	is_str(c->pidfile, fmt("%s/run/app.pid", tmpdir), "pidfile");
	is_str(c->user, "www-data", "user");
	is_str(c->group, "www-data", "group");
	is_int(c->umask, 027, "umask");
	is_str(c->runtime_dir, fmt("%s/rt", tmpdir), "runtime_dir");
	is_str(c->state_dir, "/var/lib/app", "state_dir");
	is_str(c->control_socket, fmt("%s/ctl.sock", tmpdir),
	    "control_socket");
	is_str(c->accesslog, "-", "accesslog");
	is_str(c->errorlog, fmt("%s/logs/error.log", tmpdir), "errorlog");
	is_int(c->loglevel, NW_LOG_WARNING, "loglevel");
	if (is_int(c->nenv, 3, "three env vars")) {
		is_str(c->env[0].name, "DJANGO_SETTINGS_MODULE", "env[0]");
		is_str(c->env[0].value, "mysite.settings", "env[0] value");
		is_str(c->env[1].name, "EMPTY", "env[1]");
		is_str(c->env[1].value, "", "env[1] empty value");
		is_str(c->env[2].value, "a b  c", "env[2] inner blanks kept");
	}
	nw_config_free(c);
}

static void
test_file_errors(void)
{
	const char *p;
	char longline[400];

	FAILS(fmt("%s:3: workrs: unknown key",
		  ini("[narwhal]\napp = a:b\nworkrs = 2\n")),
	    "-c", inipath);
	FAILS(fmt("%s:2: max-requests: unknown key (keys use underscores: "
		  "max_requests)",
		  ini("[narwhal]\nmax-requests = 2\n")),
	    "-c", inipath);
	FAILS(fmt("%s:4: [frob]: unknown section (expected [narwhal] or "
		  "[env])",
		  ini("[narwhal]\napp = a:b\n\n[frob]\n")),
	    "-c", inipath);
	FAILS(fmt("%s:1: workers: outside any section (put it under "
		  "[narwhal])",
		  ini("workers = 2\n[narwhal]\n")),
	    "-c", inipath);
	FAILS(fmt("%s:7: workers: 'abc' is not a whole number >= 1",
		  ini("[narwhal]\n\n; comment\n# comment\napp = a:b\n"
		      "python = " PY "\nworkers = abc\n")),
	    "-c", inipath);
	FAILS(fmt("%s:3: workers: already set on line 2",
		  ini("[narwhal]\nworkers = 2\nworkers = 3\n")),
	    "-c", inipath);
	FAILS(fmt("%s:3: workers: unexpected indentation (keys start in the "
		  "first column; a value fits on one line)",
		  ini("[narwhal]\nworkers = 2\n  3\n")),
	    "-c", inipath);
	FAILS(fmt("%s:3: timeout: unexpected indentation (keys start in the "
		  "first column; a value fits on one line)",
		  ini("[narwhal]\n  workers = 2\n  timeout = 3\n")),
	    "-c", inipath);
	FAILS(fmt("%s:4: timeout: 'x' is not a number of seconds >= 0",
		  ini("[narwhal]\r\napp = a:b\r\n\r\ntimeout = x\r\n")),
	    "-c", inipath);
	FAILS(fmt("%s:3: syntax error: expected KEY = VALUE, [SECTION] or a "
		  "comment",
		  ini("[narwhal]\napp = a:b\nworkers\n")),
	    "-c", inipath);
	FAILS(fmt("%s:1: syntax error: expected KEY = VALUE, [SECTION] or a "
		  "comment",
		  ini("[narwhal\napp = a:b\n")),
	    "-c", inipath);
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "app = ", 6);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	FAILS(fmt("%s:2: line is longer than 198 characters",
		  ini(fmt("[narwhal]\n%s", longline))),
	    "-c", inipath);
	/* The earlier of two errors wins, whoever found it. */
	FAILS(fmt("%s:2: [frob]: unknown section (expected [narwhal] or "
		  "[env])",
		  ini("[narwhal]\n[frob]\nx = 1\ngarbage\n")),
	    "-c", inipath);
	FAILS(fmt("%s:2: syntax error: expected KEY = VALUE, [SECTION] or a "
		  "comment",
		  ini("[narwhal]\ngarbage\nworkers = abc\n")),
	    "-c", inipath);
	FAILS(fmt("%s:2: 1X: '1X' is not a valid environment variable name",
		  ini("[env]\n1X = y\n")),
	    "-c", inipath);
	FAILS(fmt("%s:3: A: already set on line 2",
		  ini("[env]\nA = 1\nA = 2\n")),
	    "-c", inipath);
	FAILS(fmt("%s:2: NARWHAL_APP: 'NARWHAL_APP': names starting with "
		  "NARWHAL_ are narwhal's own",
		  ini("[env]\nNARWHAL_APP = x\n")),
	    "-c", inipath);
	FAILS(fmt("%s:4: python: /nonexistent/python3: No such file or "
		  "directory",
		  ini("[narwhal]\napp = a:b\n\n"
		      "python = /nonexistent/python3\n")),
	    "-c", inipath);
	FAILS(fmt("%s:2: chdir: %s/missing: No such file or directory",
		  ini("[narwhal]\nchdir = missing\napp = a:b\npython = " PY
		      "\n"),
		  tmpdir),
	    "-c", inipath);
	FAILS("cannot read /nonexistent.ini: No such file or directory", "-c",
	    "/nonexistent.ini");
	FAILS(fmt("cannot read %s: Is a directory", tmpdir), "-c", tmpdir);
	/* A key a flag overrides is still checked where the file set it. */
	p = ini("[narwhal]\nworkers = 0\n");
	FAILS(fmt("%s:2: workers: '0' is not a whole number >= 1",
		  p),
	    "-c", inipath, "-w", "2");
}

/* One flag, one value: good values stored, bad ones named. */
static void
test_values(void)
{
	struct nw_config *c;
	struct {
		const char *flag, *value, *error;
	} bad[] = {
		{ "--workers", "abc", "'abc' is not a whole number >= 1" },
		{ "--workers", "0", "'0' is not a whole number >= 1" },
		{ "--workers", "1025",
		    "'1025' is not a whole number from 1 to 1024" },
		{ "--workers", "", "'' is not a whole number >= 1" },
		{ "--workers", "4x", "'4x' is not a whole number >= 1" },
		{ "--workers", "-3", "'-3' is not a whole number >= 1" },
		{ "--backlog", "3000000000",
		    "'3000000000' is not a whole number from 1 to 2147483647" },
		{ "--backlog", "0", "'0' is not a whole number >= 1" },
		{ "--max-requests", "-1", "'-1' is not a whole number >= 0" },
		{ "--max-requests", "99999999999999999999999",
		    "'99999999999999999999999' is not a whole number from 0 to "
		    "9223372036854775807" },
		{ "--timeout", "-0.5", "'-0.5' is not a number of seconds >= 0" },
		{ "--timeout", "-1", "'-1' is not a number of seconds >= 0" },
		{ "--timeout", "1e3", "'1e3' is not a number of seconds >= 0" },
		{ "--timeout", "inf", "'inf' is not a number of seconds >= 0" },
		{ "--timeout", "1.2.3",
		    "'1.2.3' is not a number of seconds >= 0" },
		{ "--timeout", ".", "'.' is not a number of seconds >= 0" },
		{ "--timeout", "2000000000",
		    "'2000000000' is too long: at most 1000000000 seconds" },
		{ "--boot-timeout", "0", "'0' is not a number of seconds > 0" },
		{ "--graceful-timeout", "x",
		    "'x' is not a number of seconds >= 0" },
		{ "--max-worker-memory", "12X",
		    "'12X' is not a size in bytes (a whole number, or with K, "
		    "M or G as in 512M)" },
		{ "--max-worker-memory", "M",
		    "'M' is not a size in bytes (a whole number, or with K, M "
		    "or G as in 512M)" },
		{ "--limit-request-body", "99999999999G",
		    "'99999999999G' is too large" },
		{ "--umask", "8",
		    "'8' is not an octal mode from 0000 to 0777" },
		{ "--umask", "01000",
		    "'01000' is not an octal mode from 0000 to 0777" },
		{ "--interface", "rsgi",
		    "'rsgi' is not one of auto, wsgi, asgi" },
		{ "--asyncio-loop", "trio",
		    "'trio' is not one of auto, asyncio, uvloop" },
		{ "--rollback", "git", "'git' is not one of symlink, none" },
		{ "--on-rollback", "notify \"oops",
		    "'notify \"oops' has an unterminated double quote" },
		{ "--log-level", "verbose",
		    "'verbose' is not one of debug, info, warning, error, "
		    "critical" },
		{ "--ready-path", "health",
		    "'health' is not a URL path starting with /" },
		{ "--ready-path", "/a b",
		    "'/a b' is not a URL path starting with /" },
		{ "--warmup-path", "/" LONG_PATH_128,
		    "a health check path is at most 127 bytes (this one has "
		    "129)" },
		{ "--ready-host", "", "needs a host name, as in "
		    "www.example.com" },
		{ "--ready-host", "shop example.com",
		    "a host name has no blanks" },
		{ "--ready-host", "shop.example.com\x7f",
		    "a host name has no control characters" },
		{ "--ready-host", "b\xc3\xbc" "cher.example",
		    "a host name is ASCII (an internationalized one is written "
		    "xn--...)" },
		{ "--ready-host", "http://shop.example.com/",
		    "'http://shop.example.com/' is not HOST or HOST:PORT ('/' "
		    "cannot be in a host name)" },
		{ "--ready-host", "a@b", "'a@b' is not HOST or HOST:PORT ('@' "
		    "cannot be in a host name)" },
		{ "--ready-host", "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789",
		    "'01234567890123456789012345678901...' is longer than 255 "
		    "characters" },
		{ "--app", "a:", "'a:' is not MODULE:CALLABLE (for example "
		    "app:application)" },
		{ "--app", "1a:b", "'1a:b' is not MODULE:CALLABLE (for example "
		    "app:application)" },
		{ "--app", "a.:b", "'a.:b' is not MODULE:CALLABLE (for example "
		    "app:application)" },
		{ "--bind", "localhost:99999",
		    "'localhost:99999': the port must be a number from 0 to "
		    "65535" },
		{ "--bind", "localhost:",
		    "'localhost:': the port must be a number from 0 to 65535" },
		{ "--bind", "::1:80",
		    "'::1:80': put an IPv6 address in brackets, as in "
		    "[::1]:8000" },
		{ "--bind", "[zz]:80",
		    "'[zz]:80': 'zz' is not an IPv6 address" },
		{ "--bind", "[::1]x",
		    "'[::1]x' is not HOST:PORT, [IPV6]:PORT, unix:PATH or fd://NAME" },
		{ "--bind", "a b:80",
		    "'a b:80' is not HOST:PORT, [IPV6]:PORT, unix:PATH or fd://NAME" },
		{ "--bind", "unix:", "'unix:' has no socket path" },
		{ "--bind", "unix:/" "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789",
		    "'unix:/0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789': a Unix socket "
		    "path has at most 107 bytes" },
		{ "--python", "", "must not be empty" },
		{ "--python", "/nonexistent/python3",
		    "/nonexistent/python3: No such file or directory" },
		{ "--python", "/", "/: Is a directory" },
		{ "--python", "/etc/passwd", "/etc/passwd: Permission denied" },
		{ "--python", "no-such-python-here",
		    "no-such-python-here: not found in PATH" },
		{ "--chdir", "/nonexistent",
		    "/nonexistent: No such file or directory" },
		{ "--chdir", "/etc/passwd", "/etc/passwd: Not a directory" },
		{ "--errorlog", "", "needs a path, or - for stderr" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* --python last for the python cases: flags are in order. */
		const char *py = strcmp(bad[i].flag, "--python") == 0 ?
		    bad[i].value : PY;

		c = LOAD("app:x", "--python", py, bad[i].flag, bad[i].value);
		ok(c == NULL, "%s '%s' fails", bad[i].flag, bad[i].value);
		is_str(err, fmt("%s: %s", bad[i].flag, bad[i].error),
		    "%s '%s': error line", bad[i].flag, bad[i].value);
		nw_config_free(c);
	}

	c = LOAD("app:x", "--python", PY, "--max-worker-memory", "100",
	    "--limit-request-body", "2k", "--umask", "0o22", "--log-level",
	    "DEBUG", "--timeout", ".5", "--interface", "asgi",
	    "--asyncio-loop", "asyncio", "--on-rollback", "",
	    "--limit-request-fields", "0", "--python", "sh");
	if (ok(c != NULL, "good values: %s", err)) {
		is_int(c->max_worker_memory, 100, "plain bytes");
		is_int(c->limit_request_body, 2048, "K suffix, lower case");
		is_int(c->umask, 022, "0o22");
		is_int(c->loglevel, NW_LOG_DEBUG, "log level in capitals");
		is_double(c->timeout, 0.5, "'.5' seconds");
		is_int(c->interface, NW_INTERFACE_ASGI, "interface asgi");
		is_str(c->asyncio_loop, "asyncio", "asyncio_loop");
		ok(c->on_rollback == NULL, "empty on_rollback: none");
		is_int(c->limit_request_fields, 0, "limit 0");
		ok(c->python[0] == '/' &&
		    strcmp(c->python + strlen(c->python) - 3, "/sh") == 0,
		    "python without a slash found in PATH: %s", c->python);
		nw_config_free(c);
	}
	c = LOAD("--python", PY, "--max-worker-memory", "1G",
	    "--on-rollback", "hooks/notify \"a \\\"b\\\" \\\\\"x",
	    "--umask", "0", "--app", "pkg.mod:create_app()");
	if (ok(c != NULL, "more good values: %s", err)) {
		is_int(c->max_worker_memory, 1LL << 30, "1G");
		is_int(c->umask, 0, "umask 0");
		is_str(c->on_rollback[0], fmt("%s/hooks/notify", cwd()),
		    "relative program resolved");
		is_str(c->on_rollback[1], "a \"b\" \\x", "escapes in quotes");
		ok(c->on_rollback[2] == NULL, "two words");
		is_str(c->app, "pkg.mod:create_app()", "app factory call");
		nw_config_free(c);
	}
	c = LOAD("--python", PY, "app:x", "--ready-host",
	    "shop.example.com\r\nX-Forwarded-For: 1");
	ok(c == NULL, "ready_host with CR LF fails");
	is_str(err, "--ready-host: a host name has no control characters",
	    "ready_host with CR LF: error line");
	nw_config_free(c);
	c = LOAD("--python", PY, "app:x", "--ready-host", "[::1]:8443");
	if (ok(c != NULL, "ready_host with a port: %s", err)) {
		is_str(c->ready_host, "[::1]:8443", "ready_host as written");
		nw_config_free(c);
	}
	c = LOAD("--python", PY, "myapp");
	if (ok(c != NULL, "bare module: %s", err)) {
		is_str(c->app, "myapp:application",
		    "gunicorn's default callable");
		nw_config_free(c);
	}
}

static void
test_binds(void)
{
	static const struct {
		const char *written, *stored;
	} good[] = {
		{ "127.0.0.1:0", "127.0.0.1:0" },
		{ "localhost", "localhost:8000" },
		{ ":9000", "0.0.0.0:9000" },
		{ "9000", "0.0.0.0:9000" },
		{ "*:80", "0.0.0.0:80" },
		{ "[::1]:8080", "[::1]:8080" },
		{ "[::]", "[::]:8000" },
		{ "[fe80::1%eth0]:80", "[fe80::1%eth0]:80" },
		{ "example.com:00443", "example.com:443" },
		{ "unix:/run/app.sock", "unix:/run/app.sock" },
		{ "unix:///run/app.sock", "unix:/run/app.sock" },
	};
	struct nw_config *c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		c = LOAD("app:x", "--python", PY, "-b", good[i].written);
		if (ok(c != NULL, "bind %s: %s", good[i].written, err)) {
			is_int(c->nbinds, 1, "one bind");
			is_str(c->binds[0], good[i].stored, "stored as");
		}
		nw_config_free(c);
	}
	c = LOAD("app:x", "--python", PY, "-b", "unix:rel.sock");
	if (ok(c != NULL, "relative unix bind: %s", err)) {
		is_str(c->binds[0], fmt("unix:%s/rel.sock", cwd()),
		    "relative to the current directory on the command line");
		nw_config_free(c);
	}

	/* The command line's binds replace the file's, as in gunicorn. */
	ini("[narwhal]\napp = a:b\npython = " PY "\n"
	    "bind = 127.0.0.1:1\nbind = 127.0.0.1:2\n");
	c = LOAD("-c", inipath);
	if (ok(c != NULL, "file binds: %s", err)) {
		is_int(c->nbinds, 2, "both file binds");
		is_str(c->binds[1], "127.0.0.1:2", "in order");
		ok(c->binds[2] == NULL, "NULL-terminated");
		nw_config_free(c);
	}
	c = LOAD("-c", inipath, "-b", "127.0.0.1:3", "--bind=unix:/tmp/x.sock",
	    "--bind", "[::1]:4");
	if (ok(c != NULL, "flag binds: %s", err)) {
		is_int(c->nbinds, 3, "flags replace the file's binds");
		is_str(c->binds[0], "127.0.0.1:3", "first flag bind");
		is_str(c->binds[1], "unix:/tmp/x.sock", "second");
		is_str(c->binds[2], "[::1]:4", "third");
		nw_config_free(c);
	}
}

static void
test_flags(void)
{
	struct nw_config *c;

	ini("[narwhal]\napp = file:app\npython = " PY "\nworkers = 2\n"
	    "timeout = 5\nmax_requests = 7\npidfile = /run/file.pid\n"
	    "[env]\nA = 1\nB = 2\n");
	c = LOAD("-c", inipath, "-w", "3", "--max-requests=5", "-e", "B=3",
	    "--env=C=4=four", "-e", "A=", "cli:app");
	if (ok(c != NULL, "flags over a file: %s", err)) {
		is_int(c->workers, 3, "-w wins over the file");
		is_double(c->timeout, 5, "the file's timeout stays");
		is_int(c->max_requests, 5, "--max-requests=5");
		is_str(c->pidfile, "/run/file.pid", "file pidfile stays");
		is_str(c->app, "cli:app", "positional app wins");
		if (is_int(c->nenv, 3, "env: A, B, C")) {
			is_str(c->env[0].name, "A", "file order kept");
			is_str(c->env[0].value, "", "-e A= empties it");
			is_str(c->env[1].value, "3", "-e B=3 wins");
			is_str(c->env[2].name, "C", "-e adds");
			is_str(c->env[2].value, "4=four", "value keeps '='");
		}
		nw_config_free(c);
	}

	c = LOAD("app:x", "--python", PY, "-w4", "--max_requests", "9",
	    "--keep-alive", "7", "--pid", "p.pid", "--access-logfile", "a.log",
	    "--log-file", "-", "--log-level", "error", "-t", "9", "-u",
	    "nobody", "-g", "nogroup", "-m", "077", "--graceful-timeout", "1",
	    "--max-requests-jitter", "3", "--limit-request-field_size", "100",
	    "--pythonpath", "a, /b,,c ", "--chdir", "/", "-p", "q.pid");
	if (ok(c != NULL, "gunicorn flags: %s", err)) {
		is_int(c->workers, 4, "-w4");
		is_int(c->max_requests, 9, "--max_requests");
		is_double(c->keepalive, 7, "--keep-alive");
		is_str(c->pidfile, fmt("%s/q.pid", cwd()),
		    "-p after --pid: last wins, relative to the cwd");
		is_str(c->accesslog, fmt("%s/a.log", cwd()),
		    "--access-logfile");
		is_str(c->errorlog, "-", "--log-file");
		is_int(c->loglevel, NW_LOG_ERROR, "--log-level");
		is_double(c->timeout, 9, "-t is --timeout");
		is_str(c->user, "nobody", "-u");
		is_str(c->group, "nogroup", "-g");
		is_int(c->umask, 077, "-m");
		is_double(c->graceful_timeout, 1, "--graceful-timeout");
		is_int(c->max_requests_jitter, 3, "--max-requests-jitter");
		is_int(c->limit_request_field_size, 100,
		    "--limit-request-field_size");
		if (is_int(c->npythonpath, 3, "--pythonpath: three entries")) {
			is_str(c->pythonpath[0], fmt("%s/a", cwd()), "a");
			is_str(c->pythonpath[1], "/b", "/b");
			is_str(c->pythonpath[2], fmt("%s/c", cwd()), "c");
		}
		is_str(c->chdir, "/", "--chdir");
		nw_config_free(c);
	}
	c = LOAD("--python", PY, "--limit-request-field-size", "5", "--",
	    "app:x");
	if (ok(c != NULL, "'--' ends the options: %s", err)) {
		is_int(c->limit_request_field_size, 5,
		    "--limit-request-field-size");
		is_str(c->app, "app:x", "app after --");
		nw_config_free(c);
	}

	FAILS("unknown option '--frob'", "app:x", "--frob");
	FAILS("unknown option '--frob'", "app:x", "--frob=3");
	FAILS("unknown option '-x'", "app:x", "-x", "1");
	FAILS("unknown option '--check-config'", "--check-config");
	FAILS("--workers: requires a value", "app:x", "--workers");
	FAILS("-w: requires a value", "app:x", "-w");
	FAILS("-w: 'abc' is not a whole number >= 1", "app:x", "-w",
	    "abc");
	FAILS("--workers: 'abc' is not a whole number >= 1", "app:x",
	    "--workers=abc");
	FAILS("more than one app given: 'a:b' and 'c:d'", "a:b", "c:d");
	FAILS("-c: more than one config file given", "-c", "a.ini", "-c",
	    "b.ini");
	FAILS("-e: 'FOO' is not NAME=VALUE", "app:x", "-e", "FOO");
	FAILS("-e: '1X' is not a valid environment variable name", "app:x",
	    "-e", "1X=y");
	FAILS("--env: '' is not a valid environment variable name", "app:x",
	    "--env", "=y");
	FAILS("-e: 'NARWHAL_APP': names starting with NARWHAL_ are narwhal's "
	      "own",
	    "app:x", "-e", "NARWHAL_APP=x");
	FAILS("app: 'a b' is not MODULE:CALLABLE (for example app:application)",
	    "--python", PY, "a b");
	FAILS("--python: /nonexistent: No such file or directory", "app:x",
	    "--python", "/nonexistent");
}

static void
test_worker_class(void)
{
	static const struct {
		const char *name;
		enum nw_worker_kind class;
		enum nw_interface interface;
	} good[] = {
		{ "sync", NW_WORKER_SYNC, NW_INTERFACE_WSGI },
		{ "gthread", NW_WORKER_GTHREAD, NW_INTERFACE_WSGI },
		{ "gevent", NW_WORKER_GEVENT, NW_INTERFACE_WSGI },
		{ "eventlet", NW_WORKER_EVENTLET, NW_INTERFACE_WSGI },
		{ "gunicorn.workers.sync.SyncWorker", NW_WORKER_SYNC,
		    NW_INTERFACE_WSGI },
		{ "gunicorn.workers.gthread.ThreadWorker", NW_WORKER_GTHREAD,
		    NW_INTERFACE_WSGI },
		{ "gunicorn.workers.ggevent.GeventWorker", NW_WORKER_GEVENT,
		    NW_INTERFACE_WSGI },
		{ "gunicorn.workers.geventlet.EventletWorker",
		    NW_WORKER_EVENTLET, NW_INTERFACE_WSGI },
		{ "uvicorn.workers.UvicornWorker", NW_WORKER_ASGI,
		    NW_INTERFACE_ASGI },
		{ "uvicorn.workers.UvicornH11Worker", NW_WORKER_ASGI,
		    NW_INTERFACE_ASGI },
		{ "wsgi", NW_WORKER_SYNC, NW_INTERFACE_WSGI },
		{ "asgi", NW_WORKER_ASGI, NW_INTERFACE_ASGI },
		{ "auto", NW_WORKER_AUTO, NW_INTERFACE_AUTO },
	};
	struct nw_config *c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		/* -k comes after --interface, so it wins, as a later flag. */
		c = LOAD("app:x", "--python", PY, "--interface", "asgi", "-k",
		    good[i].name);
		if (ok(c != NULL, "-k %s: %s", good[i].name, err)) {
			is_int(c->worker_kind, good[i].class,
			    "-k %s: worker_kind", good[i].name);
			is_str(c->worker_class, good[i].name,
			    "-k %s: as written", good[i].name);
			is_int(c->interface, good[i].interface,
			    "-k %s: interface", good[i].name);
		}
		nw_config_free(c);
	}
	c = LOAD("app:x", "--python", PY, "--worker-class=sync");
	if (ok(c != NULL, "--worker-class=sync: %s", err))
		is_int(c->interface, NW_INTERFACE_WSGI, "wsgi");
	nw_config_free(c);
	c = LOAD("app:x", "--python", PY, "-k", "gthread", "--threads", "16",
	    "--worker-connections", "50");
	if (ok(c != NULL, "-k gthread --threads 16: %s", err)) {
		is_int(c->worker_kind, NW_WORKER_GTHREAD, "gthread");
		is_int(c->threads, 16, "threads");
		is_int(c->worker_connections, 50, "worker_connections");
	}
	nw_config_free(c);
	c = LOAD("-c", ini("[narwhal]\napp = a:b\npython = " PY "\n"
			   "worker_class = gevent\nworker_connections = 200\n"
			   "threads = 4\n"));
	if (ok(c != NULL, "worker_class = gevent in the file: %s", err)) {
		is_int(c->worker_kind, NW_WORKER_GEVENT, "gevent");
		is_int(c->interface, NW_INTERFACE_WSGI, "gevent: wsgi");
		is_int(c->worker_connections, 200, "worker_connections");
		is_int(c->threads, 4, "threads");
	}
	nw_config_free(c);
	/* uvicorn's class ignores threads, as in gunicorn. */
	c = LOAD("app:x", "--python", PY, "-k", "uvicorn.workers.UvicornWorker",
	    "--threads", "8");
	ok(c != NULL, "-k uvicorn... --threads 8: %s", err);
	nw_config_free(c);
	FAILS("-k: 'tornado' is not a supported worker class (sync, gthread, "
	      "gevent, eventlet, uvicorn.workers.UvicornWorker, "
	      "uvicorn.workers.UvicornH11Worker, wsgi, asgi or auto)",
	    "app:x", "-k", "tornado");
	FAILS("--interface: 'sync' is not one of auto, wsgi, asgi", "app:x",
	    "--interface", "sync");
	FAILS("-k: a gevent worker serves WSGI apps, but interface = asgi",
	    "app:x", "--python", PY, "-k", "gevent", "--interface", "asgi");
	/* in the file, worker_class set the interface already */
	FAILS(fmt("%s:4: interface: already set on line 3",
	    ini("[narwhal]\napp = a:b\nworker_class = gthread\n"
		"interface = asgi\npython = " PY "\n")),
	    "-c", inipath);
	FAILS("--threads: '0' is not a whole number >= 1", "app:x",
	    "--threads", "0");
	FAILS("--worker-connections: 'x' is not a whole number >= 1", "app:x",
	    "--worker-connections", "x");
}

/* gunicorn's switches, no-ops, refusals, environment and precedence. */
static void
test_gunicorn(void)
{
	struct nw_config *c;

	/* A switch takes no value: the app after it stays the app. */
	c = LOAD("--python", PY, "--reload", "--preload", "-R", "app:x");
	if (ok(c != NULL, "switches: %s", err)) {
		is_int(c->reload, 1, "--reload");
		is_str(c->app, "app:x", "the app after the switches");
		is_int((int)c->nnotes, 2, "two notes: --preload, -R");
		if (c->nnotes == 2)
			is_str(c->notes[0], "--preload: ignored: narwhal never "
			    "preloads, by design: every worker imports the app "
			    "itself, so that a reload reads the new code",
			    "--preload's note");
	}
	nw_config_free(c);
	FAILS("--certfile: /nonexistent/x.pem: No such file or directory",
	    "--python", PY, "--certfile", "/nonexistent/x.pem", "app:x");
	FAILS("--keyfile: TLS needs certfile too (the server's certificate)",
	    "--python", PY, "--keyfile", "/nonexistent/x.pem", "app:x");
	FAILS("--cert-reqs: 'sometimes' is not one of 0 (none), 1 (optional), "
	      "2 (required)", "--python", PY, "--cert-reqs", "sometimes",
	    "app:x");
	c = LOAD("--python", PY, "--timeout", "0", "--threads", "4",
	    "--worker-connections", "50", "app:x");
	if (ok(c != NULL, "--timeout 0: %s", err)) {
		is_int((int)c->timeout, 0, "timeout 0");
		is_int(c->threads, 4, "threads");
		is_int(c->worker_connections, 50, "worker_connections");
	}
	nw_config_free(c);

	/* Defaults < $PORT, $WEB_CONCURRENCY < GUNICORN_CMD_ARGS < argv */
	setenv("PORT", "5000", 1);
	setenv("WEB_CONCURRENCY", "3", 1);
	c = LOAD("--python", PY, "app:x");
	if (ok(c != NULL, "$PORT: %s", err)) {
		is_str(c->binds[0], "0.0.0.0:5000", "$PORT");
		is_int(c->workers, 3, "$WEB_CONCURRENCY");
	}
	nw_config_free(c);
	setenv("GUNICORN_CMD_ARGS", "-w 5 --bind '127.0.0.1:7000' "
	    "--env \"A=b c\" --timeout=9", 1);
	c = LOAD("--python", PY, "-w", "6", "app:x");
	if (ok(c != NULL, "GUNICORN_CMD_ARGS: %s", err)) {
		is_int((int)c->nbinds, 1, "its bind replaces $PORT's");
		is_str(c->binds[0], "127.0.0.1:7000", "bind");
		is_int(c->workers, 6, "the command line wins");
		is_int((int)c->timeout, 9, "timeout");
		if (ok(c->nenv == 1, "one env"))
			is_str(c->env[0].value, "b c", "quoted value");
	}
	nw_config_free(c);
	setenv("GUNICORN_CMD_ARGS", "--workers many", 1);
	FAILS("GUNICORN_CMD_ARGS: --workers: 'many' is not a whole number >= 1",
	    "--python", PY, "app:x");
	unsetenv("GUNICORN_CMD_ARGS");
	unsetenv("PORT");
	unsetenv("WEB_CONCURRENCY");
}

/* A relative -c and what the file's relative paths then resolve against. */
static void
test_relative_config(void)
{
	struct nw_config *c;
	char *old = strdup(cwd()), *oldpwd = getenv("PWD");
	char target[128], link[128];

	oldpwd = oldpwd != NULL ? strdup(oldpwd) : NULL;
	mkdir(fmt("%s/sub", tmpdir), 0755);
	mkdir(fmt("%s/sub/code", tmpdir), 0755);
	write_file("sub/app.ini", "[narwhal]\napp = a:b\npython = " PY "\n"
	    "chdir = ./code/\npidfile = ../app.pid\n");
	if (chdir(tmpdir) < 0)
		exit(2);
	setenv("PWD", tmpdir, 1);
	c = LOAD("-c", "sub//app.ini", "--state-dir", "st");
	if (ok(c != NULL, "relative -c: %s", err)) {
		is_str(c->path, fmt("%s/sub/app.ini", tmpdir),
		    "config path absolute and clean");
		is_str(c->chdir, fmt("%s/sub/code", tmpdir),
		    "chdir against the file's directory");
		is_str(c->pidfile, fmt("%s/sub/../app.pid", tmpdir),
		    "'..' kept: only the kernel knows what it means");
		is_str(c->state_dir, fmt("%s/st", tmpdir),
		    "flag path against the current directory");
		nw_config_free(c);
	}
	/* A logical $PWD through a symlink is kept, not resolved. */
	snprintf(target, sizeof(target), "%s/sub", tmpdir);
	snprintf(link, sizeof(link), "%s/current", tmpdir);
	if (symlink(target, link) < 0 || chdir(link) < 0)
		exit(2);
	setenv("PWD", link, 1);
	c = LOAD("app:x", "--python", PY);
	if (ok(c != NULL, "chdir default through a symlink: %s", err)) {
		is_str(c->chdir, fmt("%s/current", tmpdir),
		    "the default chdir keeps the symlink");
		nw_config_free(c);
	}
	setenv("PWD", "/nonexistent", 1);
	c = LOAD("app:x", "--python", PY);
	if (ok(c != NULL, "stale PWD: %s", err)) {
		is_str(c->chdir, fmt("%s/sub", tmpdir),
		    "a PWD that is not '.' is ignored");
		nw_config_free(c);
	}
	if (chdir(old) < 0)
		exit(2);
	if (oldpwd != NULL)
		setenv("PWD", oldpwd, 1);
	else
		unsetenv("PWD");
	free(old);
	free(oldpwd);
}

static char *
runtime_of(const char *const *args)
{
	struct nw_config *c = loadv(args);
	char *dir;

	if (c == NULL) {
		diag("load failed: %s", err);
		return strdup("(failed)");
	}
	dir = nw_config_runtime_dir(c);
	nw_config_free(c);
	return dir;
}

#define RUNTIME(...) runtime_of((const char *[]){ __VA_ARGS__, NULL })

static void
test_runtime_dir(void)
{
	struct nw_config *c;
	char *a, *b, *parent, *dir, *last;
	const char *p1, *p2;
	size_t i;

	unsetenv("RUNTIME_DIRECTORY");
	unsetenv("STATE_DIRECTORY");
	setenv("XDG_RUNTIME_DIR", "/xdg/run", 1);
	setenv("XDG_STATE_HOME", "/xdg/state", 1);
	if (geteuid() == 0)
		parent = strdup("/run/narwhal/");
	else
		parent = strdup("/xdg/run/narwhal/");

	p1 = strdup(ini("[narwhal]\napp = a:b\npython = " PY "\n"));
	p2 = strdup(write_file("other.ini",
	    "[narwhal]\napp = a:b\npython = " PY "\n"));
	a = RUNTIME("-c", p1);
	b = RUNTIME("-c", p1, "-w", "3");
	is_str(a, b, "same config file: same runtime dir");
	ok(strncmp(a, parent, strlen(parent)) == 0, "under %s: %s", parent, a);
	last = strrchr(a, '/') + 1;
	is_int(strlen(last), 12, "instance name: 12 characters");
	for (i = 0; last[i] != '\0' && strchr("0123456789abcdef", last[i]); i++)
		;
	is_int(i, 12, "instance name: hex");
	free(b);
	b = RUNTIME("-c", p2);
	ok(strcmp(a, b) != 0, "another config file: another runtime dir");
	free(a);
	free(b);

	a = RUNTIME("-c", p1, "--pid", "/run/app.pid");
	b = RUNTIME("-c", p2, "--pidfile", "/run/app.pid");
	is_str(a, b, "the pidfile wins over the config path");
	free(b);
	b = RUNTIME("-c", p1, "--pid", "/run/other.pid");
	ok(strcmp(a, b) != 0, "another pidfile: another runtime dir");
	free(b);
	/* Pinned: a new narwhal must find an old master's socket. */
	is_str(a, fmt("%s%s", parent, "30892a182571"),
	    "FNV-1a of the pidfile path, pinned");
	free(a);

	a = RUNTIME("app:x", "--python", PY, "-b", "127.0.0.1:1");
	b = RUNTIME("app:x", "--python", PY, "-b", "127.0.0.1:2");
	ok(strcmp(a, b) != 0, "no file or pidfile: the binds decide");
	free(b);
	b = RUNTIME("app:x", "--python", PY, "-w", "2", "-b", "127.0.0.1:1");
	is_str(a, b, "and only the binds");
	free(a);
	free(b);

	setenv("RUNTIME_DIRECTORY", "/run/unit:/run/other", 1);
	setenv("STATE_DIRECTORY", "/var/lib/unit", 1);
	c = LOAD("-c", p1, "--pid", "/run/app.pid");
	if (ok(c != NULL, "load: %s", err)) {
		dir = nw_config_runtime_dir(c);
		is_str(dir, "/run/unit/30892a182571",
		    "systemd's RUNTIME_DIRECTORY (the first) + instance");
		free(dir);
		dir = nw_config_state_dir(c);
		is_str(dir, "/var/lib/unit/30892a182571",
		    "systemd's STATE_DIRECTORY + instance");
		free(dir);
		dir = nw_config_control_path(c);
		is_str(dir, "/run/unit/30892a182571/control.sock",
		    "control socket in the runtime dir");
		free(dir);
		nw_config_free(c);
	}
	unsetenv("RUNTIME_DIRECTORY");
	unsetenv("STATE_DIRECTORY");

	c = LOAD("-c", p1, "--pid", "/run/app.pid");
	if (ok(c != NULL, "load: %s", err)) {
		dir = nw_config_state_dir(c);
		is_str(dir, geteuid() == 0 ? "/var/lib/narwhal/30892a182571" :
		    "/xdg/state/narwhal/30892a182571", "state dir");
		free(dir);
		nw_config_free(c);
	}
	c = LOAD("-c", p1, "--runtime-dir", "/srv/rt", "--state-dir", "/srv/st",
	    "--control-socket", "/srv/ctl.sock");
	if (ok(c != NULL, "load: %s", err)) {
		dir = nw_config_runtime_dir(c);
		is_str(dir, "/srv/rt", "runtime_dir as set");
		free(dir);
		dir = nw_config_state_dir(c);
		is_str(dir, "/srv/st", "state_dir as set");
		free(dir);
		dir = nw_config_control_path(c);
		is_str(dir, "/srv/ctl.sock", "control_socket as set");
		free(dir);
		nw_config_free(c);
	}
	c = LOAD("-c", p1, "--runtime-dir", "/srv/rt");
	if (ok(c != NULL, "load: %s", err)) {
		dir = nw_config_control_path(c);
		is_str(dir, "/srv/rt/control.sock", "control.sock under it");
		free(dir);
		nw_config_free(c);
	}
	free((char *)p1);
	free((char *)p2);
	free(parent);
}

/* `narwhal reload` and `status`: enough to find the master, no more. */
static void
test_lenient(void)
{
	struct nw_config *c;
	char *argv[8] = { "narwhal", "-c", inipath, NULL };
	char *path;

	ini("[narwhal]\npython = /nonexistent/python3\nchdir = /nonexistent\n"
	    "pidfile = /run/app.pid\n");
	c = nw_config_load_lenient(3, argv, err, sizeof(err));
	if (ok(c != NULL, "lenient: no app, missing python and chdir: %s",
	    err)) {
		is_str(c->app, NULL, "no app");
		path = nw_config_control_path(c);
		ok(path != NULL && strstr(path, "/30892a182571/control.sock"),
		    "control path from the pidfile: %s", path);
		free(path);
		nw_config_free(c);
	}
	argv[1] = "--pid";
	argv[2] = "/run/app.pid";
	c = nw_config_load_lenient(3, argv, err, sizeof(err));
	if (ok(c != NULL, "lenient: --pid alone: %s", err)) {
		is_str(c->chdir, cwd(), "chdir still defaults");
		nw_config_free(c);
	}
	argv[1] = "-c";
	argv[2] = inipath;
	ini("[narwhal]\nworkrs = 2\npidfile = /run/x.pid\n");
	c = nw_config_load_lenient(3, argv, err, sizeof(err));
	ok(c != NULL, "lenient: a key the master will refuse does not stop "
	    "the client: %s", err);
	if (c != NULL)
		is_str(c->pidfile, "/run/x.pid", "the keys after it still count");
	nw_config_free(c);
	ini("[narwhal]\nbind = a b:80\n");
	c = nw_config_load_lenient(3, argv, err, sizeof(err));
	ok(c == NULL, "lenient: a broken key that locates the master fails");
	is_str(err, fmt("%s:2: bind: 'a b:80' is not HOST:PORT, [IPV6]:PORT, "
	    "unix:PATH or fd://NAME", inipath), "error line");
	nw_config_free(c);
}

/*
 * conf/narwhal.ini documents every key with its default: with each ";key ="
 * line uncommented it must load, and no key may be missing from it.
 */
static const char *const every_key[] = {
	"app", "interface", "asyncio_loop", "python", "chdir",
	"pythonpath", "bind", "backlog", "workers", "timeout",
	"graceful_timeout", "keepalive", "header_timeout",
	"min_body_rate", "write_timeout", "boot_priority",
	"boot_timeout", "max_requests", "max_requests_jitter",
	"max_worker_lifetime", "max_worker_memory", "max_recycling",
	"ready_path", "ready_interval", "ready_successes",
	"ready_timeout", "ready_host", "reload_batch", "min_uptime",
	"boot_retries",
	"rollback", "on_rollback", "limit_request_line",
	"limit_request_fields", "limit_request_field_size",
	"limit_request_body", "pidfile", "user", "group", "umask",
	"runtime_dir", "state_dir", "control_socket", "accesslog",
	"errorlog", "loglevel", "worker_class", "threads",
	"worker_connections", "reload", "reload_extra_files",
	"access_log_format", "forwarded_allow_ips", "secure_scheme_headers",
	"proxy_protocol", "proxy_allow_ips", "watch", "watch_window",
	"watch_min_requests", "watch_error_margin", "metrics_bind",
	"metrics_interval", "statsd_host", "statsd_prefix", "dogstatsd_tags",
};

#define NKEYS (sizeof(every_key) / sizeof(every_key[0]))

static void
test_shipped_configs(void)
{
	char *argv[4] = { "narwhal", "-c", inipath, NULL };
	char *line = NULL, *text = NULL, found[NKEYS] = { 0 };
	size_t cap = 0, len = 0, i, n;
	struct nw_config *c;
	FILE *in, *out;

	if ((in = fopen("conf/narwhal.ini", "r")) == NULL) {
		skip("conf/narwhal.ini: run from the repository's top");
		return;
	}
	out = open_memstream(&text, &len);
	while (getline(&line, &cap, in) > 0) {
		n = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz_"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
		if (line[0] != ';' || n == 0 ||
		    strncmp(line + 1 + n, " =", 2) != 0) {
			fputs(line, out);
			continue;
		}
		fputs(line + 1, out);
		for (i = 0; i < NKEYS; i++)
			if (strlen(every_key[i]) == n &&
			    strncmp(line + 1, every_key[i], n) == 0)
				found[i] = 1;
	}
	fclose(out);
	fclose(in);
	free(line);
	for (i = 0; i < NKEYS; i++)
		ok(found[i], "conf/narwhal.ini documents %s", every_key[i]);
	ini(text);
	free(text);
	c = nw_config_load_lenient(3, argv, err, sizeof(err));
	ok(c != NULL, "conf/narwhal.ini uncommented loads: %s", err);
	nw_config_free(c);

	if ((in = fopen("supervisor/narwhal.ini.5", "r")) != NULL) {
		text = NULL;
		len = 0;
		getdelim(&text, &len, '\0', in);
		fclose(in);
		for (i = 0; i < NKEYS; i++)
			ok(text != NULL && strstr(text, fmt(".It Ic %s No = ",
			    every_key[i])) != NULL,
			    "narwhal.ini(5) documents %s", every_key[i]);
		free(text);
	}

	if (access("/usr/bin/python3", X_OK) != 0) {
		skip("no /usr/bin/python3 for conf/example.ini");
		return;
	}
	c = LOAD("-c", "conf/example.ini");
	if (ok(c != NULL, "conf/example.ini loads: %s", err)) {
		is_str(c->chdir, fmt("%s/conf/example", cwd()),
		    "example chdir relative to the file");
		is_str(c->ready_path, "/health/ready", "example ready_path");
		nw_config_free(c);
	}
}

/*
 * A long list, format or command line goes on over indented lines, joined
 * by one blank; every other value stays on one line, and a key indented by
 * mistake is not taken for text of the value before it.
 */
static void
test_continuation(void)
{
	struct nw_config *c;
	char *text = NULL, *argv[8], flag[400];
	size_t len = 0;
	FILE *out;

	c = LOAD("-c", ini("[narwhal]\napp = a:b\npython = " PY "\n"
	    "access_log_format = %(h)s %(l)s\n"
	    "    %(t)s \"%(r)s\"\n"
	    "\n"
	    "; between the lines\n"
	    "\t%(s)s ; a comment\n"
	    "forwarded_allow_ips =\n"
	    "  127.0.0.1,\n"
	    "  10.0.0.0/8\n"
	    "on_rollback = /bin/notify --to\n"
	    "  \"ops team\"\n"
	    "workers = 2\n"));
	if (ok(c != NULL, "continued values load: %s", err)) {
		is_str(c->access_log_format,
		    "%(h)s %(l)s %(t)s \"%(r)s\" %(s)s", "format joined");
		is_str(c->forwarded_allow_ips, "127.0.0.1, 10.0.0.0/8",
		    "a list that starts on the next line");
		is_str(c->on_rollback[2], "ops team", "a command line's word");
		ok(c->on_rollback[3] == NULL, "three words");
		is_int(c->workers, 2, "the next key");
		nw_config_free(c);
	}
	FAILS(fmt("%s:2: access_log_format: '%%(bad' is not a %%(atom)s of "
		  "gunicorn's access log format (write %%%% for a percent "
		  "sign)",
		  ini("[narwhal]\naccess_log_format = %(h)s\n  %(bad\n"
		      "workers = 2\n")),
	    "-c", inipath);
	FAILS(fmt("%s:3: timeout: unexpected indentation (keys start in the "
		  "first column)",
		  ini("[narwhal]\naccess_log_format = %(h)s\n  timeout = 3\n")),
	    "-c", inipath);
	FAILS(fmt("%s:4: access_log_format: already set on line 2",
		  ini("[narwhal]\naccess_log_format = %(h)s\n  %(r)s\n"
		      "access_log_format = %(h)s\n")),
	    "-c", inipath);
	FAILS(fmt("%s:3: X: unexpected indentation (keys start in the first "
		  "column; a value fits on one line)",
		  ini("[env]\nX = 1\n  2\n")),
	    "-c", inipath);
	memset(flag, 'x', sizeof(flag));
	memcpy(flag, "access_log_format = ", 20);
	flag[sizeof(flag) - 2] = '\n';
	flag[sizeof(flag) - 1] = '\0';
	FAILS(fmt("%s:2: line is longer than 198 characters (continue a long "
		  "value on indented lines)",
		  ini(fmt("[narwhal]\n%s", flag))),
	    "-c", inipath);

	/* --print-config breaks what would be too long, and it loads again */
	memset(flag, 0, sizeof(flag));
	for (int i = 0; i < 20; i++)
		strcat(flag, i ? " %({x-request-id}i)s" : "%(h)s");
	argv[0] = "narwhal";
	argv[1] = "--python";
	argv[2] = PY;
	argv[3] = "--access-log-format";
	argv[4] = flag;
	argv[5] = "app:x";
	argv[6] = NULL;
	out = open_memstream(&text, &len);
	ok(nw_config_print(6, argv, out, err, sizeof(err)) == 0,
	    "print: %s", err);
	fclose(out);
	ok(strstr(text, "\n    %({x-request-id}i)s") != NULL,
	    "a long format printed on indented lines");
	c = LOAD("-c", ini(text));
	if (ok(c != NULL, "printed config loads: %s", err)) {
		is_str(c->access_log_format, flag, "the same format");
		nw_config_free(c);
	}
	free(text);
}

static void
test_usage(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	nw_config_usage(out);
	fclose(out);
	ok(strstr(text, "narwhal [-c FILE] [OPTIONS] [MODULE:CALLABLE]") !=
	    NULL, "usage: run");
	ok(strstr(text, "narwhal --check-config -c FILE") != NULL,
	    "usage: check");
	ok(strstr(text, "narwhal reload [--wait] [--timeout S] "
	    "[-c FILE | --pid FILE]") != NULL, "usage: reload");
	ok(strstr(text, "narwhal status [--json] [-c FILE | --pid FILE]") !=
	    NULL, "usage: status");
	free(text);
}

int
main(void)
{
	char tmpl[] = "/tmp/nw-test-config-XXXXXX";

	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
	atexit(cleanup);

	test_defaults();
	test_missing_app();
	test_file();
	test_file_errors();
	test_values();
	test_binds();
	test_flags();
	test_worker_class();
	test_gunicorn();
	test_relative_config();
	test_runtime_dir();
	test_lenient();
	test_shipped_configs();
	test_continuation();
	test_usage();
	return done_testing();
}
