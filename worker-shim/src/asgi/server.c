/*
 * server.c: _http.ASGIServer, the ASGI driver in its asyncio loop.
 *
 * The type's settings, start, graceful stop and quit, and the callbacks it
 * gives the loop: the engine's epoll set as one reader, the engine's tick
 * on a loop timer, pipelined requests, held answers, the access log. The
 * engine does the connections and the master protocol, cycle.c the
 * requests. It never runs the app and never blocks; the loop, signals and
 * lifespan are asgi.py's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asgi/asgi.h"

#define MAX_EVENTS 256

typedef struct {
	PyObject_HEAD struct nw_asgi s;
} ServerObject;

#define SERVER(self) (&((ServerObject *)(self))->s)

/* Stopping: stop()'s future is done once nothing is left to serve. */
void
nw_asgi_check_drained(struct nw_asgi *s)
{
	PyObject *d = s->drained, *r;

	if (d == NULL || !nw_engine_drained(&s->e) || s->ncycles > 0)
		return;
	s->drained = NULL;
	r = PyObject_CallMethod(d, "done", NULL);
	if (r == Py_False) {
		Py_DECREF(r);
		r = PyObject_CallMethod(d, "set_result", "O", Py_None);
	}
	if (r == NULL)
		nw_py_error("cannot resolve the drain future");
	Py_XDECREF(r);
	Py_DECREF(d);
}

void
nw_asgi_cycle_ended(struct nw_asgi *s)
{
	if (s->e.stopping)
		nw_asgi_check_drained(s);
}

/*
 * Answers written while a batch of requests takes its first step (the
 * tasks on_events or on_runq started) are held and sent together right
 * after the batch, as uvloop does with its transports' writes: released
 * one by one, each answer wakes the client, which then preempts the worker
 * in the middle of the next request and reads one answer per wake-up. The
 * release is a loop callback queued behind the batch's tasks, so it runs in
 * the same loop turn, before the loop polls again. With wrk on the same two
 * cores, an answer's client otherwise waited out the worker's time slice
 * (p99 4.5 ms where p50 was 0.9; 1.4 ms with the release and its yield).
 */
void
nw_asgi_release_schedule(struct nw_asgi *s)
{
	PyObject *r;

	if (s->batch_started == 0)
		return;
	s->batch_started = 0;
	if (s->e.holding || s->e.closed)
		return;
	r = PyObject_CallFunctionObjArgs(s->call_soon, s->on_release, NULL);
	if (r == NULL) {
		nw_py_error("cannot schedule the release of answers");
		return;
	}
	Py_DECREF(r);
	s->e.holding = true;
}

/* The loop's callbacks */

static PyObject *
server_on_events(PyObject *self, PyObject *unused)
{
	struct nw_asgi *s = SERVER(self);
	struct epoll_event events[MAX_EVENTS];
	int n;

	if (s->e.closed)
		Py_RETURN_NONE;
	n = epoll_wait(s->e.epfd, events, MAX_EVENTS, 0);
	nw_clock_update(&s->e.clock);
	if (n > 0)
		nw_engine_dispatch(&s->e, events, n);
	nw_asgi_release_schedule(s);
	Py_RETURN_NONE;
}

static PyObject *
server_on_tick(PyObject *self, PyObject *unused)
{
	struct nw_asgi *s = SERVER(self);

	Py_CLEAR(s->tick_handle);
	nw_clock_update(&s->e.clock);
	nw_engine_tick(&s->e);
	Py_RETURN_NONE;
}

static PyObject *
server_on_runq(PyObject *self, PyObject *unused)
{
	struct nw_asgi *s = SERVER(self);

	s->runq_scheduled = false;
	nw_engine_run_queue(&s->e);
	nw_asgi_release_schedule(s);
	Py_RETURN_NONE;
}

static PyObject *
server_on_release(PyObject *self, PyObject *unused)
{
	nw_engine_release(&SERVER(self)->e);
	Py_RETURN_NONE;
}

