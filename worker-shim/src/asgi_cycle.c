/*
 * asgi_cycle.c: one HTTP request through an ASGI 3 application.
 *
 * A Cycle builds the scope and is itself the coroutine its task runs: it
 * calls the app in the task's first step, passes the app's awaits through
 * and sees it return or raise. receive() and send() return Waits, which
 * answer at once or wait on a future (a body still arriving, a full
 * socket). Framing, header checks and the 500 after a failure live here;
 * the socket is asgi_server.c's.
 */
#include <string.h>
#include <strings.h>

#include "asgi.h"

typedef struct nw_cycle {
	PyObject_HEAD struct nw_aserver *srv;
	PyObject *server;      /* the ASGIServer: srv lives as long as it */
	struct nw_aconn *conn; /* NULL once the response is done or lost */
	PyObject *scope;       /* until the app is called */
	PyObject *app_iter;    /* the app's awaitable, being driven */
	PyObject *task;        /* while the app runs */
	struct nw_cycle *prev, *next; /* the server's running cycles */
	bool linked;
	bool finished;  /* the app returned or raised */
	char line[120]; /* the request line (its start), for error messages */
	int line_len;

	/* the request */
	struct nw_buf body; /* arrived, not yet given to receive() */
	bool body_done;     /* all of it arrived */
	bool body_final;    /* receive() said more_body False */
	bool expect_continue;
	bool continue_sent;
	bool disconnected;
	bool is_head;
	bool keep_alive; /* the request allows it */
	int minor;
	PyObject *waiters; /* receive() futures, a list, or NULL */
	PyObject *drain;   /* the future send() waits on, or NULL */

	/* the response */
	bool started;
	bool head_sent;
	bool complete;
	bool chunked;
	bool no_body;
	bool close;
	bool app_close;
	bool has_date;
	int status;
	int64_t content_length; /* the app's, or -1 */
	uint64_t sent;          /* body bytes sent */
	struct nw_buf head;
} CycleObject;

/*
 * A Wait: what receive() and send() return. It has a result already, or a
 * future to wait for; either way it is a coroutine by asyncio's rules
 * (send, throw, close, __await__), so create_task(receive()) works too.
 */
typedef struct {
	PyObject_HEAD PyObject *value; /* the result, if there is no future */
	PyObject *future;
	bool yielded;
} WaitObject;

static PyObject *cycle_type, *wait_type;
static PyObject *wait_none; /* a Wait for None, shared: it has no state */

static PyObject *s_type, *s_http, *s_asgi, *s_version, *s_spec_version,
    *s_http_version, *s_method, *s_scheme, *s_path, *s_raw_path,
    *s_query_string, *s_root_path, *s_headers, *s_client, *s_server, *s_state,
    *s_body, *s_more_body, *s_status, *s_http_request, *s_http_disconnect,
    *s_1_0, *s_1_1, *s_3_0, *s_2_3, *s_https, *s___await__, *s_send, *s_throw,
    *s_close, *s_done, *s_set_result, *s_result, *s_blocking, *s_cancel,
    *b_empty;

static const struct {
	PyObject **p;
	const char *s;
} interned[] = {
    {&s_type, "type"},
    {&s_http, "http"},
    {&s_asgi, "asgi"},
    {&s_version, "version"},
    {&s_spec_version, "spec_version"},
    {&s_http_version, "http_version"},
    {&s_method, "method"},
    {&s_scheme, "scheme"},
    {&s_path, "path"},
    {&s_raw_path, "raw_path"},
    {&s_query_string, "query_string"},
    {&s_root_path, "root_path"},
    {&s_headers, "headers"},
    {&s_client, "client"},
    {&s_server, "server"},
    {&s_state, "state"},
    {&s_body, "body"},
    {&s_more_body, "more_body"},
    {&s_status, "status"},
    {&s_http_request, "http.request"},
    {&s_http_disconnect, "http.disconnect"},
    {&s_1_0, "1.0"},
    {&s_1_1, "1.1"},
    {&s_3_0, "3.0"},
    {&s_2_3, "2.3"},
    {&s_https, "https"},
    {&s___await__, "__await__"},
    {&s_send, "send"},
    {&s_throw, "throw"},
    {&s_close, "close"},
    {&s_done, "done"},
    {&s_set_result, "set_result"},
    {&s_result, "result"},
    {&s_blocking, "_asyncio_future_blocking"},
    {&s_cancel, "cancel"},
};

static const char *const method_names[] = {
    "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"};
static PyObject *methods[sizeof method_names / sizeof method_names[0]];

/* Lowercased header names, and short header values, as bytes. */
#define NAMECACHE_SIZE 256
#define NAMECACHE_MAX 48
static struct {
	uint32_t hash;
	uint8_t len;
	char name[NAMECACHE_MAX]; /* lowercased */
	PyObject *bytes;
} namecache[NAMECACHE_SIZE];

