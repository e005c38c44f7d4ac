/*
 * cycle.c: one HTTP request through an ASGI 3 application.
 *
 * A Cycle is itself the coroutine its task runs: it calls the app in the
 * task's first step (so the app runs in the task's context), passes the
 * app's awaits through and sees it return or raise; then it answers what
 * the app left unanswered (a 500, or a close after half a response).
 * receive() and send() are receive.c's and send.c's, the scope
 * scope.c's, the socket the engine's.
 */
#include <dlfcn.h>
#include <string.h>

#include "asgi/asgi.h"

struct nw_astr nw_str; /* interned by nw_cycle_init, from this table */

static const struct nw_py_name interned[] = {
    {&nw_str.type, "type"},
    {&nw_str.http, "http"},
    {&nw_str.asgi, "asgi"},
    {&nw_str.version, "version"},
    {&nw_str.spec_version, "spec_version"},
    {&nw_str.http_version, "http_version"},
    {&nw_str.method, "method"},
    {&nw_str.scheme, "scheme"},
    {&nw_str.path, "path"},
    {&nw_str.raw_path, "raw_path"},
    {&nw_str.query_string, "query_string"},
    {&nw_str.root_path, "root_path"},
    {&nw_str.headers, "headers"},
    {&nw_str.client, "client"},
    {&nw_str.server, "server"},
    {&nw_str.state, "state"},
    {&nw_str.body, "body"},
    {&nw_str.more_body, "more_body"},
    {&nw_str.status, "status"},
    {&nw_str.http_request, "http.request"},
    {&nw_str.http_disconnect, "http.disconnect"},
    {&nw_str.v1_0, "1.0"},
    {&nw_str.v1_1, "1.1"},
    {&nw_str.v3_0, "3.0"},
    {&nw_str.v2_3, "2.3"},
    {&nw_str.https, "https"},
    {&nw_str.await_, "__await__"},
    {&nw_str.send, "send"},
    {&nw_str.throw, "throw"},
    {&nw_str.close, "close"},
    {&nw_str.done, "done"},
    {&nw_str.set_result, "set_result"},
    {&nw_str.result, "result"},
    {&nw_str.blocking, "_asyncio_future_blocking"},
    {&nw_str.cancel, "cancel"},
};

static PyObject *cycle_type;

/*
 * PyIter_Send (3.10 on) steps a coroutine itself, where the stable ABI of
 * 3.8 that this build targets has to go through the iterator its
 * __await__ makes (600 of a hello world's 24000 instructions). So it is
 * looked up at run time, and used for the apps that are coroutines.
 */
static int (*iter_send)(PyObject *iter, PyObject *arg, PyObject **result);
static PyObject *coro_type;

static PyMethodDef receive_def = {"receive", nw_cycle_receive, METH_NOARGS,
    "ASGI receive(): the next http.request or http.disconnect"};
static PyMethodDef send_def = {"send", nw_cycle_send, METH_O,
    "ASGI send(message): http.response.start and http.response.body"};

static bool
is_fatal(void)
{
	return PyErr_ExceptionMatches(PyExc_SystemExit) ||
	    PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
	    !PyErr_ExceptionMatches(PyExc_Exception);
}

enum finish {
	FINISH_RETURNED,
	FINISH_RAISED,    /* with the exception set: it is logged */
	FINISH_CANCELLED, /* cancelled, or SystemExit: the task re-raises */
};

