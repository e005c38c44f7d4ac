/*
 * conn.c: one connection, from accept to close, for every driver.
 *
 * It reads and parses requests with the core, checks and decodes request
 * bodies (413 on a declared size, 400 on bad framing, 408 when one
 * stalls), hands each request to the driver, keeps the connection alive
 * between requests (pipelined ones run in order), answers broken requests
 * itself, stops idle connections gracefully and closes, lingering when the
 * client may still be sending. It never runs an app; output is output.c's,
 * deadlines timer.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/engine.h"

#define FREE_CONNS_MAX 1024        /* closed ones kept for reuse */
#define BUF_INITIAL 4096           /* input room for a head... */
#define BODY_READ_SIZE (64 * 1024) /* ...and for a body's reads */
/* Pipelined input kept while a request runs; past it, reading pauses. */
#define PIPELINE_MAX (64 * 1024)

/* What the epoll set watches for c follows from its state; -1: no room. */
int
nw_conn_update_events(struct nw_conn *c)
{
	struct epoll_event ev;
	uint32_t events = 0;

	if (c->fd < 0 || c->parked)
		return 0;
	if (!c->read_paused)
		events |= EPOLLIN;
	if (c->out.len > c->opos && !c->held)
		events |= EPOLLOUT;
	events |= c->tls_want;
	if (c->registered && c->events == events)
		return 0;
	ev.events = events;
	ev.data.ptr = c;
	if (epoll_ctl(c->engine->epfd,
	        c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0)
		return -1;
	c->registered = true;
	c->events = events;
	return 0;
}

static void
conn_destroy(struct nw_engine *e, struct nw_conn *c)
{
	if (e->drv->freed)
		e->drv->freed(c);
	nw_buf_free(&c->in);
	nw_buf_free(&c->out);
	nw_request_free(&c->req);
	free(c);
}

/* A closed connection: kept for the next one if its buffers are small. */
static void
conn_release(struct nw_engine *e, struct nw_conn *c)
{
	if (e->nfree < FREE_CONNS_MAX && c->in.cap <= 16 * 1024 &&
	    c->out.cap <= 64 * 1024) {
		c->next = e->free_conns;
		e->free_conns = c;
		e->nfree++;
	} else {
		conn_destroy(e, c);
	}
}

/*
 * Connections closed since the engine was last entered: an event of the
 * same batch, or a driver's pointer, may still point at one, so they are
 * reused only once the engine is back at the top of its loop.
 */
void
nw_conn_free_limbo(struct nw_engine *e)
{
	struct nw_conn *c;

	while ((c = e->limbo) != NULL) {
		e->limbo = c->next;
		conn_release(e, c);
	}
}

/* The engine goes: the kept ones too. */
void
nw_conn_free_pool(struct nw_engine *e)
{
	struct nw_conn *c;

	nw_conn_free_limbo(e);
	while ((c = e->free_conns) != NULL) {
		e->free_conns = c->next;
		conn_destroy(e, c);
	}
	e->nfree = 0;
}

static void
runq_remove(struct nw_engine *e, struct nw_conn *c)
{
	struct nw_conn **pp;

	if (!c->queued)
		return;
	for (pp = &e->runq_head; *pp != NULL; pp = &(*pp)->qnext)
		if (*pp == c) {
			*pp = c->qnext;
			break;
		}
	e->runq_tail = NULL;
	for (pp = &e->runq_head; *pp != NULL; pp = &(*pp)->qnext)
		e->runq_tail = *pp;
	c->queued = false;
	c->qnext = NULL;
}

/* Closes at once; a request still running is told (driver.closed). */
void
nw_conn_close(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;

	if (c->fd < 0)
		return;
	nw_timer_unlink(c);
	runq_remove(e, c);
	if (c->held) {
		/* written before an abort: it goes out, as it would have */
		nw_conn_unhold(c);
		(void)nw_conn_flush(c);
	}
	if (c->ssl != NULL)
		nw_tls_free(c);
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->state = NW_CONN_HEAD;
	c->registered = false;
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		e->conns = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	e->nconns--;
	if (e->full && e->nconns < e->max_conns) {
		e->full = false;
		nw_listeners_update(e);
	}
	c->next = e->limbo;
	e->limbo = c;
	if (e->drv->closed)
		e->drv->closed(c);
}

/*
 * Closing a socket with unread input makes the kernel send RST, which can
 * destroy the last answer before the client reads it. So: shut down our
 * side, then read and drop what still comes, for a little while.
 */
void
nw_conn_linger(struct nw_conn *c)
{
	if (c->ssl != NULL)
		nw_tls_shutdown(c);
	shutdown(c->fd, SHUT_WR);
	nw_conn_unhold(c);
	c->state = NW_CONN_LINGER;
	c->read_paused = false;
	c->out.len = c->opos = 0;
	nw_conn_update_events(c);
	nw_timer_set(c, NW_TIMER_LINGER);
}

/*
 * The last answer went out. When the client asked to close and sent its
 * whole body, it sends nothing more: the shutdown sends the answer's tail
 * (a closing answer may wait in the kernel for it, see the WSGI driver's
 * send_closing) and the FIN in one segment, then the socket closes. When
 * the worker ends the connection instead, the client may already be
 * sending its next request, and the reset that close() sends for unread
 * input would destroy the answer: so it lingers.
 */
void
nw_conn_finish(struct nw_conn *c)
{
	if (c->body_done && c->client_close) {
		if (c->ssl != NULL)
			nw_tls_shutdown(c);
		shutdown(c->fd, SHUT_WR);
		nw_conn_close(c);
	} else {
		nw_conn_linger(c);
	}
}

void
nw_conn_pause_reading(struct nw_conn *c)
{
	if (c->read_paused)
		return;
	c->read_paused = true;
	nw_conn_update_events(c);
}

/* The driver took the body that had paused reading. */
void
nw_conn_resume_reading(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;

	if (!c->read_paused || c->fd < 0)
		return;
	c->read_paused = false;
	nw_conn_update_events(c);
	/* The driver's pause was not the client's slowness. */
	c->body_window_ns = nw_engine_now_ns();
	c->body_window_raw = c->body_raw;
	if (c->state == NW_CONN_REQUEST && !c->body_done) {
		/* from the driver: the clock may be old */
		nw_clock_update(&e->clock);
		nw_conn_body_timer(c);
		nw_engine_arm(e);
	}
}

/* A pipelined request, or one that came while stopping: run it. */
static void
conn_run_later(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;

	if (c->in_process)
		return; /* nw_conn_process, up the stack, goes on with it */
	if (e->drv->schedule == NULL) {
		nw_conn_process(c);
		return;
	}
	if (c->queued)
		return;
	c->queued = true;
	c->qnext = NULL;
	if (e->runq_tail)
		e->runq_tail->qnext = c;
	else
		e->runq_head = c;
	e->runq_tail = c;
	if (e->runq_head == c)
		e->drv->schedule(e);
}

/*
 * A kept-alive connection between two requests, when the worker stops. Its
 * client may have sent the next request already, or be about to: a busy
 * client sends it the moment it has read our last answer. Closing the
 * connection under that request drops it (the client reads an EOF or a
 * reset where it expected an answer), which is how a reload under load
 * loses requests. So what is already there is read and answered, with
 * Connection: close; otherwise the connection waits a moment for a request
 * (NW_GRACE_MS, or less if its keep-alive time ends sooner) and is then
 * closed with a lingering close, so a request racing with our FIN meets an
 * EOF rather than a reset.
 */
void
nw_conn_stop_idle(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;
	ssize_t n;

	/*
	 * The private socket's only client is the master's health probe,
	 * which is done with a worker once it is live (libcurl keeps the
	 * connection cached, and would never read a lingering close).
	 */
	if (!c->listener->public) {
		nw_conn_close(c);
		return;
	}
	if (c->in.cap < BUF_INITIAL &&
	    nw_buf_reserve(&c->in, BUF_INITIAL) < 0) {
		nw_conn_close(c);
		return;
	}
	c->rpos = c->in.len = 0;
	n = c->ssl != NULL ? nw_tls_read(c)
	                   : read(c->fd, c->in.data, c->in.cap);
	if (n > 0) {
		c->in.len = (size_t)n;
		nw_timer_unlink(c);
		conn_run_later(c);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		nw_conn_close(c);
	} else if (c->timer != NW_TIMER_IDLE ||
	    c->deadline > e->clock.mono_ms + NW_GRACE_MS) {
		nw_timer_set(c, NW_TIMER_GRACE);
	}
}

/*
 * Answers on the private socket are the master's health checks and
 * warm-up, not traffic: they count toward neither the metrics nor
 * max_requests (a slow release's 503s to the probe would otherwise show as
 * errors in every deploy's graphs).
 */
static bool
is_traffic(const struct nw_conn *c)
{
	return c->listener == NULL || c->listener->public;
}

/* One answer, in the worker's counters if it was traffic. */
void
nw_conn_count(struct nw_conn *c, int status, uint64_t sent)
{
	if (is_traffic(c))
		nw_engine_count(c->engine, status, sent, c->started_ns);
}

/* The answer finished a request: one more toward max_requests. */
static void
count_served(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;

	c->requests++;
	e->answered_local |= c->local;
	if (!is_traffic(c))
		return;
	e->counters.served++;
	if (e->max_requests && e->counters.served >= e->max_requests &&
	    !e->retired) {
		e->retired = true;
		nw_engine_control_send(e, "retire");
	}
}

/* After an answer went out: the connection waits for, or has, the next. */
void
nw_conn_next(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;

	c->state = NW_CONN_HEAD;
	/* a parked connection may have left the epoll set */
	if (c->read_paused || !c->registered) {
		c->read_paused = false;
		nw_conn_update_events(c);
	}
	if (c->rpos < c->in.len) {
		nw_timer_unlink(c);
		conn_run_later(c);
		return;
	}
	c->rpos = c->in.len = 0;
	if (e->stopping) {
		nw_conn_stop_idle(c);
		return;
	}
	nw_timer_set(c, NW_TIMER_IDLE);
}

/*
 * The driver runs the request on another thread (or in a greenlet that may
 * outlive a hang-up): the engine leaves the connection alone, off its
 * deadline lists, until nw_conn_response_done takes it back, so that
 * nothing (not even EPOLLHUP, reported unasked) closes it under the request
 * or reads into its buffers. It stays in the epoll set, which costs no
 * system call: an event for it (a pipelined request, a hang-up) takes it
 * out then (nw_engine_dispatch), and the answer puts it back.
 */
void
nw_conn_park(struct nw_conn *c)
{
	c->parked = true;
	nw_timer_unlink(c);
}

/* An event for a parked connection: out of the epoll set until done. */
void
nw_conn_parked_event(struct nw_conn *c)
{
	if (!c->registered)
		return;
	epoll_ctl(c->engine->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	c->registered = false;
	c->events = 0;
}

/* The request's answer is complete (maybe not yet sent): what next. */
void
nw_conn_response_done(struct nw_conn *c, bool close)
{
	struct nw_engine *e = c->engine;

	c->parked = false;
	count_served(c);
	/* the app may have run a while since the last event */
	nw_clock_update(&e->clock);
	if (c->body_ready > 0) {
		/* answered before it took its body: the body goes */
		char *p = c->in.data + c->rpos + c->req.head_len;

		memmove(p, p + c->body_ready,
		    c->in.len - c->rpos - c->req.head_len - c->body_ready);
		c->in.len -= c->body_ready;
		c->body_ready = 0;
	}
	c->rpos += c->req.head_len;
	nw_request_reset(&c->req);
	c->started_ns = 0;
	if (c->read_paused) {
		c->read_paused = false;
		nw_conn_update_events(c);
	}
	/*
	 * Stopping, yet kept: the answer went out before the stop did, so the
	 * client may send another request; it is answered with Connection:
	 * close rather than dropped (nw_conn_next, nw_conn_stop_idle).
	 */
	if ((close || !c->body_done) && c->out.len > c->opos) {
		/* nw_conn_writable finishes it; input can wait */
		c->state = NW_CONN_CLOSING;
		nw_conn_pause_reading(c);
	} else if (close || !c->body_done) {
		nw_conn_finish(c);
	} else if (c->out.len > c->opos) {
		c->state = NW_CONN_HEAD; /* nw_conn_writable goes on */
	} else {
		nw_conn_next(c);
	}
	nw_engine_arm(e);
}

/* The half-answered request of a failed app: only closing tells. */
void
nw_conn_abort(struct nw_conn *c)
{
	c->started_ns = 0;
	nw_conn_close(c);
}

/* An answer of the engine's, then the connection closes (after output). */
void
nw_conn_refuse(struct nw_conn *c, struct iovec *iov, int cnt)
{
	struct msghdr mh;
	size_t total = 0;
	ssize_t n = 0;
	int i;

	c->body_done = false; /* unread input, maybe: linger at the end */
	c->started_ns = 0;
	for (i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	if (c->out.len == c->opos && c->ssl == NULL) {
		memset(&mh, 0, sizeof mh);
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)cnt;
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			nw_conn_close(c);
			return;
		}
		if (n < 0)
			n = 0;
		if ((size_t)n == total) {
			nw_conn_linger(c);
			return;
		}
	}
	/* a pipelined answer is still queued, or the socket is full */
	c->state = NW_CONN_CLOSING;
	if (nw_conn_queue(c, iov, cnt, (size_t)n) < 0) {
		nw_conn_close(c);
		return;
	}
	c->read_paused = true;
	nw_conn_update_events(c);
	nw_timer_set(c, NW_TIMER_WRITE);
	if (c->ssl != NULL)
		nw_conn_writable(c); /* nothing went yet */
}

/* A canned error answer (4xx, 5xx), then close. */
void
nw_conn_error(struct nw_conn *c, int status)
{
	struct nw_engine *e = c->engine;
	struct iovec iov[3];
	size_t len;

	nw_clock_update(&e->clock);
	len = nw_error_iov(status, &e->clock, iov);
	nw_conn_count(c, status, len);
	nw_conn_refuse(c, iov, 3);
}

/* The driver's request: counted and logged once its answer is complete. */
void
nw_conn_log(struct nw_conn *c, int status, uint64_t sent)
{
	nw_conn_log_answer(c, status, sent, NULL, 0);
}

/*
 * The same, with the answer's head ("HTTP/1.1 200 OK\r\nName: value\r\n
 * ...") for the {header}o atoms; it is looked at only when the access log
 * format has one.
 */
void
nw_conn_log_answer(struct nw_conn *c, int status, uint64_t sent,
    const char *head, size_t headlen)
{
	struct nw_engine *e = c->engine;
	int64_t started_ns = c->started_ns;

	nw_conn_count(c, status, sent);
	c->started_ns = 0;
	/* nor in the access log: a line per probe is not a visitor */
	if (e->alog_fd < 0 || !is_traffic(c))
		return;
	if (e->alogfmt != NULL) {
		struct nw_alog_entry entry = {
			.host = c->host,
			.clock = &e->clock,
			.buf = c->in.data + c->rpos,
			.req = &c->req,
			.status = status,
			.sent = sent,
			.duration_us = started_ns > 0 ?
			    (nw_engine_now_ns() - started_ns) / 1000 : 0,
			.resp_head = head,
			.resp_head_len = head != NULL ? headlen : 0,
		};

		nw_alogfmt_render(&e->alog, e->alogfmt, &entry);
	} else {
		nw_accesslog_format(&e->alog, c->host, &e->clock,
		    c->in.data + c->rpos, &c->req, status, sent);
	}
	if (e->alog.len >= NW_ACCESSLOG_FLUSH_AT)
		nw_engine_alog_flush(e);
	else if (e->drv->log_pending)
		e->drv->log_pending(e);
}

int
nw_conn_send_continue(struct nw_conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct iovec iov = {(void *)cont, sizeof cont - 1};

	c->continue_sent = true;
	return nw_conn_write(c, &iov, 1);
}

/*
 * After an upgrade (101 sent by the driver): the bytes are the driver's.
 * What came after the head is left in c->in from c->rpos.
 */
void
nw_conn_upgrade(struct nw_conn *c)
{
	/* the upgrade answers the request: it counts toward max_requests */
	count_served(c);
	c->rpos += c->req.head_len;
	nw_request_reset(&c->req);
	c->state = NW_CONN_UPGRADED;
	c->body_done = true;
	if (c->timer != NW_TIMER_WRITE)
		nw_timer_unlink(c);
}

/* Returns 0, or the status to answer. */
static int
body_begin(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;

	c->chunked = c->req.chunked;
	c->body_size = c->body_raw = 0;
	c->body_ready = 0;
	c->body_window_raw = 0;
	if (c->chunked) {
		nw_chunked_init(&c->dec);
		c->remaining = 0;
		c->body_done = c->body_told = false;
		return 0;
	}
	c->remaining =
	    c->req.content_length > 0 ? (uint64_t)c->req.content_length : 0;
	if (e->limits.body && c->remaining > e->limits.body)
		return 413;
	c->body_done = c->body_told = c->remaining == 0;
	return 0;
}

/*
 * min_body_rate: after a grace (header_timeout, and at least
 * NW_BODY_GRACE_MS: a small body may trickle), a body must have come at
 * that average rate, or a client sending a byte now and then would hold its
 * connection (and, for WSGI, the buffer) for ever. The time between two
 * reads is bounded apart (NW_TIMER_BODY).
 */
static bool
body_too_slow(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;
	int64_t ms, grace = e->header_timeout_ms > NW_BODY_GRACE_MS
	    ? e->header_timeout_ms
	    : NW_BODY_GRACE_MS;

	if (e->min_body_rate == 0 || c->body_done)
		return false;
	ms = (nw_engine_now_ns() - c->body_window_ns) / 1000000;
	if (ms <= grace)
		return false;
	return (c->body_raw - c->body_window_raw) * 1000 <
	    e->min_body_rate * (uint64_t)(ms - grace);
}

/*
 * Decodes the body bytes that arrived, checking them; the decoded ones
 * wait at the front of the body's place in the input (body_ready), the
 * undecoded rest after them. Returns 0, or -status.
 */
static int
body_decode(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;
	char *p = c->in.data + c->rpos + c->req.head_len + c->body_ready;
	size_t avail = c->in.len - c->rpos - c->req.head_len - c->body_ready;
	size_t consumed, out;
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
		if (e->limits.body &&
		    c->body_size + out + c->dec.size > e->limits.body)
			return -413;
		consumed = (size_t)used;
	} else {
		consumed = avail < c->remaining ? avail : (size_t)c->remaining;
		out = consumed;
		c->remaining -= consumed;
		done = c->remaining == 0;
	}
	c->body_size += out;
	c->body_raw += consumed;
	c->body_done = done;
	if (body_too_slow(c))
		return -408;
	if (consumed > out)
		memmove(p + out, p + consumed, avail - consumed);
	c->in.len -= consumed - out;
	c->body_ready += out;
	return 0;
}

