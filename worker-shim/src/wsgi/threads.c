/*
 * threads.c: threads = N, a pool of Python threads under the one loop.
 *
 * The loop runs on the main thread without the GIL: the engine accepts,
 * parses and keeps connections alive as for the sync driver, and a complete
 * request is handed to the pool while its connection waits, out of the
 * epoll set (nothing else touches it). N Python threads (started by the
 * glue with threading.Thread) take requests in order, run the app with the
 * GIL and write the answer themselves, blocking without the GIL; a finished
 * request goes back through an eventfd, and only the loop then tells the
 * engine (log, counters, keep-alive). The loop takes the GIL for signals
 * alone. The heartbeat says the worker is alive while a thread is free or
 * one finished a request since the last one: one stuck thread is not a
 * dead worker, all of them stuck is.
 *
 * A hand-off costs two wake-ups and a GIL transfer per request, which is
 * most of what a fast app costs. So while every pool thread is idle and
 * requests have been quick (a moving average of their run time), the loop
 * runs the turn's requests in place, as threads = 1 does. One idle thread
 * then stands by: a request in place that runs RESCUE_NS (it waits on a
 * database, it hangs) gets the loop taken over by that thread, which goes
 * on accepting and handing requests to the others, and gives the loop back
 * when the request in place is over. Requests of the same turn not yet run
 * go to the pool at once. The thread standing by looks every RESCUE_NS
 * after a rescue, and less often (up to STANDBY_MAX_NS) while there was
 * none: its wake-ups, 500 a second, cost a fast app about a tenth of its
 * throughput on two busy cores (measured with threads 4 against 1).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "wsgi/wsgi.h"

#define MAX_EVENTS 256

/* Requests run in place while they have taken less than this, on average */
#define INPLACE_NS 500000
/* A request in place this long: a standing-by thread takes the loop */
#define RESCUE_NS 2000000
/* ... or this long even while it computes (or waits for a CPU) */
#define RESCUE_BUSY_NS 50000000
/* A thread stands by while requests ran in place this recently */
#define STANDBY_NS 1000000000
/* ... looking this often at most while nothing needed a rescue */
#define STANDBY_MAX_NS 16000000
/* inplace_since once a standing-by thread has taken the loop over */
#define INPLACE_RESCUED ((int64_t)-1)

struct nw_pool {
	enum nw_watch kind; /* the eventfd's epoll tag: never the engine's */
	int efd;            /* readable: done is not empty */
	int nthreads;
	pthread_mutex_t mu;
	pthread_cond_t work;
	/* everything below is the mutex's */
	struct nw_wsgi_conn *head, *tail; /* waiting for a thread */
	struct nw_wsgi_conn *done;        /* finished, newest first */
	bool signaled;                    /* efd written, not yet read */
	bool stopping;                    /* threads leave once idle */
	int idle;                         /* threads waiting for work */
	int busy;                         /* threads with a request */
	int started;                      /* threads in run_thread */
	size_t parked;                    /* requests away from the loop */
	uint64_t finished;                /* requests done so far */
	uint64_t finished_seen;           /* ...at the last heartbeat */
	/*
	 * A request in place, on the loop's thread, costs no lock: the loop's
	 * thread and a standing-by one agree through inplace_since alone (0:
	 * none runs; the start, nw_engine_now_ns; INPLACE_RESCUED). The loop's
	 * thread sets it at the start and swaps in 0 at the end; the thread
	 * standing by swaps a start it finds too old for INPLACE_RESCUED. Who
	 * swaps first wins, so a request is never both over and rescued.
	 */
	_Atomic int64_t inplace_since;
	_Atomic int64_t inplace_last;     /* a turn last ran requests in place */
	_Atomic uint64_t inplace_done;    /* requests done in place so far */
	_Atomic int64_t service_ns;       /* requests' run time, averaged */
	struct nw_wsgi_conn *pending;     /* the turn's next ones, in order:
	                                     the rescuer's once it has won */
	bool standby;                     /* a thread looks for a rescue */
	int64_t standby_ns;               /* ...this often */
	bool rescued;                     /* a pool thread runs the loop */
	bool want_back;                   /* ...and the loop's thread waits */
	bool reopen_logs;                 /* USR1 came meanwhile: its turn */
	pthread_cond_t back;              /* rescued or want_back changed */
	struct nw_wsgi_local local;       /* the loop thread's, in place */
	pid_t loop_tid;                   /* ...that thread, for /proc */
};