#define VALCACHE_SIZE 512
#define VALCACHE_MAX 64
static struct {
	uint8_t len;
	char data[VALCACHE_MAX];
	PyObject *bytes;
} valcache[VALCACHE_SIZE];

static inline uint32_t
hash_bytes(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

/* Waits */

static PyObject *
wait_new(PyObject *value, PyObject *future)
{
	WaitObject *w = PyObject_New(WaitObject, (PyTypeObject *)wait_type);

	if (w == NULL) {
		Py_XDECREF(value);
		Py_XDECREF(future);
		return NULL;
	}
	w->value = value; /* both stolen */
	w->future = future;
	w->yielded = false;
	return (PyObject *)w;
}

static void
wait_dealloc(PyObject *self)
{
	WaitObject *w = (WaitObject *)self;
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(w->value);
	Py_XDECREF(w->future);
	PyObject_Free(self);
	Py_DECREF(tp);
}

/* Ends the await with value as its result (StopIteration(value)). */
static PyObject *
stop_with(PyObject *value)
{
	if (value == Py_None) {
		Py_DECREF(value);
		return NULL; /* no exception: the result is None */
	}
	if (PyTuple_Check(value) || PyExceptionInstance_Check(value)) {
		PyObject *e = PyObject_CallFunctionObjArgs(
		    PyExc_StopIteration, value, NULL);

		if (e != NULL) {
			PyErr_SetObject(PyExc_StopIteration, e);
			Py_DECREF(e);
		}
	} else {
		PyErr_SetObject(PyExc_StopIteration, value);
	}
	Py_DECREF(value);
	return NULL;
}

static PyObject *
wait_iternext(PyObject *self)
{
	WaitObject *w = (WaitObject *)self;
	PyObject *r, *v;

	if (w->future == NULL) {
		if (w->value == NULL)
			return NULL;
		v = w->value;
		w->value = NULL;
		return stop_with(v);
	}
	if (!w->yielded) {
		if ((r = PyObject_CallMethodObjArgs(w->future, s_done, NULL)) ==
		    NULL)
			return NULL;
		v = r;
		if (v == Py_False) {
			Py_DECREF(v);
			/* as Future.__await__ does: the task waits on it */
			if (PyObject_SetAttr(w->future, s_blocking, Py_True) <
			    0)
				return NULL;
			w->yielded = true;
			Py_INCREF(w->future);
			return w->future;
		}
		Py_DECREF(v);
	}
	r = PyObject_CallMethodObjArgs(w->future, s_result, NULL);
	Py_CLEAR(w->future);
	if (r == NULL)
		return NULL;
	return stop_with(r);
}

static PyObject *
wait_await(PyObject *self)
{
	Py_INCREF(self);
	return self;
}

static PyObject *
wait_send(PyObject *self, PyObject *arg)
{
	return wait_iternext(self);
}

/* throw(exc) or throw(type[, value[, tb]]): raised where the await is. */
static PyObject *
raise_thrown(PyObject *args)
{
	PyObject *typ = NULL, *val = NULL, *tb = NULL;

	if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb))
		return NULL;
	if (PyExceptionInstance_Check(typ)) {
		PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
	} else if (PyExceptionClass_Check(typ)) {
		if (val != NULL && val != Py_None)
			PyErr_SetObject(typ, val);
		else
			PyErr_SetNone(typ);
	} else {
		PyErr_SetString(PyExc_TypeError,
		    "exceptions must be classes or instances deriving from "
		    "BaseException");
	}
	return NULL;
}

static PyObject *
wait_throw(PyObject *self, PyObject *args)
{
	WaitObject *w = (WaitObject *)self;

	Py_CLEAR(w->value);
	Py_CLEAR(w->future);
	return raise_thrown(args);
}

static PyObject *
wait_close(PyObject *self, PyObject *unused)
{
	WaitObject *w = (WaitObject *)self;

	Py_CLEAR(w->value);
	Py_CLEAR(w->future);
	Py_RETURN_NONE;
}

