/*
 * green.c: gevent and eventlet workers, the hub driving the one loop.
 *
 * The hub (gevent's or eventlet's) watches the engine's epoll set as one
 * reader and keeps one timer for its deadlines, as asyncio does for the
 * ASGI driver; green.py gives the hub's primitives (spawn, wait for a
 * writable socket, a timer, a callback soon). Each complete request runs in
 * a greenlet of its own, its connection out of the epoll set meanwhile; the
 * answer is written in place, and a socket that is full blocks the greenlet
 * rather than the worker. At most worker_connections requests run at once;
 * more wait, in order. The app's own sockets are monkey-patched by the glue
 * before the app is imported: the C side never blocks the hub.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "wsgi/wsgi.h"

#define MAX_EVENTS 256

struct nw_green {
	PyObject *server;     /* borrowed: it owns us */
	PyObject *spawn;      /* spawn(callable): a new greenlet runs it */
	PyObject *wait_write; /* wait_write(fd, seconds): raises on timeout */
	PyObject *arm;        /* arm(seconds): on_timer() after that long */
	PyObject *call_soon;  /* call_soon(callable): from the hub, soon */
	PyObject *run_queue;  /* the server's bound run_queue */
	long limit;           /* worker_connections */
	long running;         /* requests in greenlets now */
	struct nw_wsgi_conn *wait_head, *wait_tail; /* over the limit */
	struct nw_wsgi_local *free_locals;
	int64_t armed_at; /* the deadline the hub's timer is set for; 0: none */
	bool runq_scheduled;
};

/* One request's greenlet: a callable with its connection. */
typedef struct {
	PyObject_HEAD PyObject *server; /* keeps the Server alive */
	struct nw_wsgi_conn *wc;
} RunObject;

static PyObject *run_type;

/* The write hook of green requests: the greenlet waits, not the worker. */
static int
green_wait_writable(void *arg, int fd, int timeout_ms)
{
	struct nw_wsgi *s = arg;
	PyObject *r;

	r = PyObject_CallFunction(s->green->wait_write, "id", fd,
	    timeout_ms / 1000.0);
	if (r != NULL) {
		Py_DECREF(r);
		return 0;
	}
	errno = PyErr_ExceptionMatches(PyExc_TimeoutError) ? ETIMEDOUT
	                                                   : EPIPE;
	PyErr_Clear();
	return -1;
}

static struct nw_wsgi_local *
local_get(struct nw_wsgi *s)
{
	struct nw_green *g = s->green;
	struct nw_wsgi_local *l = g->free_locals;

	if (l != NULL) {
		g->free_locals = l->next;
		return l;
	}
	if ((l = malloc(sizeof *l)) == NULL)
		return NULL;
	nw_wsgi_local_init(s, l, &s->e.clock);
	l->writer.wait = green_wait_writable;
	return l;
}

static void
local_put(struct nw_wsgi *s, struct nw_wsgi_local *l)
{
	l->next = s->green->free_locals;
	s->green->free_locals = l;
}

/* The connection leaves the epoll set while its request runs. */
static void
park(struct nw_wsgi *s, struct nw_wsgi_conn *wc)
{
	struct nw_conn *c = &wc->c;

	nw_conn_park(c);
	wc->fd = c->fd;
	wc->parked = true;
}

static int
green_start(struct nw_wsgi *s, struct nw_wsgi_conn *wc)
{
	struct nw_green *g = s->green;
	RunObject *run;
	PyObject *r;

	run = PyObject_New(RunObject, (PyTypeObject *)run_type);
	if (run == NULL)
		return -1;
	Py_INCREF(g->server);
	run->server = g->server;
	run->wc = wc;
	r = PyObject_CallFunctionObjArgs(g->spawn, (PyObject *)run, NULL);
	Py_DECREF(run);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	g->running++;
	return 0;
}

/* From the engine, in the hub: a greenlet for it, or a place in line. */
int
nw_green_request(struct nw_wsgi *s, struct nw_wsgi_conn *wc)
{
	struct nw_green *g = s->green;

	if (g->running >= g->limit) {
		park(s, wc);
		wc->jnext = NULL;
		if (g->wait_tail)
			g->wait_tail->jnext = wc;
		else
			g->wait_head = wc;
		g->wait_tail = wc;
		return 0;
	}
	if (green_start(s, wc) < 0) {
		nw_py_error("cannot start a greenlet");
		return -1;
	}
	park(s, wc);
	return 0;
}

