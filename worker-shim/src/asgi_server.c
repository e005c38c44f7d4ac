/*
 * asgi_server.c: _http.ASGIServer, the ASGI worker's HTTP side in its loop.
 *
 * The type's settings, start, go_live, graceful stop and quit, heartbeats
 * and the access log, and the callbacks it gives the asyncio loop: the
 * epoll set's events, the timer tick, pipelined requests, held answers.
 * Connections are asgi_conn.c's, requests asgi_cycle.c's. It never runs
 * the app and never blocks; the loop, signals and lifespan are asgi.py's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asgi.h"
#include "conn.h"

#define MAX_EVENTS 256

typedef struct {
	PyObject_HEAD struct nw_aserver s;
} ServerObject;

void
nw_aserver_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	nw_vlog(fmt, ap);
	va_end(ap);
}

/* A Python error where nobody can take it: print it, carry on. */
void
nw_aserver_print_error(const char *what)
{
	nw_aserver_log("%s", what);
	PyErr_PrintEx(0);
}

/* A datagram to the master (`retire`); the heartbeat has its own. */
void
nw_aserver_control(struct nw_aserver *s, const char *msg)
{
	if (s->control_fd < 0)
		return;
	if (send(s->control_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) <
	        0 &&
	    errno != EAGAIN)
		nw_aserver_log("control socket: %s", strerror(errno));
}

/* Stopping: stop()'s future is done once nothing is left to serve. */
void
nw_aserver_check_drained(struct nw_aserver *s)
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
		nw_aserver_print_error("cannot resolve the drain future");
	Py_XDECREF(r);
	Py_DECREF(d);
}

void
nw_aserver_cycle_ended(struct nw_aserver *s)
{
	if (s->stopping)
		nw_aserver_check_drained(s);
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
		nw_aserver_print_error("cannot schedule the access log");
		alog_flush(s);
		return;
	}
	Py_DECREF(r);
	s->alog_flush_scheduled = true;
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
			nw_alistener_accept(s, (struct nw_alistener *)kind);
			continue;
		}
		c = (struct nw_aconn *)kind;
		if (c->fd < 0)
			continue; /* closed by an earlier event */
		if (events[t].events & EPOLLOUT)
			nw_aconn_writable(s, c);
		if (c->fd < 0)
			continue;
		if (c->read_paused &&
		    events[t].events & (EPOLLHUP | EPOLLERR)) {
			/* reported even when not asked for: gone for good */
			nw_aconn_lost(s, c);
			continue;
		}
		if (events[t].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			nw_aconn_readable(s, c);
	}
	s->in_events = false;
	nw_aserver_release_schedule(s);
	while ((c = s->limbo) != NULL) {
		s->limbo = c->next;
		nw_aconn_free(s, c);
	}
	nw_atimers_arm(s);
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
	nw_atimers_expire(s);
	nw_atimers_arm(s);
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
			nw_aconn_process(s, c);
	}
	nw_aserver_release_schedule(s);
	nw_atimers_arm(s);
	Py_RETURN_NONE;
}

static PyObject *
server_on_release(PyObject *self, PyObject *unused)
{
	nw_aserver_release(&((ServerObject *)self)->s);
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
	s->timers[NW_ATIMER_LINGER].timeout_ms = NW_ALINGER_MS;
	s->timers[NW_ATIMER_GRACE].timeout_ms = NW_AGRACE_MS;
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
		if (nw_alistener_init(
		        s, &s->listeners[s->nlisteners], private_fd, false) < 0)
			goto fail;
		s->nlisteners++;
	}
	for (i = 0; i < n; i++) {
		long fd = PyLong_AsLong(PyList_GetItem(seq, i));

		if (fd == -1 && PyErr_Occurred())
			goto fail;
		if (nw_alistener_init(
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
	nw_alisteners_update(s);
	while ((c = s->conns) != NULL)
		nw_aconn_close(s, c);
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
	size_t i;

	server_close(s);
	nw_aconn_free_all(s);
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
	nw_alisteners_update(s);
	Py_RETURN_NONE;
}

static PyObject *
server_go_live(PyObject *self, PyObject *unused)
{
	struct nw_aserver *s = &((ServerObject *)self)->s;

	if (!s->live) {
		s->live = true;
		nw_alisteners_update(s);
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
		nw_alisteners_update(s);
		/* a request on an idle keep-alive connection is answered */
		for (c = s->timers[NW_ATIMER_IDLE].head; c != NULL; c = next) {
			next = c->next; /* c may close, or change lists */
			nw_aconn_stop_idle(s, c);
		}
		/* fresh ones get a moment to send what they connected for */
		for (c = s->timers[NW_ATIMER_HEAD].head; c != NULL; c = next) {
			next = c->next;
			if (c->in.len == c->rpos && c->requests == 0)
				nw_atimer_set(s, c, NW_ATIMER_GRACE);
		}
		nw_atimers_arm(s);
	}
	nw_aserver_check_drained(s);
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