static PyObject *
server_on_flush(PyObject *self, PyObject *unused)
{
	struct nw_asgi *s = SERVER(self);

	s->alog_flush_scheduled = false;
	nw_engine_alog_flush(&s->e);
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
static PyObject *
server_on_ws_tick(PyObject *self, PyObject *unused)
{
	return nw_ws_tick(SERVER(self));
}

static PyMethodDef on_ws_tick_def = {
    "_on_ws_tick", server_on_ws_tick, METH_NOARGS, NULL};
static PyMethodDef on_flush_def = {
    "_on_flush", server_on_flush, METH_NOARGS, NULL};

/* The Python type */

/* A listener's scope template: server is (host, port), or [path, None]. */
static int
scope_template(void *arg, struct nw_listener *l)
{
	PyObject *server = NULL;

	if (l->tcp) {
		server = Py_BuildValue("(si)", l->host, l->port);
	} else {
		PyObject *path = PyUnicode_DecodeFSDefault(l->host);

		if (path != NULL)
			server = Py_BuildValue("(OO)", path, Py_None);
		Py_XDECREF(path);
	}
	if (server == NULL)
		return -1;
	l->tmpl = nw_scope_template(arg, server, l->tls);
	Py_DECREF(server);
	return l->tmpl ? 0 : -1;
}

static PyObject *
server_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"app", "loop", "listen_fds", "private_fd",
	    "control_fd", "keepalive", "header_timeout", "heartbeat",
	    "max_requests", "limit_request_line", "limit_request_fields",
	    "limit_request_field_size", "limit_request_body", "accesslog",
	    "root_path", "state", "on_master_gone", "ws_max_size",
	    "ws_max_queue", "ws_ping_interval", "ws_ping_timeout",
	    "ws_per_message_deflate", NULL};
	struct nw_py_settings set = {-1, 2, 10, 0, 0, 0, 4094, 100, 8190};
	PyObject *app, *loop, *listen_fds = NULL;
	PyObject *root_path = NULL, *state = Py_None, *rp_bytes, *contextvars;
	PyObject *on_master_gone = Py_None;
	int private_fd = -1;
	const char *accesslog = NULL;
	unsigned long long ws_max_size = NW_WS_MAX_SIZE_DEFAULT;
	unsigned int ws_max_queue = 32;
	double ws_ping_interval = 20, ws_ping_timeout = 20;
	int ws_deflate = 1;
	struct nw_ws_pmd_config pmd = NW_WS_PMD_CONFIG_DEFAULT;
	ServerObject *self;
	struct nw_asgi *s;
	struct nw_engine *e;

	if (!PyArg_ParseTupleAndKeywords(args, kw,
	        "OO|$OiidddKnnnKzUOOKIddp:ASGIServer", kwlist, &app, &loop,
	        &listen_fds, &private_fd, &set.control_fd, &set.keepalive,
	        &set.header_timeout, &set.heartbeat, &set.max_requests,
	        &set.limit_line, &set.limit_fields, &set.limit_field,
	        &set.limit_body, &accesslog, &root_path, &state,
	        &on_master_gone, &ws_max_size, &ws_max_queue, &ws_ping_interval,
	        &ws_ping_timeout, &ws_deflate))
		return NULL;
	if (state != Py_None && !PyDict_Check(state)) {
		PyErr_SetString(
		    PyExc_TypeError, "state must be a dict or None");
		return NULL;
	}
	self = (ServerObject *)nw_py_server_new(
	    type, sizeof self->s, app, &nw_asgi_driver, &set);
	if (self == NULL)
		return NULL;
	s = &self->s;
	e = &s->e;
	s->self = (PyObject *)self;
	/*
	 * The epoll set is nested in the loop's, where EPOLLEXCLUSIVE cannot
	 * pick one worker: every worker's loop is woken for a new connection,
	 * and taking one per wake-up spreads a burst across the workers.
	 */
	e->exclusive = false;
	e->accepts_per_wakeup = 1;
	s->ws_max_size = ws_max_size;
	s->ws_max_queue = ws_max_queue ? ws_max_queue : 1;
	s->ws_ping_interval_ms = nw_py_ms(ws_ping_interval);
	s->ws_ping_timeout_ms = nw_py_ms(ws_ping_timeout);
	pmd.enabled = ws_deflate != 0;
	s->ws_pmd = pmd;
	s->ws_stop_code = NW_WS_CLOSE_GOING_AWAY;

	Py_INCREF(app);
	s->app = app;
	Py_INCREF(loop);
	s->loop = loop;
	if (state != Py_None) {
		Py_INCREF(state);
		s->state = state;
	}
	if (on_master_gone != Py_None) {
		Py_INCREF(on_master_gone);
		s->on_master_gone = on_master_gone;
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
	         &on_flush_def, (PyObject *)self, NULL)) == NULL ||
	    (s->on_ws_tick = PyCFunction_NewEx(
	         &on_ws_tick_def, (PyObject *)self, NULL)) == NULL)
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
	if (s->root_path_b == NULL) {
		PyErr_NoMemory();
		goto fail;
	}
	/* "/" alone as root_path strips nothing meaningful */
	while (s->root_path_len && s->root_path_b[s->root_path_len - 1] == '/')
		s->root_path_len--;
	if (nw_py_listeners(e, private_fd, listen_fds, scope_template, s) < 0)
		goto fail;
	if (nw_engine_alog_open(e, accesslog) < 0) {
		PyErr_SetFromErrnoWithFilename(PyExc_OSError, accesslog);
		goto fail;
	}
	return (PyObject *)self;
