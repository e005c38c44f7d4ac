/*
 * asgi_server.c: the ASGI worker's connections, inside an asyncio loop.
 *
 * ASGIServer keeps listeners and connections in an epoll set of its own,
 * which the loop watches as one fd: it accepts, parses with the shared HTTP
 * core, starts a Cycle (asgi_cycle.c) per request, writes without blocking
 * and expires connections from one loop timer. It never runs the app and
 * never blocks; the loop, signals and lifespan belong to asgi.py.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "asgi.h"
#include "conn.h"

#define MAX_EVENTS 256
/*
 * Every worker's epoll set is woken for a new connection (nested in the
 * loop's, EPOLLEXCLUSIVE cannot pick one): taking one connection per
 * wake-up spreads a burst across the workers instead of the first taker.
 */
#define ACCEPTS_PER_WAKEUP 1
#define LINGER_MS 2000
#define GRACE_MS 1000
#define FREE_CONNS_MAX 1024
#define BUF_INITIAL 4096
#define BODY_READ_SIZE (64 * 1024)
/* Pipelined input kept while a request runs; past it, reading pauses. */
#define PIPELINE_MAX (64 * 1024)
/* Output held for a batch's release, per connection; more goes out now. */
#define HOLD_MAX (16 * 1024)

typedef struct {
	PyObject_HEAD struct nw_aserver s;
} ServerObject;

/* The answer to a WebSocket upgrade: around the Date line, as nw_error_iov. */
static const char ws_head[] = "HTTP/1.1 400 Bad Request\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 31\r\n"
                              "Connection: close\r\n";
static const char ws_body[] = "\r\nWebSocket is not supported yet\n";

void
nw_aserver_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	nw_vlog(fmt, ap);
	va_end(ap);
}

/* A Python error where nobody can take it: print it, carry on. */
static void
print_error(const char *what)
{
	nw_aserver_log("%s", what);
	PyErr_PrintEx(0);
}

/* Timers: one sorted list per timeout, one loop timer for all. */

static void
timer_unlink(struct nw_aserver *s, struct nw_aconn *c)
{
	struct nw_atimer_list *l;

	if (c->timer == NW_ATIMER_NONE)
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
	c->timer = NW_ATIMER_NONE;
}