/* The app is done: answer what it left unanswered, and let go of it. */
static void
cycle_finish(struct nw_cycle *cy, enum finish how)
{
	struct nw_conn *c = cy->conn;
	const char *line = cy->line;
	int len = cy->line_len;

	cy->finished = true;
	if (how == FINISH_RAISED) {
		nw_log(
		    "Exception in ASGI application (%.*s)", len, line);
		PyErr_PrintEx(0);
	} else if (how == FINISH_CANCELLED) {
		/* the worker is quitting, or the app cancelled itself */
	} else if (!cy->started && c != NULL) {
		nw_log("ASGI callable returned without starting "
		               "response (%.*s)",
		    len, line);
	} else if (!cy->complete && c != NULL) {
		nw_log("ASGI callable returned without completing "
		               "response (%.*s)",
		    len, line);
	}
	if (cy->ws != NULL && nw_ws_finish(cy, how == FINISH_RAISED)) {
		/* the WebSocket closes itself: the close handshake */
	} else if (c != NULL) {
		if (!cy->head_sent) {
			struct iovec iov[3];
			size_t body;

			nw_clock_update(&cy->srv->e.clock);
			body = nw_error_iov(500, &cy->srv->e.clock, iov);
			cy->status = 500;
			cy->head_sent = true;
			if (nw_conn_write(c, iov, 3) == 0 &&
			    cy->conn != NULL) {
				nw_conn_log(c, 500, body);
				nw_cycle_detach(cy);
				nw_asgi_conn_done(c, true);
			}
		} else {
			/* half a response: only closing tells the client */
			nw_conn_log(c, cy->status, cy->sent);
			nw_cycle_detach(cy);
			nw_asgi_conn_abort(c);
		}
		cy->conn = NULL;
	} else {
		cy->conn = NULL;
	}
	Py_CLEAR(cy->app_iter);
	Py_CLEAR(cy->scope);
	Py_CLEAR(cy->task); /* the task refers to us: break the cycle */
	nw_buf_free(&cy->body);
	if (cy->linked) {
		struct nw_asgi *s = cy->srv;

		if (cy->prev)
			cy->prev->next = cy->next;
		else
			s->cycles = cy->next;
		if (cy->next)
			cy->next->prev = cy->prev;
		cy->prev = cy->next = NULL;
		cy->linked = false;
		s->ncycles--;
		nw_asgi_cycle_ended(s);
		Py_DECREF(cy); /* the list's reference */
	}
}

/* After the app stepped: r is what it yielded, or NULL. */
static PyObject *
cycle_stepped(struct nw_cycle *cy, PyObject *r)
{
	if (r != NULL)
		return r;
	if (!PyErr_Occurred()) {
		cycle_finish(cy, FINISH_RETURNED);
		return NULL;
	}
	if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
		PyErr_Clear();
		cycle_finish(cy, FINISH_RETURNED);
		return NULL;
	}
	if (is_fatal()) {
		PyObject *t, *v, *tb;

		/* SystemExit, cancellation: the task must see it */
		PyErr_Fetch(&t, &v, &tb);
		Py_INCREF(cy);
		cycle_finish(cy, FINISH_CANCELLED);
		Py_DECREF(cy);
		PyErr_Restore(t, v, tb);
		return NULL;
	}
	Py_INCREF(cy);
	cycle_finish(cy, FINISH_RAISED);
	Py_DECREF(cy);
	return NULL; /* logged and answered: the task ends cleanly */
}

static int
cycle_call_app(struct nw_cycle *cy)
{
	PyObject *recv, *send, *coro;

	recv = PyCFunction_NewEx(&receive_def, (PyObject *)cy, NULL);
	send = PyCFunction_NewEx(&send_def, (PyObject *)cy, NULL);
	if (recv == NULL || send == NULL) {
		Py_XDECREF(recv);
		Py_XDECREF(send);
		return -1;
	}
	coro = PyObject_CallFunctionObjArgs(
	    cy->srv->app, cy->scope, recv, send, NULL);
	Py_DECREF(recv);
	Py_DECREF(send);
	Py_CLEAR(cy->scope);
	if (coro == NULL)
		return -1;
	if (iter_send != NULL && (PyObject *)Py_TYPE(coro) == coro_type) {
		cy->app_iter = coro;
		cy->native = true;
		return 0;
	}
	cy->app_iter = PyObject_CallMethodObjArgs(coro, nw_str.await_, NULL);
	Py_DECREF(coro);
	return cy->app_iter ? 0 : -1;
}

