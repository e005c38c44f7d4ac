/*
 * headers.c: the Python face of the core's header check, shared by the
 * WSGI start_response and the ASGI http.response.start: one header is
 * checked and appended, and a refusal becomes the same ValueError in both.
 * Also the one way a driver logs a Python error nobody can take.
 */
#include "py/py.h"

int
nw_head_add_py(struct nw_buf *head, PyObject *name, const char *n, size_t nl,
    PyObject *value, const char *v, size_t vl, struct nw_head_info *info)
{
	switch (nw_head_add_header(head, n, nl, v, vl, info)) {
	case NW_HEAD_OK:
		return 0;
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
	return -1;
}

/* A Python error where nobody can take it: log it, print it, carry on. */
void
nw_py_error(const char *what)
{
	nw_log("%s", what);
	PyErr_PrintEx(0);
}