static void
timer_set(struct nw_aserver *s, struct nw_aconn *c, int timer)
{
	struct nw_atimer_list *l = &s->timers[timer];

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

/* The loop timer fires at the earliest deadline (or a little after). */
static void
timers_arm(struct nw_aserver *s)
{
	int64_t next = INT64_MAX;
	PyObject *delay, *h;
	int t;

	for (t = 0; t < NW_ATIMER_COUNT; t++)
		if (s->timers[t].head && s->timers[t].head->deadline < next)
			next = s->timers[t].head->deadline;
	if (s->accept_paused_until && s->accept_paused_until < next)
		next = s->accept_paused_until;
	if (next == INT64_MAX || s->closed)
		return;
	if (s->tick_handle != NULL) {
		if (s->tick_due <= next)
			return;
		h = PyObject_CallMethod(s->tick_handle, "cancel", NULL);
		Py_XDECREF(h);
		Py_CLEAR(s->tick_handle);
	}
	delay = PyFloat_FromDouble(next > s->clock.mono_ms
	        ? (double)(next - s->clock.mono_ms) / 1000.0 + 0.005
	        : 0.0);
	if (delay == NULL) {
		print_error("cannot arm the timer");
		return;
	}
	h = PyObject_CallFunctionObjArgs(
	    s->call_later, delay, s->on_tick, NULL);
	Py_DECREF(delay);
	if (h == NULL) {
		print_error("cannot arm the timer");
		return;
	}
	s->tick_handle = h;
	s->tick_due = next;
}

/* Connections */

static void listeners_update(struct nw_aserver *s);
static void conn_process(struct nw_aserver *s, struct nw_aconn *c);
static void check_drained(struct nw_aserver *s);
static void body_timer(struct nw_aserver *s, struct nw_aconn *c);
static int out_flush(struct nw_aserver *s, struct nw_aconn *c);

static void
conn_events(struct nw_aserver *s, struct nw_aconn *c, uint32_t events)
{
	struct epoll_event ev;

	if (c->events == events || c->fd < 0)
		return;
	ev.events = events;
	ev.data.ptr = c;
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = events;
}

static void
conn_update_events(struct nw_aserver *s, struct nw_aconn *c)
{
	uint32_t ev = 0;

	if (!c->read_paused)
		ev |= EPOLLIN;
	if (c->out.len > c->opos && !c->held)
		ev |= EPOLLOUT;
	conn_events(s, c, ev);
}

static struct nw_aconn *
conn_new(struct nw_aserver *s, int fd, struct nw_alistener *l)
{
	struct nw_aconn *c = s->free_conns;

	if (c != NULL) {
		s->free_conns = c->next;
		s->nfree--;
	} else if ((c = calloc(1, sizeof *c)) == NULL) {
		return NULL;
	}
	c->kind = NW_AWATCH_CONN;
	c->fd = fd;
	c->state = NW_ACONN_WAIT;
	c->srv = s;
	c->listener = l;
	c->in.len = 0;
	c->rpos = 0;
	nw_request_reset(&c->req);
	c->body_done = true;
	c->out.len = c->opos = 0;
	c->events = 0;
	c->read_paused = false;
	c->cycle = NULL;
	c->requests = 0;
	c->queued = false;
	c->qnext = NULL;
	c->held = false;
	c->hnext = NULL;
	c->timer = NW_ATIMER_NONE;
	c->prev = c->next = NULL;
	c->client = NULL;
	c->host[0] = '\0';
	c->trusted = false;
	c->all_prev = NULL;
	c->all_next = s->conns;
	if (s->conns)
		s->conns->all_prev = c;
	s->conns = c;
	s->nconns++;
	return c;
}

static void
runq_remove(struct nw_aserver *s, struct nw_aconn *c)
{
	struct nw_aconn **pp;

	if (!c->queued)
		return;
	for (pp = &s->runq_head; *pp != NULL; pp = &(*pp)->qnext)
		if (*pp == c) {
			*pp = c->qnext;
			break;
		}
	s->runq_tail = NULL;
	for (pp = &s->runq_head; *pp != NULL; pp = &(*pp)->qnext)
		s->runq_tail = *pp;
	c->queued = false;
	c->qnext = NULL;
}

static void
held_remove(struct nw_aserver *s, struct nw_aconn *c)
{
	struct nw_aconn **pp;

	if (!c->held)
		return;
	for (pp = &s->held; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	c->held = false;
	c->hnext = NULL;
}

static void
conn_close(struct nw_aserver *s, struct nw_aconn *c)
{
	struct nw_cycle *cy = c->cycle;

	timer_unlink(s, c);
	runq_remove(s, c);
	if (c->held) {
		/* written before an abort: it goes out, as it would have */
		held_remove(s, c);
		(void)out_flush(s, c);
	}
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->state = NW_ACONN_WAIT;
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		s->conns = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	s->nconns--;
	if (cy != NULL) {
		c->cycle = NULL;
		nw_cycle_disconnected(cy);
		Py_DECREF(cy);
	}
	Py_CLEAR(c->client);
	/*
	 * Keep small buffers for the next connection, not big ones. While an
	 * event batch runs, a later event may still point at this struct: it
	 * is reused only after the batch.
	 */
	if (s->in_events) {
		c->next = s->limbo;
		s->limbo = c;
	} else if (s->nfree < FREE_CONNS_MAX && c->in.cap <= 16 * 1024 &&
	    c->out.cap <= 64 * 1024) {
		c->next = s->free_conns;
		s->free_conns = c;
		s->nfree++;
	} else {
		nw_buf_free(&c->in);
		nw_buf_free(&c->out);
		nw_request_free(&c->req);
		free(c);
	}
	if (s->stopping)
		check_drained(s);
}

/*
 * Closing a socket with unread input makes the kernel send RST, which can
 * destroy the last response before the client reads it. So: shut down our
 * side, then read and drop what still comes, for a little while.
 */
static void
conn_linger(struct nw_aserver *s, struct nw_aconn *c)
{
	shutdown(c->fd, SHUT_WR);
	held_remove(s, c);
	c->state = NW_ACONN_LINGER;
	c->read_paused = false;
	c->out.len = c->opos = 0;
	conn_update_events(s, c);
	timer_set(s, c, NW_ATIMER_LINGER);
}

/* After the last response went out: close, lingering if input is left. */
static void
conn_finish(struct nw_aserver *s, struct nw_aconn *c)
{
	if (!c->body_done || c->rpos < c->in.len)
		conn_linger(s, c);
	else
		conn_close(s, c);
}

/* Moves p[0..n) and then the iovecs' rest into c->out. */
static int
out_append(struct nw_aconn *c, struct iovec *iov, int cnt, size_t skip)
{
	int i;

	for (i = 0; i < cnt; i++) {
		size_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		if (nw_buf_append(&c->out, (char *)iov[i].iov_base + skip,
		        len - skip) < 0)
			return -1;
		skip = 0;
	}
	return 0;
}

/* Writes what c->out holds; -1: the client is gone. */
static int
out_flush(struct nw_aserver *s, struct nw_aconn *c)
{
	while (c->opos < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->opos,
		    c->out.len - c->opos, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -1;
		}
		c->opos += (size_t)n;
	}
	if (c->opos == c->out.len) {
		c->opos = c->out.len = 0;
		if (c->out.cap > 256 * 1024)
			nw_buf_free(&c->out);
	}
	return 0;
}

size_t
nw_aconn_pending(const struct nw_aconn *c)
{
	return c->out.len - c->opos;
}

/* The client is gone (EOF, reset): its request, if any, sees a disconnect. */
static void
conn_lost(struct nw_aserver *s, struct nw_aconn *c)
{
	conn_close(s, c);
}

int
nw_aconn_write(struct nw_aconn *c, struct iovec *iov, int cnt)
{
	struct nw_aserver *s = c->srv;
	size_t total = 0;
	ssize_t n = 0;
	int i;

	if (c->fd < 0)
		return -1;
	for (i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	if (s->release_scheduled && (c->held || c->out.len == c->opos) &&
	    c->out.len - c->opos + total <= HOLD_MAX) {
		/* see release_schedule */
		if (out_append(c, iov, cnt, 0) < 0) {
			PyErr_Clear();
			conn_lost(s, c);
			return -1;
		}
		if (!c->held) {
			c->held = true;
			c->hnext = s->held;
			s->held = c;
		}
		return 0;
	}
	if (c->held) {
		/* too much to hold: what is held goes first */
		held_remove(s, c);
		if (out_flush(s, c) < 0) {
			conn_lost(s, c);
			return -1;
		}
	}
	if (c->out.len == c->opos) {
		struct msghdr mh;

		memset(&mh, 0, sizeof mh);
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)cnt;
		do
			n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno != EAGAIN) {
				conn_lost(s, c);
				return -1;
			}
			n = 0;
		}
		if ((size_t)n == total)
			return 0;
	}
	if (out_append(c, iov, cnt, (size_t)n) < 0) {
		PyErr_Clear();
		conn_lost(s, c);
		return -1;
	}
	conn_update_events(s, c);
	/* from send(): the app may have run a while since the last event */
	nw_clock_update(&s->clock);
	timer_set(s, c, NW_ATIMER_WRITE);
	timers_arm(s);
	return 0;
}

void
nw_aconn_resume_reading(struct nw_aconn *c)
{
	if (!c->read_paused || c->fd < 0)
		return;
	c->read_paused = false;
	conn_update_events(c->srv, c);
	if (c->state == NW_ACONN_CYCLE && !c->body_done) {
		/* from receive(): the clock may be old */
		nw_clock_update(&c->srv->clock);
		body_timer(c->srv, c);
		timers_arm(c->srv);
	}
}

static void
pause_reading(struct nw_aserver *s, struct nw_aconn *c)
{
	if (c->read_paused)
		return;
	c->read_paused = true;
	conn_update_events(s, c);
}

/* The half-answered response of a failed app: only closing tells. */
void
nw_aconn_abort(struct nw_aconn *c)
{
	struct nw_aserver *s = c->srv;
	struct nw_cycle *cy = c->cycle;

	if (cy != NULL) {
		c->cycle = NULL;
		Py_DECREF(cy);
	}
	conn_close(s, c);
}

