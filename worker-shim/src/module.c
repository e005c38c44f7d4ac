/*
 * module.c: the Python module narwhal_worker._http.
 *
 * Defines the Server type, which turns keyword arguments (read from the
 * environment by the Python glue) into a struct nw_server and runs its
 * loop, and registers the other types. Methods here only set flags or copy
 * configuration; the work happens in server.c and wsgi.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim.h"
#include "conn.h"

typedef struct {
	PyObject_HEAD struct nw_server s;
} ServerObject;

static int64_t
ms(double seconds)
{
	return seconds <= 0 ? 0 : (int64_t)(seconds * 1000.0 + 0.5);
}

/* SERVER_NAME and SERVER_PORT come from the socket the request came in on. */
static int
listener_init(struct nw_server *s, struct nw_listener *l, int fd, bool public)
{
	char host[NW_HOST_MAX];
	PyObject *name, *port;
	int family, portnum;

	memset(l, 0, sizeof *l);
	l->kind = NW_WATCH_LISTENER;
	l->fd = fd;
	l->public = public;
	if ((family = nw_sock_name(fd, host, &portnum)) < 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	if (family == AF_INET || family == AF_INET6) {
		l->tcp = true;
	} else if (family == AF_UNIX) {
		/* gunicorn: the socket path, and the scheme's port */
		portnum = 80;
	}
	name = PyUnicode_DecodeFSDefault(host);
	port = PyUnicode_FromFormat("%d", portnum);
	if (name != NULL && port != NULL)
		l->environ = nw_wsgi_base_environ(s, l, name, port);
	Py_XDECREF(name);
	Py_XDECREF(port);
	return l->environ ? 0 : -1;
}

static PyObject *
server_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"app", "listen_fds", "private_fd",
	    "control_fd", "wakeup_fd", "keepalive", "header_timeout",
	    "graceful_timeout", "heartbeat", "write_timeout", "max_requests",
	    "limit_request_line", "limit_request_fields",
	    "limit_request_field_size", "limit_request_body", "accesslog",
	    "script_name", "errors", NULL};
	PyObject *app, *listen_fds = NULL, *errors = Py_None, *seq = NULL;
	PyObject *script_name = NULL, *sn_bytes;
	int private_fd = -1, control_fd = -1, wakeup_fd = -1;
	double keepalive = 2, header_timeout = 10, graceful = 30, heartbeat = 5,
	       write_timeout = 30;
	unsigned long long max_requests = 0, limit_body = 0;
	Py_ssize_t limit_line = 4094, limit_fields = 100, limit_field = 8190;
	const char *accesslog = NULL;
	ServerObject *self;
	struct nw_server *s;
	Py_ssize_t i, n = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kw,
	        "O|$OiiidddddKnnnKzUO:Server", kwlist, &app, &listen_fds,
	        &private_fd, &control_fd, &wakeup_fd, &keepalive,
	        &header_timeout, &graceful, &heartbeat, &write_timeout,
	        &max_requests, &limit_line, &limit_fields, &limit_field,
	        &limit_body, &accesslog, &script_name, &errors))
		return NULL;
	if (!PyCallable_Check(app)) {
		PyErr_SetString(PyExc_TypeError, "app must be callable");
		return NULL;
	}
	if (limit_line < 0 || limit_fields < 0 || limit_field < 0) {
		PyErr_SetString(PyExc_ValueError, "limits must be >= 0");
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
	s->epfd = s->alog_fd = -1;
	s->control_fd = control_fd;
	s->wakeup_fd = wakeup_fd;
	s->keepalive_ms = ms(keepalive);
	s->header_timeout_ms = ms(header_timeout) ? ms(header_timeout) : 1000;
	s->graceful_ms = ms(graceful);
	s->heartbeat_ms = ms(heartbeat);
	s->writer.timeout_ms =
	    (int)(ms(write_timeout) ? ms(write_timeout) : 30000);
	s->body_timeout_ms = s->writer.timeout_ms > s->header_timeout_ms
	    ? s->writer.timeout_ms
	    : s->header_timeout_ms;
	s->max_requests = max_requests;
	s->limits.request_line = (size_t)limit_line;
	s->limits.fields = (size_t)limit_fields;
	s->limits.field_size = (size_t)limit_field;
	s->limits.body = limit_body;
	Py_INCREF(app);
	s->app = app;
	if (errors == Py_None) {
		errors = PySys_GetObject("stderr"); /* borrowed */
		if (errors == NULL)
			errors = Py_None;
	}
	Py_INCREF(errors);
	s->errors = errors;
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
	/* "/" alone as SCRIPT_NAME strips nothing meaningful */
	if (s->script_name_len &&
	    s->script_name_b[s->script_name_len - 1] == '/')
		s->script_name_len--;
	if (accesslog != NULL && (s->alog_path = strdup(accesslog)) == NULL)
		goto nomem;

	if (nw_server_setup(s) < 0)
		goto nomem;
	s->listeners = calloc((size_t)n + 1, sizeof *s->listeners);
	if (s->listeners == NULL)
		goto nomem;
	if (private_fd >= 0) {
		if (listener_init(
		        s, &s->listeners[s->nlisteners], private_fd, false) < 0)
			goto fail;
		s->nlisteners++;
	}
	for (i = 0; i < n; i++) {
		long fd = PyLong_AsLong(PyList_GetItem(seq, i));

		if (fd == -1 && PyErr_Occurred())
			goto fail;
		if (listener_init(
		        s, &s->listeners[s->nlisteners], (int)fd, true) < 0)
			goto fail;
		s->nlisteners++;
	}
	if (nw_alog_open(s) < 0) {
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

static void
server_dealloc(PyObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);
	freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);

	nw_server_free(&((ServerObject *)self)->s);
	tp_free(self);
	Py_DECREF(tp);
}