static PyMethodDef wait_methods[] = {
    {"send", wait_send, METH_O, NULL},
    {"throw", wait_throw, METH_VARARGS, NULL},
    {"close", wait_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot wait_slots[] = {
    {Py_tp_dealloc, wait_dealloc},
    {Py_tp_iter, wait_await},
    {Py_tp_iternext, wait_iternext},
    {Py_am_await, wait_await},
    {Py_tp_methods, wait_methods},
    {Py_tp_doc, "what ASGI receive() and send() return: await it"},
    {0, NULL},
};

static PyType_Spec wait_spec = {
    "narwhal_worker._http.ASGIWait",
    sizeof(WaitObject),
    0,
    Py_TPFLAGS_DEFAULT,
    wait_slots,
};

/* A Wait on a new future of the loop; the future goes to *fut too. */
static PyObject *
wait_future(CycleObject *cy, PyObject **fut)
{
	PyObject *f =
	    PyObject_CallFunctionObjArgs(cy->srv->create_future, NULL);

	if (f == NULL)
		return NULL;
	Py_INCREF(f);
	*fut = f;
	return wait_new(NULL, f);
}

/* Resolves fut with value unless it is done (cancelled) already. */
static void
future_resolve(PyObject *fut, PyObject *value)
{
	PyObject *r = PyObject_CallMethodObjArgs(fut, s_done, NULL);

	if (r == Py_False)
		r = PyObject_CallMethodObjArgs(fut, s_set_result, value, NULL);
	if (r == NULL)
		PyErr_WriteUnraisable(fut);
	Py_XDECREF(r);
}

/* Messages */

static PyObject *
disconnect_message(void)
{
	PyObject *d = PyDict_New();

	if (d != NULL && PyDict_SetItem(d, s_type, s_http_disconnect) < 0)
		Py_CLEAR(d);
	return d;
}

/* The next http.request message: everything buffered so far. */
static PyObject *
request_message(CycleObject *cy)
{
	PyObject *d = PyDict_New(), *body;

	if (d == NULL)
		return NULL;
	if (cy->body.len == 0) {
		body = b_empty;
		Py_INCREF(body);
	} else {
		body = PyBytes_FromStringAndSize(
		    cy->body.data, (Py_ssize_t)cy->body.len);
	}
	if (body == NULL || PyDict_SetItem(d, s_type, s_http_request) < 0 ||
	    PyDict_SetItem(d, s_body, body) < 0 ||
	    PyDict_SetItem(d, s_more_body, cy->body_done ? Py_False : Py_True) <
	        0) {
		Py_XDECREF(body);
		Py_DECREF(d);
		return NULL;
	}
	Py_DECREF(body);
	cy->body.len = 0;
	if (cy->body.cap > NW_ASGI_BODY_HIGH)
		nw_buf_free(&cy->body);
	if (cy->body_done)
		cy->body_final = true;
	if (cy->conn != NULL && cy->conn->read_paused)
		nw_aconn_resume_reading(cy->conn);
	return d;
}

/* Pops the oldest receive() future, or NULL. */
static PyObject *
waiter_pop(CycleObject *cy)
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
wake_all_disconnected(CycleObject *cy)
{
	PyObject *f;

	while ((f = waiter_pop(cy)) != NULL) {
		PyObject *msg = disconnect_message();

		if (msg == NULL)
			PyErr_WriteUnraisable(f);
		else
			future_resolve(f, msg);
		Py_XDECREF(msg);
		Py_DECREF(f);
	}
	if (cy->drain != NULL) {
		PyObject *d = cy->drain;

		cy->drain = NULL;
		future_resolve(d, Py_None);
		Py_DECREF(d);
	}
}

/* Called by the server */

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
	if ((f = waiter_pop(cy)) == NULL)
		return;
	if ((msg = request_message(cy)) == NULL)
		PyErr_WriteUnraisable(f);
	else
		future_resolve(f, msg);
	Py_XDECREF(msg);
	Py_DECREF(f);
}

void
nw_cycle_disconnected(struct nw_cycle *cy)
{
	cy->conn = NULL;
	cy->disconnected = true;
	wake_all_disconnected(cy);
}

void
nw_cycle_drained(struct nw_cycle *cy)
{
	PyObject *d = cy->drain;

	if (d == NULL)
		return;
	cy->drain = NULL;
	future_resolve(d, Py_None);
	Py_DECREF(d);
}

bool
nw_cycle_head_sent(const struct nw_cycle *cy)
{
	return cy->head_sent;
}

size_t
nw_cycle_buffered(const struct nw_cycle *cy)
{
	return cy->body.len;
}

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
	r = PyObject_CallMethodObjArgs(cy->task, s_cancel, NULL);
	if (r == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
}

/* The response is no longer the connection's business (done or lost). */
void
nw_cycle_detach(struct nw_cycle *cy)
{
	cy->conn = NULL;
	/* receive() after the response: http.disconnect, as uvicorn does */
	wake_all_disconnected(cy);
}

/* The response head */

static const char *
reason_phrase(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 101:
		return "Switching Protocols";
	case 102:
		return "Processing";
	case 103:
		return "Early Hints";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 203:
		return "Non-Authoritative Information";
	case 204:
		return "No Content";
	case 205:
		return "Reset Content";
	case 206:
		return "Partial Content";
	case 207:
		return "Multi-Status";
	case 208:
		return "Already Reported";
	case 226:
		return "IM Used";
	case 300:
		return "Multiple Choices";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 304:
		return "Not Modified";
	case 305:
		return "Use Proxy";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 402:
		return "Payment Required";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 407:
		return "Proxy Authentication Required";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length Required";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 416:
		return "Range Not Satisfiable";
	case 417:
		return "Expectation Failed";
	case 418:
		return "I'm a Teapot";
	case 421:
		return "Misdirected Request";
	case 422:
		return "Unprocessable Entity";
	case 423:
		return "Locked";
	case 424:
		return "Failed Dependency";
	case 425:
		return "Too Early";
	case 426:
		return "Upgrade Required";
	case 428:
		return "Precondition Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 451:
		return "Unavailable For Legal Reasons";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	case 506:
		return "Variant Also Negotiates";
	case 507:
		return "Insufficient Storage";
	case 508:
		return "Loop Detected";
	case 510:
		return "Not Extended";
	case 511:
		return "Network Authentication Required";
	default:
		return "";
	}
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
add_header(CycleObject *cy, PyObject *name, PyObject *value)
{
	PyObject *tmpn = NULL, *tmpv = NULL;
	const char *n, *v;
	Py_ssize_t nl, vl;
	struct nw_head_info info;
	int rc = -1, r;

	if (header_bytes(name, &n, &nl, &tmpn) < 0 ||
	    header_bytes(value, &v, &vl, &tmpv) < 0)
		goto out;
	info.content_length = cy->content_length;
	info.app_close = cy->app_close;
	info.has_date = cy->has_date;
	r = nw_head_add_header(&cy->head, n, (size_t)nl, v, (size_t)vl, &info);
	cy->content_length = info.content_length;
	cy->app_close = info.app_close;
	cy->has_date = info.has_date;
	switch (r) {
	case NW_HEAD_OK:
		rc = 0;
		break;
	case NW_HEAD_BAD_NAME:
		PyErr_Format(PyExc_ValueError, "invalid header name %R", name);
		break;
	case NW_HEAD_BAD_VALUE:
		PyErr_Format(
		    PyExc_ValueError, "invalid value for header %R", name);
		break;
	case NW_HEAD_BAD_CL:
		PyErr_Format(
		    PyExc_ValueError, "invalid Content-Length %R", value);
		break;
	default:
		PyErr_NoMemory();
		break;
	}
out:
	Py_XDECREF(tmpn);
	Py_XDECREF(tmpv);
	return rc;
}

static int
add_headers(CycleObject *cy, PyObject *headers)
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
head_finish(CycleObject *cy, int64_t known)
{
	struct nw_aserver *s = cy->srv;
	struct nw_buf *h = &cy->head;
	int rc = 0;

	if (cy->content_length < 0 && cy->status >= 200 && cy->status != 204 &&
	    cy->status != 304) {
		if (known >= 0) {
			rc |= nw_buf_append(h, "Content-Length: ", 16);
			rc |= nw_buf_appendu(h, (uint64_t)known);
			rc |= nw_buf_append(h, "\r\n", 2);
		} else if (cy->is_head) {
			/* no body follows, framing or not */
		} else if (cy->minor >= 1) {
			rc |= nw_buf_append(
			    h, "Transfer-Encoding: chunked\r\n", 28);
			cy->chunked = true;
		} else {
			cy->close = true; /* HTTP/1.0: the end is the close */
		}
	}
	/* a client waiting for 100 Continue will not send the body now */
	if (cy->expect_continue && !cy->continue_sent && !cy->body_done)
		cy->close = true;
	if (cy->app_close || !cy->keep_alive || s->stopping ||
	    s->keepalive_ms <= 0)
		cy->close = true;
	if (cy->close)
		rc |= nw_buf_append(h, "Connection: close\r\n", 19);
	else if (cy->minor == 0)
		rc |= nw_buf_append(h, "Connection: keep-alive\r\n", 24);
	if (!cy->has_date) {
		nw_clock_update(&s->clock);
		rc |= nw_buf_append(h, s->clock.date, s->clock.date_len);
	}
	rc |= nw_buf_append(h, "\r\n", 2);
	if (rc != 0) {
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

/* The response is complete: log it, and give the connection back. */
static void
response_done(CycleObject *cy)
{
	struct nw_aconn *c = cy->conn;
	bool close = cy->close;

	cy->complete = true;
	if (cy->content_length >= 0 && !cy->no_body &&
	    cy->sent < (uint64_t)cy->content_length)
		close = true; /* the client still waits for the rest */
	if (c == NULL)
		return;
	nw_aserver_alog(cy->srv, c, cy->status, cy->sent);
	nw_cycle_detach(cy);
	nw_aconn_response_done(c, close);
}

/* Sends body bytes (the head first if it has not gone); more: not the end. */
static int
send_body(CycleObject *cy, const char *p, size_t n, bool more)
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
	    nw_aconn_write(cy->conn, iov, cnt) < 0)
		return 0; /* the client is gone: nw_cycle_disconnected ran */
	if (!more)
		response_done(cy);
	return 0;
}

/* receive() and send() */

static PyObject *
cycle_receive(PyObject *self, PyObject *unused)
{
	CycleObject *cy = (CycleObject *)self;
	PyObject *fut, *w;

	if (cy->disconnected || cy->complete || cy->conn == NULL)
		return wait_new(disconnect_message(), NULL);
	if (!cy->body_final && (cy->body.len > 0 || cy->body_done)) {
		PyObject *msg = request_message(cy);

		return msg ? wait_new(msg, NULL) : NULL;
	}
	if (!cy->body_final && cy->expect_continue && !cy->continue_sent &&
	    !cy->started) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		struct iovec iov = {(void *)cont, sizeof cont - 1};

		cy->continue_sent = true;
		if (nw_aconn_write(cy->conn, &iov, 1) < 0)
			return wait_new(disconnect_message(), NULL);
	}
	if (cy->waiters == NULL && (cy->waiters = PyList_New(0)) == NULL)
		return NULL;
	if ((w = wait_future(cy, &fut)) == NULL)
		return NULL;
	if (PyList_Append(cy->waiters, fut) < 0) {
		Py_DECREF(fut);
		Py_DECREF(w);
		return NULL;
	}
	Py_DECREF(fut);
	return w;
}

