/*
 * client.c: `narwhal reload`, `narwhal rollback` and `narwhal status`, run by
 * an operator or by systemd's ExecReload=, talking to a running master's
 * control socket.
 *
 * It finds the master the way the master found itself: from the same `-c`
 * file or `--pid` (and flags) it was started with. It shares no state with a
 * running master beyond the socket.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "master.h"

/* `narwhal reload --wait` exit codes; see narwhal(8). */
enum {
	RELOAD_OK = 0,
	RELOAD_ERROR = 1,
	RELOAD_USAGE = 2,
	RELOAD_REFUSED = 3,
	RELOAD_ROLLED_BACK = 4,
	RELOAD_TIMEOUT = 5,
	RELOAD_DEPENDENCY = 6, /* rolled back; the old generation fails too */
	RELOAD_WATCH_ROLLED_BACK = 7, /* the canary was clearly worse */
};

static double
now_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
connect_control(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/*
 * Anyone can put a socket where we look if a directory on the way lets
 * them: talk only to a master of our own uid or root's. Root may also talk
 * to a master of the uid owning the socket's directory, when only that uid
 * and root can change it (a service running as its own user).
 */
static int
check_peer(int fd, const char *path, const char *command)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	char dir[PATH_MAX], why[768], *slash;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		fprintf(stderr, "narwhal %s: %s: SO_PEERCRED: %s\n", command,
		    path, strerror(errno));
		return -1;
	}
	if (cred.uid == geteuid() || cred.uid == 0)
		return 0;
	snprintf(dir, sizeof dir, "%s", path);
	slash = strrchr(dir, '/');
	if (slash != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (geteuid() == 0 && nw_path_trusted(slash != NULL ? dir : ".",
				 cred.uid, 0, why, sizeof why) == 0)
		return 0;
	fprintf(stderr,
	    "narwhal %s: %s is served by pid %d of uid %u, not by uid %u or "
	    "root: another user may have put it there; not talking to it\n",
	    command, path, (int)cred.pid, (unsigned)cred.uid,
	    (unsigned)geteuid());
	return -1;
}

static int
classify(const char *line)
{
	if (strncmp(line, "result: ok", 10) == 0)
		return RELOAD_OK;
	if (strncmp(line, "result: refused", 15) == 0)
		return RELOAD_REFUSED;
	if (strncmp(line, "result: rolled-back", 19) == 0)
		return RELOAD_ROLLED_BACK;
	if (strncmp(line, "result: dependency-down", 23) == 0)
		return RELOAD_DEPENDENCY;
	if (strncmp(line, "result: watch-rolled-back", 25) == 0)
		return RELOAD_WATCH_ROLLED_BACK;
	return RELOAD_ERROR;
}

/* Copies the master's answer to stdout; returns the reload's exit code. */
static int
relay(int fd, int wait, double timeout)
{
	double deadline = timeout > 0 ? now_monotonic() + timeout : 0;
	char buf[4096], line[4096];
	size_t used = 0;
	int result = -1;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int wait_ms = -1;
		ssize_t n;

		if (deadline > 0) {
			double left = deadline - now_monotonic();

			if (left <= 0)
				return RELOAD_TIMEOUT;
			wait_ms = (int)(left * 1000) + 1;
		}
		n = poll(&p, 1, wait_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return RELOAD_TIMEOUT;
		n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
		fflush(stdout);
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (used < sizeof line - 1)
					line[used++] = buf[i];
				continue;
			}
			line[used] = '\0';
			if (strncmp(line, "result: ", 8) == 0)
				result = classify(line);
			used = 0;
		}
	}
	/* Waiting and no outcome: the master went away mid-reload. */
	if (result < 0)
		return wait ? RELOAD_ERROR : RELOAD_OK;
	return result;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: narwhal reload [--wait | --watching] [--timeout S] "
	    "[-c FILE | --pid FILE] [OPTIONS]\n"
	    "       narwhal rollback [--wait] [--timeout S] [-c FILE | --pid "
	    "FILE] [OPTIONS]\n"
	    "       narwhal status [--json] [-c FILE | --pid FILE] [OPTIONS]\n");
}

int
nw_client_main(int argc, char **argv)
{
	const char *command = argv[0];
	int changes = strcmp(command, "status") != 0;
	int wait = 0, json = 0, watching = 0, n = 1, fd, rc, located;
	double timeout = 0;
	char **rest = calloc((size_t)argc + 2, sizeof *rest);
	char err[1024], *path, request[32];
	struct nw_config *config;

	if (rest == NULL)
		return RELOAD_ERROR;
	rest[0] = "narwhal";
	for (int i = 1; i < argc; i++) {
		if (changes && strcmp(argv[i], "--wait") == 0) {
			wait = 1;
		} else if (strcmp(command, "reload") == 0 &&
		    strcmp(argv[i], "--watching") == 0) {
			wait = watching = 1;
		} else if (changes && strcmp(argv[i], "--timeout") == 0 &&
		    i + 1 < argc) {
			timeout = strtod(argv[++i], NULL);
		} else if (strcmp(command, "status") == 0 &&
		    strcmp(argv[i], "--json") == 0) {
			json = 1;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			usage();
			free(rest);
			return 0;
		} else {
			rest[n++] = argv[i];
		}
	}
	config = nw_config_load_lenient(n, rest, err, sizeof err);
	free(rest);
	if (config == NULL) {
		fprintf(stderr, "narwhal %s: %s\n", command, err);
		return RELOAD_USAGE;
	}
	path = nw_config_control_path(config);
	located = config->path != NULL || config->pidfile != NULL ||
	    config->control_socket != NULL;
	nw_config_free(config);
	fd = connect_control(path);
	if (fd < 0) {
		fprintf(stderr, "narwhal %s: no master at %s: %s\n", command,
		    path, strerror(errno));
		/* The path is a hash of how the master was started. */
		if (!located)
			fprintf(stderr, "narwhal %s: that is where a master "
			    "started without -c listens; pass the -c FILE (or "
			    "--pid FILE) the master was started with\n",
			    command);
		free(path);
		return RELOAD_ERROR;
	}
	if (check_peer(fd, path, command) < 0) {
		close(fd);
		free(path);
		return RELOAD_ERROR;
	}
	free(path);
	if (strcmp(command, "status") == 0)
		snprintf(request, sizeof request, "status%s\n",
		    json ? " json" : "");
	else
		snprintf(request, sizeof request, "%s%s%s\n", command,
		    wait ? " wait" : "", watching ? " watching" : "");
	signal(SIGPIPE, SIG_IGN);
	if (write(fd, request, strlen(request)) < 0) {
		fprintf(stderr, "narwhal %s: %s\n", command, strerror(errno));
		close(fd);
		return RELOAD_ERROR;
	}
	rc = relay(fd, wait, wait ? timeout : 0);
	if (rc == RELOAD_ERROR && wait)
		fprintf(stderr, "narwhal %s: the master closed the "
				"connection without an outcome\n", command);
	close(fd);
	if (rc == RELOAD_TIMEOUT)
		fprintf(stderr, "narwhal %s: no outcome within %gs\n",
		    command, timeout);
	return rc;
}
