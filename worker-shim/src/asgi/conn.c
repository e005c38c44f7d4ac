/*
 * conn.c: the ASGI driver's side of a connection, the callbacks the engine
 * calls.
 *
 * A parsed request becomes a Cycle (cycle.c) whose task runs the app; its
 * body is passed on as it arrives (reading pauses while receive() lags);
 * a connection that is lost, or whose body breaks the rules, tells its
 * Cycle; an upgrade to WebSocket goes to ws.c, and so do the bytes after
 * it. Reading, parsing, keep-alive and closing are the engine's.
 */
#include <string.h>
#include <strings.h>

#include "asgi/asgi.h"

/* The head is parsed: the request's Cycle and task start. */
static int
asgi_request(struct nw_conn *c)
{
	struct nw_asgi *s = NW_ASGI(c->engine);

	if (nw_ws_requested(c)) {
		if (nw_ws_start(s, c) < 0) {
			nw_py_error("cannot start the WebSocket");
			return -1;
		}
		return 0;
	}
	s->batch_started++;
	if (nw_cycle_start(s, c, NULL) < 0) {
		nw_py_error("cannot start the request");
		return -1;
	}
	return 0;
}

static int
asgi_body(struct nw_conn *c, const char *p, size_t n, bool done)
{
	struct nw_cycle *cy = NW_ASGI_CONN(c)->cycle;

	if (cy == NULL)
		return 0;
	nw_cycle_body(cy, p, n, done);
	if (!done && nw_cycle_buffered(cy) > NW_BODY_HIGH)
		nw_conn_pause_reading(c);
	return 0;
}

/* The connection lets go of its Cycle; lost: the app sees a disconnect. */
static struct nw_cycle *
release_cycle(struct nw_conn *c, bool lost)
{
	struct nw_asgi_conn *ac = NW_ASGI_CONN(c);
	struct nw_cycle *cy = ac->cycle;

	if (cy == NULL)
		return NULL;
	ac->cycle = NULL;
	if (lost)
		nw_cycle_disconnected(cy);
	Py_DECREF(cy);
	return cy;
}

/* The body broke the rules or stalled: the app sees a disconnect. */
static bool
asgi_abandon(struct nw_conn *c)
{
	struct nw_cycle *cy = NW_ASGI_CONN(c)->cycle;
	bool answered = cy != NULL && nw_cycle_head_sent(cy);

	release_cycle(c, true);
	return answered;
}

static void
asgi_drained(struct nw_conn *c)
{
	struct nw_cycle *cy = NW_ASGI_CONN(c)->cycle;

	if (cy != NULL)
		nw_cycle_drained(cy);
}

static void
asgi_closed(struct nw_conn *c)
{
	struct nw_asgi *s = NW_ASGI(c->engine);

	release_cycle(c, true);
	Py_CLEAR(NW_ASGI_CONN(c)->client);
	if (s->e.stopping)
		nw_asgi_check_drained(s);
}

/* The Cycle's answer is complete (maybe not yet sent). */
void
nw_asgi_conn_done(struct nw_conn *c, bool close)
{
	release_cycle(c, false);
	nw_conn_response_done(c, close);
}

/* The half-answered response of a failed app: only closing tells. */
void
nw_asgi_conn_abort(struct nw_conn *c)
{
	release_cycle(c, false);
	nw_conn_abort(c);
}

/* Pipelined requests start from the loop, in a context of their own. */
static void
asgi_schedule(struct nw_engine *e)
{
	struct nw_asgi *s = NW_ASGI(e);
	PyObject *args, *kw, *r;

	if (s->runq_scheduled)
		return;
	/*
	 * A task inherits the context current at create_task: started from
	 * inside the previous request's send(), the next request would see
	 * that request's contextvars.
	 */
	args = PyTuple_Pack(1, s->on_runq);
	kw = Py_BuildValue("{sO}", "context", s->context);
	r = args && kw ? PyObject_Call(s->call_soon, args, kw) : NULL;
	Py_XDECREF(args);
	Py_XDECREF(kw);
	if (r == NULL) {
		nw_py_error("cannot schedule a pipelined request");
		return;
	}
	Py_DECREF(r);
	s->runq_scheduled = true;
}

/* The loop timer fires at the engine's next deadline (or a little after). */
static void
asgi_arm(struct nw_engine *e, int64_t next)
{
	struct nw_asgi *s = NW_ASGI(e);
	PyObject *delay, *h;

	if (s->tick_handle != NULL) {
		if (s->tick_due <= next)
			return;
		h = PyObject_CallMethod(s->tick_handle, "cancel", NULL);
		Py_XDECREF(h);
		Py_CLEAR(s->tick_handle);
	}
	delay = PyFloat_FromDouble(next > e->clock.mono_ms
	        ? (double)(next - e->clock.mono_ms) / 1000.0 + 0.005
	        : 0.0);
	if (delay == NULL) {
		nw_py_error("cannot arm the timer");
		return;
	}
	h = PyObject_CallFunctionObjArgs(
	    s->call_later, delay, s->on_tick, NULL);
	Py_DECREF(delay);
	if (h == NULL) {
		nw_py_error("cannot arm the timer");
		return;
	}
	s->tick_handle = h;
	s->tick_due = next;
}

/* The master is gone: asgi.py begins the graceful stop. */
static void
asgi_stop_requested(struct nw_engine *e)
{
	struct nw_asgi *s = NW_ASGI(e);
	PyObject *r;

	if (s->on_master_gone == NULL)
		return;
	if ((r = PyObject_CallObject(s->on_master_gone, NULL)) == NULL)
		nw_py_error("cannot begin the stop");
	Py_XDECREF(r);
}

/* Access log lines are written once per loop turn, not once per request. */
static void
asgi_log_pending(struct nw_engine *e)
{
	struct nw_asgi *s = NW_ASGI(e);
	PyObject *r;

	if (s->alog_flush_scheduled)
		return;
	r = PyObject_CallFunctionObjArgs(s->call_soon, s->on_flush, NULL);
	if (r == NULL) {
		nw_py_error("cannot schedule the access log");
		nw_engine_alog_flush(e);
		return;
	}
	Py_DECREF(r);
	s->alog_flush_scheduled = true;
}

const struct nw_driver nw_asgi_driver = {
    .conn_size = sizeof(struct nw_asgi_conn),
    .whole_body = false,
    .auto_continue = false,
    .request = asgi_request,
    .body = asgi_body,
    .abandon = asgi_abandon,
    .drained = asgi_drained,
    .upgraded = nw_ws_upgraded,
    .closed = asgi_closed,
    .schedule = asgi_schedule,
    .arm = asgi_arm,
    .stop_requested = asgi_stop_requested,
    .log_pending = asgi_log_pending,
};