int
nw_threads_init(PyObject *module)
{
	return 0;
}

int
nw_threads_setup(struct nw_wsgi *s, int nthreads)
{
	struct nw_pool *p = calloc(1, sizeof *p);
	pthread_condattr_t attr;

	if (p == NULL) {
		PyErr_NoMemory();
		return -1;
	}
	p->kind = (enum nw_watch)-1;
	p->nthreads = nthreads;
	if ((p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		free(p);
		return -1;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->work, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&p->back, NULL);
	/* handed off until shown quick */
	atomic_init(&p->service_ns, 2 * INPLACE_NS);
	p->standby_ns = RESCUE_NS;
	atomic_init(&p->inplace_since, 0);
	atomic_init(&p->inplace_last, 0);
	atomic_init(&p->inplace_done, 0);
	nw_wsgi_local_init(s, &p->local, NULL);
	s->pool = p;
	return 0;
}

/* Threads still running a request at exit: their memory must stay. */
static bool
pool_busy(struct nw_pool *p)
{
	bool busy;

	pthread_mutex_lock(&p->mu);
	busy = p->busy > 0;
	pthread_mutex_unlock(&p->mu);
	return busy;
}

void
nw_threads_free(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;

	if (p == NULL || pool_busy(p))
		return;
	close(p->efd);
	nw_wsgi_local_free(&p->local);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->back);
	free(p);
	s->pool = NULL;
}

/*
 * From the engine (the loop, no GIL): the connection leaves the epoll set,
 * so that not even a hang-up closes it under its request; it joins the
 * batch that goes to the pool when the engine has finished this turn.
 */
int
nw_threads_request(struct nw_wsgi *s, struct nw_wsgi_conn *wc)
{
	struct nw_conn *c = &wc->c;

	nw_conn_park(c);
	wc->fd = c->fd;
	wc->parked = true;
	wc->jnext = NULL;
	if (s->submit_tail)
		s->submit_tail->jnext = wc;
	else
		s->submit_head = wc;
	s->submit_tail = wc;
	return 0;
}

/* Called with p->mu held: a list of requests joins the queue. */
static void
pool_queue(struct nw_pool *p, struct nw_wsgi_conn *head)
{
	struct nw_wsgi_conn *tail = head;
	int n = 1;

	if (head == NULL)
		return;
	while (tail->jnext != NULL) {
		tail = tail->jnext;
		n++;
	}
	if (p->tail)
		p->tail->jnext = head;
	else
		p->head = head;
	p->tail = tail;
	p->parked += (size_t)n;
	if (n > 1 && p->idle > 1)
		pthread_cond_broadcast(&p->work);
	else if (p->idle > 0)
		pthread_cond_signal(&p->work);
}

