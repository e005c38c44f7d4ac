/*
 * response.c: one request through a PEP 3333 application.
 *
 * Calls the app with the environ (environ.c), provides start_response and
 * write(), iterates the result and frames the response (Content-Length when
 * known, chunked otherwise, or close for HTTP/1.0), sends wsgi.file_wrapper
 * files with sendfile, and always calls the result's close(). It writes in
 * place, blocking without the GIL; it never reads from the socket: the
 * engine hands the driver a complete request.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wsgi/wsgi.h"

static PyObject *s_close;

/* Latin-1 bytes of the app's status and header strings, by identity. */
#define STRCACHE_SIZE 512
#define STRCACHE_MAX 256
static struct {
	PyObject *str;
	PyObject *bytes;
} strcache[STRCACHE_SIZE];

/* The state of one response, between start_response and the last byte. */
struct nw_ctx {
	struct nw_wsgi *srv;
	struct nw_wsgi_local *l;
	struct nw_conn *conn;
	int fd; /* the connection's socket */
	bool called; /* start_response was called */
	bool head_sent;
	bool chunked;   /* we frame the body in chunks */
	bool is_head;   /* a HEAD request */
	bool no_body;   /* HEAD, 1xx, 204, 304 */
	bool close;     /* close the connection afterwards */
	bool app_close; /* the app said "Connection: close" */
	bool has_date;
	bool failed; /* the client is gone or too slow */
	int status;
	int64_t content_length; /* the app's, or -1 */
	uint64_t sent;          /* body bytes sent */
};

typedef struct {
	PyObject_HEAD struct nw_ctx *ctx; /* NULL once its request is over */
	PyObject *write; /* the write() callable, bound to this object */
} StartResponseObject;

static PyObject *start_response_type;

/* A write of the answer: through TLS when the connection has it, else on
 * the socket as the request saw it (threads.c may swap the engine's). */
static int
ctx_writev(struct nw_ctx *x, struct iovec *iov, int cnt)
{
	if (x->conn->ssl != NULL)
		return nw_tls_writev_all(&x->l->writer, x->conn, iov, cnt);
	return nw_writev_all(&x->l->writer, x->fd, iov, cnt);
}

static int
ctx_writev1(struct nw_ctx *x, const void *p, size_t n)
{
	struct iovec iov = {(void *)p, n};

	return ctx_writev(x, &iov, 1);
}

/* The latin-1 bytes of str; *tmp gets a reference the caller drops. */
static int
latin1(PyObject *str, const char **p, Py_ssize_t *n, PyObject **tmp)
{
	size_t i = (size_t)(((uintptr_t)str >> 4) ^ ((uintptr_t)str >> 13)) &
	    (STRCACHE_SIZE - 1);
	PyObject *b;
	char *data;

	*tmp = NULL;
	if (!PyUnicode_Check(str)) {
		PyErr_Format(PyExc_TypeError, "expected str, got %R",
		    (PyObject *)Py_TYPE(str));
		return -1;
	}
	if (strcache[i].str == str) {
		b = strcache[i].bytes;
	} else {
		if ((b = PyUnicode_AsLatin1String(str)) == NULL)
			return -1;
		if (PyBytes_Size(b) > STRCACHE_MAX) {
			*tmp = b;
		} else {
			Py_XDECREF(strcache[i].str);
			Py_XDECREF(strcache[i].bytes);
			Py_INCREF(str);
			strcache[i].str = str;
			strcache[i].bytes = b;
		}
	}
	if (PyBytes_AsStringAndSize(b, &data, n) < 0)
		return -1;
	*p = data;
	return 0;
}

/* Response head */

/* Adds framing, Connection and Date to the app's head, and the blank line. */
static int
head_finish(struct nw_ctx *x, int64_t known)
{
	struct nw_wsgi *s = x->srv;
	struct nw_request *r = &x->conn->req;
	struct nw_head_info info = {
	    x->content_length, x->app_close, x->has_date};
	struct nw_head_end e = {
	    .status = x->status,
	    .minor = r->minor,
	    .is_head = x->is_head,
	    .keep = r->keep_alive && nw_engine_keeps_alive(&s->e),
	    .known = known,
	    .close = x->close,
	};

	if (nw_head_finish(&x->l->head, &info, &e, x->l->clock) < 0) {
		PyErr_NoMemory();
		return -1;
	}
	x->chunked = x->chunked || e.chunked;
	x->close = e.close;
	return 0;
}