static void
send_control(struct nw_aserver *s, const char *msg)
{
	if (s->control_fd < 0)
		return;
	if (send(s->control_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) <
	        0 &&
	    errno != EAGAIN)
		nw_aserver_log("control socket: %s", strerror(errno));
}

/* Pipelined requests start from the loop, in a context of their own. */
static void
runq_push(struct nw_aserver *s, struct nw_aconn *c)
{
	PyObject *args, *kw, *r;

	if (c->queued)
		return;
	c->queued = true;
	c->qnext = NULL;
	if (s->runq_tail)
		s->runq_tail->qnext = c;
	else
		s->runq_head = c;
	s->runq_tail = c;
	if (s->runq_scheduled)
		return;
	/*
	 * A task inherits the context current at create_task: started from
	 * inside the previous request's send(), the next request would see
	 * that request's contextvars.
	 */
	args = PyTuple_Pack(1, s->on_runq);
	kw = Py_BuildValue("{sO}", "context", s->context);
	r = args && kw ? PyObject_Call(s->call_soon, args, kw) : NULL;
	Py_XDECREF(args);
	Py_XDECREF(kw);
	if (r == NULL) {
		print_error("cannot schedule a pipelined request");
		return;
	}
	Py_DECREF(r);
	s->runq_scheduled = true;
}

/*
 * A kept-alive connection between two requests, when the worker stops. Its
 * client may have sent the next request already, or be about to: closing
 * under it would lose that request (an EOF or a reset where an answer was
 * due). So what is there is answered, with Connection: close; otherwise the
 * connection gets a moment (GRACE_MS, less if its keep-alive time ends
 * sooner), then a lingering close. The WSGI loop does the same.
 */
static void
conn_stop_idle(struct nw_aserver *s, struct nw_aconn *c)
{
	ssize_t n;

	/*
	 * The private socket's only client is the master's health probe,
	 * which is done with a worker once it is live (libcurl keeps the
	 * connection cached, and would never read a lingering close).
	 */
	if (!c->listener->public) {
		conn_close(s, c);
		return;
	}
	if (c->in.cap < BUF_INITIAL &&
	    nw_buf_reserve(&c->in, BUF_INITIAL) < 0) {
		conn_close(s, c);
		return;
	}
	n = read(c->fd, c->in.data, c->in.cap);
	if (n > 0) {
		c->rpos = 0;
		c->in.len = (size_t)n;
		timer_unlink(s, c);
		runq_push(s, c);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		conn_close(s, c);
	} else if (c->timer != NW_ATIMER_IDLE ||
	    c->deadline > s->clock.mono_ms + GRACE_MS) {
		timer_set(s, c, NW_ATIMER_GRACE);
	}
}

/* After a response: the connection waits for, or has, the next request. */
static void
conn_next(struct nw_aserver *s, struct nw_aconn *c)
{
	c->state = NW_ACONN_WAIT;
	if (c->read_paused) {
		c->read_paused = false;
		conn_update_events(s, c);
	}
	if (c->rpos < c->in.len) {
		timer_unlink(s, c);
		runq_push(s, c);
		return;
	}
	c->rpos = c->in.len = 0;
	if (s->stopping) {
		conn_stop_idle(s, c);
		return;
	}
	timer_set(s, c, NW_ATIMER_IDLE);
}

void
nw_aconn_response_done(struct nw_aconn *c, bool close)
{
	struct nw_aserver *s = c->srv;
	struct nw_cycle *cy = c->cycle;

	s->served++;
	c->requests++;
	/* from send(): the app may have run a while since the last event */
	nw_clock_update(&s->clock);
	if (s->max_requests && s->served >= s->max_requests && !s->retired) {
		s->retired = true;
		send_control(s, "retire");
	}
	if (cy != NULL) {
		c->cycle = NULL;
		Py_DECREF(cy);
	}
	c->rpos += c->req.head_len;
	nw_request_reset(&c->req);
	if (c->read_paused) {
		c->read_paused = false;
		conn_update_events(s, c);
	}
	/*
	 * Stopping, yet kept: the answer went out before the stop did, so the
	 * client may send another request; it is answered with Connection:
	 * close rather than dropped (conn_next, conn_stop_idle).
	 */
	if ((close || !c->body_done) && c->out.len > c->opos) {
		/* conn_writable finishes it; input can wait */
		c->state = NW_ACONN_CLOSING;
		pause_reading(s, c);
	} else if (close || !c->body_done) {
		conn_finish(s, c); /* c may be gone after this */
	} else if (c->out.len > c->opos) {
		c->state = NW_ACONN_WAIT; /* conn_writable goes on */
	} else {
		conn_next(s, c);
	}
	timers_arm(s);
}

/* An error response, then the connection closes (after what is queued). */
static void
conn_error(struct nw_aserver *s, struct nw_aconn *c, struct iovec *iov, int cnt)
{
	struct msghdr mh;
	ssize_t n;

	c->body_done = false; /* unread input, maybe: linger at the end */
	if (c->out.len > c->opos) {
		/* a pipelined answer is still queued: this one goes after it */
		c->state = NW_ACONN_CLOSING;
		if (out_append(c, iov, cnt, 0) < 0) {
			PyErr_Clear();
			conn_close(s, c);
			return;
		}
		pause_reading(s, c);
		conn_update_events(s, c);
		timer_set(s, c, NW_ATIMER_WRITE);
		return;
	}
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)cnt;
	n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && errno != EAGAIN) {
		conn_close(s, c);
		return;
	}
	conn_linger(s, c);
}

static void
conn_error_status(struct nw_aserver *s, struct nw_aconn *c, int status)
{
	struct iovec iov[3];

	nw_clock_update(&s->clock);
	nw_error_iov(status, &s->clock, iov);
	conn_error(s, c, iov, 3);
}

static void
conn_refuse_websocket(struct nw_aserver *s, struct nw_aconn *c)
{
	struct iovec iov[3] = {{(void *)ws_head, sizeof ws_head - 1}, {NULL, 0},
	    {(void *)ws_body, sizeof ws_body - 1}};

	nw_clock_update(&s->clock);
	iov[1].iov_base = s->clock.date;
	iov[1].iov_len = s->clock.date_len;
	conn_error(s, c, iov, 3);
}