/*
 * Hands the decoded bytes to the driver, and drops them: 0, or -status.
 * The driver may answer the request from here (nw_conn_response_done
 * drops them then).
 */
static int
body_deliver(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;
	char *p = c->in.data + c->rpos + c->req.head_len;
	size_t n = c->body_ready;
	uint64_t requests = c->requests;

	if (n == 0 && (!c->body_done || c->body_told))
		return 0;
	c->body_told = c->body_done;
	if (e->drv->body) {
		int rc = e->drv->body(c, p, n, c->body_done);

		if (rc != 0)
			return -rc;
	}
	if (c->fd < 0 || c->requests != requests)
		return 0; /* answered meanwhile */
	memmove(p, p + n, c->in.len - c->rpos - c->req.head_len - n);
	c->in.len -= n;
	c->body_ready = 0;
	return 0;
}

/* Moves body bytes from the input to the driver: 0, or -status. */
static int
body_feed(struct nw_conn *c)
{
	int rc = body_decode(c);

	return rc < 0 ? rc : body_deliver(c);
}

/*
 * A request body that goes silent gets as long as a head gets to arrive
 * (header_timeout, between reads, so a slow but steady upload is never cut
 * off); not while reading is paused because the driver has not taken what
 * came.
 */
void
nw_conn_body_timer(struct nw_conn *c)
{
	if (c->timer == NW_TIMER_WRITE)
		return; /* the client is not reading our answer either */
	if (!c->body_done && !c->read_paused)
		nw_timer_set(c, NW_TIMER_BODY);
	else if (c->timer == NW_TIMER_BODY)
		nw_timer_unlink(c);
}

