/*
 * engine.c: the engine's life, and the entry points a driver's loop calls.
 *
 * Set-up, start (the epoll set with the listeners, the control socket and
 * the driver's signal pipe), going live, a batch of epoll events, the tick
 * that expires deadlines and sends heartbeats, the graceful stop and the
 * close. The driver owns the loop: it waits on epfd (blocking, or as one
 * reader of another loop) and calls in; the engine tells it the next
 * deadline. Connections are conn.c's, listeners listen.c's.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "engine/engine.h"

/* A NARWHAL_* number the master set, or def. */
static double
env_number(const char *name, double def)
{
	const char *v = getenv(name);
	char *end;
	double d;

	if (v == NULL || *v == '\0')
		return def;
	d = strtod(v, &end);
	return *end == '\0' && d >= 0 ? d : def;
}

/*
 * The resource bounds every driver gets alike (issue 15), from what the
 * master set (conf/narwhal.ini documents them): write_timeout, the
 * connection cap (never above what the fd limit allows, less room for the
 * worker's own fds) and the minimum body rate. A driver calls this once,
 * after its own settings.
 */
void
nw_engine_bounds(struct nw_engine *e)
{
	struct rlimit nofile;
	double conns = env_number("NARWHAL_WORKER_CONNECTIONS", 1000);
	double wt = env_number("NARWHAL_WRITE_TIMEOUT", 10);

	e->write_timeout_ms = wt > 0 ? (int64_t)(wt * 1000.0 + 0.5) : 10000;
	e->min_body_rate =
	    (uint64_t)env_number("NARWHAL_MIN_BODY_RATE", 1024);
	e->max_conns = conns >= 1 ? (size_t)conns : 0;
	if (e->max_conns > 0 && getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
	    nofile.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)e->max_conns + 32 > nofile.rlim_cur)
		e->max_conns = nofile.rlim_cur > 64
		    ? (size_t)(nofile.rlim_cur - 32)
		    : (size_t)(nofile.rlim_cur / 2 + 1);
}

/* The defaults; the driver sets the configuration before start. */
int
nw_engine_init(struct nw_engine *e, const struct nw_driver *drv)
{
	memset(e, 0, sizeof *e);
	e->drv = drv;
	e->epfd = e->alog_fd = e->control_fd = e->wakeup_fd = -1;
	e->keepalive_ms = 2000;
	e->header_timeout_ms = 10000;
	e->write_timeout_ms = 30000;
	e->accepts_per_wakeup = 64;
	e->timer_due = INT64_MAX;
	e->exclusive = true;
	e->control_watch = NW_WATCH_CONTROL;
	e->wakeup_watch = NW_WATCH_WAKEUP;
	nw_clock_update(&e->clock);
	return 0;
}