/* The turn's requests, to the threads at once: one lock, one wake-up. */
static void
threads_submit(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;

	if (s->submit_head == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	pool_queue(p, s->submit_head);
	pthread_mutex_unlock(&p->mu);
	s->submit_head = s->submit_tail = NULL;
}

/*
 * One more request's run time in the average. Not a locked update: two
 * requests ending at once may lose one of their figures, which a moving
 * average can spare.
 */
static void
pool_took(struct nw_pool *p, int64_t ns)
{
	int64_t avg = atomic_load_explicit(&p->service_ns, memory_order_relaxed);

	atomic_store_explicit(&p->service_ns, avg + (ns - avg) / 8,
	    memory_order_relaxed);
}

/* A counter only the loop's thread writes: no locked increment needed. */
static void
count_in_place(struct nw_pool *p)
{
	atomic_store_explicit(&p->inplace_done,
	    atomic_load_explicit(&p->inplace_done, memory_order_relaxed) + 1,
	    memory_order_relaxed);
}

/*
 * One request on the loop's thread, which holds the GIL (taken once for
 * the turn's requests in place), p->mu not held. The loop is this thread's
 * again when it returns: if a pool thread took it over meanwhile, it is
 * asked for it back and hands it back at the end of its turn. Then the
 * signals that thread drained from the wakeup pipe get their handlers.
 * t0 is when it starts; returns when it ended (0: it was taken over, and
 * the turn's others went to the pool).
 */
static void thread_run(struct nw_wsgi *s, struct nw_wsgi_local *l,
    struct nw_wsgi_conn *wc);

static int64_t
run_in_place(struct nw_wsgi *s, struct nw_wsgi_conn *wc,
    struct nw_wsgi_conn *rest, int64_t t0)
{
	struct nw_pool *p = s->pool;
	struct nw_conn *c = &wc->c;
	int64_t t1 = 0;
	bool rescued;
	uint64_t one = 1;

	p->pending = rest; /* published by the release below */
	/* a copy: a rescuer updates the loop's clock while this one runs */
	p->local.own = s->e.clock;
	atomic_store_explicit(&p->inplace_since, t0, memory_order_release);
	thread_run(s, &p->local, wc);
	rescued = atomic_exchange_explicit(&p->inplace_since, 0,
	              memory_order_acq_rel) == INPLACE_RESCUED;
	count_in_place(p);
	if (rescued) {
		/* the GIL first: the threads the rescuer fed need it */
		s->loop_ts = PyEval_SaveThread();
		pthread_mutex_lock(&p->mu);
		p->want_back = true;
		pthread_cond_broadcast(&p->back);
		if (write(p->efd, &one, sizeof one) < 0 && errno != EAGAIN)
			nw_log("thread pool eventfd: %s", strerror(errno));
		while (p->rescued)
			pthread_cond_wait(&p->back, &p->mu);
		p->want_back = false;
		pthread_mutex_unlock(&p->mu);
		PyEval_RestoreThread(s->loop_ts);
		if (PyErr_CheckSignals() < 0) {
			s->fatal = true;
			s->e.halt = true;
		}
		nw_clock_update(&s->e.clock);
	} else {
		t1 = nw_engine_now_ns();
		pool_took(p, t1 - t0);
	}
	wc->parked = false;
	nw_conn_log_answer(c, wc->answer.status, wc->answer.sent,
	    wc->answer.head, wc->answer.headlen);
	nw_conn_response_done(c, wc->rc != NW_HANDLED_KEEP || s->quit);
	return t1;
}

/* Whether requests run in place now: quick ones, and nothing to stop. */
static bool
quick_in_place(struct nw_wsgi *s)
{
	return atomic_load_explicit(&s->pool->service_ns,
	           memory_order_relaxed) < INPLACE_NS &&
	    !s->quit && !s->fatal;
}

/*
 * The turn's requests: in place, one after the other, while every pool
 * thread is idle and requests are quick; the rest to the pool. Only a
 * rescue (which takes the turn's others) makes the pool busy meanwhile.
 */
static void
threads_turn_out(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;
	struct nw_wsgi_conn *rest = s->submit_head, *wc;
	int64_t now;

	if (rest == NULL)
		return;
	s->submit_head = s->submit_tail = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->busy > 0 || p->head != NULL || p->idle == 0 || p->stopping ||
	    !quick_in_place(s)) {
		pool_queue(p, rest);
		pthread_mutex_unlock(&p->mu);
		return;
	}
	now = nw_engine_now_ns();
	atomic_store_explicit(&p->inplace_last, now, memory_order_relaxed);
	if (!p->standby)
		pthread_cond_signal(&p->work); /* one to stand by */
	pthread_mutex_unlock(&p->mu);
	PyEval_RestoreThread(s->loop_ts);
	while (rest != NULL) {
		wc = rest;
		rest = wc->jnext;
		wc->jnext = NULL;
		/* one clock reading ends a request and starts the next */
		if ((now = run_in_place(s, wc, rest, now)) == 0)
			rest = NULL; /* the rescuer queued them */
		if (rest != NULL && !quick_in_place(s)) {
			pthread_mutex_lock(&p->mu);
			pool_queue(p, rest);
			pthread_mutex_unlock(&p->mu);
			break;
		}
	}
	s->loop_ts = PyEval_SaveThread();
	nw_conn_free_limbo(&s->e);
}

/* Finished requests back to the engine, in the order they finished. */
static void
threads_collect(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;
	struct nw_wsgi_conn *done, *rev = NULL, *next;
	uint64_t v;

	if (read(p->efd, &v, sizeof v) < 0 && errno != EAGAIN)
		nw_log("thread pool eventfd: %s", strerror(errno));
	pthread_mutex_lock(&p->mu);
	done = p->done;
	p->done = NULL;
	p->signaled = false;
	pthread_mutex_unlock(&p->mu);
	for (; done != NULL; done = next) {
		next = done->jnext;
		done->jnext = rev;
		rev = done;
	}
	nw_clock_update(&s->e.clock);
	for (; rev != NULL; rev = next) {
		struct nw_conn *c = &rev->c;

		next = rev->jnext;
		rev->parked = false;
		nw_conn_log_answer(c, rev->answer.status, rev->answer.sent,
		    rev->answer.head, rev->answer.headlen);
		nw_conn_response_done(c, rev->rc != NW_HANDLED_KEEP || s->quit);
	}
	nw_conn_free_limbo(&s->e);
}

