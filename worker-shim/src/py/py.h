/*
 * py.h: what both Python drivers (wsgi/, asgi/) share on the Python side.
 *
 * Python.h itself, setting up an engine from a driver's keyword arguments,
 * the response-header check of the core raised as the same ValueError for
 * WSGI and ASGI, and a Python error logged where nobody can take it. Below
 * it are engine/ and core/; drivers include it, the engine never does.
 */
#ifndef NW_PY_H
#define NW_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "engine/engine.h"

/* headers.c */
int nw_head_add_py(struct nw_buf *head, PyObject *name, const char *n,
    size_t nl, PyObject *value, const char *v, size_t vl,
    struct nw_head_info *info);
void nw_py_error(const char *what);

/* setup.c: the settings every driver takes, in seconds and bytes */
struct nw_py_settings {
	int control_fd;
	double keepalive, header_timeout, heartbeat;
	unsigned long long max_requests, limit_body;
	Py_ssize_t limit_line, limit_fields, limit_field;
};
int nw_py_engine_settings(struct nw_engine *e, const struct nw_py_settings *p);
int64_t nw_py_ms(double seconds);
int nw_py_listeners(struct nw_engine *e, int private_fd, PyObject *listen_fds,
    int (*tmpl)(void *arg, struct nw_listener *l), void *arg);
void nw_py_listeners_free(struct nw_engine *e);
int nw_py_methods_init(void);
PyObject *nw_py_server_new(PyTypeObject *type, size_t state_size,
    PyObject *app, const struct nw_driver *drv,
    const struct nw_py_settings *set);

/* names.c: interned strings, and one key of a message */
struct nw_py_name {
	PyObject **p;
	const char *s;
};
int nw_py_intern(const struct nw_py_name *names, size_t n);
#define NW_PY_INTERN(table) nw_py_intern(table, sizeof table / sizeof table[0])
/* msg[key], a new reference; NULL with no error set when it is absent */
PyObject *nw_py_item(PyObject *msg, PyObject *key);

/*
 * Each driver's Python object is PyObject_HEAD and then its state, whose
 * first member is its engine: the methods both types share find it so.
 */
struct nw_py_object {
	PyObject_HEAD struct nw_engine e;
};
#define NW_PY_ENGINE(self) (&((struct nw_py_object *)(self))->e)
PyObject *nw_py_reopen_logs(PyObject *self, PyObject *unused);
PyObject *nw_py_flush_logs(PyObject *self, PyObject *unused);
PyObject *nw_py_get_served(PyObject *self, void *closure);
PyObject *nw_py_get_live(PyObject *self, void *closure);
#define NW_PY_METHODS 7
extern const char *const nw_py_method_names[NW_PY_METHODS];
extern PyObject *nw_py_methods[NW_PY_METHODS];

/* Inline: both drivers build every request with these. */

/* d[k] = v, v a new reference (NULL: an error already set). */
static inline int
nw_py_set_new(PyObject *d, PyObject *k, PyObject *v)
{
	int r;

	if (v == NULL)
		return -1;
	r = PyDict_SetItem(d, k, v);
	Py_DECREF(v);
	return r;
}

/* FNV-1a, for the drivers' caches of header names and values. */
static inline uint32_t
nw_py_hash(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

/* A new reference to a common method's str, or NULL (no error). */
static inline PyObject *
nw_py_method(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < NW_PY_METHODS; i++)
		if (strncmp(nw_py_method_names[i], p, n) == 0 &&
		    nw_py_method_names[i][n] == '\0') {
			Py_INCREF(nw_py_methods[i]);
			return nw_py_methods[i];
		}
	return NULL;
}

#endif
