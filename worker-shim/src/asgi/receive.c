/*
 * receive.c: ASGI receive(), and what the server tells a request about
 * its input.
 *
 * The body arrives from the engine (nw_cycle_body) and waits here until
 * receive() takes it as http.request messages; once the response is done
 * or the client is gone, receive() says http.disconnect. 100 Continue goes
 * out when the app first asks for a body it was promised.
 */
#include "asgi/asgi.h"

static PyObject *
disconnect_message(void)
{
	PyObject *d = PyDict_New();

	if (d != NULL &&
	    PyDict_SetItem(d, nw_str.type, nw_str.http_disconnect) < 0)
		Py_CLEAR(d);
	return d;
}

/* The next http.request message: everything buffered so far. */
static PyObject *
request_message(struct nw_cycle *cy)
{
	PyObject *d = PyDict_New(), *body;

	if (d == NULL)
		return NULL;
	if (cy->body.len == 0) {
		body = nw_str.empty;
		Py_INCREF(body);
	} else {
		body = PyBytes_FromStringAndSize(
		    cy->body.data, (Py_ssize_t)cy->body.len);
	}
	if (body == NULL ||
	    PyDict_SetItem(d, nw_str.type, nw_str.http_request) < 0 ||
	    PyDict_SetItem(d, nw_str.body, body) < 0 ||
	    PyDict_SetItem(
	        d, nw_str.more_body, cy->body_done ? Py_False : Py_True) < 0) {
		Py_XDECREF(body);
		Py_DECREF(d);
		return NULL;
	}
	Py_DECREF(body);
	cy->body.len = 0;
	if (cy->body.cap > NW_BODY_HIGH)
		nw_buf_free(&cy->body);
	if (cy->body_done)
		cy->body_final = true;
	if (cy->conn != NULL && cy->conn->read_paused)
		nw_conn_resume_reading(cy->conn);
	return d;
}

/* Pops the oldest receive() future, or NULL. */
PyObject *
nw_cycle_waiter_pop(struct nw_cycle *cy)
{
	PyObject *f;

	if (cy->waiters == NULL || PyList_Size(cy->waiters) == 0)
		return NULL;
	f = PyList_GetItem(cy->waiters, 0);
	Py_INCREF(f);
	if (PyList_SetSlice(cy->waiters, 0, 1, NULL) < 0) {
		PyErr_Clear();
		Py_CLEAR(cy->waiters);
	}
	return f;
}

static void
wake_all_disconnected(struct nw_cycle *cy)
{
	PyObject *f;

	while ((f = nw_cycle_waiter_pop(cy)) != NULL) {
		PyObject *msg = disconnect_message();

		if (msg == NULL)
			PyErr_WriteUnraisable(f);
		else
			nw_future_resolve(f, msg);
		Py_XDECREF(msg);
		Py_DECREF(f);
	}
	if (cy->drain != NULL) {
		PyObject *d = cy->drain;

		cy->drain = NULL;
		nw_future_resolve(d, Py_None);
		Py_DECREF(d);
	}
}

/* Body bytes from the connection (done: the last); they wake receive(). */
void
nw_cycle_body(struct nw_cycle *cy, const char *p, size_t n, bool done)
{
	PyObject *f, *msg;

	if (n > 0 && nw_buf_append(&cy->body, p, n) < 0) {
		PyErr_NoMemory();
		PyErr_WriteUnraisable(NULL);
		return;
	}
	cy->body_done = done;
	if (cy->body_final || (cy->body.len == 0 && !done))
		return;
	if ((f = nw_cycle_waiter_pop(cy)) == NULL)
		return;
	if ((msg = request_message(cy)) == NULL)
		PyErr_WriteUnraisable(f);
	else
		nw_future_resolve(f, msg);
	Py_XDECREF(msg);
	Py_DECREF(f);
}

/* The client is gone: receive() says so, send() is ignored from now on. */
void
nw_cycle_disconnected(struct nw_cycle *cy)
{
	if (cy->ws != NULL) {
		nw_ws_lost(cy);
		return;
	}
	cy->conn = NULL;
	cy->disconnected = true;
	wake_all_disconnected(cy);
}

/* The response is no longer the connection's business (done or lost). */
void
nw_cycle_detach(struct nw_cycle *cy)
{
	if (cy->ws != NULL) {
		nw_ws_lost(cy);
		return;
	}
	cy->conn = NULL;
	/* receive() after the response: http.disconnect, as uvicorn does */
	wake_all_disconnected(cy);
}

/* Body bytes waiting for receive(): reading pauses past a limit. */
size_t
nw_cycle_buffered(const struct nw_cycle *cy)
{
	return cy->body.len;
}

/* ASGI receive(): a Wait for the next message. */
PyObject *
nw_cycle_receive(PyObject *self, PyObject *unused)
{
	struct nw_cycle *cy = (struct nw_cycle *)self;
	PyObject *fut, *w;

	if (cy->ws != NULL)
		return nw_ws_receive(cy);
	if (cy->disconnected || cy->complete || cy->conn == NULL)
		return nw_wait_new(disconnect_message(), NULL);
	if (!cy->body_final && (cy->body.len > 0 || cy->body_done)) {
		PyObject *msg = request_message(cy);

		return msg ? nw_wait_new(msg, NULL) : NULL;
	}
	if (!cy->body_final && cy->expect_continue && !cy->continue_sent &&
	    !cy->started) {
		cy->continue_sent = true;
		if (nw_conn_send_continue(cy->conn) < 0)
			return nw_wait_new(disconnect_message(), NULL);
	}
	if (cy->waiters == NULL && (cy->waiters = PyList_New(0)) == NULL)
		return NULL;
	if ((w = nw_wait_future(cy, &fut)) == NULL)
		return NULL;
	if (PyList_Append(cy->waiters, fut) < 0) {
		Py_DECREF(fut);
		Py_DECREF(w);
		return NULL;
	}
	Py_DECREF(fut);
	return w;
}