/*
 * Whether the pool is alive, asked when a heartbeat is due: a thread is
 * free, or one finished a request since the last heartbeat. Otherwise the
 * heartbeat is skipped, and after `timeout` of them the master's watchdog
 * does what it does to a sync worker stuck in one request.
 */
static bool
pool_progress(struct nw_pool *p)
{
	uint64_t done;
	bool ok;

	pthread_mutex_lock(&p->mu);
	/* a thread running the loop for the loop's thread is not free */
	done = p->finished +
	    atomic_load_explicit(&p->inplace_done, memory_order_relaxed);
	ok = done != p->finished_seen ||
	    p->busy + (p->rescued ? 1 : 0) < p->nthreads;
	p->finished_seen = done;
	pthread_mutex_unlock(&p->mu);
	return ok;
}

static void
heartbeat_gate(struct nw_wsgi *s)
{
	struct nw_engine *e = &s->e;

	if (e->heartbeat_ms > 0 && e->clock.mono_ms >= e->next_heartbeat &&
	    !pool_progress(s->pool))
		e->next_heartbeat = e->clock.mono_ms + e->heartbeat_ms;
}

/*
 * Leaving while requests still run (graceful_timeout, a quit): their
 * sockets are shut, so the threads' writes fail, but their numbers stay
 * taken until exit (the engine closes a duplicate), so that no thread ever
 * writes into a file opened later under the same number.
 */
static void
threads_cut(struct nw_wsgi *s)
{
	struct nw_conn *c;

	for (c = s->e.conns; c != NULL; c = c->all_next) {
		struct nw_wsgi_conn *wc = NW_WSGI_CONN(c);
		int d;

		if (!wc->parked || c->fd < 0)
			continue;
		shutdown(c->fd, SHUT_RDWR);
		if ((d = dup(c->fd)) >= 0)
			c->fd = d;
	}
}

/*
 * One turn of the loop, on the loop's thread or, while a request runs in
 * place there, on the pool thread that took it over (rescuing): that one
 * hands requests to the pool only, leaves signals' handlers to the main
 * thread and never ends the loop. 0: the loop ends (the main thread's).
 */
static int
loop_turn(struct nw_wsgi *s, bool rescuing)
{
	struct nw_engine *e = &s->e;
	struct nw_pool *p = s->pool;
	struct epoll_event events[MAX_EVENTS];
	bool done = false;
	int n, i, m;

	if (s->fatal || s->quit)
		return 0;
	if (e->stop_requested && !e->stopping)
		nw_engine_stop(e, s->graceful_ms);
	if (!rescuing && e->stopping &&
	    (nw_engine_drained(e) ||
	        (e->stop_deadline && e->clock.mono_ms >= e->stop_deadline)))
		return 0;
	nw_engine_alog_flush(e);
	/* what the stop, or the last turn, started goes out first */
	if (rescuing)
		threads_submit(s);
	else
		threads_turn_out(s);
	if (s->fatal || s->quit)
		return 0;
	n = epoll_wait(e->epfd, events, MAX_EVENTS, nw_engine_timeout(e));
	nw_clock_update(&e->clock);
	if (n < 0) {
		if (errno != EINTR) {
			s->loop_errno = errno;
			return 0;
		}
		return 1; /* a signal: the wakeup pipe has it */
	}
	for (i = m = 0; i < n; i++) {
		if (events[i].data.ptr == &p->kind)
			done = true;
		else
			events[m++] = events[i];
	}
	nw_engine_dispatch(e, events, m);
	if (done && !s->fatal && !s->quit)
		threads_collect(s);
	if (s->fatal || s->quit)
		return 0;
	heartbeat_gate(s);
	nw_engine_tick(e);
	nw_engine_yield(e);
	return 1;
}

/*
 * USR1's handler runs on the main thread, maybe in the middle of a request
 * in place while a pool thread runs the loop and writes the access log:
 * then that thread reopens the log between two turns. Otherwise (the loop
 * is the caller's) now, under p->mu, so that no rescue starts meanwhile.
 */