static int
watch(struct nw_engine *e, int fd, void *ptr)
{
	struct epoll_event ev;

	ev.events = EPOLLIN;
	ev.data.ptr = ptr;
	return epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* The epoll set, and the private socket in it. -1 with errno. */
int
nw_engine_start(struct nw_engine *e)
{
	int t;

	if ((e->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return -1;
	for (t = 0; t < NW_TIMER_COUNT; t++)
		e->timers[t].head = e->timers[t].tail = NULL;
	e->timers[NW_TIMER_IDLE].timeout_ms = e->keepalive_ms;
	e->timers[NW_TIMER_HEAD].timeout_ms = e->header_timeout_ms;
	/*
	 * A request body that goes silent gets as long as a head gets to
	 * arrive: header_timeout is the one knob for a client that stalls
	 * while it sends.
	 */
	e->timers[NW_TIMER_BODY].timeout_ms = e->header_timeout_ms;
	e->timers[NW_TIMER_WRITE].timeout_ms = e->write_timeout_ms;
	e->timers[NW_TIMER_LINGER].timeout_ms = NW_LINGER_MS;
	e->timers[NW_TIMER_GRACE].timeout_ms = NW_GRACE_MS;
	if (e->control_fd >= 0 &&
	    watch(e, e->control_fd, &e->control_watch) < 0)
		nw_log("cannot watch the control socket: %s", strerror(errno));
	if (e->wakeup_fd >= 0 && watch(e, e->wakeup_fd, &e->wakeup_watch) < 0)
		nw_log("cannot watch the signal pipe: %s", strerror(errno));
	e->started = true;
	nw_clock_update(&e->clock);
	e->next_heartbeat = e->clock.mono_ms;
	nw_listeners_update(e);
	return 0;
}

/* The master said `live`: the public sockets too. */
void
nw_engine_go_live(struct nw_engine *e)
{
	if (e->live)
		return;
	e->live = true;
	nw_listeners_update(e);
}

/* A batch of events from epfd. */
void
nw_engine_dispatch(struct nw_engine *e, const struct epoll_event *events, int n)
{
	int i;

	e->in_events = true;
	for (i = 0; i < n && !e->halt && !e->closed; i++) {
		enum nw_watch *kind = events[i].data.ptr;
		uint32_t ev = events[i].events;
		struct nw_conn *c;

		switch (*kind) {
		case NW_WATCH_LISTENER:
			nw_listener_accept(e, (struct nw_listener *)kind);
			break;
		case NW_WATCH_CONTROL:
			nw_engine_control_readable(e);
			break;
		case NW_WATCH_WAKEUP:
			if (e->drv->wakeup)
				e->drv->wakeup(e);
			break;
		case NW_WATCH_CONN:
			c = (struct nw_conn *)kind;
			if (c->fd < 0)
				break; /* closed by an earlier event */
			if (c->parked) {
				/* its request runs elsewhere: leave it be */
				nw_conn_parked_event(c);
				break;
			}
			if (ev & EPOLLOUT)
				nw_conn_writable(c);
			if (c->fd < 0)
				break;
			if (c->read_paused && ev & (EPOLLHUP | EPOLLERR)) {
				/* reported even when not asked for: gone */
				nw_conn_close(c);
				break;
			}
			if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
				nw_conn_readable(c);
			break;
		}
	}
	e->in_events = false;
	if (e->limbo)
		nw_conn_free_limbo(e);
	nw_engine_arm(e);
}

/*
 * Deadlines passed, a paused accept resumes, a heartbeat is due. The
 * caller has just read the clock (nw_clock_update).
 */
void
nw_engine_tick(struct nw_engine *e)
{
	if (e->closed)
		return;
	nw_timers_expire(e);
	if (e->accept_paused_until &&
	    e->clock.mono_ms >= e->accept_paused_until) {
		e->accept_paused_until = 0;
		nw_listeners_update(e);
	}
	if (e->heartbeat_ms > 0 && e->clock.mono_ms >= e->next_heartbeat)
		nw_engine_heartbeat(e, false);
	if (e->limbo)
		nw_conn_free_limbo(e);
	nw_engine_arm(e);
}

/* When nw_engine_tick may have work (or a little before); INT64_MAX: none. */
int64_t
nw_engine_next_deadline(const struct nw_engine *e)
{
	int64_t next = e->timer_due; /* maybe early: then nothing is due */

	if (e->heartbeat_ms > 0 && e->control_fd >= 0 &&
	    e->next_heartbeat < next)
		next = e->next_heartbeat;
	if (e->stop_deadline && e->stop_deadline < next)
		next = e->stop_deadline;
	if (e->accept_paused_until && e->accept_paused_until < next)
		next = e->accept_paused_until;
	return next;
}

/* For epoll_wait: ms until the next deadline, -1 for none. */
int
nw_engine_timeout(const struct nw_engine *e)
{
	int64_t next = nw_engine_next_deadline(e), now = e->clock.mono_ms;

	if (next == INT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return next - now > 60000 ? 60000 : (int)(next - now);
}

/* nw_engine_arm's work, for a driver with a timer of its own. */
void
nw_engine_arm_driver(struct nw_engine *e)
{
	int64_t next;

	if (e->closed || !e->started)
		return;
	if ((next = nw_engine_next_deadline(e)) != INT64_MAX)
		e->drv->arm(e, next);
}

/* Pipelined requests queued for a fresh stack (driver.schedule). */
void
nw_engine_run_queue(struct nw_engine *e)
{
	struct nw_conn *c;

	nw_clock_update(&e->clock);
	while ((c = e->runq_head) != NULL && !e->halt) {
		e->runq_head = c->qnext;
		if (e->runq_head == NULL)
			e->runq_tail = NULL;
		c->queued = false;
		c->qnext = NULL;
		if (c->fd >= 0 && c->state == NW_CONN_HEAD)
			nw_conn_process(c);
	}
	nw_conn_free_limbo(e);
	nw_engine_arm(e);
}

/*
 * An answer's TCP write wakes its client as if we were about to sleep, so
 * a client on this host (a proxy, a load generator) is queued on our CPU
 * and waits out our time slice while we go on with the next batch: after a
 * batch that answered one, give it the CPU (keep-alive p99 0.7-1.0 ms
 * instead of 4-8 ms with wrk on the same two cores).
 */
void
nw_engine_yield(struct nw_engine *e)
{
	if (!e->answered_local)
		return;
	e->answered_local = false;
	sched_yield();
}

/*
 * TERM: no new connections; a request on an idle keep-alive connection is
 * answered (nw_conn_stop_idle), fresh ones get a moment to send theirs.
 * graceful_ms > 0 sets a deadline the driver's loop may read.
 */
void
nw_engine_stop(struct nw_engine *e, int64_t graceful_ms)
{
	struct nw_conn *c, *next;

	if (e->stopping || e->closed)
		return;
	e->stopping = true;
	nw_clock_update(&e->clock);
	if (graceful_ms > 0)
		e->stop_deadline = e->clock.mono_ms + graceful_ms;
	nw_listeners_update(e);
	for (c = e->timers[NW_TIMER_IDLE].head; c != NULL && !e->halt;
	     c = next) {
		next = c->next; /* c may close, or change lists */
		nw_conn_stop_idle(c);
	}
	for (c = e->timers[NW_TIMER_HEAD].head; c != NULL; c = next) {
		next = c->next;
		if (c->in.len == c->rpos && c->requests == 0)
			nw_timer_set(c, NW_TIMER_GRACE);
	}
	nw_conn_free_limbo(e);
	nw_engine_arm(e);
}

/* Stopping, and no connection left. */
bool
nw_engine_drained(const struct nw_engine *e)
{
	return e->nconns == 0;
}

/* Requests between their head and their answer: the heartbeat's gauge. */
size_t
nw_engine_inflight(const struct nw_engine *e)
{
	const struct nw_conn *c;
	size_t n = 0;

	for (c = e->conns; c != NULL; c = c->all_next)
		if (c->state == NW_CONN_BODY || c->state == NW_CONN_REQUEST)
			n++;
	return n;
}

/* Every connection shut, listeners off, the epoll set closed. */
void
nw_engine_close(struct nw_engine *e)
{
	if (e->closed)
		return;
	e->closed = true;
	nw_listeners_update(e);
	while (e->conns != NULL)
		nw_conn_close(e->conns);
	nw_conn_free_limbo(e);
	if (e->epfd >= 0)
		close(e->epfd);
	e->epfd = -1;
	nw_engine_alog_flush(e);
}

/* What the engine allocated; the driver's listeners array stays its own. */
void
nw_engine_free(struct nw_engine *e)
{
	nw_engine_close(e);
	nw_conn_free_pool(e);
	if (e->alog_fd > 2)
		close(e->alog_fd);
	e->alog_fd = -1;
	nw_buf_free(&e->alog);
	free(e->alog_path);
	e->alog_path = NULL;
	nw_engine_front_free(e);
	nw_engine_tls_free(e);
}
