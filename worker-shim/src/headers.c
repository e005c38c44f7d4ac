/*
 * headers.c: the Python face of response.c's header check, shared by the
 * WSGI start_response and the ASGI http.response.start: one header is
 * checked and appended, and a refusal becomes the same ValueError in both.
 */
#include "shim.h"

int
nw_head_add_py(struct nw_buf *head, PyObject *name, const char *n,
    size_t nl, PyObject *value, const char *v, size_t vl,
    struct nw_head_info *info)
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