/* Sending */

static void
ctx_failed(struct nw_ctx *x)
{
	x->failed = true;
	x->close = true;
}

/* Sends body bytes, the head first if it has not gone yet. */
static int
send_data(struct nw_ctx *x, const char *p, size_t n)
{
	struct nw_wsgi_local *l = x->l;
	struct iovec iov[4];
	char size_line[24];
	int cnt = 0;

	if (x->failed)
		return -1;
	if (x->content_length >= 0 && !x->no_body &&
	    (uint64_t)x->content_length - x->sent < n)
		n = (size_t)((uint64_t)x->content_length - x->sent);
	if (n == 0)
		return 0; /* the head waits for body bytes or the end */
	if (!x->head_sent) {
		if (head_finish(x, -1) < 0)
			return -1;
		iov[cnt].iov_base = l->head.data;
		iov[cnt++].iov_len = l->head.len;
	}
	if (!x->no_body) {
		if (x->chunked) {
			iov[cnt].iov_base = size_line;
			iov[cnt++].iov_len = (size_t)snprintf(
			    size_line, sizeof size_line, "%zx\r\n", n);
		}
		iov[cnt].iov_base = (void *)p;
		iov[cnt++].iov_len = n;
		if (x->chunked) {
			iov[cnt].iov_base = "\r\n";
			iov[cnt++].iov_len = 2;
		}
	}
	if (cnt == 0)
		return 0;
	if (ctx_writev(x, iov, cnt) < 0) {
		ctx_failed(x);
		return -1;
	}
	x->head_sent = true;
	if (!x->no_body)
		x->sent += n;
	return 0;
}

/* Ends the response: the head if nothing was sent, or the last chunk. */
static int
send_end(struct nw_ctx *x)
{
	struct nw_wsgi_local *l = x->l;

	if (x->failed)
		return -1;
	if (!x->head_sent) {
		if (head_finish(x, x->is_head ? -1 : 0) < 0)
			return -1;
		if (ctx_writev1(x, l->head.data, l->head.len) < 0) {
			ctx_failed(x);
			return -1;
		}
		x->head_sent = true;
	} else if (x->chunked) {
		if (ctx_writev1(x, "0\r\n\r\n", 5) < 0) {
			ctx_failed(x);
			return -1;
		}
	}
	if (x->content_length >= 0 && !x->no_body &&
	    x->sent < (uint64_t)x->content_length)
		x->close = true; /* the client still waits for the rest */
	return 0;
}

/* start_response and write() */