void
nw_threads_reopen_logs(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;

	pthread_mutex_lock(&p->mu);
	if (p->rescued)
		p->reopen_logs = true;
	else
		nw_engine_alog_reopen(&s->e);
	pthread_mutex_unlock(&p->mu);
}

/* Called with p->mu held by the thread running the loop for the other. */
static void
reopen_logs_if_asked(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;

	if (!p->reopen_logs)
		return;
	p->reopen_logs = false;
	pthread_mutex_unlock(&p->mu);
	nw_engine_alog_reopen(&s->e);
	pthread_mutex_lock(&p->mu);
}

/*
 * A pool thread standing by found a request in place running for too long:
 * it runs the loop until the loop's thread asks for it back. Called with
 * p->mu held, returns with it held.
 */
static void
rescue(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;

	p->rescued = true;
	pool_queue(p, p->pending); /* the turn's others: not behind it */
	p->pending = NULL;
	while (!p->want_back) {
		reopen_logs_if_asked(s);
		pthread_mutex_unlock(&p->mu);
		if (!loop_turn(s, true)) {
			/* quit, fatal or an error: the main thread ends it */
			pthread_mutex_lock(&p->mu);
			while (!p->want_back)
				pthread_cond_wait(&p->back, &p->mu);
			break;
		}
		pthread_mutex_lock(&p->mu);
	}
	reopen_logs_if_asked(s);
	p->rescued = false;
	pthread_cond_broadcast(&p->back);
}

bool
nw_threads_rescuing(struct nw_wsgi *s)
{
	/* read by the thread running the loop: the rescuer set it itself,
	 * and the main thread loops only once it is false again */
	return s->pool != NULL && s->pool->rescued;
}

/* The loop of a worker with threads: serve() with the GIL released. */
PyObject *
nw_threads_serve(struct nw_wsgi *s)
{
	struct nw_engine *e = &s->e;
	struct nw_pool *p = s->pool;
	struct epoll_event ev;
	int err;

	if (nw_engine_start(e) < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	ev.events = EPOLLIN;
	ev.data.ptr = &p->kind;
	if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, p->efd, &ev) < 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		nw_engine_close(e);
		return NULL;
	}
	s->running = true;
	s->loop_errno = 0;
	p->loop_tid = (pid_t)syscall(SYS_gettid);
	s->loop_ts = PyEval_SaveThread();
	while (loop_turn(s, false))
		;
	err = s->loop_errno;
	if (!s->fatal && !s->quit && e->stopping && nw_engine_drained(e))
		nw_engine_heartbeat(e, true);
	threads_cut(s);
	nw_engine_close(e);
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	PyEval_RestoreThread(s->loop_ts);
	s->loop_ts = NULL;
	s->running = false;
	s->fatal = false;
	if (err != 0) {
		errno = err;
		PyErr_SetFromErrno(PyExc_OSError);
	}
	if (PyErr_Occurred())
		return NULL;
	Py_RETURN_NONE;
}

/* One request on a pool thread, with the GIL. */
static void
thread_run(struct nw_wsgi *s, struct nw_wsgi_local *l,
    struct nw_wsgi_conn *wc)
{
	wc->rc = nw_wsgi_run(s, l, wc, wc->fd, &wc->answer);
	/* made and dropped here: the loop has no GIL to drop them with */
	Py_CLEAR(wc->remote_addr);
	Py_CLEAR(wc->remote_port);
	if (wc->rc == NW_HANDLED_FATAL) {
		/* SystemExit in a thread: that thread's request fails alone */
		PyErr_Clear();
		wc->rc = NW_HANDLED_CLOSE;
	}
}

/*
 * On a pool thread, after its request: the head it sent, copied for the
 * access log when its format logs response headers (the thread's buffer
 * is its next request's). Without the copy, the atoms log "-".
 */
static void
keep_sent_head(struct nw_wsgi *s, struct nw_wsgi_conn *wc)
{
	struct nw_wsgi_answer *a = &wc->answer;

	if (a->head == NULL)
		return;
	wc->sent_head.len = 0;
	if (s->e.alogfmt == NULL ||
	    !nw_alogfmt_wants_response_headers(s->e.alogfmt) ||
	    nw_buf_append(&wc->sent_head, a->head, a->headlen) < 0) {
		a->head = NULL;
		a->headlen = 0;
		return;
	}
	a->head = wc->sent_head.data;
}

