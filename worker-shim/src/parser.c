/*
 * parser.c: the HTTP core as a Python type, for loops written in Python.
 *
 * RequestParser wraps the same strict head parser and chunked decoder the
 * C loop uses, fed bytes as they arrive (an asyncio Protocol's
 * data_received), so an ASGI worker gets identical limits and smuggling
 * rules. It holds no socket and knows nothing of WSGI or ASGI.
 */
#include <string.h>

#include "shim.h"

typedef struct {
	PyObject_HEAD struct nw_limits limits;
	struct nw_request req;
	struct nw_buf buf; /* the head, as it arrives */
	bool head_done;
	struct nw_chunked dec;
	uint64_t remaining; /* Content-Length bytes still to come */
	uint64_t body_size; /* decoded so far */
	bool body_done;
} ParserObject;

static PyObject *parse_error;

static PyObject *
raise_status(int status)
{
	PyObject *args =
	    Py_BuildValue("(is)", status, nw_status_reason(status));

	if (args != NULL) {
		PyErr_SetObject(parse_error, args);
		Py_DECREF(args);
	}
	return NULL;
}

static void
parser_clear(ParserObject *p)
{
	nw_request_reset(&p->req);
	p->buf.len = 0;
	p->head_done = false;
	nw_chunked_init(&p->dec);
	p->remaining = p->body_size = 0;
	p->body_done = false;
}

static PyObject *
parser_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"limit_request_line", "limit_request_fields",
	    "limit_request_field_size", "limit_request_body", NULL};
	Py_ssize_t line = 4094, fields = 100, field = 8190;
	unsigned long long body = 0;
	ParserObject *p;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|$nnnK:RequestParser",
	        kwlist, &line, &fields, &field, &body))
		return NULL;
	if (line < 0 || fields < 0 || field < 0) {
		PyErr_SetString(PyExc_ValueError, "limits must be >= 0");
		return NULL;
	}
	if ((p = (ParserObject *)PyType_GenericAlloc(type, 0)) == NULL)
		return NULL;
	p->limits.request_line = (size_t)line;
	p->limits.fields = (size_t)fields;
	p->limits.field_size = (size_t)field;
	p->limits.body = body;
	parser_clear(p);
	return (PyObject *)p;
}

static void
parser_dealloc(PyObject *self)
{
	ParserObject *p = (ParserObject *)self;
	PyTypeObject *tp = Py_TYPE(self);
	freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);

	nw_request_free(&p->req);
	nw_buf_free(&p->buf);
	tp_free(self);
	Py_DECREF(tp);
}

static int
bytes_arg(PyObject *data, char **s, Py_ssize_t *n)
{
	if (PyBytes_Check(data))
		return PyBytes_AsStringAndSize(data, s, n);
	if (PyByteArray_Check(data)) {
		*s = PyByteArray_AsString(data);
		*n = PyByteArray_Size(data);
		return 0;
	}
	PyErr_SetString(PyExc_TypeError, "expected bytes");
	return -1;
}

/* feed_head(data): None until the head is complete, then the rest. */
static PyObject *
parser_feed_head(PyObject *self, PyObject *data)
{
	ParserObject *p = (ParserObject *)self;
	char *s;
	Py_ssize_t n;
	size_t rest;
	int rc;

	if (p->head_done) {
		PyErr_SetString(
		    PyExc_RuntimeError, "the head is complete: reset() first");
		return NULL;
	}
	if (bytes_arg(data, &s, &n) < 0)
		return NULL;
	if (nw_buf_append(&p->buf, s, (size_t)n) < 0)
		return PyErr_NoMemory();
	rc = nw_request_parse(&p->req, p->buf.data, p->buf.len, &p->limits);
	if (rc == NW_PARSE_AGAIN)
		Py_RETURN_NONE;
	if (rc == NW_PARSE_ERROR)
		return raise_status(p->req.status);
	if (p->req.content_length > 0 && p->limits.body &&
	    (uint64_t)p->req.content_length > p->limits.body)
		return raise_status(413);
	p->head_done = true;
	p->remaining =
	    p->req.content_length > 0 ? (uint64_t)p->req.content_length : 0;
	p->body_done = !p->req.chunked && p->remaining == 0;
	rest = p->buf.len - p->req.head_len;
	return PyBytes_FromStringAndSize(
	    p->buf.data + p->req.head_len, (Py_ssize_t)rest);
}

