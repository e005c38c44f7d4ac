/*
 * server.c: _http.Server, the WSGI driver and its loop.
 *
 * The type turns keyword arguments (read from the environment by the
 * Python glue) into an engine and a driver, and runs the loop: it blocks in
 * epoll_wait with the GIL released, lets the engine handle what woke it,
 * and answers each request the engine hands over (its body whole) by
 * calling the app in place. Signals wake the loop through Python's wakeup
 * pipe. Connections, deadlines and the master protocol are the engine's.
 * With threads or greenlets, requests go to threads.c or green.c instead.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "wsgi/wsgi.h"

#define MAX_EVENTS 256

/* The driver's callbacks */

static void
wsgi_conn_init(struct nw_conn *c)
{
	NW_WSGI_CONN(c)->body.fd = -1;
}

static int
wsgi_body(struct nw_conn *c, const char *p, size_t n, bool done)
{
	struct nw_wsgi *s = NW_WSGI(c->engine);

	switch (nw_wsgi_body_add(s, &NW_WSGI_CONN(c)->body, p, n,
	    c->remaining)) {
	case 0:
		return 0;
	case -2:
		return 503; /* the worker's spool is full: try again later */
	default:
		return 500;
	}
}

/*
 * A complete request: the app runs now, and its answer goes out. With
 * threads or greenlets, it is handed over, and its connection waits.
 */
static int
wsgi_request(struct nw_conn *c)
{
	struct nw_wsgi *s = NW_WSGI(c->engine);
	struct nw_wsgi_conn *wc = NW_WSGI_CONN(c);
	struct nw_wsgi_answer a;
	int rc;

	/* The body is the request's now, no longer counted as arriving: on
	 * the loop's thread, as the count is the loop's (body.c). */
	nw_wsgi_body_release(s, &wc->body);
	if (s->pool != NULL)
		return nw_threads_request(s, wc);
	if (s->green != NULL)
		return nw_green_request(s, wc);
	rc = nw_wsgi_run(s, &s->local, wc, c->fd, &a);
	nw_conn_log_answer(c, a.status, a.sent, a.head, a.headlen);
	if (rc == NW_HANDLED_FATAL) {
		s->fatal = true;
		s->e.halt = true;
	}
	nw_conn_response_done(c, rc != NW_HANDLED_KEEP || s->quit);
	return 0;
}

static void
wsgi_closed(struct nw_conn *c)
{
	struct nw_wsgi_conn *wc = NW_WSGI_CONN(c);
	struct nw_wsgi *s = NW_WSGI(c->engine);

	if (wc->parked)
		return; /* a thread still has it: see threads_cut */
	nw_wsgi_body_reset(s, &wc->body);
	/* keep small buffers for the next connection, not big ones */
	if (wc->body.mem.cap > 16 * 1024)
		nw_buf_free(&wc->body.mem);
	Py_CLEAR(wc->remote_addr);
	Py_CLEAR(wc->remote_port);
}

static void
wsgi_freed(struct nw_conn *c)
{
	nw_wsgi_body_free(NW_WSGI(c->engine), &NW_WSGI_CONN(c)->body);
	nw_buf_free(&NW_WSGI_CONN(c)->sent_head);
}

/* Python's wakeup pipe: a signal came, its handler runs now. */
static void
wsgi_wakeup(struct nw_engine *e)
{
	struct nw_wsgi *s = NW_WSGI(e);
	char sink[64];

	while (read(e->wakeup_fd, sink, sizeof sink) > 0)
		;
	/* a pool thread running the loop while the main thread runs a
	 * request in place: the handlers run there (threads.c) */
	if (nw_threads_rescuing(s))
		return;
	/* with threads, the loop runs without the GIL */
	if (s->loop_ts != NULL)
		PyEval_RestoreThread(s->loop_ts);
	if (PyErr_CheckSignals() < 0) {
		s->fatal = true;
		e->halt = true;
	}
	if (s->loop_ts != NULL)
		s->loop_ts = PyEval_SaveThread();
}

static const struct nw_driver wsgi_driver = {
    .conn_size = sizeof(struct nw_wsgi_conn),
    .whole_body = true,
    .auto_continue = true,
    .conn_init = wsgi_conn_init,
    .request = wsgi_request,
    .body = wsgi_body,
    .closed = wsgi_closed,
    .freed = wsgi_freed,
    .wakeup = wsgi_wakeup,
};

