/*
 * input.c: wsgi.input, a read-only stream over a request body.
 *
 * The body was read completely before the app was called: it is either a
 * bytes object in memory or an unlinked temporary file read with pread().
 * read(), readline(), readlines() and iteration work on both; reading past
 * the end returns b"".
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "wsgi/wsgi.h"

#define FILE_CHUNK 8192

typedef struct {
	PyObject_HEAD PyObject *bytes; /* the body in memory, or NULL */
	int fd;                        /* the spilled body, or -1 */
	Py_ssize_t size;
	Py_ssize_t pos;
} InputObject;

static PyObject *input_type;

static PyObject *
input_new(void)
{
	InputObject *in = PyObject_New(InputObject, (PyTypeObject *)input_type);

	if (in == NULL)
		return NULL;
	in->bytes = NULL;
	in->fd = -1;
	in->size = in->pos = 0;
	return (PyObject *)in;
}

PyObject *
nw_input_from_mem(const char *p, size_t n)
{
	InputObject *in = (InputObject *)input_new();

	if (in == NULL)
		return NULL;
	if ((in->bytes = PyBytes_FromStringAndSize(
	         n ? p : "", (Py_ssize_t)n)) == NULL) {
		Py_DECREF(in);
		return NULL;
	}
	in->size = (Py_ssize_t)n;
	return (PyObject *)in;
}

PyObject *
nw_input_from_fd(int fd, uint64_t size)
{
	InputObject *in = (InputObject *)input_new();

	if (in == NULL) {
		close(fd);
		return NULL;
	}
	in->fd = fd;
	in->size = (Py_ssize_t)size;
	return (PyObject *)in;
}

static void
input_dealloc(PyObject *self)
{
	InputObject *in = (InputObject *)self;
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(in->bytes);
	if (in->fd >= 0)
		close(in->fd);
	PyObject_Free(self);
	Py_DECREF(tp);
}