fail:
	Py_DECREF(self);
	return NULL;
}

/* Shuts every connection and the epoll set: quit(), or dealloc. */
static void
server_close(struct nw_asgi *s)
{
	struct nw_cycle *cy;
	PyObject *r;

	if (s->e.closed)
		return;
	if (s->tick_handle != NULL) {
		r = PyObject_CallMethod(s->tick_handle, "cancel", NULL);
		Py_XDECREF(r);
		Py_CLEAR(s->tick_handle);
	}
	if (s->ws_tick_handle != NULL) {
		r = PyObject_CallMethod(s->ws_tick_handle, "cancel", NULL);
		Py_XDECREF(r);
		Py_CLEAR(s->ws_tick_handle);
	}
	if (s->e.epfd >= 0 && s->e.started) {
		r = PyObject_CallMethod(
		    s->loop, "remove_reader", "i", s->e.epfd);
		if (r == NULL)
			PyErr_Clear();
		Py_XDECREF(r);
	}
	nw_engine_close(&s->e);
	/* the apps of the requests that were running: cancelled */
	for (cy = s->cycles; cy != NULL; cy = nw_cycle_next(cy))
		nw_cycle_cancel(cy);
	PyErr_Clear();
}

static void
server_dealloc(PyObject *self)
{
	struct nw_asgi *s = SERVER(self);
	PyTypeObject *tp = Py_TYPE(self);
	freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);

	server_close(s);
	nw_engine_free(&s->e);
	nw_py_listeners_free(&s->e);
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
	Py_CLEAR(s->on_ws_tick);
	Py_CLEAR(s->on_master_gone);
	Py_CLEAR(s->drained);
	tp_free(self);
	Py_DECREF(tp);
}