/*
 * The write hook of the requests answered in place, on the loop's own
 * thread (threads = 1, no greenlets): sleep without the GIL, for at most
 * write_timeout (then the writer gives up on this connection alone), and
 * heartbeat meanwhile: a client that does not read is not a hung app, and
 * the master must not kill the worker (and its other connections) for it.
 * Only this writer may call the engine: pool threads and greenlets wait
 * with the plain hooks of response.c and green.c (the same timeout), while
 * the loop, or the hub, goes on heartbeating.
 */
static int
wait_writable_beat(void *arg, int fd, int timeout_ms)
{
	struct nw_wsgi *s = arg;
	struct nw_engine *e = &s->e;
	int64_t deadline = nw_engine_now_ns() / 1000000 + timeout_ms;

	for (;;) {
		int64_t left = deadline - nw_engine_now_ns() / 1000000;
		int slice = (int)(left < 0 ? 0 : left);

		if (e->heartbeat_ms > 0 && slice > e->heartbeat_ms)
			slice = (int)e->heartbeat_ms;
		/* the pool threads' wait, a heartbeat's time at most */
		if (nw_wsgi_wait_writable(s, fd, slice) == 0)
			return 0;
		if (errno != ETIMEDOUT)
			return -1;
		nw_clock_update(&e->clock);
		nw_engine_heartbeat(e, false);
		if (nw_engine_now_ns() / 1000000 >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
}

/* The loop */

static PyObject *
serve(struct nw_wsgi *s)
{
	struct nw_engine *e = &s->e;
	struct epoll_event events[MAX_EVENTS];

	if (s->running || e->started) {
		PyErr_SetString(PyExc_RuntimeError, "already serving");
		return NULL;
	}
	if (s->pool != NULL)
		return nw_threads_serve(s);
	if (nw_engine_start(e) < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	s->running = true;
	while (!s->fatal && !s->quit) {
		int n;

		if (e->stop_requested && !e->stopping)
			nw_engine_stop(e, s->graceful_ms);
		if (e->stopping &&
		    (nw_engine_drained(e) ||
		        (e->stop_deadline &&
		            e->clock.mono_ms >= e->stop_deadline)))
			break;
		nw_engine_alog_flush(e);
		n = nw_engine_timeout(e);
		Py_BEGIN_ALLOW_THREADS n =
		    epoll_wait(e->epfd, events, MAX_EVENTS, n);
		Py_END_ALLOW_THREADS nw_clock_update(&e->clock);
		if (n < 0) {
			if (errno != EINTR) {
				PyErr_SetFromErrno(PyExc_OSError);
				s->fatal = true;
				break;
			}
			if (PyErr_CheckSignals() < 0)
				s->fatal = true;
			continue;
		}
		nw_engine_dispatch(e, events, n);
		if (s->fatal || s->quit)
			break;
		nw_engine_tick(e);
		nw_engine_yield(e);
	}
	/* a graceful end: the last heartbeat carries the final counts */
	if (!s->fatal && !s->quit && e->stopping)
		nw_engine_heartbeat(e, true);
	/* leaving: everything still open is closed without an answer */
	nw_engine_close(e);
	s->running = false;
	s->fatal = false;
	if (PyErr_Occurred())
		return NULL;
	Py_RETURN_NONE;
}

/* The Python type */

/* SERVER_NAME and SERVER_PORT come from the socket the request came in on. */
static int
environ_template(void *arg, struct nw_listener *l)
{
	PyObject *name, *port;

	name = PyUnicode_DecodeFSDefault(l->host);
	/* gunicorn: a Unix socket's path, and the scheme's port */
	port = PyUnicode_FromFormat("%d", l->family == AF_UNIX ? 80 : l->port);
	if (name != NULL && port != NULL)
		l->tmpl = nw_wsgi_base_environ(arg, name, port, l->tls);
	Py_XDECREF(name);
	Py_XDECREF(port);
	return l->tmpl ? 0 : -1;
}

static PyObject *
server_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"app", "listen_fds", "private_fd",
	    "control_fd", "wakeup_fd", "keepalive", "header_timeout",
	    "graceful_timeout", "heartbeat", "max_requests",
	    "limit_request_line", "limit_request_fields",
	    "limit_request_field_size", "limit_request_body", "accesslog",
	    "script_name", "errors", "threads", "green",
	    "worker_connections", NULL};
	struct nw_py_settings set = {-1, 2, 10, 5, 0, 0, 4094, 100, 8190};
	PyObject *app, *listen_fds = NULL, *errors = Py_None;
	PyObject *script_name = NULL, *sn_bytes, *green = Py_None;
	int threads = 1;
	long worker_connections = 1000;
	int private_fd = -1, wakeup_fd = -1;
	double graceful = 30;
	const char *accesslog = NULL, *tmp = getenv("TMPDIR");
	ServerObject *self;
	struct nw_wsgi *s;
	struct nw_engine *e;

	if (!PyArg_ParseTupleAndKeywords(args, kw,
	        "O|$OiiiddddKnnnKzUOiOl:Server", kwlist, &app, &listen_fds,
	        &private_fd, &set.control_fd, &wakeup_fd, &set.keepalive,
	        &set.header_timeout, &graceful, &set.heartbeat,
	        &set.max_requests, &set.limit_line, &set.limit_fields,
	        &set.limit_field, &set.limit_body, &accesslog, &script_name,
	        &errors, &threads, &green, &worker_connections))
		return NULL;
	if (threads < 1 || worker_connections < 1) {
		PyErr_SetString(PyExc_ValueError,
		    "threads and worker_connections must be >= 1");
		return NULL;
	}
	self = (ServerObject *)nw_py_server_new(
	    type, sizeof self->s, app, &wsgi_driver, &set);
	if (self == NULL)
		return NULL;
	s = &self->s;
	e = &s->e;
	e->wakeup_fd = wakeup_fd;
	s->graceful_ms = graceful <= 0 ? 0 : (int64_t)(graceful * 1000.0 + 0.5);
	nw_wsgi_local_init(s, &s->local, &e->clock);
	/* only the loop's own thread writes with it (wsgi_request) */
	s->local.writer.wait = wait_writable_beat;
	/* requests may run side by side: on threads, or in greenlets */
	s->multithread = threads > 1 || green != Py_None;
	Py_INCREF(app);
	s->app = app;
	if (errors == Py_None) {
		errors = PySys_GetObject("stderr"); /* borrowed */
		if (errors == NULL)
			errors = Py_None;
	}
	Py_INCREF(errors);
	s->errors = errors;
	if ((s->tmpdir = strdup(tmp && *tmp ? tmp : "/tmp")) == NULL)
		goto nomem;
	/* One body at the limit, or 256 MiB of smaller ones (1 GiB when
	 * bodies have no limit), on disk at once while they arrive. */
	s->spool_max = e->limits.body == 0 ? (uint64_t)1 << 30
	    : e->limits.body > ((uint64_t)256 << 20) ? e->limits.body
						     : (uint64_t)256 << 20;
	if (script_name == NULL)
		script_name = PyUnicode_FromString("");
	else
		Py_INCREF(script_name);
	s->script_name = script_name;
	if (s->script_name == NULL)
		goto fail;
	if ((sn_bytes = PyUnicode_AsLatin1String(script_name)) == NULL)
		goto fail;
	s->script_name_len = (size_t)PyBytes_Size(sn_bytes);
	s->script_name_b = strdup(PyBytes_AsString(sn_bytes));
	Py_DECREF(sn_bytes);
	if (s->script_name_b == NULL)
		goto nomem;
	/* "/" alone as SCRIPT_NAME strips nothing meaningful */
	if (s->script_name_len &&
	    s->script_name_b[s->script_name_len - 1] == '/')
		s->script_name_len--;
	if (nw_py_listeners(e, private_fd, listen_fds, environ_template, s) < 0)
		goto fail;
	if (nw_engine_alog_open(e, accesslog) < 0) {
		PyErr_SetFromErrnoWithFilename(PyExc_OSError, accesslog);
		goto fail;
	}
	if (green != Py_None) {
		if (nw_green_setup(s, (PyObject *)self, green,
		        worker_connections) < 0)
			goto fail;
	} else if (threads > 1 && nw_threads_setup(s, threads) < 0) {
		goto fail;
	}
	/*
	 * A worker that runs many requests at once takes one connection per
	 * wake-up, as the ASGI worker does: a burst of connections (a client
	 * opening 64) is then spread over the workers instead of landing on
	 * the first one awake, whose threads it would outnumber.
	 */
	if (threads > 1 || green != Py_None)
		e->accepts_per_wakeup = 1;
	return (PyObject *)self;
nomem:
	PyErr_NoMemory();
fail:
	Py_DECREF(self);
	return NULL;
}

static void
server_dealloc(PyObject *self)
{
	struct nw_wsgi *s = SERVER(self);
	PyTypeObject *tp = Py_TYPE(self);
	freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);

	nw_engine_free(&s->e);
	nw_threads_free(s);
	nw_green_free(s);
	nw_py_listeners_free(&s->e);
	free(s->tmpdir);
	free(s->script_name_b);
	nw_wsgi_local_free(&s->local);
	nw_buf_free(&s->scratch);
	Py_CLEAR(s->app);
	Py_CLEAR(s->errors);
	Py_CLEAR(s->script_name);
	tp_free(self);
	Py_DECREF(tp);
}