static PyObject *
message_get(PyObject *msg, PyObject *key)
{
	PyObject *v;

	if (PyDict_Check(msg)) {
		v = PyDict_GetItemWithError(msg, key);
		Py_XINCREF(v);
		return v;
	}
	v = PyObject_GetItem(msg, key);
	if (v == NULL && PyErr_ExceptionMatches(PyExc_KeyError))
		PyErr_Clear();
	return v;
}

static PyObject *
runtime_error(const char *fmt, PyObject *type)
{
	PyErr_Format(PyExc_RuntimeError, fmt, type);
	return NULL;
}

static PyObject *
send_start(CycleObject *cy, PyObject *msg, PyObject *type)
{
	PyObject *status, *headers;
	const char *reason;
	long code;
	int rc;

	if (cy->started)
		return runtime_error("Expected ASGI message "
		                     "'http.response.body', but got %R.",
		    type);
	if ((status = message_get(msg, s_status)) == NULL) {
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
	headers = message_get(msg, s_headers);
	if (headers == NULL && PyErr_Occurred())
		return NULL;
	rc = add_headers(cy, headers);
	Py_XDECREF(headers);
	if (rc < 0)
		return NULL;
	cy->no_body = cy->is_head || cy->status < 200 || cy->status == 204 ||
	    cy->status == 304;
	cy->started = true;
	Py_INCREF(wait_none);
	return wait_none;
}

static PyObject *
send_body_message(CycleObject *cy, PyObject *msg, PyObject *type)
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
	if ((more_o = message_get(msg, s_more_body)) == NULL) {
		if (PyErr_Occurred())
			return NULL;
		more = 0;
	} else {
		more = PyObject_IsTrue(more_o);
		Py_DECREF(more_o);
		if (more < 0)
			return NULL;
	}
	if ((body = message_get(msg, s_body)) == NULL && PyErr_Occurred())
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
	    nw_aconn_pending(cy->conn) > NW_ASGI_WRITE_HIGH) {
		PyObject *fut, *w;

		/* flow control: wait until the client has read some */
		if ((w = wait_future(cy, &fut)) == NULL)
			return NULL;
		Py_XDECREF(cy->drain);
		cy->drain = fut;
		return w;
	}
	Py_INCREF(wait_none);
	return wait_none;