/* feed_body(data) -> (decoded bytes, bytes of data consumed, done). */
static PyObject *
parser_feed_body(PyObject *self, PyObject *data)
{
	ParserObject *p = (ParserObject *)self;
	PyObject *out;
	char *s;
	Py_ssize_t n;
	size_t used;

	if (!p->head_done) {
		PyErr_SetString(PyExc_RuntimeError, "no complete head yet");
		return NULL;
	}
	if (bytes_arg(data, &s, &n) < 0)
		return NULL;
	if (p->body_done)
		return Py_BuildValue(
		    "(y#nO)", "", (Py_ssize_t)0, (Py_ssize_t)0, Py_True);
	if (p->req.chunked) {
		size_t len = (size_t)n;
		char *copy;
		ssize_t r;
		bool done;

		if ((out = PyBytes_FromStringAndSize(s, n)) == NULL)
			return NULL;
		copy = PyBytes_AsString(out);
		r = nw_chunked_decode(&p->dec, copy, &len, &done);
		if (r < 0) {
			Py_DECREF(out);
			return raise_status(400);
		}
		if (p->limits.body &&
		    p->body_size + len + p->dec.size > p->limits.body) {
			Py_DECREF(out);
			return raise_status(413);
		}
		p->body_size += len;
		p->body_done = done;
		used = (size_t)r;
		if (len != (size_t)n) {
			PyObject *cut =
			    PyBytes_FromStringAndSize(copy, (Py_ssize_t)len);

			Py_DECREF(out);
			if ((out = cut) == NULL)
				return NULL;
		}
	} else {
		used = (uint64_t)n < p->remaining ? (size_t)n
		                                  : (size_t)p->remaining;
		if ((out = PyBytes_FromStringAndSize(s, (Py_ssize_t)used)) ==
		    NULL)
			return NULL;
		p->remaining -= used;
		p->body_size += used;
		p->body_done = p->remaining == 0;
	}
	return Py_BuildValue(
	    "(NnO)", out, (Py_ssize_t)used, p->body_done ? Py_True : Py_False);
}

static PyObject *
parser_reset(PyObject *self, PyObject *unused)
{
	parser_clear((ParserObject *)self);
	Py_RETURN_NONE;
}

static PyObject *
span_bytes(ParserObject *p, struct nw_span s)
{
	if (!p->head_done) {
		PyErr_SetString(PyExc_AttributeError, "no complete head yet");
		return NULL;
	}
	return PyBytes_FromStringAndSize(
	    p->buf.data + s.off, (Py_ssize_t)s.len);
}

static PyObject *
get_method(PyObject *self, void *c)
{
	return span_bytes(
	    (ParserObject *)self, ((ParserObject *)self)->req.method);
}

static PyObject *
get_target(PyObject *self, void *c)
{
	return span_bytes(
	    (ParserObject *)self, ((ParserObject *)self)->req.target);
}

static PyObject *
get_path(PyObject *self, void *c)
{
	return span_bytes(
	    (ParserObject *)self, ((ParserObject *)self)->req.path);
}

static PyObject *
get_query(PyObject *self, void *c)
{
	return span_bytes(
	    (ParserObject *)self, ((ParserObject *)self)->req.query);
}

static PyObject *
get_http_version(PyObject *self, void *c)
{
	ParserObject *p = (ParserObject *)self;

	if (!p->head_done)
		Py_RETURN_NONE;
	return PyUnicode_FromString(p->req.minor ? "1.1" : "1.0");
}

/* [(lowercased name, value)], as ASGI wants them. */
static PyObject *
get_headers(PyObject *self, void *c)
{
	ParserObject *p = (ParserObject *)self;
	PyObject *list;
	size_t i;

	if (!p->head_done)
		return PyList_New(0);
	if ((list = PyList_New((Py_ssize_t)p->req.nheaders)) == NULL)
		return NULL;
	for (i = 0; i < p->req.nheaders; i++) {
		const struct nw_header *h = &p->req.headers[i];
		PyObject *name, *pair;
		char *d;
		uint32_t k;

		name = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)h->name.len);
		if (name == NULL)
			goto fail;
		d = PyBytes_AsString(name);
		for (k = 0; k < h->name.len; k++) {
			char ch = p->buf.data[h->name.off + k];

			d[k] = (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
		}
		pair = Py_BuildValue("(Ny#)", name, p->buf.data + h->value.off,
		    (Py_ssize_t)h->value.len);
		if (pair == NULL)
			goto fail;
		PyList_SetItem(list, (Py_ssize_t)i, pair);
	}
	return list;