/* Called with p->mu held: wc goes back to the loop. */
static void
thread_done(struct nw_pool *p, struct nw_wsgi_conn *wc, int64_t took)
{
	uint64_t one = 1;

	p->finished++;
	pool_took(p, took);
	p->parked--;
	wc->jnext = p->done;
	p->done = wc;
	if (!p->signaled) {
		p->signaled = true;
		if (write(p->efd, &one, sizeof one) < 0 && errno != EAGAIN)
			nw_log("thread pool eventfd: %s", strerror(errno));
	}
}

/*
 * Whether the loop's thread sleeps in the kernel (a request in place waits
 * on I/O, a lock, time.sleep), rather than runs or waits for a CPU: only
 * then is taking the loop over at once worth it. A request that computes,
 * or a thread that was preempted, has RESCUE_BUSY_NS.
 */
static bool
loop_thread_sleeps(struct nw_pool *p)
{
	char path[64], buf[512], *end;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)p->loop_tid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return true;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	/* "tid (comm) S ...": the comm may hold anything, even ") " */
	if ((end = strrchr(buf, ')')) == NULL || end[1] != ' ')
		return true;
	return end[2] != 'R';
}

/*
 * Called with p->mu held, no GIL: one idle thread waits RESCUE_NS at a
 * time while requests run in place, and takes the loop over from one that
 * runs longer than that.
 */
static void
stand_by(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;
	struct timespec until;
	int64_t now, since;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += p->standby_ns;
	while (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	p->standby = true;
	p->idle++;
	pthread_cond_timedwait(&p->work, &p->mu, &until);
	p->idle--;
	p->standby = false;
	now = nw_engine_now_ns();
	since = atomic_load_explicit(&p->inplace_since, memory_order_acquire);
	if (since > 0 && !p->stopping && now - since >= RESCUE_NS &&
	    (now - since >= RESCUE_BUSY_NS || loop_thread_sleeps(p)) &&
	    atomic_compare_exchange_strong_explicit(&p->inplace_since, &since,
		INPLACE_RESCUED, memory_order_acq_rel, memory_order_acquire)) {
		p->standby_ns = RESCUE_NS;
		rescue(s);
	} else if (p->standby_ns < STANDBY_MAX_NS) {
		p->standby_ns *= 2;
	}
}

/*
 * One pool thread, until the server stops: it waits for work without the
 * GIL, and a request queued when one ends is taken at once, GIL kept.
 */
PyObject *
nw_threads_thread(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;
	struct nw_wsgi_local l;
	struct nw_wsgi_conn *wc;
	PyThreadState *ts;

	nw_wsgi_local_init(s, &l, NULL);
	ts = PyEval_SaveThread();
	pthread_mutex_lock(&p->mu);
	p->started++;
	for (;;) {
		while (p->head == NULL && !p->stopping) {
			int64_t last = atomic_load_explicit(&p->inplace_last,
			    memory_order_relaxed);

			if (!p->standby && last != 0 &&
			    nw_engine_now_ns() - last < STANDBY_NS) {
				stand_by(s);
				continue;
			}
			p->idle++;
			pthread_cond_wait(&p->work, &p->mu);
			p->idle--;
		}
		if ((wc = p->head) == NULL)
			break;
		if ((p->head = wc->jnext) == NULL)
			p->tail = NULL;
		p->busy++;
		pthread_mutex_unlock(&p->mu);
		PyEval_RestoreThread(ts);
		for (;;) {
			int64_t t0 = nw_engine_now_ns();

			nw_clock_update(l.clock);
			thread_run(s, &l, wc);
			keep_sent_head(s, wc);
			pthread_mutex_lock(&p->mu);
			thread_done(p, wc, nw_engine_now_ns() - t0);
			if ((wc = p->head) == NULL)
				break;
			if ((p->head = wc->jnext) == NULL)
				p->tail = NULL;
			pthread_mutex_unlock(&p->mu);
		}
		p->busy--;
		pthread_mutex_unlock(&p->mu);
		ts = PyEval_SaveThread();
		pthread_mutex_lock(&p->mu);
	}
	p->started--;
	pthread_mutex_unlock(&p->mu);
	PyEval_RestoreThread(ts);
	nw_wsgi_local_free(&l);
	Py_RETURN_NONE;
}