fail:
	Py_XDECREF(body);
	Py_XDECREF(tmp);
	return NULL;
}

static PyObject *
cycle_send(PyObject *self, PyObject *msg)
{
	CycleObject *cy = (CycleObject *)self;
	PyObject *type, *r;

	if ((type = message_get(msg, s_type)) == NULL) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_ValueError,
			    "an ASGI message needs a \"type\"");
		return NULL;
	}
	if (!PyUnicode_Check(type))
		r = runtime_error("Unexpected ASGI message type %R.", type);
	else if (PyUnicode_CompareWithASCIIString(type, "http.response.body") ==
	    0)
		r = send_body_message(cy, msg, type);
	else if (PyUnicode_CompareWithASCIIString(
	             type, "http.response.start") == 0)
		r = send_start(cy, msg, type);
	else
		r = runtime_error("Unexpected ASGI message type %R.", type);
	Py_DECREF(type);
	return r;
}

static PyMethodDef receive_def = {"receive", cycle_receive, METH_NOARGS,
    "ASGI receive(): the next http.request or http.disconnect"};
static PyMethodDef send_def = {"send", cycle_send, METH_O,
    "ASGI send(message): http.response.start and http.response.body"};

/* The cycle as the task's coroutine */

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
cycle_finish(CycleObject *cy, enum finish how)
{
	struct nw_aconn *c = cy->conn;
	const char *line = cy->line;
	int len = cy->line_len;

	cy->finished = true;
	if (how == FINISH_RAISED) {
		nw_aserver_log(
		    "Exception in ASGI application (%.*s)", len, line);
		PyErr_PrintEx(0);
	} else if (how == FINISH_CANCELLED) {
		/* the worker is quitting, or the app cancelled itself */
	} else if (!cy->started && c != NULL) {
		nw_aserver_log("ASGI callable returned without starting "
		               "response (%.*s)",
		    len, line);
	} else if (!cy->complete && c != NULL) {
		nw_aserver_log("ASGI callable returned without completing "
		               "response (%.*s)",
		    len, line);
	}
	if (c != NULL) {
		if (!cy->head_sent) {
			struct iovec iov[3];
			size_t body;

			nw_clock_update(&cy->srv->clock);
			body = nw_error_iov(500, &cy->srv->clock, iov);
			cy->status = 500;
			cy->head_sent = true;
			if (nw_aconn_write(c, iov, 3) == 0 &&
			    cy->conn != NULL) {
				nw_aserver_alog(cy->srv, c, 500, body);
				nw_cycle_detach(cy);
				nw_aconn_response_done(c, true);
			}
		} else {
			/* half a response: only closing tells the client */
			nw_aserver_alog(cy->srv, c, cy->status, cy->sent);
			nw_cycle_detach(cy);
			nw_aconn_abort(c);
		}
	}
	cy->conn = NULL;
	Py_CLEAR(cy->app_iter);
	Py_CLEAR(cy->scope);
	Py_CLEAR(cy->task); /* the task refers to us: break the cycle */
	nw_buf_free(&cy->body);
	if (cy->linked) {
		struct nw_aserver *s = cy->srv;

		if (cy->prev)
			cy->prev->next = cy->next;
		else
			s->cycles = cy->next;
		if (cy->next)
			cy->next->prev = cy->prev;
		cy->prev = cy->next = NULL;
		cy->linked = false;
		s->ncycles--;
		nw_aserver_cycle_ended(s);
		Py_DECREF(cy); /* the list's reference */
	}
}