static PyObject *
server_serve(PyObject *self, PyObject *unused)
{
	return serve(SERVER(self));
}

/* From a signal handler: only a flag, the loop acts on it. */
static PyObject *
server_stop(PyObject *self, PyObject *unused)
{
	SERVER(self)->e.stop_requested = true;
	Py_RETURN_NONE;
}

static PyObject *
server_quit(PyObject *self, PyObject *unused)
{
	SERVER(self)->quit = true;
	SERVER(self)->e.halt = true;
	Py_RETURN_NONE;
}

/* A pool thread's life: threading.Thread(target=server.run_thread). */
static PyObject *
server_run_thread(PyObject *self, PyObject *unused)
{
	if (SERVER(self)->pool == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "no thread pool");
		return NULL;
	}
	return nw_threads_thread(SERVER(self));
}

/* USR1: with threads, the thread running the loop may not be the caller. */
static PyObject *
server_reopen_logs(PyObject *self, PyObject *unused)
{
	struct nw_wsgi *s = SERVER(self);

	if (s->pool == NULL)
		return nw_py_reopen_logs(self, unused);
	nw_threads_reopen_logs(s);
	Py_RETURN_NONE;
}

static PyMethodDef server_methods[] = {
    {"serve", server_serve, METH_NOARGS,
        "serve(): run the loop until a graceful stop completes"},
    {"stop", server_stop, METH_NOARGS,
        "stop(): begin a graceful stop (safe from a signal handler)"},
    {"quit", server_quit, METH_NOARGS,
        "quit(): leave the loop as soon as possible"},
    {"reopen_logs", server_reopen_logs, METH_NOARGS,
        "reopen_logs(): reopen the access log file"},
    {"flush_logs", nw_py_flush_logs, METH_NOARGS,
        "flush_logs(): write buffered access log lines"},
    {"run_thread", server_run_thread, METH_NOARGS,
        "run_thread(): one pool thread's loop, until the server stops"},
    {"start", nw_green_start, METH_NOARGS,
        "start(): the engine, driven by a gevent or eventlet hub"},
    {"on_events", nw_green_on_events, METH_NOARGS,
        "on_events(): the hub saw fileno() readable"},
    {"on_timer", nw_green_on_timer, METH_NOARGS,
        "on_timer(): the hub's timer for the engine's deadlines fired"},
    {"run_queue", nw_green_run_queue, METH_NOARGS,
        "run_queue(): pipelined requests, from the hub"},
    {"begin_stop", nw_green_begin_stop, METH_NOARGS,
        "begin_stop(): no new connections; finish the running requests"},
    {"close", nw_green_close, METH_NOARGS,
        "close(): close every connection (after the last heartbeat)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
    {"served", nw_py_get_served, NULL, "requests answered", NULL},
    {"live", nw_py_get_live, NULL, "accepting public traffic", NULL},
    {"green_state", nw_green_get_state, NULL,
        "(fileno, stop requested, drained, running requests)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot server_slots[] = {
    {Py_tp_new, server_new},
    {Py_tp_dealloc, server_dealloc},
    {Py_tp_methods, server_methods},
    {Py_tp_getset, server_getset},
    {Py_tp_doc,
        "Server(app, *, listen_fds, private_fd, control_fd, ...): "
        "the WSGI worker loop"},
    {0, NULL},
};

static PyType_Spec server_spec = {
    "narwhal_worker._http.Server",
    sizeof(ServerObject),
    0,
    Py_TPFLAGS_DEFAULT,
    server_slots,
};

/* Server and the types its requests use. */
int
nw_wsgi_server_init(PyObject *module)
{
	PyObject *type;

	if (nw_wsgi_environ_init() < 0 || nw_wsgi_response_init() < 0 ||
	    nw_input_init(module) < 0 || nw_filewrapper_init(module) < 0 ||
	    nw_green_init(module) < 0)
		return -1;
	if ((type = PyType_FromSpec(&server_spec)) == NULL)
		return -1;
	return PyModule_AddObject(module, "Server", type);
}
