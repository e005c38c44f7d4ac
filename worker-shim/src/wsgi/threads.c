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
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wsgi/wsgi.h"

#define MAX_EVENTS 256

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
	pthread_cond_init(&p->work, NULL);
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
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
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

/* The turn's requests, to the threads at once: one lock, one wake-up. */
static void
threads_submit(struct nw_wsgi *s)
{
	struct nw_pool *p = s->pool;
	struct nw_wsgi_conn *wc;
	int n = 0;

	if (s->submit_head == NULL)
		return;
	for (wc = s->submit_head; wc != NULL; wc = wc->jnext)
		n++;
	pthread_mutex_lock(&p->mu);
	if (p->tail)
		p->tail->jnext = s->submit_head;
	else
		p->head = s->submit_head;
	p->tail = s->submit_tail;
	p->parked += (size_t)n;
	if (n > 1 && p->idle > 1)
		pthread_cond_broadcast(&p->work);
	else if (p->idle > 0)
		pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	s->submit_head = s->submit_tail = NULL;
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
		nw_conn_log(c, rev->answer.status, rev->answer.sent);
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
	bool ok;

	pthread_mutex_lock(&p->mu);
	ok = p->finished != p->finished_seen || p->busy < p->nthreads;
	p->finished_seen = p->finished;
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

/* The loop of a worker with threads: serve() with the GIL released. */
PyObject *
nw_threads_serve(struct nw_wsgi *s)
{
	struct nw_engine *e = &s->e;
	struct nw_pool *p = s->pool;
	struct epoll_event events[MAX_EVENTS], ev;
	int err = 0;

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
	s->loop_ts = PyEval_SaveThread();
	while (!s->fatal && !s->quit) {
		bool done = false;
		int n, i, m;

		if (e->stop_requested && !e->stopping)
			nw_engine_stop(e, s->graceful_ms);
		if (e->stopping &&
		    (nw_engine_drained(e) ||
		        (e->stop_deadline &&
		            e->clock.mono_ms >= e->stop_deadline)))
			break;
		nw_engine_alog_flush(e);
		/* what the stop, or the last turn, started goes out first */
		threads_submit(s);
		n = epoll_wait(e->epfd, events, MAX_EVENTS, nw_engine_timeout(e));
		nw_clock_update(&e->clock);
		if (n < 0) {
			if (errno != EINTR) {
				err = errno;
				break;
			}
			continue; /* a signal: the wakeup pipe has it */
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
			break;
		heartbeat_gate(s);
		nw_engine_tick(e);
		nw_engine_yield(e);
	}
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
	nw_clock_update(l->clock);
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

/* Called with p->mu held: wc goes back to the loop. */
static void
thread_done(struct nw_pool *p, struct nw_wsgi_conn *wc)
{
	uint64_t one = 1;

	p->finished++;
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
			thread_run(s, &l, wc);
			pthread_mutex_lock(&p->mu);
			thread_done(p, wc);
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