/* After the app stepped: r is what it yielded, or NULL. */
static PyObject *
cycle_stepped(CycleObject *cy, PyObject *r)
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
cycle_call_app(CycleObject *cy)
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
	cy->app_iter = PyObject_CallMethodObjArgs(coro, s___await__, NULL);
	Py_DECREF(coro);
	return cy->app_iter ? 0 : -1;
}

static PyObject *
cycle_iternext(PyObject *self)
{
	CycleObject *cy = (CycleObject *)self;

	if (cy->finished)
		return NULL;
	if (cy->app_iter == NULL && cycle_call_app(cy) < 0)
		return cycle_stepped(cy, NULL);
	return cycle_stepped(cy, PyIter_Next(cy->app_iter));
}

static PyObject *
cycle_send_method(PyObject *self, PyObject *value)
{
	CycleObject *cy = (CycleObject *)self;

	if (value == Py_None || cy->app_iter == NULL)
		return cycle_iternext(self);
	if (cy->finished) {
		PyErr_SetNone(PyExc_StopIteration);
		return NULL;
	}
	return cycle_stepped(
	    cy, PyObject_CallMethodObjArgs(cy->app_iter, s_send, value, NULL));
}

static PyObject *
cycle_throw(PyObject *self, PyObject *args)
{
	CycleObject *cy = (CycleObject *)self;
	PyObject *meth, *r;

	if (cy->finished) {
		raise_thrown(args);
		return NULL;
	}
	if (cy->app_iter == NULL) {
		/* thrown in before the app ever ran */
		raise_thrown(args);
		return cycle_stepped(cy, NULL);
	}
	if ((meth = PyObject_GetAttr(cy->app_iter, s_throw)) == NULL)
		return cycle_stepped(cy, NULL);
	r = PyObject_CallObject(meth, args);
	Py_DECREF(meth);
	return cycle_stepped(cy, r);
}