static int
parse_status(struct nw_ctx *x, const char *p, Py_ssize_t n)
{
	Py_ssize_t i;

	if (n < 3 || (n > 3 && p[3] != ' '))
		goto bad;
	for (i = 0; i < 3; i++)
		if (p[i] < '0' || p[i] > '9')
			goto bad;
	for (i = 3; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			goto bad;
	x->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	if (x->status < 100)
		goto bad;
	return 0;
bad:
	PyErr_Format(PyExc_ValueError, "invalid status line: %.80s", p);
	return -1;
}

/* Checks one header, notes what the server must know, appends it. */
static int
add_header(struct nw_ctx *x, struct nw_buf *h, PyObject *name, PyObject *value)
{
	PyObject *tmpn = NULL, *tmpv = NULL;
	const char *n, *v;
	Py_ssize_t nl, vl;
	struct nw_head_info info;
	int rc = -1;

	if (latin1(name, &n, &nl, &tmpn) < 0 ||
	    latin1(value, &v, &vl, &tmpv) < 0)
		goto out;
	info.content_length = x->content_length;
	info.app_close = x->app_close;
	info.has_date = x->has_date;
	rc = nw_head_add_py(h, name, n, (size_t)nl, value, v, (size_t)vl,
	    &info);
	x->content_length = info.content_length;
	x->app_close = info.app_close;
	x->has_date = info.has_date;
out:
	Py_XDECREF(tmpn);
	Py_XDECREF(tmpv);
	return rc;
}

static int
add_headers(struct nw_ctx *x, struct nw_buf *h, PyObject *headers)
{
	Py_ssize_t i, n;

	if (!PyList_Check(headers)) {
		PyErr_SetString(
		    PyExc_TypeError, "response headers must be a list");
		return -1;
	}
	n = PyList_Size(headers);
	for (i = 0; i < n; i++) {
		PyObject *item = PyList_GetItem(headers, i);
		PyObject *name, *value;

		if (PyTuple_Check(item) && PyTuple_Size(item) == 2) {
			name = PyTuple_GetItem(item, 0);
			value = PyTuple_GetItem(item, 1);
		} else if (PyList_Check(item) && PyList_Size(item) == 2) {
			name = PyList_GetItem(item, 0);
			value = PyList_GetItem(item, 1);
		} else {
			PyErr_SetString(PyExc_TypeError,
			    "each response header must be a (name, value) "
			    "tuple");
			return -1;
		}
		if (!PyUnicode_Check(name) || !PyUnicode_Check(value)) {
			PyErr_Format(PyExc_TypeError,
			    "header names and values must be str: %R", item);
			return -1;
		}
		if (add_header(x, h, name, value) < 0)
			return -1;
	}
	return 0;
}

static PyObject *
start_response_call(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {
	    "status", "response_headers", "exc_info", NULL};
	StartResponseObject *sr = (StartResponseObject *)self;
	struct nw_ctx *x = sr->ctx;
	PyObject *status, *headers, *exc_info = Py_None, *tmp;
	struct nw_buf *h;
	const char *sp;
	Py_ssize_t sn;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:start_response",
	        kwlist, &status, &headers, &exc_info))
		return NULL;
	if (x == NULL) {
		PyErr_SetString(PyExc_RuntimeError,
		    "start_response() called after its request ended");
		return NULL;
	}
	if (exc_info != Py_None) {
		if (x->head_sent) {
			PyObject *t, *v, *tb;

			/* too late to change the status: re-raise (PEP 3333) */
			if (!PyTuple_Check(exc_info) ||
			    PyTuple_Size(exc_info) != 3) {
				PyErr_SetString(PyExc_TypeError,
				    "exc_info must be a 3-tuple");
				return NULL;
			}
			t = PyTuple_GetItem(exc_info, 0);
			v = PyTuple_GetItem(exc_info, 1);
			tb = PyTuple_GetItem(exc_info, 2);
			Py_XINCREF(t);
			Py_XINCREF(v);
			Py_XINCREF(tb);
			PyErr_Restore(t, v, tb == Py_None ? NULL : tb);
			if (tb == Py_None)
				Py_DECREF(tb);
			return NULL;
		}
	} else if (x->called) {
		PyErr_SetString(PyExc_RuntimeError,
		    "start_response() called twice without exc_info");
		return NULL;
	}

	h = &x->l->head;
	h->len = 0;
	x->called = false;
	x->content_length = -1;
	x->app_close = x->has_date = false;
	if (!PyUnicode_Check(status)) {
		PyErr_SetString(PyExc_TypeError, "status must be a str");
		return NULL;
	}
	if (latin1(status, &sp, &sn, &tmp) < 0)
		return NULL;
	if (parse_status(x, sp, sn) < 0 ||
	    nw_buf_append(h, "HTTP/1.1 ", 9) < 0 ||
	    nw_buf_append(h, sp, (size_t)sn) < 0 ||
	    (sn == 3 && nw_buf_append(h, " ", 1) < 0) ||
	    nw_buf_append(h, "\r\n", 2) < 0) {
		Py_XDECREF(tmp);
		if (!PyErr_Occurred())
			PyErr_NoMemory();
		return NULL;
	}
	Py_XDECREF(tmp);
	if (add_headers(x, h, headers) < 0)
		return NULL;
	x->no_body = x->is_head || x->status < 200 || x->status == 204 ||
	    x->status == 304;
	x->called = true;
	Py_INCREF(sr->write);
	return sr->write;
}