/* One step of the app: what it yielded, or NULL (returned, or raised). */
static PyObject *
app_step(struct nw_cycle *cy, PyObject *value)
{
	PyObject *r;

	if (cy->native) {
		switch (iter_send(cy->app_iter, value, &r)) {
		case 1: /* PYGEN_NEXT */
			return r;
		case 0: /* PYGEN_RETURN: r is what it returned */
			Py_DECREF(r);
			return NULL;
		default:
			return NULL;
		}
	}
	if (value == Py_None)
		return PyIter_Next(cy->app_iter);
	return PyObject_CallMethodObjArgs(
	    cy->app_iter, nw_str.send, value, NULL);
}

static PyObject *
cycle_iternext(PyObject *self)
{
	struct nw_cycle *cy = (struct nw_cycle *)self;

	if (cy->finished)
		return NULL;
	if (cy->app_iter == NULL && cycle_call_app(cy) < 0)
		return cycle_stepped(cy, NULL);
	return cycle_stepped(cy, app_step(cy, Py_None));
}

static PyObject *
cycle_send_method(PyObject *self, PyObject *value)
{
	struct nw_cycle *cy = (struct nw_cycle *)self;

	if (value == Py_None || cy->app_iter == NULL)
		return cycle_iternext(self);
	if (cy->finished) {
		PyErr_SetNone(PyExc_StopIteration);
		return NULL;
	}
	return cycle_stepped(cy, app_step(cy, value));
}

static PyObject *
cycle_throw(PyObject *self, PyObject *args)
{
	struct nw_cycle *cy = (struct nw_cycle *)self;
	PyObject *meth, *r;

	if (cy->finished) {
		nw_raise_thrown(args);
		return NULL;
	}
	if (cy->app_iter == NULL) {
		/* thrown in before the app ever ran */
		nw_raise_thrown(args);
		return cycle_stepped(cy, NULL);
	}
	if ((meth = PyObject_GetAttr(cy->app_iter, nw_str.throw)) == NULL)
		return cycle_stepped(cy, NULL);
	r = PyObject_CallObject(meth, args);
	Py_DECREF(meth);
	return cycle_stepped(cy, r);
}

static PyObject *
cycle_close(PyObject *self, PyObject *unused)
{
	struct nw_cycle *cy = (struct nw_cycle *)self;
	PyObject *r;

	if (cy->finished)
		Py_RETURN_NONE;
	if (cy->app_iter != NULL) {
		r = PyObject_CallMethodObjArgs(
		    cy->app_iter, nw_str.close, NULL);
		if (r == NULL)
			return NULL;
		Py_DECREF(r);
	}
	Py_INCREF(cy);
	cycle_finish(cy, FINISH_CANCELLED);
	Py_DECREF(cy);
	Py_RETURN_NONE;
}

static PyObject *
cycle_await(PyObject *self)
{
	Py_INCREF(self);
	return self;
}

static void
cycle_dealloc(PyObject *self)
{
	struct nw_cycle *cy = (struct nw_cycle *)self;
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(cy->scope);
	Py_XDECREF(cy->app_iter);
	Py_XDECREF(cy->task);
	Py_XDECREF(cy->waiters);
	Py_XDECREF(cy->drain);
	Py_XDECREF(cy->server);
	nw_buf_free(&cy->body);
	nw_buf_free(&cy->head);
	nw_ws_free(cy);
	PyObject_Free(self);
	Py_DECREF(tp);
}