static PyObject *
server_serve(PyObject *self, PyObject *unused)
{
	return nw_server_serve(&((ServerObject *)self)->s);
}

static PyObject *
server_stop(PyObject *self, PyObject *unused)
{
	nw_server_stop(&((ServerObject *)self)->s);
	Py_RETURN_NONE;
}

static PyObject *
server_quit(PyObject *self, PyObject *unused)
{
	((ServerObject *)self)->s.quit = true;
	Py_RETURN_NONE;
}

static PyObject *
server_reopen_logs(PyObject *self, PyObject *unused)
{
	nw_alog_reopen(&((ServerObject *)self)->s);
	Py_RETURN_NONE;
}

static PyObject *
server_flush_logs(PyObject *self, PyObject *unused)
{
	nw_alog_flush(&((ServerObject *)self)->s);
	Py_RETURN_NONE;
}

static PyObject *
server_get_served(PyObject *self, void *closure)
{
	return PyLong_FromUnsignedLongLong(((ServerObject *)self)->s.served);
}

static PyObject *
server_get_live(PyObject *self, void *closure)
{
	return PyBool_FromLong(((ServerObject *)self)->s.live);
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
    {"flush_logs", server_flush_logs, METH_NOARGS,
        "flush_logs(): write buffered access log lines"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
    {"served", server_get_served, NULL, "requests answered", NULL},
    {"live", server_get_live, NULL, "accepting public traffic", NULL},
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

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "narwhal_worker._http",
    "The HTTP core of the narwhal worker (stable ABI).",
    -1,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__http(void)
{
	PyObject *m = PyModule_Create(&module_def), *server_type;

	if (m == NULL)
		return NULL;
	if (nw_wsgi_init(m) < 0 || nw_input_init(m) < 0 ||
	    nw_filewrapper_init(m) < 0 || nw_parser_init(m) < 0 ||
	    nw_asgi_init(m) < 0)
		goto fail;
	if ((server_type = PyType_FromSpec(&server_spec)) == NULL ||
	    PyModule_AddObject(m, "Server", server_type) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
