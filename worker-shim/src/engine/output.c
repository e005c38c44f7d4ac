/*
 * output.c: what the engine sends on a connection, without blocking.
 *
 * What the socket does not take waits in the connection's buffer for
 * EPOLLOUT, under the write timeout. While a driver says it is holding
 * (a batch of requests taking their first step), answers are held and go
 * out together at nw_engine_release (the ASGI driver says why). Once the
 * buffer drains, the connection goes on as conn.c decides.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>

#include "engine/engine.h"

/* Output held for a batch's release, per connection; more goes out now. */
#define HOLD_MAX (16 * 1024)

/* Off the held list; what it holds stays in c->out. */
void
nw_conn_unhold(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;
	struct nw_conn **pp;

	if (!c->held)
		return;
	for (pp = &e->held; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	c->held = false;
	c->hnext = NULL;
}

/* Copies the iovecs, but their first skip bytes, into c->out. */
int
nw_conn_queue(struct nw_conn *c, struct iovec *iov, int cnt, size_t skip)
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
int
nw_conn_flush(struct nw_conn *c)
{
	if (c->ssl != NULL && nw_tls_flush(c) < 0)
		return -1;
	while (c->opos < c->out.len && c->ssl == NULL) {
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
nw_conn_pending(const struct nw_conn *c)
{
	return c->out.len - c->opos;
}

/*
 * A driver's bytes: held while the driver holds, sent now otherwise, and
 * what the socket does not take waits for EPOLLOUT. -1: the client is gone
 * (the connection is closed, and its request told).
 */
int
nw_conn_write(struct nw_conn *c, struct iovec *iov, int cnt)
{
	struct nw_engine *e = c->engine;
	size_t total = 0;
	ssize_t n = 0;
	int i;

	if (c->fd < 0)
		return -1;
	for (i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	if (e->holding && (c->held || c->out.len == c->opos) &&
	    c->out.len - c->opos + total <= HOLD_MAX) {
		if (nw_conn_queue(c, iov, cnt, 0) < 0) {
			nw_conn_close(c);
			return -1;
		}
		if (!c->held) {
			c->held = true;
			c->hnext = e->held;
			e->held = c;
		}
		return 0;
	}
	if (c->held) {
		/* too much to hold: what is held goes first */
		nw_conn_unhold(c);
		if (nw_conn_flush(c) < 0) {
			nw_conn_close(c);
			return -1;
		}
	}
	if (c->out.len == c->opos && c->ssl == NULL) {
		struct msghdr mh;

		memset(&mh, 0, sizeof mh);
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)cnt;
		do
			n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno != EAGAIN) {
				nw_conn_close(c);
				return -1;
			}
			n = 0;
		}
		if ((size_t)n == total)
			return 0;
	}
	if (nw_conn_queue(c, iov, cnt, (size_t)n) < 0) {
		nw_conn_close(c);
		return -1;
	}
	if (c->ssl != NULL) {
		/* one record for what came in one call */
		if (nw_conn_flush(c) < 0) {
			nw_conn_close(c);
			return -1;
		}
		if (c->out.len == 0)
			return 0;
	}
	nw_conn_update_events(c);
	/* from a driver: the app may have run a while since the last event */
	nw_clock_update(&e->clock);
	nw_timer_set(c, NW_TIMER_WRITE);
	nw_engine_arm(e);
	return 0;
}

/* EPOLLOUT, or a release: out goes, then the connection goes on. */
void
nw_conn_writable(struct nw_conn *c)
{
	struct nw_engine *e = c->engine;

	if (c->tls_want != 0) {
		/* a TLS read waited for room: it goes on first */
		c->tls_want = 0;
		nw_conn_update_events(c);
		nw_conn_readable(c);
		if (c->fd < 0 || c->out.len == c->opos)
			return;
	}
	nw_conn_unhold(c);
	if (nw_conn_flush(c) < 0) {
		nw_conn_close(c);
		return;
	}
	if (c->out.len > c->opos) {
		/* EPOLLOUT: released output was not watched yet */
		nw_conn_update_events(c);
		nw_timer_set(c, NW_TIMER_WRITE); /* it moved: more time */
		if (c->state == NW_CONN_REQUEST && e->drv->drained &&
		    c->out.len - c->opos <= NW_WRITE_LOW)
			e->drv->drained(c);
		return;
	}
	nw_conn_update_events(c);
	if (c->timer == NW_TIMER_WRITE)
		nw_timer_unlink(c);
	switch (c->state) {
	case NW_CONN_CLOSING:
		nw_conn_finish(c);
		break;
	case NW_CONN_REQUEST:
	case NW_CONN_UPGRADED:
		if (e->drv->drained)
			e->drv->drained(c);
		if (c->fd >= 0 && c->state == NW_CONN_REQUEST)
			nw_conn_body_timer(c); /* the body may still come */
		break;
	case NW_CONN_HEAD:
		nw_conn_next(c);
		break;
	default:
		break;
	}
}

/*
 * The held answers go out (the driver's release callback, right after its
 * batch). An answer wakes its client, and one on this host (a proxy, a
 * load generator) would then wait for this CPU while the worker goes on:
 * so after answering a local client, the worker yields the CPU.
 */
void
nw_engine_release(struct nw_engine *e)
{
	bool woke_local = false;

	e->holding = false;
	if (e->closed)
		return;
	nw_clock_update(&e->clock);
	while (e->held != NULL) {
		woke_local |= e->held->local;
		nw_conn_writable(e->held);
	}
	nw_engine_arm(e);
	if (woke_local)
		sched_yield();
}
