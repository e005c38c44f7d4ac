/*
 * listen.c: the engine's listening sockets, and who is on the other end.
 *
 * It owns a listener's setup (its address), its place in the epoll set (the
 * private socket from the start, the public ones once live, none while
 * stopping or out of fds) and accepting: a batch per wake-up, each
 * connection handed to conn.c with the request that came with it. It also
 * describes a peer once, for every driver: its address and whether it may
 * claim HTTPS (a loopback or Unix-socket peer: a proxy on this host).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/engine.h"

/* A listener from its fd: non-blocking, with its own address. */
int
nw_listener_init(struct nw_listener *l, int fd, bool public)
{
	int fl;

	memset(l, 0, sizeof *l);
	l->kind = NW_WATCH_LISTENER;
	l->fd = fd;
	l->public = public;
	if ((l->family = nw_sock_name(fd, l->host, &l->port)) < 0)
		return -1;
	if ((fl = fcntl(fd, F_GETFL)) >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	l->tcp = l->family == AF_INET || l->family == AF_INET6;
	return 0;
}

static void
listener_register(struct nw_engine *e, struct nw_listener *l, bool on)
{
	struct epoll_event ev;

	if (l->registered == on)
		return;
	ev.events = EPOLLIN;
	/*
	 * The public sockets are shared by every worker: wake only one. Not
	 * when the epoll set is itself watched by another loop's (ASGI): the
	 * outer set is woken for every worker anyway, so each takes one
	 * connection per wake-up instead (accepts_per_wakeup).
	 */
	if (l->public && e->exclusive)
		ev.events |= EPOLLEXCLUSIVE;
	ev.data.ptr = l;
	if (epoll_ctl(e->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, l->fd, &ev) <
	    0) {
		nw_log("epoll_ctl(listener %d): %s", l->fd, strerror(errno));
		return;
	}
	l->registered = on;
}

/* Watched when the engine accepts on it: see the file's comment. */
void
nw_listeners_update(struct nw_engine *e)
{
	bool paused = e->accept_paused_until != 0;
	size_t i;

	for (i = 0; i < e->nlisteners; i++) {
		struct nw_listener *l = &e->listeners[i];

		listener_register(e, l,
		    e->started && !e->stopping && !e->closed && !paused &&
		        (!l->public || (e->live && !e->full)));
	}
}

/* The decimal digits of v, without a NUL; returns their count. */
static size_t
format_uint(char *out, unsigned v)
{
	char tmp[10];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

/*
 * The peer's address and port, whether it is trusted (forwarded_allow_ips,
 * gunicorn's default 127.0.0.1 and ::1, and Unix-socket peers: it may say
 * the client spoke HTTPS) and whether it may start with a PROXY header
 * (proxy_allow_ips; see front.c). IPv4 is formatted by hand: inet_ntop
 * goes through printf, once per connection.
 */
void
nw_conn_describe_peer(struct nw_conn *c)
{
	if (c->peer.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&c->peer;
		const unsigned char *a = (const unsigned char *)&sin->sin_addr;
		size_t n = 0;
		int i;

		for (i = 0; i < 4; i++) {
			n += format_uint(c->host + n, a[i]);
			c->host[n++] = i < 3 ? '.' : '\0';
		}
		c->port = ntohs(sin->sin_port);
	} else if (c->peer.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->peer;

		inet_ntop(AF_INET6, &sin6->sin6_addr, c->host, sizeof c->host);
		c->port = ntohs(sin6->sin6_port);
	} else {
		c->host[0] = '\0'; /* Unix socket */
		c->port = 0;
	}
	c->trusted = nw_iplist_match(&c->engine->forwarded, &c->peer);
	c->proxy_pending = c->engine->proxy_protocol != 0 &&
	    nw_iplist_match(&c->engine->proxy_allow, &c->peer);
}

/* A connection just accepted from l, on the list of open ones. */
static struct nw_conn *
conn_new(struct nw_engine *e, int fd, struct nw_listener *l)
{
	struct nw_conn *c = e->free_conns;

	if (c != NULL) {
		e->free_conns = c->next;
		e->nfree--;
	} else if ((c = calloc(1, e->drv->conn_size)) == NULL) {
		return NULL;
	} else if (e->drv->conn_init) {
		e->drv->conn_init(c);
	}
	c->kind = NW_WATCH_CONN;
	c->fd = fd;
	c->state = NW_CONN_HEAD;
	c->engine = e;
	c->listener = l;
	c->in.len = 0;
	c->rpos = 0;
	nw_request_reset(&c->req);
	c->body_done = true;
	c->out.len = c->opos = 0;
	c->events = 0;
	c->registered = false;
	c->read_paused = false;
	c->parked = false;
	c->held = false;
	c->hnext = NULL;
	c->queued = false;
	c->qnext = NULL;
	c->in_process = 0;
	c->requests = 0;
	c->timer = NW_TIMER_NONE;
	c->prev = c->next = NULL;
	c->all_prev = NULL;
	c->all_next = e->conns;
	if (e->conns)
		e->conns->all_prev = c;
	e->conns = c;
	e->nconns++;
	return c;
}

/*
 * At worker_connections, the oldest idle keep-alive connection makes room
 * (a client may always find one closed, and retries); with none idle, the
 * public sockets are left to the other workers until a connection closes
 * (nw_conn_close). The private socket (health checks) is always served.
 */
static bool
room_for_one(struct nw_engine *e, struct nw_listener *l)
{
	struct nw_conn *idle = e->timers[NW_TIMER_IDLE].head;

	if (e->max_conns == 0 || e->nconns < e->max_conns || !l->public)
		return true;
	if (idle != NULL) {
		nw_conn_close(idle);
		return true;
	}
	e->full = true;
	nw_listeners_update(e);
	return false;
}

/*
 * An exclusive wake-up goes to the first idle worker in the socket's wait
 * queue, and an epoll registration keeps its place there: the worker that
 * registered first would take every connection while it is idle, and a
 * canary started beside it would see almost none. After accepting, a
 * worker moves to the back of the queue (a new registration), so idle
 * workers take turns, as gunicorn's workers blocked in accept() do.
 */
static void
listener_take_turns(struct nw_engine *e, struct nw_listener *l)
{
	if (!l->public || !e->exclusive || !l->registered)
		return;
	listener_register(e, l, false);
	listener_register(e, l, true);
}

/*
 * The master's "accept", after a worker died: the kernel wakes one idle
 * worker per new connection, and one woken just before it crashed left
 * its connection in the shared queue, where no other worker is woken for
 * it until the next connection comes. The live ones look now.
 */
void
nw_listeners_accept_queued(struct nw_engine *e)
{
	size_t i;

	for (i = 0; i < e->nlisteners && !e->halt; i++) {
		struct nw_listener *l = &e->listeners[i];

		if (l->public && l->registered)
			nw_listener_accept(e, l);
	}
}

/* The listener is readable: take its connections, a batch at most. */
void
nw_listener_accept(struct nw_engine *e, struct nw_listener *l)
{
	int i, accepted = 0;

	for (i = 0; i < e->accepts_per_wakeup && !e->halt; i++) {
		struct sockaddr_storage peer;
		socklen_t plen;
		struct nw_conn *c;
		int fd;

		if (!room_for_one(e, l))
			break;
		fd = nw_accept(l->fd, l->tcp, &peer, &plen);
		if (fd == NW_ACCEPT_RETRY)
			continue;
		if (fd == NW_ACCEPT_BUSY) {
			e->accept_paused_until = e->clock.mono_ms + 100;
			nw_listeners_update(e);
			nw_engine_arm(e);
			break;
		}
		if (fd < 0)
			break;
		if ((c = conn_new(e, fd, l)) == NULL) {
			close(fd);
			break;
		}
		accepted++;
		memcpy(&c->peer, &peer, plen);
		c->peerlen = plen;
		nw_conn_describe_peer(c);
		c->local = nw_peer_is_local(fd, &peer);
		if (l->tls && nw_tls_accept(c) < 0) {
			nw_conn_close(c);
			continue;
		}
		nw_timer_set(c, e->stopping ? NW_TIMER_GRACE : NW_TIMER_HEAD);
		/*
		 * The request usually arrived with the handshake: try it now,
		 * and a one-shot connection never needs the epoll set at all.
		 */
		nw_conn_readable(c);
		if (c->fd < 0 || c->registered)
			continue;
		nw_conn_update_events(c);
	}
	if (accepted > 0)
		listener_take_turns(e, l);
}