static PyObject *
server_start(PyObject *self, PyObject *unused)
{
	struct nw_asgi *s = SERVER(self);
	PyObject *r;

	if (s->e.started || s->e.closed) {
		PyErr_SetString(PyExc_RuntimeError, "already started");
		return NULL;
	}
	if (nw_engine_start(&s->e) < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	r = PyObject_CallMethod(
	    s->loop, "add_reader", "iO", s->e.epfd, s->on_events);
	if (r == NULL)
		return NULL;
	Py_DECREF(r);
	nw_engine_arm(&s->e);
	Py_RETURN_NONE;
}

static PyObject *
server_go_live(PyObject *self, PyObject *unused)
{
	nw_engine_go_live(&SERVER(self)->e);
	Py_RETURN_NONE;
}

/*
 * TERM: no new connections, open WebSockets closed (1012 when the worker is
 * replaced: restart=True; 1001 otherwise); the future is done once nothing
 * runs.
 */
static PyObject *
server_stop(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"restart", NULL};
	struct nw_asgi *s = SERVER(self);
	int restart = 0;
	PyObject *d;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:stop", kwlist, &restart))
		return NULL;
	/* the master says `restart` right before its TERM: read it first */
	for (int i = 0; i < 8 && s->e.control_fd >= 0; i++) {
		char b;

		if (recv(s->e.control_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0)
			break;
		nw_engine_control_readable(&s->e);
	}
	s->ws_stop_code = restart || s->e.restarting || s->e.retired
	    ? NW_WS_CLOSE_RESTART
	    : NW_WS_CLOSE_GOING_AWAY;

	if (s->drained == NULL &&
	    (s->drained = PyObject_CallFunctionObjArgs(
	         s->create_future, NULL)) == NULL)
		return NULL;
	d = s->drained;
	Py_INCREF(d);
	nw_engine_stop(&s->e, 0);
	nw_ws_stop(s);
	nw_asgi_check_drained(s);
	return d;
}

static PyObject *
server_quit(PyObject *self, PyObject *unused)
{
	server_close(SERVER(self));
	Py_RETURN_NONE;
}

/* The last heartbeat, right before a graceful exit. */
static PyObject *
server_heartbeat(PyObject *self, PyObject *unused)
{
	struct nw_asgi *s = SERVER(self);

	if (s->e.control_fd < 0)
		Py_RETURN_FALSE;
	nw_clock_update(&s->e.clock);
	nw_engine_heartbeat(&s->e, true);
	Py_RETURN_TRUE;
}

static PyObject *
get_connections(PyObject *self, void *closure)
{
	return PyLong_FromSize_t(SERVER(self)->e.nconns);
}

static PyObject *
get_tasks(PyObject *self, void *closure)
{
	return PyLong_FromSize_t(SERVER(self)->ncycles);
}

static PyMethodDef server_methods[] = {
    {"start", server_start, METH_NOARGS,
        "start(): watch the private socket (the public ones after "
        "go_live)"},
    {"go_live", server_go_live, METH_NOARGS,
        "go_live(): the master said `live`: accept public traffic"},
    {"stop", (PyCFunction)(void (*)(void))server_stop,
        METH_VARARGS | METH_KEYWORDS,
        "stop(restart=False) -> future: stop accepting, close idle "
        "connections and WebSockets (1012 for a restart, else 1001); the "
        "future is done when no connection and no request is left"},
    {"quit", server_quit, METH_NOARGS,
        "quit(): close everything now and cancel the requests' tasks"},
    {"heartbeat", server_heartbeat, METH_NOARGS,
        "heartbeat() -> bool: send a heartbeat now (the last one)"},
    {"reopen_logs", nw_py_reopen_logs, METH_NOARGS,
        "reopen_logs(): reopen the access log file"},
    {"flush_logs", nw_py_flush_logs, METH_NOARGS,
        "flush_logs(): write buffered access log lines"},
    {NULL, NULL, 0, NULL},
};

static PyObject *
get_restarting(PyObject *self, void *closure)
{
	struct nw_engine *e = &SERVER(self)->e;

	return PyBool_FromLong(e->restarting || e->retired);
}

static PyObject *
get_websockets(PyObject *self, void *closure)
{
	return PyLong_FromUnsignedLong(SERVER(self)->e.ws_open);
}

static PyGetSetDef server_getset[] = {
    {"restarting", get_restarting, NULL,
        "the master replaces this worker (reload, recycling)", NULL},
    {"websockets", get_websockets, NULL, "open WebSockets", NULL},
    {"served", nw_py_get_served, NULL, "requests answered", NULL},
    {"live", nw_py_get_live, NULL, "accepting public traffic", NULL},
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
