/*
 * py.h: what both Python drivers (wsgi/, asgi/) share on the Python side.
 *
 * Python.h itself, the response-header check of the core raised as the same
 * ValueError for WSGI and ASGI, and a Python error logged where nobody can
 * take it. Below it are core/ and nothing else; drivers include it, the
 * engine never does.
 */
#ifndef NW_PY_H
#define NW_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/http.h"
#include "core/log.h"

/* headers.c */
int nw_head_add_py(struct nw_buf *head, PyObject *name, const char *n,
    size_t nl, PyObject *value, const char *v, size_t vl,
    struct nw_head_info *info);
void nw_py_error(const char *what);

#endif