static PyObject *
write_call(PyObject *self, PyObject *data)
{
	StartResponseObject *sr = (StartResponseObject *)self;
	struct nw_ctx *x = sr->ctx;
	char *p;
	Py_ssize_t n;

	if (x == NULL || !x->called) {
		PyErr_SetString(PyExc_RuntimeError,
		    x == NULL ? "write() called after its request ended"
		              : "write() called before start_response()");
		return NULL;
	}
	if (PyBytes_Check(data)) {
		if (PyBytes_AsStringAndSize(data, &p, &n) < 0)
			return NULL;
	} else if (PyByteArray_Check(data)) {
		p = PyByteArray_AsString(data);
		n = PyByteArray_Size(data);
	} else {
		PyErr_Format(PyExc_TypeError, "write() takes bytes, not %R",
		    (PyObject *)Py_TYPE(data));
		return NULL;
	}
	if (send_data(x, p, (size_t)n) < 0) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_OSError, "the client went away");
		return NULL;
	}
	Py_RETURN_NONE;
}

static PyMethodDef write_def = {
    "write", write_call, METH_O, "write(data): send body bytes now (PEP 3333)"};

static PyObject *
start_response_new(void)
{
	StartResponseObject *sr;

	sr = PyObject_New(
	    StartResponseObject, (PyTypeObject *)start_response_type);
	if (sr == NULL)
		return NULL;
	sr->ctx = NULL;
	sr->write = PyCFunction_New(&write_def, (PyObject *)sr);
	if (sr->write == NULL) {
		Py_DECREF(sr);
		return NULL;
	}
	return (PyObject *)sr;
}

static void
start_response_dealloc(PyObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(((StartResponseObject *)self)->write);
	PyObject_Free(self);
	Py_DECREF(tp);
}

/*
 * One start_response object serves request after request while only we
 * (and its own write callable) hold it; an app that keeps it gets to keep
 * it, dead, and the next request gets a new one.
 */
static PyObject *
start_response_get(struct nw_wsgi_local *l, struct nw_ctx *x)
{
	StartResponseObject *sr = (StartResponseObject *)l->start_response;

	if (sr != NULL && (Py_REFCNT(sr) != 2 || Py_REFCNT(sr->write) != 1)) {
		sr->ctx = NULL;
		Py_CLEAR(sr->write); /* breaks the cycle */
		Py_CLEAR(l->start_response);
		sr = NULL;
	}
	if (sr == NULL) {
		if ((l->start_response = start_response_new()) == NULL)
			return NULL;
		sr = (StartResponseObject *)l->start_response;
	}
	sr->ctx = x;
	return (PyObject *)sr;
}

/* The result */

