/*
 * asgi_conn.c: one connection of the ASGI worker, from accept to close.
 *
 * It reads and parses requests with the shared HTTP core, starts a Cycle
 * (asgi_cycle.c) for each, feeds it the request body, keeps the connection
 * alive between requests (pipelined ones run in order), answers broken
 * requests itself and closes, lingering when input is left. It never runs
 * the app; output is asgi_output.c's, deadlines asgi_timer.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asgi.h"

#define FREE_CONNS_MAX 1024        /* closed ones kept for reuse */
#define BUF_INITIAL 4096           /* input room for a head... */
#define BODY_READ_SIZE (64 * 1024) /* ...and for a body's reads */
/* Pipelined input kept while a request runs; past it, reading pauses. */
#define PIPELINE_MAX (64 * 1024)

/* The answer to a WebSocket upgrade: around the Date line, as nw_error_iov. */
static const char ws_head[] = "HTTP/1.1 400 Bad Request\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 31\r\n"
                              "Connection: close\r\n";
static const char ws_body[] = "\r\nWebSocket is not supported yet\n";

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

void
nw_aconn_update_events(struct nw_aserver *s, struct nw_aconn *c)
{
	uint32_t ev = 0;

	if (!c->read_paused)
		ev |= EPOLLIN;
	if (c->out.len > c->opos && !c->held)
		ev |= EPOLLOUT;
	conn_events(s, c, ev);
}

/* A connection just accepted from l, on every list but the timers'. */
struct nw_aconn *
nw_aconn_new(struct nw_aserver *s, int fd, struct nw_alistener *l)
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
	c->local = false;
	c->all_prev = NULL;
	c->all_next = s->conns;
	if (s->conns)
		s->conns->all_prev = c;
	s->conns = c;
	s->nconns++;
	return c;
}

static void
conn_destroy(struct nw_aconn *c)
{
	nw_buf_free(&c->in);
	nw_buf_free(&c->out);
	nw_request_free(&c->req);
	free(c);
}

/* A closed connection: kept for the next one if its buffers are small. */
void
nw_aconn_free(struct nw_aserver *s, struct nw_aconn *c)
{
	if (s->nfree < FREE_CONNS_MAX && c->in.cap <= 16 * 1024 &&
	    c->out.cap <= 64 * 1024) {
		c->next = s->free_conns;
		s->free_conns = c;
		s->nfree++;
	} else {
		conn_destroy(c);
	}
}