/* Returns 0, or the status to answer. */
static int
body_begin(struct nw_aserver *s, struct nw_aconn *c)
{
	c->chunked = c->req.chunked;
	c->body_size = 0;
	if (c->chunked) {
		nw_chunked_init(&c->dec);
		c->remaining = 0;
		c->body_done = false;
		return 0;
	}
	c->remaining =
	    c->req.content_length > 0 ? (uint64_t)c->req.content_length : 0;
	if (s->limits.body && c->remaining > s->limits.body)
		return 413;
	c->body_done = c->remaining == 0;
	return 0;
}

/* Moves body bytes from the input to the cycle: 0, or -status. */
static int
body_feed(struct nw_aserver *s, struct nw_aconn *c)
{
	size_t start = c->rpos + c->req.head_len;
	char *p = c->in.data + start;
	size_t avail = c->in.len - start, consumed, out;
	bool done;

	if (avail == 0 || c->body_done)
		return 0;
	if (c->chunked) {
		ssize_t used;

		out = avail;
		used = nw_chunked_decode(&c->dec, p, &out, &done);
		if (used < 0)
			return -400;
		/* a declared chunk size is enough to know it is too much */
		if (s->limits.body &&
		    c->body_size + out + c->dec.size > s->limits.body)
			return -413;
		consumed = (size_t)used;
	} else {
		consumed = avail < c->remaining ? avail : (size_t)c->remaining;
		out = consumed;
		c->remaining -= consumed;
		done = c->remaining == 0;
	}
	c->body_size += out;
	c->body_done = done;
	if (c->cycle != NULL)
		nw_cycle_body(c->cycle, p, out, done);
	if (c->fd < 0)
		return 0;
	if (consumed < avail)
		memmove(p, p + consumed, avail - consumed);
	c->in.len -= consumed;
	return 0;
}

/*
 * A request body that goes silent gets as long as a head gets to arrive
 * (header_timeout, between reads), as in the WSGI loop; not while reading
 * is paused because the app has not taken what came.
 */
static void
body_timer(struct nw_aserver *s, struct nw_aconn *c)
{
	if (c->timer == NW_ATIMER_WRITE)
		return; /* the client is not reading our answer either */
	if (!c->body_done && !c->read_paused)
		timer_set(s, c, NW_ATIMER_BODY);
	else if (c->timer == NW_ATIMER_BODY)
		timer_unlink(s, c);
}

/* A request body that breaks the rules while its app runs. */
static void
body_error(struct nw_aserver *s, struct nw_aconn *c, int status)
{
	struct nw_cycle *cy = c->cycle;
	bool answered = cy != NULL && nw_cycle_head_sent(cy);

	/* the app sees a disconnect; the client gets the status if it can */
	if (cy != NULL) {
		c->cycle = NULL;
		nw_cycle_disconnected(cy);
		Py_DECREF(cy);
	}
	if (answered)
		conn_close(s, c); /* half a response: only closing tells */
	else
		conn_error_status(s, c, status);
}

static bool
is_websocket(struct nw_aconn *c)
{
	const char *buf = c->in.data + c->rpos;
	const struct nw_header *h;
	size_t i;

	h = nw_request_header(&c->req, buf, "upgrade", 7);
	if (h == NULL)
		return false;
	for (i = 0; i + 9 <= h->value.len; i++)
		if (strncasecmp(buf + h->value.off + i, "websocket", 9) == 0)
			return true;
	return false;
}

/* Parses what arrived: starts a request, feeds its body. */
static void
conn_process(struct nw_aserver *s, struct nw_aconn *c)
{
	int rc;

	if (c->state == NW_ACONN_WAIT) {
		if (c->rpos == c->in.len) {
			c->rpos = c->in.len = 0;
			return;
		}
		if (c->out.len - c->opos > NW_ASGI_WRITE_HIGH) {
			/* the client asks faster than it reads: wait for it */
			pause_reading(s, c);
			return;
		}
		/* the header timeout runs from a request's first byte */
		if (c->req.scan == 0 &&
		    (c->requests > 0 || c->timer == NW_ATIMER_GRACE ||
		        c->timer == NW_ATIMER_NONE))
			timer_set(s, c, NW_ATIMER_HEAD);
		rc = nw_request_parse(&c->req, c->in.data + c->rpos,
		    c->in.len - c->rpos, &s->limits);
		if (rc == NW_PARSE_AGAIN)
			return;
		if (rc == NW_PARSE_ERROR) {
			conn_error_status(s, c, c->req.status);
			return;
		}
		if ((rc = body_begin(s, c)) != 0) {
			conn_error_status(s, c, rc);
			return;
		}
		if (is_websocket(c)) {
			nw_aserver_log("WebSocket is not supported yet: "
			               "400 to %.*s",
			    (int)c->req.line.len,
			    c->in.data + c->rpos + c->req.line.off);
			conn_refuse_websocket(s, c);
			return;
		}
		if (c->timer != NW_ATIMER_WRITE)
			timer_unlink(s, c);
		c->state = NW_ACONN_CYCLE;
		s->batch_started++;
		if (nw_cycle_start(s, c) < 0) {
			print_error("cannot start the request");
			conn_error_status(s, c, 500);
			return;
		}
	}
	if (c->state != NW_ACONN_CYCLE)
		return;
	if (!c->body_done) {
		if ((rc = body_feed(s, c)) < 0) {
			body_error(s, c, -rc);
			return;
		}
		if (c->fd < 0 || c->state != NW_ACONN_CYCLE)
			return;
		if (c->cycle != NULL &&
		    nw_cycle_buffered(c->cycle) > NW_ASGI_BODY_HIGH)
			pause_reading(s, c);
		body_timer(s, c);
		return;
	}
	body_timer(s, c);
	/* pipelined requests wait for this one's answer */
	if (c->in.len - c->rpos - c->req.head_len > PIPELINE_MAX)
		pause_reading(s, c);
}

static void
conn_readable(struct nw_aserver *s, struct nw_aconn *c)
{
	size_t want = BUF_INITIAL;
	ssize_t n;

	if (c->state == NW_ACONN_LINGER) {
		char sink[16384];

		n = read(c->fd, sink, sizeof sink);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			conn_close(s, c);
		return;
	}
	if (c->read_paused)
		return;
	if (c->rpos > 0) {
		memmove(c->in.data, c->in.data + c->rpos, c->in.len - c->rpos);
		c->in.len -= c->rpos;
		c->rpos = 0;
	}
	if (c->state == NW_ACONN_CYCLE && !c->body_done)
		want = BODY_READ_SIZE;
	if (c->in.cap - c->in.len < want / 2 &&
	    nw_buf_reserve(&c->in, want) < 0) {
		conn_close(s, c);
		return;
	}
	n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_lost(s, c);
		return;
	}
	c->in.len += (size_t)n;
	conn_process(s, c);
}