static PyMethodDef cycle_methods[] = {
    {"send", cycle_send_method, METH_O, NULL},
    {"throw", cycle_throw, METH_VARARGS, NULL},
    {"close", cycle_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot cycle_slots[] = {
    {Py_tp_dealloc, cycle_dealloc},
    {Py_tp_iter, cycle_await},
    {Py_tp_iternext, cycle_iternext},
    {Py_am_await, cycle_await},
    {Py_tp_methods, cycle_methods},
    {Py_tp_doc, "one ASGI HTTP request: the coroutine of its task"},
    {0, NULL},
};

static PyType_Spec cycle_spec = {
    "narwhal_worker._http.ASGICycle",
    sizeof(struct nw_cycle),
    0,
    Py_TPFLAGS_DEFAULT,
    cycle_slots,
};

/* The server's list of running cycles, for quit(). */
struct nw_cycle *
nw_cycle_next(const struct nw_cycle *cy)
{
	return cy->next;
}

/* quit(): the app's task is cancelled, its connection is gone already. */
void
nw_cycle_cancel(struct nw_cycle *cy)
{
	PyObject *r;

	if (cy->task == NULL)
		return;
	r = PyObject_CallMethodObjArgs(cy->task, nw_str.cancel, NULL);
	if (r == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
}

/* A request head is complete: its cycle and task start. */
int
nw_cycle_start(struct nw_asgi *s, struct nw_conn *c, struct nw_ws *ws)
{
	struct nw_cycle *cy;
	PyObject *task;

	cy = PyObject_New(struct nw_cycle, (PyTypeObject *)cycle_type);
	if (cy == NULL) {
		nw_ws_discard(ws);
		return -1;
	}
	memset((char *)cy + sizeof(PyObject), 0, sizeof *cy - sizeof(PyObject));
	cy->ws = ws; /* the cycle's from now on, whatever happens */
	cy->srv = s;
	cy->server = s->self;
	Py_INCREF(cy->server);
	cy->conn = c;
	cy->content_length = -1;
	cy->is_head = c->req.is_head;
	cy->minor = c->req.minor;
	cy->keep_alive = c->req.keep_alive;
	cy->expect_continue = c->req.expect_continue;
	cy->body_done = c->body_done;
	cy->line_len = c->req.line.len < sizeof cy->line ? (int)c->req.line.len
	                                                 : (int)sizeof cy->line;
	memcpy(cy->line, c->in.data + c->rpos + c->req.line.off,
	    (size_t)cy->line_len);
	if ((cy->scope = nw_scope_build(s, c)) == NULL ||
	    (ws != NULL && nw_ws_scope(s, c, cy->scope) < 0)) {
		Py_DECREF(cy);
		return -1;
	}
	task = PyObject_CallFunctionObjArgs(s->create_task, cy, NULL);
	if (task == NULL) {
		Py_DECREF(cy);
		return -1;
	}
	cy->task = task;
	/* the server's list holds one reference, the connection another */
	cy->linked = true;
	cy->next = s->cycles;
	if (s->cycles)
		s->cycles->prev = cy;
	s->cycles = cy;
	s->ncycles++;
	Py_INCREF(cy);
	NW_ASGI_CONN(c)->cycle = cy;
	return 0;
}

/* The strings, the scope's caches, the Wait and Cycle types. */
int
nw_cycle_init(PyObject *module)
{
	PyObject *types;

	if (NW_PY_INTERN(interned) < 0)
		return -1;
	if ((nw_str.empty = PyBytes_FromStringAndSize("", 0)) == NULL)
		return -1;
	if (nw_scope_init() < 0 || nw_wait_init() < 0 || nw_ws_init(module) < 0)
		return -1;
	*(void **)&iter_send = dlsym(RTLD_DEFAULT, "PyIter_Send");
	if ((types = PyImport_ImportModule("types")) == NULL)
		return -1;
	coro_type = PyObject_GetAttrString(types, "CoroutineType");
	Py_DECREF(types);
	if (coro_type == NULL)
		return -1;
	cycle_type = PyType_FromSpec(&cycle_spec);
	return cycle_type ? 0 : -1;
}
