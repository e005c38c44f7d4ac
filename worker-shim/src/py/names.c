/*
 * names.c: the Python strings the drivers keep interned, made once at
 * import, and reading one key of an ASGI-style message (a dict, or any
 * mapping an app may send) without an error when the key is absent.
 */
#include "py/py.h"

int
nw_py_intern(const struct nw_py_name *names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((*names[i].p = PyUnicode_InternFromString(names[i].s)) ==
		    NULL)
			return -1;
	return 0;
}

PyObject *
nw_py_item(PyObject *msg, PyObject *key)
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