/* A greenlet's request is over: the engine hears of it, the next runs. */
static void
green_done(struct nw_wsgi *s, struct nw_wsgi_conn *wc)
{
	struct nw_green *g = s->green;
	struct nw_engine *e = &s->e;
	struct nw_conn *c = &wc->c;

	g->running--;
	wc->parked = false;
	nw_clock_update(&e->clock);
	if (c->fd >= 0 && !e->closed) {
		/* the greenlet's local is not reused before this */
		nw_conn_log_answer(c, wc->answer.status, wc->answer.sent,
		    wc->answer.head, wc->answer.headlen);
		nw_conn_response_done(c, wc->rc != NW_HANDLED_KEEP || s->quit);
	}
	while (g->wait_head != NULL && g->running < g->limit && !e->closed) {
		struct nw_wsgi_conn *next = g->wait_head;

		if ((g->wait_head = next->jnext) == NULL)
			g->wait_tail = NULL;
		if (green_start(s, next) < 0) {
			nw_py_error("cannot start a greenlet");
			next->parked = false;
			nw_conn_close(&next->c);
		}
	}
	if (!e->in_events)
		nw_conn_free_limbo(e);
}

static PyObject *
run_call(PyObject *self, PyObject *args, PyObject *kw)
{
	RunObject *run = (RunObject *)self;
	struct nw_wsgi *s = SERVER(run->server);
	struct nw_wsgi_conn *wc = run->wc;
	struct nw_wsgi_local *l;

	if (wc == NULL)
		Py_RETURN_NONE;
	run->wc = NULL;
	if ((l = local_get(s)) == NULL) {
		wc->rc = NW_HANDLED_CLOSE;
		wc->answer.status = 0;
		wc->answer.sent = 0;
	} else {
		nw_clock_update(&s->e.clock);
		wc->rc = nw_wsgi_run(s, l, wc, wc->fd, &wc->answer);
		local_put(s, l);
	}
	if (wc->rc == NW_HANDLED_FATAL) {
		/* SystemExit or the like in a greenlet: its request alone */
		PyErr_Clear();
		wc->rc = NW_HANDLED_CLOSE;
	}
	green_done(s, wc);
	Py_RETURN_NONE;
}

static void
run_dealloc(PyObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(((RunObject *)self)->server);
	PyObject_Free(self);
	Py_DECREF(tp);
}

static PyType_Slot run_slots[] = {
    {Py_tp_dealloc, run_dealloc},
    {Py_tp_call, run_call},
    {Py_tp_doc, "one request of a green worker, for its greenlet"},
    {0, NULL},
};

static PyType_Spec run_spec = {
    "narwhal_worker._http.GreenRequest",
    sizeof(RunObject),
    0,
    Py_TPFLAGS_DEFAULT,
    run_slots,
};

int
nw_green_init(PyObject *module)
{
	run_type = PyType_FromSpec(&run_spec);
	return run_type ? 0 : -1;
}

/* The engine's hooks into the hub */

/*
 * The hub's timer is set again only when a deadline comes sooner than the
 * one it waits for: one that moved later fires early, ticks for nothing,
 * and sets the timer for the real one.
 */
static void
green_arm(struct nw_engine *e, int64_t at)
{
	struct nw_wsgi *s = NW_WSGI(e);
	struct nw_green *g = s->green;
	PyObject *r;
	int64_t now = e->clock.mono_ms;

	if (g->armed_at != 0 && g->armed_at <= at)
		return;
	g->armed_at = at;
	r = PyObject_CallFunction(g->arm, "d",
	    at > now ? (at - now) / 1000.0 : 0.0);
	if (r == NULL)
		nw_py_error("cannot set the hub's timer");
	Py_XDECREF(r);
}

static void
green_schedule(struct nw_engine *e)
{
	struct nw_wsgi *s = NW_WSGI(e);
	struct nw_green *g = s->green;
	PyObject *r;

	if (g->runq_scheduled)
		return;
	g->runq_scheduled = true;
	r = PyObject_CallFunctionObjArgs(g->call_soon, g->run_queue, NULL);
	if (r == NULL) {
		g->runq_scheduled = false;
		nw_py_error("cannot schedule pipelined requests");
	}
	Py_XDECREF(r);
}

static struct nw_driver green_driver;

int
nw_green_setup(struct nw_wsgi *s, PyObject *self, PyObject *hub, long limit)
{
	struct nw_green *g = calloc(1, sizeof *g);

	if (g == NULL) {
		PyErr_NoMemory();
		return -1;
	}
	s->green = g;
	g->server = self;
	g->limit = limit;
	if ((g->spawn = PyObject_GetAttrString(hub, "spawn")) == NULL ||
	    (g->wait_write = PyObject_GetAttrString(hub, "wait_write")) ==
	        NULL ||
	    (g->arm = PyObject_GetAttrString(hub, "arm")) == NULL ||
	    (g->call_soon = PyObject_GetAttrString(hub, "call_soon")) ==
	        NULL ||
	    (g->run_queue = PyObject_GetAttrString(self, "run_queue")) ==
	        NULL)
		return -1;
	/* the sync driver's, with the hub's timer and callbacks */
	green_driver = *s->e.drv;
	green_driver.arm = green_arm;
	green_driver.schedule = green_schedule;
	s->e.drv = &green_driver;
	return 0;
}

