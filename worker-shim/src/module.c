/*
 * module.c: the Python module narwhal_worker._http.
 *
 * It only registers the types: the WSGI driver's Server (and what its
 * requests use), the ASGI driver's ASGIServer (and its Cycle). What they do
 * lives in wsgi/ and asgi/, on the engine in engine/ and the HTTP core in
 * core/.
 */
#include "asgi/asgi.h"
#include "wsgi/wsgi.h"

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
	PyObject *m = PyModule_Create(&module_def);

	if (m == NULL)
		return NULL;
	if (nw_wsgi_server_init(m) < 0 || nw_asgi_init(m) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