static PyObject *
cycle_close(PyObject *self, PyObject *unused)
{
	CycleObject *cy = (CycleObject *)self;
	PyObject *r;

	if (cy->finished)
		Py_RETURN_NONE;
	if (cy->app_iter != NULL) {
		r = PyObject_CallMethodObjArgs(cy->app_iter, s_close, NULL);
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
	CycleObject *cy = (CycleObject *)self;
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(cy->scope);
	Py_XDECREF(cy->app_iter);
	Py_XDECREF(cy->task);
	Py_XDECREF(cy->waiters);
	Py_XDECREF(cy->drain);
	Py_XDECREF(cy->server);
	nw_buf_free(&cy->body);
	nw_buf_free(&cy->head);
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
    sizeof(CycleObject),
    0,
    Py_TPFLAGS_DEFAULT,
    cycle_slots,
};

/* The scope */

static PyObject *
method_str(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (strlen(method_names[i]) == n &&
		    memcmp(method_names[i], p, n) == 0) {
			Py_INCREF(methods[i]);
			return methods[i];
		}
	return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
}

/* scope["path"]: percent-decoded UTF-8, root_path taken off. */
static PyObject *
path_str(struct nw_aserver *s, const char *p, size_t n)
{
	if (memchr(p, '%', n) != NULL) {
		const char *src = p;

		if (nw_buf_reserve(&s->scratch, n) < 0)
			return PyErr_NoMemory();
		p = s->scratch.data;
		n = nw_percent_decode(src, n, s->scratch.data);
	}
	if (s->root_path_len && n >= s->root_path_len &&
	    memcmp(p, s->root_path_b, s->root_path_len) == 0 &&
	    (n == s->root_path_len || p[s->root_path_len] == '/')) {
		p += s->root_path_len;
		n -= s->root_path_len;
	}
	return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "replace");
}

static PyObject *
name_bytes(const char *name, size_t len)
{
	char lower[NAMECACHE_MAX];
	uint32_t h;
	size_t i;
	PyObject *b;
	char *d;

	if (len < NAMECACHE_MAX) {
		for (i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)name[i];

			lower[i] =
			    (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
		}
		h = hash_bytes(lower, len);
		i = h & (NAMECACHE_SIZE - 1);
		if (namecache[i].bytes != NULL && namecache[i].hash == h &&
		    namecache[i].len == len &&
		    memcmp(namecache[i].name, lower, len) == 0) {
			Py_INCREF(namecache[i].bytes);
			return namecache[i].bytes;
		}
		b = PyBytes_FromStringAndSize(lower, (Py_ssize_t)len);
		if (b == NULL)
			return NULL;
		Py_XDECREF(namecache[i].bytes);
		Py_INCREF(b);
		namecache[i].bytes = b;
		namecache[i].hash = h;
		namecache[i].len = (uint8_t)len;
		memcpy(namecache[i].name, lower, len);
		return b;
	}
	if ((b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len)) == NULL)
		return NULL;
	d = PyBytes_AsString(b);
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		d[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
	}
	return b;
}

static PyObject *
value_bytes(const char *p, size_t n)
{
	size_t i;
	PyObject *b;

	if (n == 0) {
		Py_INCREF(b_empty);
		return b_empty;
	}
	if (n > VALCACHE_MAX)
		return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
	i = hash_bytes(p, n) & (VALCACHE_SIZE - 1);
	if (valcache[i].bytes == NULL || valcache[i].len != n ||
	    memcmp(valcache[i].data, p, n) != 0) {
		if ((b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n)) == NULL)
			return NULL;
		Py_XDECREF(valcache[i].bytes);
		valcache[i].bytes = b;
		valcache[i].len = (uint8_t)n;
		memcpy(valcache[i].data, p, n);
	}
	Py_INCREF(valcache[i].bytes);
	return valcache[i].bytes;
}

/* gunicorn's secure_scheme_headers, from a proxy on this host. */
static bool
is_secure_scheme(const char *n, size_t nl, const char *v, size_t vl)
{
	if (nl == 17 && strncasecmp(n, "x-forwarded-proto", 17) == 0)
		return vl == 5 && strncasecmp(v, "https", 5) == 0;
	if (nl == 20 && strncasecmp(n, "x-forwarded-protocol", 20) == 0)
		return vl == 3 && strncasecmp(v, "ssl", 3) == 0;
	if (nl == 15 && strncasecmp(n, "x-forwarded-ssl", 15) == 0)
		return vl == 2 && strncasecmp(v, "on", 2) == 0;
	return false;
}

static int
set_new(PyObject *d, PyObject *k, PyObject *v)
{
	int r;

	if (v == NULL)
		return -1;
	r = PyDict_SetItem(d, k, v);
	Py_DECREF(v);
	return r;
}