/* A request body that breaks the rules (or stalls). */
static void
body_error(struct nw_conn *c, int status)
{
	struct nw_engine *e = c->engine;
	bool answered = false;

	/* a running request is let go; the client gets the status if it can */
	if (c->state == NW_CONN_REQUEST && e->drv->abandon)
		answered = e->drv->abandon(c);
	if (answered)
		nw_conn_abort(c); /* half an answer: only closing tells */
	else
		nw_conn_error(c, status);
}

/* The request goes to the driver; -1: it could not take it (answered). */
static int
request_start(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;

	c->state = NW_CONN_REQUEST;
	if (e->drv->request(c) < 0) {
		if (c->fd >= 0 && c->state == NW_CONN_REQUEST)
			nw_conn_error(c, 500);
		return -1;
	}
	return 0;
}

static void
conn_process(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;
	bool first;
	int rc;

	for (;;) {
		if (c->fd < 0 || e->halt)
			return;
		if (c->state == NW_CONN_HEAD) {
			if (c->rpos == c->in.len) {
				c->rpos = c->in.len = 0;
				return;
			}
			if (c->out.len - c->opos > NW_WRITE_HIGH) {
				/* it asks faster than it reads: wait for it */
				nw_conn_pause_reading(c);
				return;
			}
			first = c->req.scan == 0;
			if (c->proxy_pending) {
				if ((rc = nw_conn_proxy_header(c)) == 0) {
					/* a PROXY header is part of the head */
					if (first && (c->requests > 0 ||
					                 c->timer == NW_TIMER_GRACE ||
					                 c->timer == NW_TIMER_NONE))
						nw_timer_set(c, NW_TIMER_HEAD);
					return;
				}
				if (rc < 0) {
					nw_conn_error(c, 400);
					return;
				}
				continue;
			}
			rc = nw_request_parse(&c->req, c->in.data + c->rpos,
			    c->in.len - c->rpos, &e->limits);
			if (rc == NW_PARSE_AGAIN) {
				/*
				 * The header timeout runs from a request's
				 * first byte: they came with this read.
				 */
				if (first &&
				    (c->requests > 0 ||
				        c->timer == NW_TIMER_GRACE ||
				        c->timer == NW_TIMER_NONE))
					nw_timer_set(c, NW_TIMER_HEAD);
				return;
			}
			if (rc == NW_PARSE_ERROR) {
				nw_conn_error(c, c->req.status);
				return;
			}
			if ((rc = body_begin(c)) != 0) {
				nw_conn_error(c, rc);
				return;
			}
			c->client_close = !c->req.keep_alive;
			c->continue_sent = false;
			c->started_ns = nw_engine_now_ns();
			c->body_window_ns = c->started_ns;
			if (c->timer != NW_TIMER_WRITE &&
			    c->timer != NW_TIMER_NONE)
				nw_timer_unlink(c);
			c->state = NW_CONN_BODY;
			if (!e->drv->whole_body) {
				/*
				 * A driver that streams the body starts its
				 * app now, but what came with the head is
				 * checked first: a broken body found here is
				 * answered before any app runs.
				 */
				if ((rc = body_decode(c)) < 0) {
					nw_conn_error(c, -rc);
					return;
				}
				if (request_start(c) < 0)
					return;
				if (c->fd >= 0 && c->state == NW_CONN_HEAD)
					continue; /* answered in place */
				if (c->fd < 0 || c->state != NW_CONN_REQUEST)
					return;
				if ((rc = body_deliver(c)) < 0) {
					body_error(c, -rc);
					return;
				}
			}
		}
		if ((c->state == NW_CONN_BODY || c->state == NW_CONN_REQUEST) &&
		    !c->body_done) {
			if ((rc = body_feed(c)) < 0) {
				body_error(c, -rc);
				return;
			}
			if (c->fd >= 0 && c->state == NW_CONN_HEAD)
				continue; /* answered in place */
			if (c->fd < 0 ||
			    (c->state != NW_CONN_BODY &&
			        c->state != NW_CONN_REQUEST))
				return;
			if (!c->body_done) {
				if (e->drv->auto_continue &&
				    c->state == NW_CONN_BODY &&
				    c->req.expect_continue &&
				    !c->continue_sent && c->body_raw == 0 &&
				    nw_conn_send_continue(c) < 0)
					return;
				nw_conn_body_timer(c);
				return;
			}
		}
		if (c->state == NW_CONN_BODY) {
			if (c->timer == NW_TIMER_BODY)
				nw_timer_unlink(c);
			if (request_start(c) < 0)
				return;
		}
		if (c->state == NW_CONN_REQUEST) {
			nw_conn_body_timer(c);
			/* pipelined requests wait for this one's answer */
			if (c->in.len - c->rpos - c->req.head_len >
			    PIPELINE_MAX)
				nw_conn_pause_reading(c);
			return;
		}
		/* answered in place: on to a pipelined request, if any */
		if (c->state != NW_CONN_HEAD)
			return;
	}
}

