/*
 * asgi_listen.c: the ASGI worker's listening sockets.
 *
 * It owns a listener's setup (its address and scope template), its place in
 * the epoll set (the private socket from the start, the public ones once
 * live, none while stopping or out of fds) and accepting: one connection
 * per wake-up, handed to asgi_conn.c with the request that came with it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asgi.h"
#include "conn.h"

/*
 * Every worker's epoll set is woken for a new connection (nested in the
 * loop's, EPOLLEXCLUSIVE cannot pick one): taking one connection per
 * wake-up spreads a burst across the workers instead of the first taker.
 */
#define ACCEPTS_PER_WAKEUP 1

/* A listener from its fd: non-blocking, with its scope template. */
int
nw_alistener_init(
    struct nw_aserver *s, struct nw_alistener *l, int fd, bool public)
{
	char host[NW_HOST_MAX];
	PyObject *server = NULL;
	int family, port, fl;

	memset(l, 0, sizeof *l);
	l->kind = NW_AWATCH_LISTENER;
	l->fd = fd;
	l->public = public;
	if ((family = nw_sock_name(fd, host, &port)) < 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	if ((fl = fcntl(fd, F_GETFL)) >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (family == AF_INET || family == AF_INET6) {
		server = Py_BuildValue("(si)", host, port);
		l->tcp = true;
	} else {
		PyObject *path;

		/* the ASGI spec: [path, None] for a Unix socket */
		path = PyUnicode_DecodeFSDefault(host);
		if (path != NULL)
			server = Py_BuildValue("(OO)", path, Py_None);
		Py_XDECREF(path);
	}
	if (server == NULL)
		return -1;
	l->scope = nw_scope_template(s, server);
	Py_DECREF(server);
	return l->scope ? 0 : -1;
}

static void
listener_register(struct nw_aserver *s, struct nw_alistener *l, bool on)
{
	struct epoll_event ev;

	if (l->registered == on)
		return;
	ev.events = EPOLLIN;
	ev.data.ptr = l;
	if (epoll_ctl(s->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, l->fd, &ev) <
	    0) {
		nw_aserver_log(
		    "epoll_ctl(listener %d): %s", l->fd, strerror(errno));
		return;
	}
	l->registered = on;
}

/* Watched when the server accepts on it: see the file's comment. */
void
nw_alisteners_update(struct nw_aserver *s)
{
	bool paused = s->accept_paused_until != 0;
	size_t i;

	for (i = 0; i < s->nlisteners; i++) {
		struct nw_alistener *l = &s->listeners[i];

		listener_register(s, l,
		    s->started && !s->stopping && !s->closed && !paused &&
		        (!l->public || s->live));
	}
}

/*
 * scope["client"], the access log's host, whether it is a local proxy
 * (trusted with X-Forwarded-Proto) and whether it runs on this host.
 */
static int
conn_peer(struct nw_aconn *c, struct sockaddr_storage *peer)
{
	int port = 0;

	if (peer->ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)peer;

		inet_ntop(AF_INET, &sin->sin_addr, c->host, sizeof c->host);
		port = ntohs(sin->sin_port);
	} else if (peer->ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)peer;

		inet_ntop(AF_INET6, &sin6->sin6_addr, c->host, sizeof c->host);
		port = ntohs(sin6->sin6_port);
	} else {
		c->host[0] = '\0'; /* Unix socket */
	}
	c->trusted = port == 0 || strcmp(c->host, "127.0.0.1") == 0 ||
	    strcmp(c->host, "::1") == 0 ||
	    strcmp(c->host, "::ffff:127.0.0.1") == 0;
	c->local = nw_peer_is_local(c->fd, peer);
	if (port == 0) {
		Py_INCREF(Py_None);
		c->client = Py_None;
	} else {
		c->client = Py_BuildValue("(si)", c->host, port);
	}
	return c->client ? 0 : -1;
}

/* The listener is readable: take its connections, ACCEPTS_PER_WAKEUP. */
void
nw_alistener_accept(struct nw_aserver *s, struct nw_alistener *l)
{
	int i;

	for (i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		struct sockaddr_storage peer;
		socklen_t plen;
		struct epoll_event ev;
		struct nw_aconn *c;
		int fd;

		fd = nw_accept(l->fd, l->tcp, &peer, &plen);
		if (fd == NW_ACCEPT_RETRY)
			continue;
		if (fd == NW_ACCEPT_BUSY) {
			s->accept_paused_until = s->clock.mono_ms + 100;
			nw_alisteners_update(s);
			return;
		}
		if (fd < 0)
			return;
		if ((c = nw_aconn_new(s, fd, l)) == NULL) {
			close(fd);
			return;
		}
		if (conn_peer(c, &peer) < 0) {
			nw_aserver_print_error("cannot describe a peer");
			nw_aconn_close(s, c);
			continue;
		}
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			nw_aconn_close(s, c);
			continue;
		}
		c->events = EPOLLIN;
		nw_atimer_set(
		    s, c, s->stopping ? NW_ATIMER_GRACE : NW_ATIMER_HEAD);
		/* the request often came with the handshake: no epoll round */
		nw_aconn_readable(s, c);
	}
}