static void
conn_writable(struct nw_aserver *s, struct nw_aconn *c)
{
	held_remove(s, c);
	if (out_flush(s, c) < 0) {
		conn_lost(s, c);
		return;
	}
	if (c->out.len > c->opos) {
		conn_update_events(s, c); /* released output is not watched */
		timer_set(s, c, NW_ATIMER_WRITE); /* it moved: more time */
		if (c->cycle != NULL &&
		    c->out.len - c->opos <= NW_ASGI_WRITE_LOW)
			nw_cycle_drained(c->cycle);
		return;
	}
	conn_update_events(s, c);
	if (c->timer == NW_ATIMER_WRITE)
		timer_unlink(s, c);
	switch (c->state) {
	case NW_ACONN_CLOSING:
		conn_finish(s, c);
		break;
	case NW_ACONN_CYCLE:
		if (c->cycle != NULL)
			nw_cycle_drained(c->cycle);
		body_timer(s, c); /* the body may still be arriving */
		break;
	case NW_ACONN_WAIT:
		conn_next(s, c);
		break;
	default:
		break;
	}
}

/* Listeners */

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

static void
listeners_update(struct nw_aserver *s)
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

/* scope["client"], the access log's host, and whether it is a local proxy. */
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
	if (port == 0) {
		Py_INCREF(Py_None);
		c->client = Py_None;
	} else {
		c->client = Py_BuildValue("(si)", c->host, port);
	}
	return c->client ? 0 : -1;
}

static void
accept_some(struct nw_aserver *s, struct nw_alistener *l)
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
			listeners_update(s);
			return;
		}
		if (fd < 0)
			return;
		if ((c = conn_new(s, fd, l)) == NULL) {
			close(fd);
			return;
		}
		if (conn_peer(c, &peer) < 0) {
			print_error("cannot describe a peer");
			conn_close(s, c);
			continue;
		}
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			conn_close(s, c);
			continue;
		}
		c->events = EPOLLIN;
		timer_set(s, c, s->stopping ? NW_ATIMER_GRACE : NW_ATIMER_HEAD);
		/* the request often came with the handshake: no epoll round */
		conn_readable(s, c);
	}
}

static void
timers_expire(struct nw_aserver *s)
{
	int64_t now = s->clock.mono_ms;
	int t;

	for (t = 0; t < NW_ATIMER_COUNT; t++) {
		struct nw_aconn *c;

		while ((c = s->timers[t].head) != NULL && c->deadline <= now) {
			timer_unlink(s, c);
			if (t == NW_ATIMER_HEAD && c->in.len > c->rpos &&
			    c->state == NW_ACONN_WAIT)
				conn_error_status(
				    s, c, 408); /* a partial head */
			else if (t == NW_ATIMER_BODY)
				body_error(s, c, 408); /* a body that stalled */
			else if (t == NW_ATIMER_IDLE || t == NW_ATIMER_GRACE)
				conn_linger(s, c); /* see conn_stop_idle */
			else
				conn_close(s, c);
		}
	}
	if (s->accept_paused_until && now >= s->accept_paused_until) {
		s->accept_paused_until = 0;
		listeners_update(s);
	}
}

static void
check_drained(struct nw_aserver *s)
{
	PyObject *d = s->drained, *r;

	if (d == NULL || s->nconns > 0 || s->ncycles > 0)
		return;
	s->drained = NULL;
	r = PyObject_CallMethod(d, "done", NULL);
	if (r == Py_False) {
		Py_DECREF(r);
		r = PyObject_CallMethod(d, "set_result", "O", Py_None);
	}
	if (r == NULL)
		print_error("cannot resolve the drain future");
	Py_XDECREF(r);
	Py_DECREF(d);
}

void
nw_aserver_cycle_ended(struct nw_aserver *s)
{
	if (s->stopping)
		check_drained(s);
}

/* Access log */

static void
alog_flush(struct nw_aserver *s)
{
	nw_alog_write(s->alog_fd, &s->alog);
}

void
nw_aserver_alog(
    struct nw_aserver *s, struct nw_aconn *c, int status, uint64_t sent)
{
	PyObject *r;

	if (s->alog_fd < 0)
		return;
	nw_alog_format(&s->alog, c->host, &s->clock, c->in.data + c->rpos,
	    &c->req, status, sent);
	if (s->alog.len >= NW_ALOG_FLUSH_AT) {
		alog_flush(s);
		return;
	}
	if (s->alog_flush_scheduled)
		return;
	/* written once per loop turn, not once per request */
	r = PyObject_CallFunctionObjArgs(s->call_soon, s->on_flush, NULL);
	if (r == NULL) {
		print_error("cannot schedule the access log");
		alog_flush(s);
		return;
	}
	Py_DECREF(r);
	s->alog_flush_scheduled = true;
}

/*
 * Answers written while a batch of requests takes its first step (the
 * tasks on_events or on_runq started) are held and sent together right
 * after the batch, as uvloop does with its transports' writes: released
 * one by one, each answer wakes the client, which then preempts the worker
 * in the middle of the next request and reads one answer per wake-up. The
 * release is a loop callback queued behind the batch's tasks, so it runs in
 * the same loop turn, before the loop polls again.
 */
static void
release_schedule(struct nw_aserver *s)
{
	PyObject *r;

	if (s->batch_started == 0)
		return;
	s->batch_started = 0;
	if (s->release_scheduled || s->closed)
		return;
	r = PyObject_CallFunctionObjArgs(s->call_soon, s->on_release, NULL);
	if (r == NULL) {
		print_error("cannot schedule the release of answers");
		return;
	}
	Py_DECREF(r);
	s->release_scheduled = true;
}

/* The loop's callbacks */