/* Parses what arrived: starts requests, feeds their bodies. */
void
nw_conn_process(struct nw_conn *c)
{
	c->in_process++;
	conn_process(c);
	c->in_process--;
}

/* EPOLLIN (or the accept): read what came, and act on it. */
void
nw_conn_readable(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;
	size_t want = BUF_INITIAL;
	ssize_t n;

	if (c->state == NW_CONN_LINGER) {
		char sink[16384];

		n = read(c->fd, sink, sizeof sink);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			nw_conn_close(c);
		return;
	}
	if (c->read_paused)
		return;
	if (c->rpos > 0) {
		memmove(c->in.data, c->in.data + c->rpos, c->in.len - c->rpos);
		c->in.len -= c->rpos;
		c->rpos = 0;
	}
	if ((c->state == NW_CONN_BODY || c->state == NW_CONN_REQUEST) &&
	    !c->body_done)
		want = BODY_READ_SIZE;
	if (c->in.cap - c->in.len < want / 2 &&
	    nw_buf_reserve(&c->in, want) < 0) {
		nw_conn_close(c);
		return;
	}
	if (c->ssl != NULL)
		n = nw_tls_read(c); /* the handshake first; it may grow in */
	else
		n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (c->state == NW_CONN_UPGRADED && e->drv->upgraded) {
			e->drv->upgraded(c, true);
			return;
		}
		nw_conn_close(c); /* gone: its request, if any, is told */
		return;
	}
	c->in.len += (size_t)n;
	if (c->state == NW_CONN_UPGRADED) {
		if (e->drv->upgraded)
			e->drv->upgraded(c, false);
		return;
	}
	nw_conn_process(c);
}

/* A deadline of timer.c's passed (the connection is off its list). */
void
nw_conn_timed_out(struct nw_conn *c, int timer)
{
	if (timer == NW_TIMER_HEAD && c->in.len > c->rpos &&
	    c->state == NW_CONN_HEAD)
		nw_conn_error(c, 408); /* a partial head */
	else if (timer == NW_TIMER_BODY)
		body_error(c, 408); /* a body that stalled */
	else if (timer == NW_TIMER_IDLE || timer == NW_TIMER_GRACE)
		nw_conn_linger(c); /* see nw_conn_stop_idle */
	else
		nw_conn_close(c);
}