static PyObject *
build_scope(struct nw_aserver *s, struct nw_aconn *c)
{
	const char *buf = c->in.data + c->rpos;
	struct nw_request *r = &c->req;
	PyObject *scope, *headers;
	bool https = false;
	size_t i;

	if ((scope = PyDict_Copy(c->listener->scope)) == NULL)
		return NULL;
	if ((headers = PyList_New((Py_ssize_t)r->nheaders)) == NULL)
		goto fail;
	for (i = 0; i < r->nheaders; i++) {
		const struct nw_header *h = &r->headers[i];
		PyObject *name, *value, *pair;

		name = name_bytes(buf + h->name.off, h->name.len);
		value = value_bytes(buf + h->value.off, h->value.len);
		if (name == NULL || value == NULL) {
			Py_XDECREF(name);
			Py_XDECREF(value);
			Py_DECREF(headers);
			goto fail;
		}
		pair = PyTuple_New(2);
		if (pair == NULL) {
			Py_DECREF(name);
			Py_DECREF(value);
			Py_DECREF(headers);
			goto fail;
		}
		PyTuple_SetItem(pair, 0, name);
		PyTuple_SetItem(pair, 1, value);
		PyList_SetItem(headers, (Py_ssize_t)i, pair);
		if (c->trusted && !https &&
		    is_secure_scheme(buf + h->name.off, h->name.len,
		        buf + h->value.off, h->value.len))
			https = true;
	}
	if (set_new(scope, s_headers, headers) < 0 ||
	    PyDict_SetItem(scope, s_http_version, r->minor ? s_1_1 : s_1_0) <
	        0 ||
	    set_new(scope, s_method,
	        method_str(buf + r->method.off, r->method.len)) < 0 ||
	    set_new(scope, s_path,
	        path_str(s, buf + r->path.off, r->path.len)) < 0 ||
	    set_new(scope, s_raw_path,
	        PyBytes_FromStringAndSize(
	            buf + r->path.off, (Py_ssize_t)r->path.len)) < 0 ||
	    set_new(scope, s_query_string,
	        r->query.len ? PyBytes_FromStringAndSize(
	                           buf + r->query.off, (Py_ssize_t)r->query.len)
	                     : (Py_INCREF(b_empty), b_empty)) < 0 ||
	    PyDict_SetItem(scope, s_client, c->client) < 0 ||
	    (https && PyDict_SetItem(scope, s_scheme, s_https) < 0) ||
	    (s->state != NULL &&
	        set_new(scope, s_state, PyDict_Copy(s->state)) < 0))
		goto fail;
	return scope;
fail:
	Py_DECREF(scope);
	return NULL;
}

/*
 * The keys that never change for a listener (server is its (host, port)),
 * and None for the others: a copy is then a dict of the right size whose
 * values build_scope only replaces (growing it key by key was a tenth of a
 * hello world's instructions).
 */
PyObject *
nw_cycle_scope_template(struct nw_aserver *s, PyObject *server)
{
	PyObject *per_request[] = {s_headers, s_http_version, s_method, s_path,
	    s_raw_path, s_query_string, s_client, NULL};
	PyObject *scope = PyDict_New(), *asgi = PyDict_New(), **k;

	if (scope == NULL || asgi == NULL)
		goto fail;
	if (PyDict_SetItem(asgi, s_version, s_3_0) < 0 ||
	    PyDict_SetItem(asgi, s_spec_version, s_2_3) < 0 ||
	    PyDict_SetItem(scope, s_type, s_http) < 0 ||
	    PyDict_SetItem(scope, s_asgi, asgi) < 0 ||
	    PyDict_SetItem(scope, s_scheme, s_http) < 0 ||
	    PyDict_SetItem(scope, s_server, server) < 0 ||
	    PyDict_SetItem(scope, s_root_path, s->root_path) < 0)
		goto fail;
	for (k = per_request; *k != NULL; k++)
		if (PyDict_SetItem(scope, *k, Py_None) < 0)
			goto fail;
	if (s->state != NULL && PyDict_SetItem(scope, s_state, Py_None) < 0)
		goto fail;
	Py_DECREF(asgi);
	return scope;
fail:
	Py_XDECREF(scope);
	Py_XDECREF(asgi);
	return NULL;
}

/* A request head is complete: its cycle and task start. */
int
nw_cycle_start(struct nw_aserver *s, struct nw_aconn *c)
{
	CycleObject *cy;
	PyObject *task;

	cy = PyObject_New(CycleObject, (PyTypeObject *)cycle_type);
	if (cy == NULL)
		return -1;
	memset((char *)cy + sizeof(PyObject), 0, sizeof *cy - sizeof(PyObject));
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
	if ((cy->scope = build_scope(s, c)) == NULL) {
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
	c->cycle = cy;
	return 0;
}

int
nw_cycle_init(PyObject *module)
{
	size_t i;

	for (i = 0; i < sizeof interned / sizeof interned[0]; i++)
		if ((*interned[i].p =
		            PyUnicode_InternFromString(interned[i].s)) == NULL)
			return -1;
	for (i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if ((methods[i] = PyUnicode_InternFromString(
		         method_names[i])) == NULL)
			return -1;
	if ((b_empty = PyBytes_FromStringAndSize("", 0)) == NULL)
		return -1;
	if ((cycle_type = PyType_FromSpec(&cycle_spec)) == NULL ||
	    (wait_type = PyType_FromSpec(&wait_spec)) == NULL)
		return -1;
	wait_none = wait_new(NULL, NULL);
	return wait_none ? 0 : -1;
}