static PyObject *
server_on_events(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;
	struct epoll_event events[MAX_EVENTS];
	struct nw_aconn *c;
	int n, t;

	if (s->closed)
		Py_RETURN_NONE;
	n = epoll_wait(s->epfd, events, MAX_EVENTS, 0);
	nw_clock_update(&s->clock);
	s->in_events = true;
	for (t = 0; t < n && !s->closed; t++) {
		enum nw_awatch *kind = events[t].data.ptr;

		if (*kind == NW_AWATCH_LISTENER) {
			accept_some(s, (struct nw_alistener *)kind);
			continue;
		}
		c = (struct nw_aconn *)kind;
		if (c->fd < 0)
			continue; /* closed by an earlier event */
		if (events[t].events & EPOLLOUT)
			conn_writable(s, c);
		if (c->fd < 0)
			continue;
		if (c->read_paused &&
		    events[t].events & (EPOLLHUP | EPOLLERR)) {
			/* reported even when not asked for: gone for good */
			conn_lost(s, c);
			continue;
		}
		if (events[t].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			conn_readable(s, c);
	}
	s->in_events = false;
	release_schedule(s);
	while ((c = s->limbo) != NULL) {
		s->limbo = c->next;
		if (s->nfree < FREE_CONNS_MAX && c->in.cap <= 16 * 1024 &&
		    c->out.cap <= 64 * 1024) {
			c->next = s->free_conns;
			s->free_conns = c;
			s->nfree++;
		} else {
			nw_buf_free(&c->in);
			nw_buf_free(&c->out);
			nw_request_free(&c->req);
			free(c);
		}
	}
	timers_arm(s);
	Py_RETURN_NONE;
}

static PyObject *
server_on_tick(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;

	Py_CLEAR(s->tick_handle);
	if (s->closed)
		Py_RETURN_NONE;
	nw_clock_update(&s->clock);
	timers_expire(s);
	timers_arm(s);
	Py_RETURN_NONE;
}

static PyObject *
server_on_runq(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;
	struct nw_aconn *c;

	s->runq_scheduled = false;
	nw_clock_update(&s->clock);
	while ((c = s->runq_head) != NULL) {
		s->runq_head = c->qnext;
		if (s->runq_head == NULL)
			s->runq_tail = NULL;
		c->queued = false;
		c->qnext = NULL;
		if (c->fd >= 0 && c->state == NW_ACONN_WAIT)
			conn_process(s, c);
	}
	release_schedule(s);
	timers_arm(s);
	Py_RETURN_NONE;
}

static PyObject *
server_on_release(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;
	struct nw_aconn *c;

	s->release_scheduled = false;
	if (s->closed)
		Py_RETURN_NONE;
	nw_clock_update(&s->clock);
	while ((c = s->held) != NULL)
		conn_writable(s, c);
	timers_arm(s);
	Py_RETURN_NONE;
}

static PyObject *
server_on_flush(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;

	s->alog_flush_scheduled = false;
	alog_flush(s);
	Py_RETURN_NONE;
}

static PyMethodDef on_events_def = {
    "_on_events", server_on_events, METH_NOARGS, NULL};
static PyMethodDef on_tick_def = {
    "_on_tick", server_on_tick, METH_NOARGS, NULL};
static PyMethodDef on_runq_def = {
    "_on_runq", server_on_runq, METH_NOARGS, NULL};
static PyMethodDef on_release_def = {
    "_on_release", server_on_release, METH_NOARGS, NULL};
static PyMethodDef on_flush_def = {
    "_on_flush", server_on_flush, METH_NOARGS, NULL};

/* The Python type */

static int64_t
ms(double seconds)
{
	return seconds <= 0 ? 0 : (int64_t)(seconds * 1000.0 + 0.5);
}

static int
listener_init(struct nw_aserver *s, struct nw_alistener *l, int fd, bool public)
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
	l->scope = nw_cycle_scope_template(s, server);
	Py_DECREF(server);
	return l->scope ? 0 : -1;
}