static int
is_fatal(struct nw_wsgi *s)
{
	return s->quit || PyErr_ExceptionMatches(PyExc_SystemExit) ||
	    PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

/* The app failed: log it, answer 500 if still possible, close. */
static int
app_error(struct nw_wsgi *s, struct nw_ctx *x)
{
	struct nw_conn *c = x->conn;
	const char *buf = c->in.data + c->rpos;

	if (is_fatal(s))
		return NW_HANDLED_FATAL;
	if (x->failed) {
		PyErr_Clear(); /* the client left: not the app's fault */
	} else {
		nw_log("Error handling request %.*s",
		    (int)c->req.line.len, buf + c->req.line.off);
		PyErr_PrintEx(0);
	}
	if (!x->head_sent && !x->failed) {
		struct iovec iov[3];
		size_t len = nw_error_iov(500, x->l->clock, iov);

		x->status = 500;
		x->head_sent = true;
		if (ctx_writev(x, iov, 3) < 0)
			PyErr_Clear();
		else
			x->sent = len;
	}
	x->close = true;
	return NW_HANDLED_CLOSE;
}

/* A FileWrapper around a regular file: sendfile. 0: not possible. */
static int
send_file(struct nw_wsgi *s, struct nw_ctx *x, PyObject *wrapper)
{
	PyObject *filelike = nw_filewrapper_filelike(wrapper), *r;
	struct stat st;
	uint64_t n, sent = 0;
	long fd;
	off_t off;

	if (x->conn->ssl != NULL)
		return 0; /* TLS: the file is read and encrypted as it goes */
	if ((r = PyObject_CallMethod(filelike, "fileno", NULL)) == NULL) {
		PyErr_Clear();
		return 0;
	}
	fd = PyLong_AsLong(r);
	Py_DECREF(r);
	if (fd < 0 || fstat((int)fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		PyErr_Clear();
		return 0;
	}
	/* tell() knows about Python's read-ahead buffer; lseek does not */
	if ((r = PyObject_CallMethod(filelike, "tell", NULL)) != NULL) {
		off = (off_t)PyLong_AsLongLong(r);
		Py_DECREF(r);
	} else {
		off = -1;
	}
	if (off < 0) {
		PyErr_Clear();
		if ((off = lseek((int)fd, 0, SEEK_CUR)) < 0)
			return 0;
	}
	n = st.st_size > off ? (uint64_t)(st.st_size - off) : 0;
	if (x->content_length >= 0 && (uint64_t)x->content_length < n)
		n = (uint64_t)x->content_length;
	if (head_finish(x, x->content_length >= 0 ? -1 : (int64_t)n) < 0)
		return -1;
	if (nw_send_flags(&x->l->writer, x->fd, x->l->head.data,
	        x->l->head.len, x->no_body || n == 0 ? 0 : MSG_MORE) < 0) {
		ctx_failed(x);
		return 1;
	}
	x->head_sent = true;
	if (x->no_body || n == 0)
		return 1;
	if (nw_sendfile_all(&x->l->writer, x->fd, (int)fd, off, n, &sent) <
	    0)
		ctx_failed(x);
	x->sent = sent;
	return 1;
}

/*
 * Sends a whole response after which the connection closes at once
 * (nw_conn_finish in the engine). MSG_MORE holds the last, short segment back
 * until the FIN can go with it: a one-shot connection then costs two
 * segments fewer (a FIN of its own, and its ACK), a fifth of the worker's
 * time per connection. No code of the app's may run between this and the
 * close, or the answer would wait for it. What the first try cannot send
 * goes the usual, blocking way.
 */
static int
send_closing(struct nw_wsgi_local *l, int fd, struct iovec *iov, int cnt)
{
	struct msghdr m;
	ssize_t n;

	memset(&m, 0, sizeof m);
	m.msg_iov = iov;
	m.msg_iovlen = (size_t)cnt;
	n = sendmsg(fd, &m, MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		return -1;
	for (; n > 0 && cnt > 0 && (size_t)n >= iov->iov_len; iov++, cnt--)
		n -= (ssize_t)iov->iov_len;
	if (cnt == 0)
		return 0;
	if (n > 0) {
		iov->iov_base = (char *)iov->iov_base + n;
		iov->iov_len -= (size_t)n;
	}
	return nw_writev_all(&l->writer, fd, iov, cnt);
}

/* A list of bytes: every length is known, so one writev with a length. */
static int
send_list(struct nw_wsgi *s, struct nw_ctx *x, PyObject *list)
{
	struct iovec iov[17];
	Py_ssize_t i, n = PyList_Size(list);
	uint64_t total = 0;
	int cnt = 1, rc;

	if (n > 16)
		return 0;
	for (i = 0; i < n; i++) {
		PyObject *item = PyList_GetItem(list, i);
		char *p;
		Py_ssize_t len;

		if (!PyBytes_Check(item))
			return 0;
		if (PyBytes_AsStringAndSize(item, &p, &len) < 0)
			return -1;
		iov[cnt].iov_base = p;
		iov[cnt++].iov_len = (size_t)len;
		total += (uint64_t)len;
	}
	if (x->content_length >= 0 && (uint64_t)x->content_length != total)
		return 0; /* truncation or a short body: the slow path */
	if (head_finish(x, (int64_t)total) < 0)
		return -1;
	iov[0].iov_base = x->l->head.data;
	iov[0].iov_len = x->l->head.len;
	if (x->no_body)
		cnt = 1;
	/* close_result() does nothing for a list: the close comes next */
	if (x->close && x->conn->ssl == NULL)
		rc = send_closing(x->l, x->fd, iov, cnt);
	else
		rc = ctx_writev(x, iov, cnt);
	if (rc < 0) {
		ctx_failed(x);
		return 1;
	}
	x->head_sent = true;
	if (!x->no_body)
		x->sent = total;
	return 1;
}

/* Sends what the app returned; 0, or -1 with the app's exception set. */
static int
send_result(struct nw_wsgi *s, struct nw_ctx *x, PyObject *result)
{
	PyObject *it, *item;
	int rc;

	if (!x->called || x->head_sent) {
		/* lazy start_response, or write() already sent the head */
	} else if (PyList_CheckExact(result)) {
		if ((rc = send_list(s, x, result)) != 0)
			return rc < 0 ? -1 : 0;
	} else if (Py_TYPE(result) == (PyTypeObject *)nw_filewrapper_type) {
		if ((rc = send_file(s, x, result)) != 0)
			return rc < 0 ? -1 : 0;
	}
	if ((it = PyObject_GetIter(result)) == NULL)
		return -1;
	while ((item = PyIter_Next(it)) != NULL) {
		char *p;
		Py_ssize_t n;

		if (!x->called) {
			PyErr_SetString(PyExc_RuntimeError,
			    "the app returned body bytes before calling "
			    "start_response()");
		} else if (PyBytes_Check(item)) {
			if (PyBytes_AsStringAndSize(item, &p, &n) == 0)
				send_data(x, p, (size_t)n);
		} else if (PyByteArray_Check(item)) {
			send_data(x, PyByteArray_AsString(item),
			    (size_t)PyByteArray_Size(item));
		} else {
			PyErr_Format(PyExc_TypeError,
			    "the app's iterable yielded %R, not bytes",
			    (PyObject *)Py_TYPE(item));
		}
		Py_DECREF(item);
		if (PyErr_Occurred() || x->failed)
			break;
	}
	Py_DECREF(it);
	if (PyErr_Occurred())
		return -1;
	if (!x->called && !x->failed) {
		PyErr_SetString(PyExc_RuntimeError,
		    "the app never called start_response()");
		return -1;
	}
	return 0;
}

/* PEP 3333: close() is called whatever happened. */
static int
close_result(struct nw_wsgi *s, PyObject *result)
{
	PyObject *close, *r;

	if (PyList_CheckExact(result) || PyTuple_CheckExact(result) ||
	    PyBytes_CheckExact(result))
		return 0;
	if ((close = PyObject_GetAttr(result, s_close)) == NULL) {
		if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
			PyErr_Clear();
			return 0;
		}
		return -1;
	}
	r = PyObject_CallObject(close, NULL);
	Py_DECREF(close);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

/*
 * One request; its answer's status and size for the engine's log (the
 * caller's: a pool thread must not touch the engine). fd is the
 * connection's socket as the request sees it.
 */
int
nw_wsgi_handle(struct nw_wsgi *s, struct nw_wsgi_local *l, struct nw_conn *c,
    int fd, PyObject *input, struct nw_wsgi_answer *a)
{
	struct nw_ctx x;
	PyObject *env, *sr = NULL, *args, *result = NULL;
	int rc = NW_HANDLED_KEEP;

	memset(&x, 0, sizeof x);
	x.srv = s;
	x.l = l;
	x.fd = fd;
	x.conn = c;
	x.content_length = -1;
	x.is_head = c->req.is_head;

	env = nw_wsgi_environ(s, c, input);
	if (env != NULL)
		sr = start_response_get(l, &x);
	if (env == NULL || sr == NULL) {
		rc = app_error(s, &x);
		goto done;
	}
	args = PyTuple_Pack(2, env, sr);
	if (args != NULL) {
		result = PyObject_Call(s->app, args, NULL);
		Py_DECREF(args);
	}
	if (result == NULL) {
		rc = app_error(s, &x);
		goto done;
	}
	if (send_result(s, &x, result) < 0)
		rc = app_error(s, &x);
	else if (send_end(&x) < 0 && PyErr_Occurred())
		rc = app_error(s, &x);
	if (rc == NW_HANDLED_FATAL) {
		PyObject *t, *v, *tb;

		PyErr_Fetch(&t, &v, &tb);
		if (close_result(s, result) < 0)
			PyErr_Clear();
		PyErr_Restore(t, v, tb);
	} else if (close_result(s, result) < 0) {
		int r = app_error(s, &x);

		if (r == NW_HANDLED_FATAL)
			rc = r;
	}
	Py_DECREF(result);
done:
	if (sr != NULL)
		((StartResponseObject *)sr)->ctx = NULL;
	Py_XDECREF(env);
	a->status = x.status;
	a->sent = x.sent;
	a->head = x.head_sent ? l->head.data : NULL;
	a->headlen = l->head.len;
	if (rc == NW_HANDLED_KEEP && (x.close || x.failed))
		rc = NW_HANDLED_CLOSE;
	return rc;
}

/*
 * A request's body as wsgi.input, then the request. The caller released
 * the body first (nw_wsgi_body_release, on the loop's thread), so the
 * resets here touch no count of the server's: a pool thread may run this.
 */
int
nw_wsgi_run(struct nw_wsgi *s, struct nw_wsgi_local *l,
    struct nw_wsgi_conn *wc, int fd, struct nw_wsgi_answer *a)
{
	PyObject *input;
	int rc;

	input = nw_wsgi_body_input(&wc->body);
	if (input == NULL) {
		nw_py_error("cannot make wsgi.input");
		nw_wsgi_body_reset(s, &wc->body);
		a->status = 0;
		a->sent = 0;
		return NW_HANDLED_CLOSE;
	}
	rc = nw_wsgi_handle(s, l, &wc->c, fd, input, a);
	Py_DECREF(input);
	nw_wsgi_body_reset(s, &wc->body);
	return rc;
}

/*
 * The write hook of a pool thread: sleep without the GIL, for at most
 * write_timeout, and never call the engine (it is the loop thread's; the
 * loop heartbeats meanwhile). The loop's own requests use server.c's, which
 * heartbeats while it waits; greenlets use green.c's.
 */
int
nw_wsgi_wait_writable(void *arg, int fd, int timeout_ms)
{
	struct nw_wsgi *s = arg;
	struct pollfd p = {fd, POLLOUT, 0};

	for (;;) {
		int r;

		Py_BEGIN_ALLOW_THREADS r = poll(&p, 1, timeout_ms);
		Py_END_ALLOW_THREADS if (r > 0) return 0;
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (errno != EINTR)
			return -1;
		if (PyErr_CheckSignals() < 0 || s->quit)
			return -1;
	}
}

void
nw_wsgi_local_init(struct nw_wsgi *s, struct nw_wsgi_local *l,
    struct nw_clock *clock)
{
	memset(l, 0, sizeof *l);
	l->clock = clock != NULL ? clock : &l->own;
	l->writer.wait = nw_wsgi_wait_writable;
	l->writer.arg = s;
	l->writer.timeout_ms = (int)s->e.write_timeout_ms;
	nw_clock_update(&l->own);
}

void
nw_wsgi_local_free(struct nw_wsgi_local *l)
{
	nw_buf_free(&l->head);
	Py_CLEAR(l->start_response);
}

static PyType_Slot start_response_slots[] = {
    {Py_tp_dealloc, start_response_dealloc},
    {Py_tp_call, start_response_call},
    {Py_tp_doc, "start_response(status, response_headers, exc_info=None)"},
    {0, NULL},
};

static PyType_Spec start_response_spec = {
    "narwhal_worker._http.StartResponse",
    sizeof(StartResponseObject),
    0,
    Py_TPFLAGS_DEFAULT,
    start_response_slots,
};


int
nw_wsgi_response_init(void)
{
	if ((s_close = PyUnicode_InternFromString("close")) == NULL)
		return -1;
	start_response_type = PyType_FromSpec(&start_response_spec);
	return start_response_type ? 0 : -1;
}