void
nw_green_free(struct nw_wsgi *s)
{
	struct nw_green *g = s->green;
	struct nw_wsgi_local *l;

	if (g == NULL)
		return;
	while ((l = g->free_locals) != NULL) {
		g->free_locals = l->next;
		nw_wsgi_local_free(l);
		free(l);
	}
	Py_CLEAR(g->spawn);
	Py_CLEAR(g->wait_write);
	Py_CLEAR(g->arm);
	Py_CLEAR(g->call_soon);
	/* run_queue holds the server: the glue keeps both for the worker's
	 * life, so it is dropped with the rest only on a clean teardown */
	Py_CLEAR(g->run_queue);
	free(g);
	s->green = NULL;
}

/* Server methods for green.py */

static struct nw_wsgi *
green_server(PyObject *self)
{
	struct nw_wsgi *s = SERVER(self);

	if (s->green == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "not a green server");
		return NULL;
	}
	return s;
}

PyObject *
nw_green_start(PyObject *self, PyObject *unused)
{
	struct nw_wsgi *s = green_server(self);

	if (s == NULL)
		return NULL;
	if (s->e.started) {
		PyErr_SetString(PyExc_RuntimeError, "already started");
		return NULL;
	}
	if (nw_engine_start(&s->e) < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	s->running = true;
	nw_engine_arm(&s->e);
	return PyLong_FromLong(s->e.epfd);
}

PyObject *
nw_green_on_events(PyObject *self, PyObject *unused)
{
	struct nw_wsgi *s = green_server(self);
	struct epoll_event events[MAX_EVENTS];
	struct nw_engine *e;
	int n;

	if (s == NULL)
		return NULL;
	e = &s->e;
	if (e->closed)
		Py_RETURN_NONE;
	n = epoll_wait(e->epfd, events, MAX_EVENTS, 0);
	if (n < 0 && errno != EINTR)
		return PyErr_SetFromErrno(PyExc_OSError);
	nw_clock_update(&e->clock);
	if (n > 0)
		nw_engine_dispatch(e, events, n);
	nw_engine_yield(e);
	if (s->fatal)
		return NULL;
	Py_RETURN_NONE;
}

PyObject *
nw_green_on_timer(PyObject *self, PyObject *unused)
{
	struct nw_wsgi *s = green_server(self);

	if (s == NULL)
		return NULL;
	s->green->armed_at = 0;
	nw_engine_tick(&s->e);
	Py_RETURN_NONE;
}

PyObject *
nw_green_run_queue(PyObject *self, PyObject *unused)
{
	struct nw_wsgi *s = green_server(self);

	if (s == NULL)
		return NULL;
	s->green->runq_scheduled = false;
	if (!s->e.closed)
		nw_engine_run_queue(&s->e);
	Py_RETURN_NONE;
}

PyObject *
nw_green_begin_stop(PyObject *self, PyObject *unused)
{
	struct nw_wsgi *s = green_server(self);

	if (s == NULL)
		return NULL;
	nw_engine_stop(&s->e, s->graceful_ms);
	Py_RETURN_NONE;
}

/* The end: the last heartbeat if nothing is left, then every socket. */
PyObject *
nw_green_close(PyObject *self, PyObject *unused)
{
	struct nw_wsgi *s = green_server(self);
	struct nw_engine *e;
	struct nw_conn *c;

	if (s == NULL)
		return NULL;
	e = &s->e;
	if (e->closed)
		Py_RETURN_NONE;
	if (e->stopping && nw_engine_drained(e) && s->green->running == 0)
		nw_engine_heartbeat(e, true);
	/* greenlets that still run never run again: the worker exits */
	for (c = e->conns; c != NULL; c = c->all_next)
		NW_WSGI_CONN(c)->parked = false;
	nw_engine_close(e);
	s->running = false;
	Py_RETURN_NONE;
}

PyObject *
nw_green_get_state(PyObject *self, void *closure)
{
	struct nw_wsgi *s = SERVER(self);
	struct nw_engine *e = &s->e;

	return Py_BuildValue("(iOOl)", e->epfd,
	    e->stop_requested ? Py_True : Py_False,
	    e->stopping && nw_engine_drained(e) ? Py_True : Py_False,
	    s->green != NULL ? s->green->running : 0L);
}