static PyObject *
server_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"app", "loop", "listen_fds", "private_fd",
	    "control_fd", "keepalive", "header_timeout", "write_timeout",
	    "max_requests", "limit_request_line", "limit_request_fields",
	    "limit_request_field_size", "limit_request_body", "accesslog",
	    "root_path", "state", NULL};
	PyObject *app, *loop, *listen_fds = NULL, *seq = NULL;
	PyObject *root_path = NULL, *state = Py_None, *rp_bytes, *contextvars;
	int private_fd = -1, control_fd = -1;
	double keepalive = 2, header_timeout = 10, write_timeout = 30;
	unsigned long long max_requests = 0, limit_body = 0;
	Py_ssize_t limit_line = 4094, limit_fields = 100, limit_field = 8190;
	const char *accesslog = NULL;
	ServerObject *self;
	struct nw_aserver *s;
	Py_ssize_t i, n = 0;
	int t;

	if (!PyArg_ParseTupleAndKeywords(args, kw,
	        "OO|$OiidddKnnnKzUO:ASGIServer", kwlist, &app, &loop,
	        &listen_fds, &private_fd, &control_fd, &keepalive,
	        &header_timeout, &write_timeout, &max_requests, &limit_line,
	        &limit_fields, &limit_field, &limit_body, &accesslog,
	        &root_path, &state))
		return NULL;
	if (!PyCallable_Check(app)) {
		PyErr_SetString(PyExc_TypeError, "app must be callable");
		return NULL;
	}
	if (limit_line < 0 || limit_fields < 0 || limit_field < 0) {
		PyErr_SetString(PyExc_ValueError, "limits must be >= 0");
		return NULL;
	}
	if (state != Py_None && !PyDict_Check(state)) {
		PyErr_SetString(
		    PyExc_TypeError, "state must be a dict or None");
		return NULL;
	}
	if (listen_fds != NULL && listen_fds != Py_None) {
		if ((seq = PySequence_List(listen_fds)) == NULL)
			return NULL;
		n = PyList_Size(seq);
	}
	self = (ServerObject *)PyType_GenericAlloc(type, 0);
	if (self == NULL) {
		Py_XDECREF(seq);
		return NULL;
	}
	s = &self->s;
	memset(s, 0, sizeof *s);
	s->self = (PyObject *)self;
	s->epfd = s->alog_fd = -1;
	s->control_fd = control_fd;
	s->keepalive_ms = ms(keepalive);
	s->header_timeout_ms = ms(header_timeout) ? ms(header_timeout) : 1000;
	s->write_timeout_ms = ms(write_timeout) ? ms(write_timeout) : 30000;
	s->max_requests = max_requests;
	s->limits.request_line = (size_t)limit_line;
	s->limits.fields = (size_t)limit_fields;
	s->limits.field_size = (size_t)limit_field;
	s->limits.body = limit_body;
	for (t = 0; t < NW_ATIMER_COUNT; t++)
		s->timers[t].head = s->timers[t].tail = NULL;
	s->timers[NW_ATIMER_IDLE].timeout_ms = s->keepalive_ms;
	s->timers[NW_ATIMER_HEAD].timeout_ms = s->header_timeout_ms;
	s->timers[NW_ATIMER_BODY].timeout_ms = s->header_timeout_ms;
	s->timers[NW_ATIMER_WRITE].timeout_ms = s->write_timeout_ms;
	s->timers[NW_ATIMER_LINGER].timeout_ms = LINGER_MS;
	s->timers[NW_ATIMER_GRACE].timeout_ms = GRACE_MS;
	nw_clock_update(&s->clock);

	Py_INCREF(app);
	s->app = app;
	Py_INCREF(loop);
	s->loop = loop;
	if (state != Py_None) {
		Py_INCREF(state);
		s->state = state;
	}
	if ((s->create_task = PyObject_GetAttrString(loop, "create_task")) ==
	        NULL ||
	    (s->call_later = PyObject_GetAttrString(loop, "call_later")) ==
	        NULL ||
	    (s->call_soon = PyObject_GetAttrString(loop, "call_soon")) ==
	        NULL ||
	    (s->create_future =
	            PyObject_GetAttrString(loop, "create_future")) == NULL)
		goto fail;
	if ((contextvars = PyImport_ImportModule("contextvars")) == NULL)
		goto fail;
	s->context = PyObject_CallMethod(contextvars, "Context", NULL);
	Py_DECREF(contextvars);
	if (s->context == NULL)
		goto fail;
	if ((s->on_events = PyCFunction_NewEx(
	         &on_events_def, (PyObject *)self, NULL)) == NULL ||
	    (s->on_tick = PyCFunction_NewEx(
	         &on_tick_def, (PyObject *)self, NULL)) == NULL ||
	    (s->on_runq = PyCFunction_NewEx(
	         &on_runq_def, (PyObject *)self, NULL)) == NULL ||
	    (s->on_release = PyCFunction_NewEx(
	         &on_release_def, (PyObject *)self, NULL)) == NULL ||
	    (s->on_flush = PyCFunction_NewEx(
	         &on_flush_def, (PyObject *)self, NULL)) == NULL)
		goto fail;

	if (root_path == NULL)
		root_path = PyUnicode_FromString("");
	else
		Py_INCREF(root_path);
	if ((s->root_path = root_path) == NULL)
		goto fail;
	if ((rp_bytes = PyUnicode_AsUTF8String(root_path)) == NULL)
		goto fail;
	s->root_path_len = (size_t)PyBytes_Size(rp_bytes);
	s->root_path_b = strdup(PyBytes_AsString(rp_bytes));
	Py_DECREF(rp_bytes);
	if (s->root_path_b == NULL)
		goto nomem;
	/* "/" alone as root_path strips nothing meaningful */
	while (s->root_path_len && s->root_path_b[s->root_path_len - 1] == '/')
		s->root_path_len--;
	if (accesslog != NULL && (s->alog_path = strdup(accesslog)) == NULL)
		goto nomem;

	s->listeners = calloc((size_t)n + 1, sizeof *s->listeners);
	if (s->listeners == NULL)
		goto nomem;
	if (private_fd >= 0) {
		if (listener_init(
		        s, &s->listeners[s->nlisteners], private_fd, false) < 0)
			goto fail;
		s->nlisteners++;
	}
	for (i = 0; i < n; i++) {
		long fd = PyLong_AsLong(PyList_GetItem(seq, i));

		if (fd == -1 && PyErr_Occurred())
			goto fail;
		if (listener_init(
		        s, &s->listeners[s->nlisteners], (int)fd, true) < 0)
			goto fail;
		s->nlisteners++;
	}
	if (s->alog_path != NULL &&
	    (s->alog_fd = nw_alog_open_path(s->alog_path)) < 0) {
		PyErr_SetFromErrnoWithFilename(PyExc_OSError, s->alog_path);
		goto fail;
	}
	Py_XDECREF(seq);
	return (PyObject *)self;
nomem:
	PyErr_NoMemory();
fail:
	Py_XDECREF(seq);
	Py_DECREF(self);
	return NULL;
}

/* Shuts every connection and the epoll set: quit(), or dealloc. */
static void
server_close(struct nw_aserver *s)
{
	struct nw_aconn *c;
	struct nw_cycle *cy;
	PyObject *r;

	if (s->closed)
		return;
	s->closed = true;
	listeners_update(s);
	while ((c = s->conns) != NULL)
		conn_close(s, c);
	/* the apps of the requests that were running: cancelled */
	for (cy = s->cycles; cy != NULL; cy = nw_cycle_next(cy))
		nw_cycle_cancel(cy);
	if (s->tick_handle != NULL) {
		r = PyObject_CallMethod(s->tick_handle, "cancel", NULL);
		Py_XDECREF(r);
		Py_CLEAR(s->tick_handle);
	}
	if (s->epfd >= 0) {
		r = PyObject_CallMethod(s->loop, "remove_reader", "i", s->epfd);
		if (r == NULL)
			PyErr_Clear();
		Py_XDECREF(r);
		close(s->epfd);
		s->epfd = -1;
	}
	PyErr_Clear();
	alog_flush(s);
}

static void
server_dealloc(PyObject *self)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;
	PyTypeObject *tp = Py_TYPE(self);
	freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
	struct nw_aconn *c;
	size_t i;

	server_close(s);
	while ((c = s->free_conns) != NULL) {
		s->free_conns = c->next;
		nw_buf_free(&c->in);
		nw_buf_free(&c->out);
		nw_request_free(&c->req);
		free(c);
	}
	for (i = 0; i < s->nlisteners; i++)
		Py_CLEAR(s->listeners[i].scope);
	free(s->listeners);
	if (s->alog_fd > 2)
		close(s->alog_fd);
	nw_buf_free(&s->alog);
	free(s->alog_path);
	free(s->root_path_b);
	nw_buf_free(&s->scratch);
	Py_CLEAR(s->app);
	Py_CLEAR(s->loop);
	Py_CLEAR(s->create_task);
	Py_CLEAR(s->call_later);
	Py_CLEAR(s->call_soon);
	Py_CLEAR(s->create_future);
	Py_CLEAR(s->state);
	Py_CLEAR(s->root_path);
	Py_CLEAR(s->context);
	Py_CLEAR(s->on_events);
	Py_CLEAR(s->on_tick);
	Py_CLEAR(s->on_runq);
	Py_CLEAR(s->on_release);
	Py_CLEAR(s->on_flush);
	Py_CLEAR(s->drained);
	tp_free(self);
	Py_DECREF(tp);
}