/* The server goes: the kept ones too. */
void
nw_aconn_free_all(struct nw_aserver *s)
{
	struct nw_aconn *c;

	while ((c = s->free_conns) != NULL) {
		s->free_conns = c->next;
		conn_destroy(c);
	}
	s->nfree = 0;
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

/* Closes at once; a request still running sees http.disconnect. */
void
nw_aconn_close(struct nw_aserver *s, struct nw_aconn *c)
{
	struct nw_cycle *cy = c->cycle;

	nw_atimer_unlink(s, c);
	runq_remove(s, c);
	if (c->held) {
		/* written before an abort: it goes out, as it would have */
		nw_aconn_unhold(s, c);
		(void)nw_aconn_flush(s, c);
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
	 * While an event batch runs, a later event may still point at this
	 * struct: it is reused only after the batch (on_events frees limbo).
	 */
	if (s->in_events) {
		c->next = s->limbo;
		s->limbo = c;
	} else {
		nw_aconn_free(s, c);
	}
	if (s->stopping)
		nw_aserver_check_drained(s);
}

/*
 * Closing a socket with unread input makes the kernel send RST, which can
 * destroy the last response before the client reads it. So: shut down our
 * side, then read and drop what still comes, for a little while.
 */
void
nw_aconn_linger(struct nw_aserver *s, struct nw_aconn *c)
{
	shutdown(c->fd, SHUT_WR);
	nw_aconn_unhold(s, c);
	c->state = NW_ACONN_LINGER;
	c->read_paused = false;
	c->out.len = c->opos = 0;
	nw_aconn_update_events(s, c);
	nw_atimer_set(s, c, NW_ATIMER_LINGER);
}

/* After the last response went out: close, lingering if input is left. */
void
nw_aconn_finish(struct nw_aserver *s, struct nw_aconn *c)
{
	if (!c->body_done || c->rpos < c->in.len)
		nw_aconn_linger(s, c);
	else
		nw_aconn_close(s, c);
}

/* The client is gone (EOF, reset): its request, if any, sees a disconnect. */
void
nw_aconn_lost(struct nw_aserver *s, struct nw_aconn *c)
{
	nw_aconn_close(s, c);
}

/* receive() took the body that had paused reading. */
void
nw_aconn_resume_reading(struct nw_aconn *c)
{
	if (!c->read_paused || c->fd < 0)
		return;
	c->read_paused = false;
	nw_aconn_update_events(c->srv, c);
	if (c->state == NW_ACONN_CYCLE && !c->body_done) {
		/* from receive(): the clock may be old */
		nw_clock_update(&c->srv->clock);
		nw_aconn_body_timer(c->srv, c);
		nw_atimers_arm(c->srv);
	}
}

static void
pause_reading(struct nw_aserver *s, struct nw_aconn *c)
{
	if (c->read_paused)
		return;
	c->read_paused = true;
	nw_aconn_update_events(s, c);
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
	nw_aconn_close(s, c);
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
		nw_aserver_print_error("cannot schedule a pipelined request");
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
 * connection gets a moment (NW_AGRACE_MS, less if its keep-alive time ends
 * sooner), then a lingering close. The WSGI loop does the same.
 */
void
nw_aconn_stop_idle(struct nw_aserver *s, struct nw_aconn *c)
{
	ssize_t n;

	/*
	 * The private socket's only client is the master's health probe,
	 * which is done with a worker once it is live (libcurl keeps the
	 * connection cached, and would never read a lingering close).
	 */
	if (!c->listener->public) {
		nw_aconn_close(s, c);
		return;
	}
	if (c->in.cap < BUF_INITIAL &&
	    nw_buf_reserve(&c->in, BUF_INITIAL) < 0) {
		nw_aconn_close(s, c);
		return;
	}
	n = read(c->fd, c->in.data, c->in.cap);
	if (n > 0) {
		c->rpos = 0;
		c->in.len = (size_t)n;
		nw_atimer_unlink(s, c);
		runq_push(s, c);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		nw_aconn_close(s, c);
	} else if (c->timer != NW_ATIMER_IDLE ||
	    c->deadline > s->clock.mono_ms + NW_AGRACE_MS) {
		nw_atimer_set(s, c, NW_ATIMER_GRACE);
	}
}

/* After a response: the connection waits for, or has, the next request. */
void
nw_aconn_next(struct nw_aserver *s, struct nw_aconn *c)
{
	c->state = NW_ACONN_WAIT;
	if (c->read_paused) {
		c->read_paused = false;
		nw_aconn_update_events(s, c);
	}
	if (c->rpos < c->in.len) {
		nw_atimer_unlink(s, c);
		runq_push(s, c);
		return;
	}
	c->rpos = c->in.len = 0;
	if (s->stopping) {
		nw_aconn_stop_idle(s, c);
		return;
	}
	nw_atimer_set(s, c, NW_ATIMER_IDLE);
}

/* The cycle's response is complete (maybe not yet sent): what next. */
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
		nw_aserver_control(s, "retire");
	}
	if (cy != NULL) {
		c->cycle = NULL;
		Py_DECREF(cy);
	}
	c->rpos += c->req.head_len;
	nw_request_reset(&c->req);
	if (c->read_paused) {
		c->read_paused = false;
		nw_aconn_update_events(s, c);
	}
	/*
	 * Stopping, yet kept: the answer went out before the stop did, so the
	 * client may send another request; it is answered with Connection:
	 * close rather than dropped (nw_aconn_next, nw_aconn_stop_idle).
	 */
	if ((close || !c->body_done) && c->out.len > c->opos) {
		/* nw_aconn_writable finishes it; input can wait */
		c->state = NW_ACONN_CLOSING;
		pause_reading(s, c);
	} else if (close || !c->body_done) {
		nw_aconn_finish(s, c); /* c may be gone after this */
	} else if (c->out.len > c->opos) {
		c->state = NW_ACONN_WAIT; /* nw_aconn_writable goes on */
	} else {
		nw_aconn_next(s, c);
	}
	nw_atimers_arm(s);
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
		if (nw_aconn_queue(c, iov, cnt, 0) < 0) {
			PyErr_Clear();
			nw_aconn_close(s, c);
			return;
		}
		pause_reading(s, c);
		nw_aconn_update_events(s, c);
		nw_atimer_set(s, c, NW_ATIMER_WRITE);
		return;
	}
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)cnt;
	n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && errno != EAGAIN) {
		nw_aconn_close(s, c);
		return;
	}
	nw_aconn_linger(s, c);
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
void
nw_aconn_body_timer(struct nw_aserver *s, struct nw_aconn *c)
{
	if (c->timer == NW_ATIMER_WRITE)
		return; /* the client is not reading our answer either */
	if (!c->body_done && !c->read_paused)
		nw_atimer_set(s, c, NW_ATIMER_BODY);
	else if (c->timer == NW_ATIMER_BODY)
		nw_atimer_unlink(s, c);
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
		nw_aconn_close(s, c); /* half a response: only closing tells */
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
void
nw_aconn_process(struct nw_aserver *s, struct nw_aconn *c)
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
			nw_atimer_set(s, c, NW_ATIMER_HEAD);
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
			nw_atimer_unlink(s, c);
		c->state = NW_ACONN_CYCLE;
		s->batch_started++;
		if (nw_cycle_start(s, c) < 0) {
			nw_aserver_print_error("cannot start the request");
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
		nw_aconn_body_timer(s, c);
		return;
	}
	nw_aconn_body_timer(s, c);
	/* pipelined requests wait for this one's answer */
	if (c->in.len - c->rpos - c->req.head_len > PIPELINE_MAX)
		pause_reading(s, c);
}

/* EPOLLIN (or the accept): read what came, and act on it. */
void
nw_aconn_readable(struct nw_aserver *s, struct nw_aconn *c)
{
	size_t want = BUF_INITIAL;
	ssize_t n;

	if (c->state == NW_ACONN_LINGER) {
		char sink[16384];

		n = read(c->fd, sink, sizeof sink);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			nw_aconn_close(s, c);
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
		nw_aconn_close(s, c);
		return;
	}
	n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		nw_aconn_lost(s, c);
		return;
	}
	c->in.len += (size_t)n;
	nw_aconn_process(s, c);
}

/* A deadline of asgi_timer.c's passed (the connection is off its list). */
void
nw_aconn_timed_out(struct nw_aserver *s, struct nw_aconn *c, int timer)
{
	if (timer == NW_ATIMER_HEAD && c->in.len > c->rpos &&
	    c->state == NW_ACONN_WAIT)
		conn_error_status(s, c, 408); /* a partial head */
	else if (timer == NW_ATIMER_BODY)
		body_error(s, c, 408); /* a body that stalled */
	else if (timer == NW_ATIMER_IDLE || timer == NW_ATIMER_GRACE)
		nw_aconn_linger(s, c); /* see nw_aconn_stop_idle */
	else
		nw_aconn_close(s, c);
}
