/*
 * send.c: ASGI send(): http.response.start and http.response.body.
 *
 * It checks the app's messages and headers (with the HTTP core's header
 * check), frames the body (Content-Length when the first body message is
 * the last, chunked otherwise, nothing for HEAD, 204 and 304), adds
 * Connection and Date, and hands the bytes to the engine; when the
 * client reads slower than the app writes, send() waits.
 */
#include <stdio.h>
#include <string.h>

#include "asgi/asgi.h"

/* Reason phrases for the status line; an unknown status gets none. */
static const struct {
	int status;
	const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {102, "Processing"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {207, "Multi-Status"},
    {208, "Already Reported"},
    {226, "IM Used"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {418, "I'm a Teapot"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Entity"},
    {423, "Locked"},
    {424, "Failed Dependency"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {506, "Variant Also Negotiates"},
    {507, "Insufficient Storage"},
    {508, "Loop Detected"},
    {510, "Not Extended"},
    {511, "Network Authentication Required"},
};

static const char *
reason_phrase(int status)
{
	size_t i;

	for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "";
}

/* Bytes of a header name or value: bytes, or (leniently) latin-1 str. */
static int
header_bytes(PyObject *o, const char **p, Py_ssize_t *n, PyObject **tmp)
{
	char *d;

	*tmp = NULL;
	if (PyUnicode_Check(o)) {
		if ((*tmp = PyUnicode_AsLatin1String(o)) == NULL)
			return -1;
		o = *tmp;
	}
	if (!PyBytes_Check(o)) {
		PyErr_Format(PyExc_TypeError,
		    "response header names and values must be bytes, not %R",
		    (PyObject *)Py_TYPE(o));
		return -1;
	}
	if (PyBytes_AsStringAndSize(o, &d, n) < 0)
		return -1;
	*p = d;
	return 0;
}

/* Checks one header, notes what the server must know, appends it. */
static int
add_header(struct nw_cycle *cy, PyObject *name, PyObject *value)
{
	PyObject *tmpn = NULL, *tmpv = NULL;
	const char *n, *v;
	Py_ssize_t nl, vl;
	struct nw_head_info info;
	int rc = -1;

	if (header_bytes(name, &n, &nl, &tmpn) < 0 ||
	    header_bytes(value, &v, &vl, &tmpv) < 0)
		goto out;
	info.content_length = cy->content_length;
	info.app_close = cy->app_close;
	info.has_date = cy->has_date;
	rc = nw_head_add_py(&cy->head, name, n, (size_t)nl, value, v,
	    (size_t)vl, &info);
	cy->content_length = info.content_length;
	cy->app_close = info.app_close;
	cy->has_date = info.has_date;
out:
	Py_XDECREF(tmpn);
	Py_XDECREF(tmpv);
	return rc;
}

int
nw_cycle_add_headers(struct nw_cycle *cy, PyObject *headers)
{
	PyObject *it, *item;

	if (headers == NULL || headers == Py_None)
		return 0;
	if ((it = PyObject_GetIter(headers)) == NULL)
		return -1;
	while ((item = PyIter_Next(it)) != NULL) {
		PyObject *name = NULL, *value = NULL;
		int rc = -1;

		if (PyTuple_Check(item) && PyTuple_Size(item) == 2) {
			name = PyTuple_GetItem(item, 0);
			value = PyTuple_GetItem(item, 1);
			Py_INCREF(name);
			Py_INCREF(value);
		} else if (PySequence_Check(item) &&
		    PySequence_Size(item) == 2) {
			name = PySequence_GetItem(item, 0);
			value = PySequence_GetItem(item, 1);
		} else {
			PyErr_Clear();
			PyErr_Format(PyExc_TypeError,
			    "each response header must be a [name, value] "
			    "pair, not %R",
			    item);
		}
		if (name != NULL && value != NULL)
			rc = add_header(cy, name, value);
		Py_XDECREF(name);
		Py_XDECREF(value);
		Py_DECREF(item);
		if (rc < 0) {
			Py_DECREF(it);
			return -1;
		}
	}
	Py_DECREF(it);
	return PyErr_Occurred() ? -1 : 0;
}

/* Adds framing, Connection and Date to the app's head, and the blank line. */
static int
head_finish(struct nw_cycle *cy, int64_t known)
{
	struct nw_asgi *s = cy->srv;
	struct nw_head_info info = {
	    cy->content_length, cy->app_close, cy->has_date};
	struct nw_head_end e = {
	    .status = cy->status,
	    .minor = cy->minor,
	    .is_head = cy->is_head,
	    .keep = cy->keep_alive && nw_engine_keeps_alive(&s->e),
	    .known = known,
	    /* a client waiting for 100 Continue will not send the body now */
	    .close = cy->close || (cy->expect_continue && !cy->continue_sent &&
	                              !cy->body_done),
	};

	if (!cy->has_date)
		nw_clock_update(&s->e.clock);
	if (nw_head_finish(&cy->head, &info, &e, &s->e.clock) < 0) {
		PyErr_NoMemory();
		return -1;
	}
	cy->chunked = cy->chunked || e.chunked;
	cy->close = e.close;
	return 0;
}

/* The response is complete: log it, and give the connection back. */
static void
response_done(struct nw_cycle *cy)
{
	struct nw_conn *c = cy->conn;
	bool close = cy->close;

	cy->complete = true;
	if (cy->content_length >= 0 && !cy->no_body &&
	    cy->sent < (uint64_t)cy->content_length)
		close = true; /* the client still waits for the rest */
	if (c == NULL)
		return;
	nw_conn_log_answer(c, cy->status, cy->sent, cy->head.data,
	    cy->head.len);
	nw_cycle_detach(cy);
	nw_asgi_conn_done(c, close);
}

/* Sends body bytes (the head first if it has not gone); more: not the end. */
static int
send_body(struct nw_cycle *cy, const char *p, size_t n, bool more)
{
	struct iovec iov[5];
	char size_line[24];
	int cnt = 0;

	if (cy->content_length >= 0 && !cy->no_body &&
	    (uint64_t)cy->content_length - cy->sent < n)
		n = (size_t)((uint64_t)cy->content_length - cy->sent);
	if (!cy->head_sent) {
		int64_t known = -1;

		if (!more && !(cy->is_head && n == 0))
			known = (int64_t)n;
		if (head_finish(cy, known) < 0)
			return -1;
		iov[cnt].iov_base = cy->head.data;
		iov[cnt++].iov_len = cy->head.len;
		cy->head_sent = true;
	}
	if (!cy->no_body) {
		if (n > 0) {
			if (cy->chunked) {
				iov[cnt].iov_base = size_line;
				iov[cnt++].iov_len = (size_t)snprintf(
				    size_line, sizeof size_line, "%zx\r\n", n);
			}
			iov[cnt].iov_base = (void *)p;
			iov[cnt++].iov_len = n;
			if (cy->chunked) {
				iov[cnt].iov_base = "\r\n";
				iov[cnt++].iov_len = 2;
			}
			cy->sent += n;
		}
		if (!more && cy->chunked) {
			iov[cnt].iov_base = "0\r\n\r\n";
			iov[cnt++].iov_len = 5;
		}
	}
	if (cnt > 0 && cy->conn != NULL &&
	    nw_conn_write(cy->conn, iov, cnt) < 0)
		return 0; /* the client is gone: nw_cycle_disconnected ran */
	if (!more)
		response_done(cy);
	return 0;
}

static PyObject *
runtime_error(const char *fmt, PyObject *type)
{
	PyErr_Format(PyExc_RuntimeError, fmt, type);
	return NULL;
}

PyObject *
nw_cycle_send_start(struct nw_cycle *cy, PyObject *msg, PyObject *type)
{
	PyObject *status, *headers;
	const char *reason;
	long code;
	int rc;

	if (cy->started)
		return runtime_error("Expected ASGI message "
		                     "'http.response.body', but got %R.",
		    type);
	if ((status = nw_py_item(msg, nw_str.status)) == NULL) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_ValueError,
			    "http.response.start without a status");
		return NULL;
	}
	code = PyLong_AsLong(status);
	Py_DECREF(status);
	if (code == -1 && PyErr_Occurred())
		return NULL;
	if (code < 100 || code > 999) {
		PyErr_Format(PyExc_ValueError, "invalid status %ld", code);
		return NULL;
	}
	cy->status = (int)code;
	cy->head.len = 0;
	cy->content_length = -1;
	reason = reason_phrase(cy->status);
	if (nw_buf_append(&cy->head, "HTTP/1.1 ", 9) < 0 ||
	    nw_buf_appendu(&cy->head, (uint64_t)code) < 0 ||
	    nw_buf_append(&cy->head, " ", 1) < 0 ||
	    nw_buf_appendstr(&cy->head, reason) < 0 ||
	    nw_buf_append(&cy->head, "\r\n", 2) < 0)
		return PyErr_NoMemory();
	headers = nw_py_item(msg, nw_str.headers);
	if (headers == NULL && PyErr_Occurred())
		return NULL;
	rc = nw_cycle_add_headers(cy, headers);
	Py_XDECREF(headers);
	if (rc < 0)
		return NULL;
	cy->no_body = cy->is_head || cy->status < 200 || cy->status == 204 ||
	    cy->status == 304;
	cy->started = true;
	return nw_wait_none();
}

PyObject *
nw_cycle_send_body(struct nw_cycle *cy, PyObject *msg, PyObject *type)
{
	PyObject *body, *more_o, *tmp = NULL;
	const char *p = "";
	Py_ssize_t n = 0;
	int more;

	if (!cy->started)
		return runtime_error("Expected ASGI message "
		                     "'http.response.start', but got %R.",
		    type);
	if (cy->complete)
		return runtime_error("Unexpected ASGI message %R sent, after "
		                     "response already completed.",
		    type);
	if ((more_o = nw_py_item(msg, nw_str.more_body)) == NULL) {
		if (PyErr_Occurred())
			return NULL;
		more = 0;
	} else {
		more = PyObject_IsTrue(more_o);
		Py_DECREF(more_o);
		if (more < 0)
			return NULL;
	}
	if ((body = nw_py_item(msg, nw_str.body)) == NULL && PyErr_Occurred())
		return NULL;
	if (body != NULL && body != Py_None) {
		if (PyBytes_Check(body)) {
			char *d;

			if (PyBytes_AsStringAndSize(body, &d, &n) < 0)
				goto fail;
			p = d;
		} else if (PyByteArray_Check(body)) {
			p = PyByteArray_AsString(body);
			n = PyByteArray_Size(body);
		} else {
			char *d;

			/* memoryview and the like */
			if ((tmp = PyBytes_FromObject(body)) == NULL ||
			    PyBytes_AsStringAndSize(tmp, &d, &n) < 0)
				goto fail;
			p = d;
		}
	}
	if (cy->disconnected) {
		/* nobody to send it to; the app learns it from receive() */
		if (!more)
			cy->complete = true;
	} else if (send_body(cy, p, (size_t)n, more != 0) < 0) {
		goto fail;
	}
	Py_XDECREF(body);
	Py_XDECREF(tmp);
	if (more && cy->conn != NULL &&
	    nw_conn_pending(cy->conn) > NW_WRITE_HIGH) {
		PyObject *fut, *w;

		/* flow control: wait until the client has read some */
		if ((w = nw_wait_future(cy, &fut)) == NULL)
			return NULL;
		Py_XDECREF(cy->drain);
		cy->drain = fut;
		return w;
	}
	return nw_wait_none();
fail:
	Py_XDECREF(body);
	Py_XDECREF(tmp);
	return NULL;
}

/* ASGI send(message): a Wait, done unless the client has to catch up. */
PyObject *
nw_cycle_send(PyObject *self, PyObject *msg)
{
	struct nw_cycle *cy = (struct nw_cycle *)self;
	PyObject *type, *r;

	if (cy->ws != NULL)
		return nw_ws_send(cy, msg);
	if ((type = nw_py_item(msg, nw_str.type)) == NULL) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_ValueError,
			    "an ASGI message needs a \"type\"");
		return NULL;
	}
	if (!PyUnicode_Check(type))
		r = runtime_error("Unexpected ASGI message type %R.", type);
	else if (PyUnicode_CompareWithASCIIString(type, "http.response.body") ==
	    0)
		r = nw_cycle_send_body(cy, msg, type);
	else if (PyUnicode_CompareWithASCIIString(
	             type, "http.response.start") == 0)
		r = nw_cycle_send_start(cy, msg, type);
	else
		r = runtime_error("Unexpected ASGI message type %R.", type);
	Py_DECREF(type);
	return r;
}

/* The client read enough of what send() queued: a waiting send() returns. */
void
nw_cycle_drained(struct nw_cycle *cy)
{
	PyObject *d = cy->drain;

	if (d == NULL)
		return;
	cy->drain = NULL;
	nw_future_resolve(d, Py_None);
	Py_DECREF(d);
}

/* The status line went out: an error can no longer be answered. */
bool
nw_cycle_head_sent(const struct nw_cycle *cy)
{
	return cy->head_sent;
}
