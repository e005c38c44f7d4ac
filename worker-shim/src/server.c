/*
 * server.c: the worker's epoll loop.
 *
 * Accepts on the private socket at once and on the shared public sockets
 * after `live`, reads requests without blocking, keeps connections alive,
 * expires them by timer list, heartbeats on the control socket and stops
 * gracefully. Each complete request goes to the WSGI app synchronously
 * (wsgi.c); the GIL is dropped only while the loop sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim.h"
#include "conn.h"

#define MAX_EVENTS 256
#define ACCEPTS_PER_WAKEUP 64
#define LINGER_MS 2000
#define GRACE_MS 1000
#define FREE_CONNS_MAX 1024
#define BUF_INITIAL 4096
#define BODY_READ_SIZE (64 * 1024)

void
nw_server_log(struct nw_server *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	nw_vlog(fmt, ap);
	va_end(ap);
}

/* Timers: one sorted list per timeout. */

static void
timer_unlink(struct nw_server *s, struct nw_conn *c)
{
	struct nw_timer_list *l;

	if (c->timer == NW_TIMER_NONE)
		return;
	l = &s->timers[c->timer];
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
	c->timer = NW_TIMER_NONE;
}

static void
timer_set(struct nw_server *s, struct nw_conn *c, int timer)
{
	struct nw_timer_list *l = &s->timers[timer];

	timer_unlink(s, c);
	c->timer = timer;
	c->deadline = s->clock.mono_ms + l->timeout_ms;
	c->prev = l->tail;
	c->next = NULL;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

/* Connections */

static struct nw_conn *
conn_new(struct nw_server *s, int fd, struct nw_listener *l)
{
	struct nw_conn *c = s->free_conns;

	if (c != NULL) {
		s->free_conns = c->next;
		s->nfree--;
	} else {
		if ((c = calloc(1, sizeof *c)) == NULL)
			return NULL;
		c->body.fd = -1;
	}
	c->kind = NW_WATCH_CONN;
	c->fd = fd;
	c->state = NW_CONN_HEAD;
	c->listener = l;
	c->in.len = 0;
	c->rpos = 0;
	nw_request_reset(&c->req);
	c->requests = 0;
	c->continue_sent = false;
	c->timer = NW_TIMER_NONE;
	c->prev = c->next = NULL;
	c->host[0] = '\0';
	s->nconns++;
	return c;
}

static void
body_reset(struct nw_body *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	b->expected = 0;
	b->chunked = false;
	b->size = 0;
	b->raw = 0;
	b->mem.len = 0;
	if (b->mem.cap > 64 * 1024)
		nw_buf_free(&b->mem);
}

static void
conn_close(struct nw_server *s, struct nw_conn *c)
{
	timer_unlink(s, c);
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	body_reset(&c->body);
	Py_CLEAR(c->remote_addr);
	Py_CLEAR(c->remote_port);
	s->nconns--;
	/* keep small buffers for the next connection, not big ones */
	if (c->body.mem.cap > 16 * 1024)
		nw_buf_free(&c->body.mem);
	if (s->nfree < FREE_CONNS_MAX && c->in.cap <= 16 * 1024) {
		c->next = s->free_conns;
		s->free_conns = c;
		s->nfree++;
	} else {
		nw_buf_free(&c->in);
		nw_buf_free(&c->body.mem);
		nw_request_free(&c->req);
		free(c);
	}
}

/*
 * Closing a socket with unread input makes the kernel send RST, which can
 * destroy the error response before the client reads it. So: shut down our
 * side, then read and drop what still comes, for a little while.
 */
static void
conn_linger(struct nw_server *s, struct nw_conn *c)
{
	shutdown(c->fd, SHUT_WR);
	c->state = NW_CONN_LINGER;
	timer_set(s, c, NW_TIMER_LINGER);
}

/*
 * The last answer on a connection the client asked to close is written. Its
 * tail may still wait in the kernel for the FIN (wsgi.c sends a closing
 * answer with MSG_MORE), and close() with unread input would drop it and
 * send a reset instead. So the shutdown sends the tail and the FIN in one
 * segment first. A client that sends after asking to close may then get a
 * reset; one that did not ask is drained instead (conn_linger).
 */
static void
conn_finish(struct nw_server *s, struct nw_conn *c)
{
	shutdown(c->fd, SHUT_WR);
	conn_close(s, c);
}

static void
conn_error(struct nw_server *s, struct nw_conn *c, int status)
{
	struct nw_writer w = s->writer;
	struct iovec iov[3];

	nw_error_iov(status, &s->clock, iov);
	w.timeout_ms = 1000;
	if (nw_writev_all(&w, c->fd, iov, 3) < 0) {
		PyErr_Clear();
		conn_close(s, c);
		return;
	}
	conn_linger(s, c);
}

static int
open_tmpfile(struct nw_server *s)
{
	char path[4096];
	int fd;

	fd = open(s->tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	snprintf(path, sizeof path, "%s/narwhal-body-XXXXXX", s->tmpdir);
	if ((fd = mkostemp(path, O_CLOEXEC)) < 0)
		return -1;
	unlink(path);
	return fd;
}

static int
write_file(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
body_spill(struct nw_server *s, struct nw_body *b)
{
	if ((b->fd = open_tmpfile(s)) < 0) {
		nw_server_log(s, "cannot create a temporary file in %s: %s",
		    s->tmpdir, strerror(errno));
		return -1;
	}
	if (write_file(b->fd, b->mem.data, b->mem.len) < 0)
		return -1;
	b->mem.len = 0;
	nw_buf_free(&b->mem);
	return 0;
}

static int
body_append(struct nw_server *s, struct nw_body *b, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	b->size += n;
	if (b->fd < 0 && b->mem.len + n > NW_BODY_MEM_MAX &&
	    body_spill(s, b) < 0)
		return -1;
	if (b->fd >= 0)
		return write_file(b->fd, p, n);
	return nw_buf_append(&b->mem, p, n);
}

/* Returns 0, or the status to answer. */
static int
body_begin(struct nw_server *s, struct nw_conn *c)
{
	struct nw_body *b = &c->body;
	uint64_t cl;

	body_reset(b);
	if (c->req.chunked) {
		b->chunked = true;
		nw_chunked_init(&b->dec);
		return 0;
	}
	cl = c->req.content_length > 0 ? (uint64_t)c->req.content_length : 0;
	if (s->limits.body && cl > s->limits.body)
		return 413;
	b->expected = cl;
	if (cl > NW_BODY_MEM_MAX && body_spill(s, b) < 0)
		return 500;
	return 0;
}

/* Moves body bytes out of the input buffer: 1 complete, 0 more, -status. */
static int
body_feed(struct nw_server *s, struct nw_conn *c)
{
	struct nw_body *b = &c->body;
	size_t start = c->rpos + c->req.head_len;
	char *p = c->in.data + start;
	size_t avail = c->in.len - start, consumed;
	bool done;

	if (b->chunked) {
		size_t out = avail;
		ssize_t used = nw_chunked_decode(&b->dec, p, &out, &done);

		if (used < 0)
			return -400;
		/* a declared chunk size is enough to know it is too much */
		if (s->limits.body &&
		    b->size + out + b->dec.size > s->limits.body)
			return -413;
		if (body_append(s, b, p, out) < 0)
			return -500;
		consumed = (size_t)used;
	} else {
		consumed = avail < b->expected ? avail : (size_t)b->expected;
		if (body_append(s, b, p, consumed) < 0)
			return -500;
		b->expected -= consumed;
		done = b->expected == 0;
	}
	b->raw += consumed;
	if (consumed < avail)
		memmove(p, p + consumed, avail - consumed);
	c->in.len -= consumed;
	return done;
}

static void
send_control(struct nw_server *s, const char *msg)
{
	if (s->control_fd < 0)
		return;
	if (send(s->control_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) <
	        0 &&
	    errno != EAGAIN) {
		nw_server_log(
		    s, "control socket: %s; stopping", strerror(errno));
		s->stopping = true;
	}
}

static int
handle_request(struct nw_server *s, struct nw_conn *c)
{
	struct nw_body *b = &c->body;
	PyObject *input;
	int rc;

	if (b->fd >= 0) {
		input = nw_input_from_fd(b->fd, b->size);
		b->fd = -1;
	} else {
		input = nw_input_from_mem(b->mem.data, b->mem.len);
	}
	if (input == NULL) {
		PyErr_PrintEx(0);
		return NW_HANDLED_CLOSE;
	}
	rc = nw_wsgi_handle(s, c, input);
	Py_DECREF(input);
	s->served++;
	c->requests++;
	if (s->max_requests && s->served >= s->max_requests && !s->retired) {
		s->retired = true;
		send_control(s, "retire");
	}
	/* the app may have run for a while */
	nw_clock_update(&s->clock);
	return rc;
}

static void conn_stop_idle(struct nw_server *s, struct nw_conn *c);

/* Parses and answers every complete request in the buffer. */
static void
conn_process(struct nw_server *s, struct nw_conn *c)
{
	for (;;) {
		bool client_done;
		int rc;

		if (c->state == NW_CONN_HEAD) {
			if (c->rpos == c->in.len) {
				c->rpos = c->in.len = 0;
				if (c->requests > 0 && s->stopping)
					conn_stop_idle(s, c);
				else if (c->requests > 0)
					timer_set(s, c, NW_TIMER_IDLE);
				return;
			}
			/* the header timeout runs from a request's first byte
			 */
			if (c->req.scan == 0 &&
			    (c->requests > 0 || c->timer == NW_TIMER_GRACE))
				timer_set(s, c, NW_TIMER_HEAD);
			rc = nw_request_parse(&c->req, c->in.data + c->rpos,
			    c->in.len - c->rpos, &s->limits);
			if (rc == NW_PARSE_AGAIN)
				return;
			if (rc == NW_PARSE_ERROR) {
				conn_error(s, c, c->req.status);
				return;
			}
			if ((rc = body_begin(s, c)) != 0) {
				conn_error(s, c, rc);
				return;
			}
			c->state = NW_CONN_BODY;
			c->continue_sent = false;
		}

		rc = body_feed(s, c);
		if (rc < 0) {
			conn_error(s, c, -rc);
			return;
		}
		if (rc == 0) {
			if (c->req.expect_continue && !c->continue_sent &&
			    c->body.raw == 0) {
				static const char cont[] =
				    "HTTP/1.1 100 Continue\r\n\r\n";

				c->continue_sent = true;
				if (nw_send_all(&s->writer, c->fd, cont,
				        sizeof cont - 1) < 0) {
					if (PyErr_Occurred())
						s->fatal = true;
					conn_close(s, c);
					return;
				}
			}
			timer_set(s, c, NW_TIMER_BODY);
			return;
		}

		rc = handle_request(s, c);
		s->answered_local |= c->local;
		client_done = !c->req.keep_alive;
		c->state = NW_CONN_HEAD;
		c->rpos += c->req.head_len;
		nw_request_reset(&c->req);
		body_reset(&c->body);
		if (rc == NW_HANDLED_FATAL)
			s->fatal = true;
		if (rc != NW_HANDLED_KEEP || s->quit) {
			/*
			 * A client that asked to close sends nothing more. When
			 * we end it instead, the client may already be sending
			 * its next request: drain it, or the reset that close()
			 * sends for unread input destroys our answer's tail.
			 */
			if (client_done)
				conn_finish(s, c);
			else
				conn_linger(s, c);
			return;
		}
		/*
		 * Kept while stopping: the answer left before the stop began,
		 * so the client may send another request. It is answered (with
		 * Connection: close) rather than dropped: see conn_stop_idle.
		 */
	}
}

/*
 * A kept-alive connection between two requests, when the worker stops. Its
 * client may have sent the next request already, or be about to: a busy
 * client sends it the moment it has read our last answer. Closing the
 * connection under that request drops it (the client reads an EOF or a
 * reset where it expected an answer), which is how a reload under load
 * loses requests. So what is already there is read and answered, with
 * Connection: close; otherwise the connection waits a moment for a request
 * (GRACE_MS, or less if its keep-alive time ends sooner) and is then closed
 * with a lingering close, so a request racing with our FIN meets an EOF
 * rather than a reset.
 */
static void
conn_stop_idle(struct nw_server *s, struct nw_conn *c)
{
	ssize_t n;

	if (c->in.cap < BUF_INITIAL &&
	    nw_buf_reserve(&c->in, BUF_INITIAL) < 0) {
		conn_close(s, c);
		return;
	}
	n = read(c->fd, c->in.data, c->in.cap);
	if (n > 0) {
		c->in.len = (size_t)n;
		conn_process(s, c);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		conn_close(s, c);
	} else if (c->timer != NW_TIMER_IDLE ||
	    c->deadline > s->clock.mono_ms + GRACE_MS) {
		timer_set(s, c, NW_TIMER_GRACE);
	}
}

static void
conn_readable(struct nw_server *s, struct nw_conn *c)
{
	size_t want = c->state == NW_CONN_BODY ? BODY_READ_SIZE : BUF_INITIAL;
	ssize_t n;

	if (c->state == NW_CONN_LINGER) {
		char sink[16384];

		n = read(c->fd, sink, sizeof sink);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			conn_close(s, c);
		return;
	}
	if (c->rpos > 0) {
		memmove(c->in.data, c->in.data + c->rpos, c->in.len - c->rpos);
		c->in.len -= c->rpos;
		c->rpos = 0;
	}
	if (c->in.cap - c->in.len < want / 2 &&
	    nw_buf_reserve(&c->in, want) < 0) {
		conn_close(s, c);
		return;
	}
	n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_close(s, c);
		return;
	}
	c->in.len += (size_t)n;
	conn_process(s, c);
}

/* Listeners */

static void
listener_register(struct nw_server *s, struct nw_listener *l, bool on)
{
	struct epoll_event ev;

	if (l->registered == on)
		return;
	ev.events = EPOLLIN;
	/* the public sockets are shared by every worker: wake only one */
	if (l->public)
		ev.events |= EPOLLEXCLUSIVE;
	ev.data.ptr = l;
	if (epoll_ctl(s->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, l->fd, &ev) <
	    0) {
		nw_server_log(
		    s, "epoll_ctl(listener %d): %s", l->fd, strerror(errno));
		return;
	}
	l->registered = on;
}

static void
listeners_update(struct nw_server *s)
{
	bool paused = s->accept_paused_until != 0;
	size_t i;

	for (i = 0; i < s->nlisteners; i++) {
		struct nw_listener *l = &s->listeners[i];

		listener_register(s, l,
		    !s->stop_started && !paused && (!l->public || s->live));
	}
}

static void
accept_some(struct nw_server *s, struct nw_listener *l)
{
	int i;

	for (i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		struct sockaddr_storage peer;
		socklen_t plen;
		struct epoll_event ev;
		struct nw_conn *c;
		int fd;

		fd = nw_accept(l->fd, l->tcp, &peer, &plen);
		if (fd == NW_ACCEPT_RETRY)
			continue;
		if (fd == NW_ACCEPT_BUSY) {
			s->accept_paused_until = s->clock.mono_ms + 100;
			listeners_update(s);
			return;
		}
		if (fd < 0)
			return;
		if ((c = conn_new(s, fd, l)) == NULL) {
			close(fd);
			return;
		}
		memcpy(&c->peer, &peer, plen);
		c->peerlen = plen;
		c->local = nw_peer_is_local(fd, &peer);
		timer_set(
		    s, c, s->stop_started ? NW_TIMER_GRACE : NW_TIMER_HEAD);
		/*
		 * The request usually arrived with the handshake: try it now,
		 * and a one-shot connection never needs the epoll set at all.
		 */
		conn_readable(s, c);
		if (c->fd < 0 || s->fatal)
			continue;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_close(s, c);
	}
}

/* Control socket and signals */

static void
control_readable(struct nw_server *s)
{
	char msg[128];
	ssize_t n;

	n = recv(s->control_fd, msg, sizeof msg - 1, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
	}
	if (n <= 0) {
		nw_server_log(s,
		    "control socket closed: the master is gone, "
		    "stopping");
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->control_fd, NULL);
		close(s->control_fd);
		s->control_fd = -1;
		s->stopping = true;
		return;
	}
	msg[n] = '\0';
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	if (strcmp(msg, "live") == 0) {
		if (!s->live) {
			s->live = true;
			listeners_update(s);
		}
	} else {
		nw_server_log(
		    s, "control socket: unknown message \"%.60s\"", msg);
	}
}

static void
wakeup_readable(struct nw_server *s)
{
	char sink[64];

	while (read(s->wakeup_fd, sink, sizeof sink) > 0)
		;
	if (PyErr_CheckSignals() < 0)
		s->fatal = true;
}

static void
heartbeat(struct nw_server *s)
{
	char msg[40];

	if (s->heartbeat_ms <= 0 || s->clock.mono_ms < s->next_heartbeat)
		return;
	snprintf(msg, sizeof msg, "hb %llu", (unsigned long long)s->served);
	send_control(s, msg);
	s->next_heartbeat = s->clock.mono_ms + s->heartbeat_ms;
}

static void
timers_expire(struct nw_server *s)
{
	int64_t now = s->clock.mono_ms;
	int t;

	for (t = 0; t < NW_TIMER_COUNT; t++) {
		struct nw_conn *c;

		while ((c = s->timers[t].head) != NULL && c->deadline <= now) {
			/*
			 * A partial head or a stalled body gets a 408. A
			 * connection between requests gets a lingering close:
			 * a request racing with it then meets an EOF, which
			 * clients retry, rather than a reset.
			 */
			if ((t == NW_TIMER_HEAD && c->in.len > c->rpos) ||
			    t == NW_TIMER_BODY)
				conn_error(s, c, 408);
			else if (t == NW_TIMER_IDLE || t == NW_TIMER_GRACE)
				conn_linger(s, c);
			else
				conn_close(s, c);
		}
	}
	if (s->accept_paused_until && now >= s->accept_paused_until) {
		s->accept_paused_until = 0;
		listeners_update(s);
	}
}

static int
next_timeout(struct nw_server *s)
{
	int64_t now = s->clock.mono_ms, next = INT64_MAX;
	int t;

	for (t = 0; t < NW_TIMER_COUNT; t++)
		if (s->timers[t].head && s->timers[t].head->deadline < next)
			next = s->timers[t].head->deadline;
	if (s->heartbeat_ms > 0 && s->next_heartbeat < next)
		next = s->next_heartbeat;
	if (s->stop_started && s->stop_deadline < next)
		next = s->stop_deadline;
	if (s->accept_paused_until && s->accept_paused_until < next)
		next = s->accept_paused_until;
	if (next == INT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return next - now > 60000 ? 60000 : (int)(next - now);
}

static void
stop_begin(struct nw_server *s)
{
	struct nw_conn *c, *next;

	s->stop_started = true;
	s->stop_deadline = s->clock.mono_ms + s->graceful_ms;
	listeners_update(s);
	/* a request on an idle connection is answered, not dropped */
	for (c = s->timers[NW_TIMER_IDLE].head;
	     c != NULL && !s->fatal && !s->quit; c = next) {
		next = c->next; /* c may be closed, or move to another list */
		conn_stop_idle(s, c);
	}
	/* fresh ones get a moment to send the request they connected for */
	for (c = s->timers[NW_TIMER_HEAD].head; c != NULL; c = next) {
		next = c->next;
		if (c->in.len == c->rpos && c->requests == 0)
			timer_set(s, c, NW_TIMER_GRACE);
	}
}

/* The write hook of the response writers: sleep without the GIL. */
static int
wait_writable(void *arg, int fd, int timeout_ms)
{
	struct nw_server *s = arg;
	struct pollfd p = {fd, POLLOUT, 0};

	for (;;) {
		int r;

		Py_BEGIN_ALLOW_THREADS r = poll(&p, 1, timeout_ms);
		Py_END_ALLOW_THREADS if (r > 0) return 0;
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (errno != EINTR)
			return -1;
		if (PyErr_CheckSignals() < 0 || s->quit)
			return -1;
	}
}

static int
watch(struct nw_server *s, int fd, void *ptr)
{
	struct epoll_event ev;

	ev.events = EPOLLIN;
	ev.data.ptr = ptr;
	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int
nw_server_setup(struct nw_server *s)
{
	const char *tmp = getenv("TMPDIR");
	int t;

	s->epfd = -1;
	s->alog_fd = -1;
	s->writer.wait = wait_writable;
	s->writer.arg = s;
	if (s->writer.timeout_ms <= 0)
		s->writer.timeout_ms = 30000;
	s->tmpdir = strdup(tmp && *tmp ? tmp : "/tmp");
	for (t = 0; t < NW_TIMER_COUNT; t++)
		s->timers[t].head = s->timers[t].tail = NULL;
	s->timers[NW_TIMER_IDLE].timeout_ms = s->keepalive_ms;
	s->timers[NW_TIMER_HEAD].timeout_ms = s->header_timeout_ms;
	/*
	 * A request body that goes silent gets as long as a head gets to
	 * arrive: header_timeout is the one knob for a client that stalls
	 * while it sends. It runs between reads, so a slow but steady upload
	 * is never cut off.
	 */
	s->body_timeout_ms = s->header_timeout_ms;
	s->timers[NW_TIMER_BODY].timeout_ms = s->body_timeout_ms;
	s->timers[NW_TIMER_LINGER].timeout_ms = LINGER_MS;
	s->timers[NW_TIMER_GRACE].timeout_ms = GRACE_MS;
	s->control_watch = NW_WATCH_CONTROL;
	s->wakeup_watch = NW_WATCH_WAKEUP;
	return s->tmpdir ? 0 : -1;
}

PyObject *
nw_server_serve(struct nw_server *s)
{
	struct epoll_event events[MAX_EVENTS];
	struct nw_conn *c;
	size_t i;
	int t;

	if (s->running) {
		PyErr_SetString(PyExc_RuntimeError, "already serving");
		return NULL;
	}
	if ((s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	s->running = true;
	nw_clock_update(&s->clock);
	for (i = 0; i < s->nlisteners; i++) {
		int fl = fcntl(s->listeners[i].fd, F_GETFL);

		if (fl >= 0 && !(fl & O_NONBLOCK))
			fcntl(s->listeners[i].fd, F_SETFL, fl | O_NONBLOCK);
	}
	listeners_update(s);
	if (s->control_fd >= 0 &&
	    watch(s, s->control_fd, &s->control_watch) < 0)
		nw_server_log(
		    s, "cannot watch the control socket: %s", strerror(errno));
	if (s->wakeup_fd >= 0 && watch(s, s->wakeup_fd, &s->wakeup_watch) < 0)
		nw_server_log(
		    s, "cannot watch the signal pipe: %s", strerror(errno));
	s->next_heartbeat = s->clock.mono_ms;

	while (!s->fatal && !s->quit) {
		int n, timeout;

		if (s->stopping && !s->stop_started)
			stop_begin(s);
		if (s->stop_started &&
		    (s->nconns == 0 || s->clock.mono_ms >= s->stop_deadline))
			break;
		heartbeat(s);
		nw_alog_flush(s);
		timeout = next_timeout(s);
		Py_BEGIN_ALLOW_THREADS n =
		    epoll_wait(s->epfd, events, MAX_EVENTS, timeout);
		Py_END_ALLOW_THREADS nw_clock_update(&s->clock);
		if (n < 0) {
			if (errno != EINTR) {
				PyErr_SetFromErrno(PyExc_OSError);
				s->fatal = true;
				break;
			}
			if (PyErr_CheckSignals() < 0)
				s->fatal = true;
			continue;
		}
		for (t = 0; t < n && !s->fatal && !s->quit; t++) {
			enum nw_watch_kind *kind = events[t].data.ptr;

			switch (*kind) {
			case NW_WATCH_CONN:
				conn_readable(s, (struct nw_conn *)kind);
				break;
			case NW_WATCH_LISTENER:
				accept_some(s, (struct nw_listener *)kind);
				break;
			case NW_WATCH_CONTROL:
				control_readable(s);
				break;
			case NW_WATCH_WAKEUP:
				wakeup_readable(s);
				break;
			}
		}
		timers_expire(s);
		/*
		 * An answer's TCP write wakes its client as if we were about
		 * to sleep, so a client on this host (a proxy, a load
		 * generator) is queued on our CPU and waits out our time slice
		 * while we go on with the next batch: give it the CPU. The
		 * ASGI loop does the same (nw_aserver_release).
		 */
		if (s->answered_local) {
			s->answered_local = false;
			sched_yield();
		}
	}

	/* leaving: everything still open is closed without an answer */
	for (t = 0; t < NW_TIMER_COUNT; t++)
		while ((c = s->timers[t].head) != NULL)
			conn_close(s, c);
	nw_alog_flush(s);
	close(s->epfd);
	s->epfd = -1;
	s->running = false;
	for (i = 0; i < s->nlisteners; i++)
		s->listeners[i].registered = false;
	if (s->fatal) {
		s->fatal = false;
		if (PyErr_Occurred())
			return NULL;
	}
	if (PyErr_Occurred())
		return NULL;
	Py_RETURN_NONE;
}

void
nw_server_stop(struct nw_server *s)
{
	s->stopping = true;
}

void
nw_server_free(struct nw_server *s)
{
	struct nw_conn *c;
	size_t i;

	while ((c = s->free_conns) != NULL) {
		s->free_conns = c->next;
		nw_buf_free(&c->in);
		nw_buf_free(&c->body.mem);
		nw_request_free(&c->req);
		free(c);
	}
	for (i = 0; i < s->nlisteners; i++)
		Py_CLEAR(s->listeners[i].environ);
	free(s->listeners);
	s->listeners = NULL;
	s->nlisteners = 0;
	nw_alog_flush(s);
	if (s->alog_fd > 2)
		close(s->alog_fd);
	s->alog_fd = -1;
	nw_buf_free(&s->alog);
	free(s->alog_path);
	s->alog_path = NULL;
	free(s->tmpdir);
	s->tmpdir = NULL;
	free(s->script_name_b);
	s->script_name_b = NULL;
	nw_buf_free(&s->head);
	nw_buf_free(&s->scratch);
	Py_CLEAR(s->app);
	Py_CLEAR(s->errors);
	Py_CLEAR(s->script_name);
	Py_CLEAR(s->start_response);
}