fail:
	Py_DECREF(list);
	return NULL;
}

static PyObject *
get_content_length(PyObject *self, void *c)
{
	ParserObject *p = (ParserObject *)self;

	if (!p->head_done || p->req.content_length < 0)
		Py_RETURN_NONE;
	return PyLong_FromLongLong(p->req.content_length);
}

static PyObject *
get_flag(PyObject *self, void *c)
{
	ParserObject *p = (ParserObject *)self;
	const char *which = c;
	bool v = false;

	if (p->head_done) {
		if (strcmp(which, "chunked") == 0)
			v = p->req.chunked;
		else if (strcmp(which, "keep_alive") == 0)
			v = p->req.keep_alive;
		else if (strcmp(which, "expect_continue") == 0)
			v = p->req.expect_continue;
	}
	if (strcmp(which, "head_complete") == 0)
		v = p->head_done;
	else if (strcmp(which, "body_complete") == 0)
		v = p->head_done && p->body_done;
	return PyBool_FromLong(v);
}

static PyMethodDef parser_methods[] = {
    {"feed_head", parser_feed_head, METH_O,
        "feed_head(data): None while the head is incomplete; then the bytes "
        "after it. Raises ParseError(status, reason) on a bad request."},
    {"feed_body", parser_feed_body, METH_O,
        "feed_body(data) -> (body bytes, bytes of data used, done)"},
    {"reset", parser_reset, METH_NOARGS,
        "reset(): forget the request, ready for the next one"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef parser_getset[] = {
    {"method", get_method, NULL, "bytes", NULL},
    {"target", get_target, NULL, "the raw request target (bytes)", NULL},
    {"path", get_path, NULL, "the target's path, not decoded (bytes)", NULL},
    {"query", get_query, NULL, "after '?' (bytes)", NULL},
    {"http_version", get_http_version, NULL, "'1.0' or '1.1'", NULL},
    {"headers", get_headers, NULL, "[(lowercased name, value)]", NULL},
    {"content_length", get_content_length, NULL, "int or None", NULL},
    {"chunked", get_flag, NULL, NULL, "chunked"},
    {"keep_alive", get_flag, NULL, NULL, "keep_alive"},
    {"expect_continue", get_flag, NULL, NULL, "expect_continue"},
    {"head_complete", get_flag, NULL, NULL, "head_complete"},
    {"body_complete", get_flag, NULL, NULL, "body_complete"},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot parser_slots[] = {
    {Py_tp_new, parser_new},
    {Py_tp_dealloc, parser_dealloc},
    {Py_tp_methods, parser_methods},
    {Py_tp_getset, parser_getset},
    {Py_tp_doc,
        "RequestParser(*, limit_request_line=4094, "
        "limit_request_fields=100, limit_request_field_size=8190, "
        "limit_request_body=0): one HTTP/1.x request at a time"},
    {0, NULL},
};

static PyType_Spec parser_spec = {
    "narwhal_worker._http.RequestParser",
    sizeof(ParserObject),
    0,
    Py_TPFLAGS_DEFAULT,
    parser_slots,
};

static PyObject *
error_response(PyObject *module, PyObject *arg)
{
	long status = PyLong_AsLong(arg);
	const char *resp;
	size_t len;

	if (status == -1 && PyErr_Occurred())
		return NULL;
	resp = nw_error_response((int)status, &len);
	return PyBytes_FromStringAndSize(resp, (Py_ssize_t)len);
}

static PyMethodDef module_functions[] = {
    {"error_response", error_response, METH_O,
        "error_response(status) -> a complete 4xx/5xx response that closes"},
    {NULL, NULL, 0, NULL},
};

int
nw_parser_init(PyObject *module)
{
	PyObject *type;

	parse_error = PyErr_NewException(
	    "narwhal_worker._http.ParseError", PyExc_ValueError, NULL);
	if (parse_error == NULL)
		return -1;
	Py_INCREF(parse_error);
	if (PyModule_AddObject(module, "ParseError", parse_error) < 0)
		return -1;
	if ((type = PyType_FromSpec(&parser_spec)) == NULL ||
	    PyModule_AddObject(module, "RequestParser", type) < 0)
		return -1;
	return PyModule_AddFunctions(module, module_functions);
}
