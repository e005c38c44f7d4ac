/*
 * setup.c: what both Python drivers do to set up their engine.
 *
 * The settings every driver takes (timeouts in seconds, limits, the master's
 * socket) copied into the engine, and the listeners from their fds, each
 * with the driver's template (an environ or a scope). Also the small
 * helpers both drivers' request builders use (the methods' interned
 * strings, a hash for their caches), and the methods both Python types
 * share. No loop and no request here.
 */
#include <stdlib.h>
#include <string.h>

#include "py/py.h"

/* Seconds from Python, as the engine's milliseconds (0 or less: 0). */
int64_t
nw_py_ms(double seconds)
{
	return seconds <= 0 ? 0 : (int64_t)(seconds * 1000.0 + 0.5);
}

/* -1 with a Python error if a limit is negative. */
int
nw_py_engine_settings(struct nw_engine *e, const struct nw_py_settings *p)
{
	char why[512];

	if (p->limit_line < 0 || p->limit_fields < 0 || p->limit_field < 0) {
		PyErr_SetString(PyExc_ValueError, "limits must be >= 0");
		return -1;
	}
	e->control_fd = p->control_fd;
	e->keepalive_ms = nw_py_ms(p->keepalive);
	e->header_timeout_ms =
	    nw_py_ms(p->header_timeout) ? nw_py_ms(p->header_timeout) : 1000;
	e->heartbeat_ms = nw_py_ms(p->heartbeat);
	e->max_requests = p->max_requests;
	e->limits.request_line = (size_t)p->limit_line;
	e->limits.fields = (size_t)p->limit_fields;
	e->limits.field_size = (size_t)p->limit_field;
	e->limits.body = p->limit_body;
	nw_engine_bounds(e); /* the rest, from the master's environment */
	if (nw_engine_tls_setup(e, why, sizeof why) < 0) {
		PyErr_SetString(PyExc_OSError, why);
		return -1;
	}
	return 0;
}

/*
 * The private socket (if private_fd >= 0) as listeners[0], then the public
 * ones from the sequence listen_fds (None: none); tmpl makes each one's
 * template. -1 with a Python error.
 */
int
nw_py_listeners(struct nw_engine *e, int private_fd, PyObject *listen_fds,
    int (*tmpl)(void *arg, struct nw_listener *l), void *arg)
{
	PyObject *seq = NULL;
	Py_ssize_t i, n = 0;
	int rc = -1;

	if (listen_fds != NULL && listen_fds != Py_None) {
		if ((seq = PySequence_List(listen_fds)) == NULL)
			return -1;
		n = PyList_Size(seq);
	}
	e->listeners = calloc((size_t)n + 1, sizeof *e->listeners);
	if (e->listeners == NULL) {
		PyErr_NoMemory();
		goto out;
	}
	for (i = private_fd >= 0 ? -1 : 0; i < n; i++) {
		struct nw_listener *l = &e->listeners[e->nlisteners];
		long fd =
		    i < 0 ? private_fd : PyLong_AsLong(PyList_GetItem(seq, i));

		if (fd == -1 && PyErr_Occurred())
			goto out;
		if (nw_listener_init(l, (int)fd, i >= 0) < 0) {
			PyErr_SetFromErrno(PyExc_OSError);
			goto out;
		}
		/* the health probe's private socket stays plain HTTP */
		l->tls = l->public && e->tls != NULL;
		e->nlisteners++;
		if (tmpl(arg, l) < 0)
			goto out;
	}
	rc = 0;
out:
	Py_XDECREF(seq);
	return rc;
}

/* The templates and the array, when the driver goes. */
void
nw_py_listeners_free(struct nw_engine *e)
{
	size_t i;

	for (i = 0; i < e->nlisteners; i++)
		Py_CLEAR(*(PyObject **)&e->listeners[i].tmpl);
	free(e->listeners);
	e->listeners = NULL;
	e->nlisteners = 0;
}

const char *const nw_py_method_names[NW_PY_METHODS] = {
    "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"};
PyObject *nw_py_methods[NW_PY_METHODS];

/* The common methods' strings, interned once (both drivers ask). */
int
nw_py_methods_init(void)
{
	size_t i;

	for (i = 0; i < NW_PY_METHODS; i++)
		if (nw_py_methods[i] == NULL &&
		    (nw_py_methods[i] = PyUnicode_InternFromString(
		         nw_py_method_names[i])) == NULL)
			return -1;
	return 0;
}

/* The methods both types have: the access log, and what they report. */

PyObject *
nw_py_reopen_logs(PyObject *self, PyObject *unused)
{
	nw_engine_alog_reopen(NW_PY_ENGINE(self));
	Py_RETURN_NONE;
}

PyObject *
nw_py_flush_logs(PyObject *self, PyObject *unused)
{
	nw_engine_alog_flush(NW_PY_ENGINE(self));
	Py_RETURN_NONE;
}

PyObject *
nw_py_get_served(PyObject *self, void *closure)
{
	return PyLong_FromUnsignedLongLong(NW_PY_ENGINE(self)->counters.served);
}

PyObject *
nw_py_get_live(PyObject *self, void *closure)
{
	return PyBool_FromLong(NW_PY_ENGINE(self)->live);
}

/*
 * A driver's Server object, with its engine ready: app checked callable,
 * the driver's state (state_size bytes, the engine first) zeroed, the
 * engine set up for drv with the proxy lists and the settings. NULL with
 * a Python error set.
 */
PyObject *
nw_py_server_new(PyTypeObject *type, size_t state_size, PyObject *app,
    const struct nw_driver *drv, const struct nw_py_settings *set)
{
	PyObject *self;
	struct nw_engine *e;
	char why[256];

	if (!PyCallable_Check(app)) {
		PyErr_SetString(PyExc_TypeError, "app must be callable");
		return NULL;
	}
	if ((self = PyType_GenericAlloc(type, 0)) == NULL)
		return NULL;
	e = NW_PY_ENGINE(self);
	memset(e, 0, state_size);
	nw_engine_init(e, drv);
	if (nw_engine_front_setup(e, why, sizeof why) < 0) {
		PyErr_SetString(PyExc_ValueError, why);
		Py_DECREF(self);
		return NULL;
	}
	if (nw_py_engine_settings(e, set) < 0) {
		Py_DECREF(self);
		return NULL;
	}
	return self;
}