/* Reads n bytes at the current position into a new bytes object. */
static PyObject *
take(InputObject *in, Py_ssize_t n)
{
	PyObject *out;
	char *dst;
	Py_ssize_t got = 0;

	if (n > in->size - in->pos)
		n = in->size - in->pos;
	if (n <= 0)
		return PyBytes_FromStringAndSize("", 0);
	if (in->bytes != NULL) {
		if (in->pos == 0 && n == in->size) {
			in->pos = n;
			Py_INCREF(in->bytes);
			return in->bytes;
		}
		out = PyBytes_FromStringAndSize(
		    PyBytes_AsString(in->bytes) + in->pos, n);
		if (out != NULL)
			in->pos += n;
		return out;
	}
	if ((out = PyBytes_FromStringAndSize(NULL, n)) == NULL)
		return NULL;
	dst = PyBytes_AsString(out);
	while (got < n) {
		ssize_t r = pread(in->fd, dst + got, (size_t)(n - got),
		    (off_t)(in->pos + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			Py_DECREF(out);
			if (r == 0)
				errno = EIO;
			return PyErr_SetFromErrno(PyExc_OSError);
		}
		got += r;
	}
	in->pos += n;
	return out;
}

static int
size_arg(PyObject *const arg, Py_ssize_t *size)
{
	*size = -1;
	if (arg == NULL || arg == Py_None)
		return 0;
	*size = PyLong_AsSsize_t(arg);
	if (*size == -1 && PyErr_Occurred())
		return -1;
	return 0;
}

static PyObject *
input_read(PyObject *self, PyObject *args)
{
	InputObject *in = (InputObject *)self;
	PyObject *arg = NULL;
	Py_ssize_t n;

	if (!PyArg_UnpackTuple(args, "read", 0, 1, &arg) ||
	    size_arg(arg, &n) < 0)
		return NULL;
	if (n < 0)
		n = in->size - in->pos;
	return take(in, n);
}

/* The length of the next line (through '\n'), at most limit bytes. */
static Py_ssize_t
line_length(InputObject *in, Py_ssize_t limit)
{
	Py_ssize_t left = in->size - in->pos, scanned = 0;
	char chunk[FILE_CHUNK];

	if (limit < 0 || limit > left)
		limit = left;
	if (in->bytes != NULL) {
		const char *p = PyBytes_AsString(in->bytes) + in->pos;
		const char *nl = memchr(p, '\n', (size_t)limit);

		return nl ? nl - p + 1 : limit;
	}
	while (scanned < limit) {
		size_t want = (size_t)(limit - scanned) < sizeof chunk
		    ? (size_t)(limit - scanned)
		    : sizeof chunk;
		ssize_t r =
		    pread(in->fd, chunk, want, (off_t)(in->pos + scanned));
		const char *nl;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if ((nl = memchr(chunk, '\n', (size_t)r)) != NULL)
			return scanned + (nl - chunk) + 1;
		scanned += r;
	}
	return limit;
}

static PyObject *
readline(InputObject *in, Py_ssize_t limit)
{
	Py_ssize_t n = line_length(in, limit);

	if (n < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	return take(in, n);
}

static PyObject *
input_readline(PyObject *self, PyObject *args)
{
	PyObject *arg = NULL;
	Py_ssize_t limit;

	if (!PyArg_UnpackTuple(args, "readline", 0, 1, &arg) ||
	    size_arg(arg, &limit) < 0)
		return NULL;
	return readline((InputObject *)self, limit);
}

static PyObject *
input_readlines(PyObject *self, PyObject *args)
{
	InputObject *in = (InputObject *)self;
	PyObject *arg = NULL, *lines;
	Py_ssize_t hint, total = 0;

	if (!PyArg_UnpackTuple(args, "readlines", 0, 1, &arg) ||
	    size_arg(arg, &hint) < 0)
		return NULL;
	if ((lines = PyList_New(0)) == NULL)
		return NULL;
	while (in->pos < in->size && (hint <= 0 || total < hint)) {
		PyObject *line = readline(in, -1);

		if (line == NULL || PyList_Append(lines, line) < 0) {
			Py_XDECREF(line);
			Py_DECREF(lines);
			return NULL;
		}
		total += PyBytes_Size(line);
		Py_DECREF(line);
	}
	return lines;
}

static PyObject *
input_iter(PyObject *self)
{
	Py_INCREF(self);
	return self;
}

static PyObject *
input_next(PyObject *self)
{
	InputObject *in = (InputObject *)self;

	if (in->pos >= in->size)
		return NULL; /* StopIteration */
	return readline(in, -1);
}

static PyObject *
input_close(PyObject *self, PyObject *unused)
{
	Py_RETURN_NONE;
}

static PyMethodDef input_methods[] = {
    {"read", input_read, METH_VARARGS, "read([size]) -> bytes"},
    {"readline", input_readline, METH_VARARGS, "readline([size]) -> bytes"},
    {"readlines", input_readlines, METH_VARARGS,
        "readlines([hint]) -> list of bytes"},
    {"close", input_close, METH_NOARGS, "does nothing"},
    {NULL, NULL, 0, NULL},
};

static PyObject *
input_tp_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	PyErr_SetString(PyExc_TypeError, "wsgi.input is made by the server");
	return NULL;
}

static PyType_Slot input_slots[] = {
    {Py_tp_new, input_tp_new},
    {Py_tp_dealloc, input_dealloc},
    {Py_tp_iter, input_iter},
    {Py_tp_iternext, input_next},
    {Py_tp_methods, input_methods},
    {Py_tp_doc, "wsgi.input: the request body, read before the app ran"},
    {0, NULL},
};

static PyType_Spec input_spec = {
    "narwhal_worker._http.Input",
    sizeof(InputObject),
    0,
    Py_TPFLAGS_DEFAULT,
    input_slots,
};

int
nw_input_init(PyObject *module)
{
	input_type = PyType_FromSpec(&input_spec);
	if (input_type == NULL)
		return -1;
	Py_INCREF(input_type);
	return PyModule_AddObject(module, "Input", input_type);
}