static PyObject *
server_start(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;
	PyObject *r;

	if (s->started || s->closed) {
		PyErr_SetString(PyExc_RuntimeError, "already started");
		return NULL;
	}
	if ((s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	r = PyObject_CallMethod(
	    s->loop, "add_reader", "iO", s->epfd, s->on_events);
	if (r == NULL)
		return NULL;
	Py_DECREF(r);
	s->started = true;
	nw_clock_update(&s->clock);
	listeners_update(s);
	Py_RETURN_NONE;
}

static PyObject *
server_go_live(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;

	if (!s->live) {
		s->live = true;
		listeners_update(s);
	}
	Py_RETURN_NONE;
}

/* TERM: no new connections; the future is done once nothing runs. */
static PyObject *
server_stop(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;
	struct nw_aconn *c, *next;
	PyObject *d;

	if (s->drained == NULL &&
	    (s->drained = PyObject_CallFunctionObjArgs(
	         s->create_future, NULL)) == NULL)
		return NULL;
	d = s->drained;
	Py_INCREF(d);
	if (!s->stopping && !s->closed) {
		s->stopping = true;
		nw_clock_update(&s->clock);
		listeners_update(s);
		/* a request on an idle keep-alive connection is answered */
		for (c = s->timers[NW_ATIMER_IDLE].head; c != NULL; c = next) {
			next = c->next; /* c may close, or change lists */
			conn_stop_idle(s, c);
		}
		/* fresh ones get a moment to send what they connected for */
		for (c = s->timers[NW_ATIMER_HEAD].head; c != NULL; c = next) {
			next = c->next;
			if (c->in.len == c->rpos && c->requests == 0)
				timer_set(s, c, NW_ATIMER_GRACE);
		}
		timers_arm(s);
	}
	check_drained(s);
	return d;
}

static PyObject *
server_quit(PyObject *self, PyObject *unused)
{
	server_close(&((ServerObject *)self)->s);
	Py_RETURN_NONE;
}

static PyObject *
server_heartbeat(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;
	char msg[40];

	if (s->control_fd < 0)
		Py_RETURN_FALSE;
	snprintf(msg, sizeof msg, "hb %llu", (unsigned long long)s->served);
	if (send(s->control_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) <
	        0 &&
	    errno != EAGAIN && errno != EINTR)
		Py_RETURN_FALSE;
	Py_RETURN_TRUE;
}

static PyObject *
server_reopen_logs(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;

	alog_flush(s);
	if (s->alog_path != NULL &&
	    nw_alog_reopen_path(s->alog_path, &s->alog_fd) < 0)
		nw_aserver_log("cannot reopen the access log %s: %s",
		    s->alog_path, strerror(errno));
	Py_RETURN_NONE;
}

static PyObject *
server_flush_logs(PyObject *self, PyObject *unused)
{
	alog_flush(&((ServerObject *)self)->s);
	Py_RETURN_NONE;
}

static PyObject *
get_served(PyObject *self, void *closure)
{
	return PyLong_FromUnsignedLongLong(((ServerObject *)self)->s.served);
}

static PyObject *
get_live(PyObject *self, void *closure)
{
	return PyBool_FromLong(((ServerObject *)self)->s.live);
}

static PyObject *
get_connections(PyObject *self, void *closure)
{
	return PyLong_FromSize_t(((ServerObject *)self)->s.nconns);
}

static PyObject *
get_tasks(PyObject *self, void *closure)
{
	return PyLong_FromSize_t(((ServerObject *)self)->s.ncycles);
}

static PyMethodDef server_methods[] = {
    {"start", server_start, METH_NOARGS,
        "start(): watch the private socket (the public ones after "
        "go_live)"},
    {"go_live", server_go_live, METH_NOARGS,
        "go_live(): the master said `live`: accept public traffic"},
    {"stop", server_stop, METH_NOARGS,
        "stop() -> future: stop accepting, close idle connections; the "
        "future is done when no connection and no request is left"},
    {"quit", server_quit, METH_NOARGS,
        "quit(): close everything now and cancel the requests' tasks"},
    {"heartbeat", server_heartbeat, METH_NOARGS,
        "heartbeat() -> bool: send `hb N` to the master"},
    {"reopen_logs", server_reopen_logs, METH_NOARGS,
        "reopen_logs(): reopen the access log file"},
    {"flush_logs", server_flush_logs, METH_NOARGS,
        "flush_logs(): write buffered access log lines"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
    {"served", get_served, NULL, "requests answered", NULL},
    {"live", get_live, NULL, "accepting public traffic", NULL},
    {"connections", get_connections, NULL, "open connections", NULL},
    {"tasks", get_tasks, NULL, "requests whose app has not returned", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot server_slots[] = {
    {Py_tp_new, server_new},
    {Py_tp_dealloc, server_dealloc},
    {Py_tp_methods, server_methods},
    {Py_tp_getset, server_getset},
    {Py_tp_doc,
        "ASGIServer(app, loop, *, listen_fds, private_fd, control_fd, ...): "
        "HTTP/1.1 connections for an ASGI app, inside an asyncio loop"},
    {0, NULL},
};

static PyType_Spec server_spec = {
    "narwhal_worker._http.ASGIServer",
    sizeof(ServerObject),
    0,
    Py_TPFLAGS_DEFAULT,
    server_slots,
};

int
nw_asgi_init(PyObject *module)
{
	PyObject *type;

	if (nw_cycle_init(module) < 0)
		return -1;
	if ((type = PyType_FromSpec(&server_spec)) == NULL)
		return -1;
	return PyModule_AddObject(module, "ASGIServer", type);
}
