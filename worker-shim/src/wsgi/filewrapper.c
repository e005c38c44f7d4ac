/*
 * filewrapper.c: wsgi.file_wrapper.
 *
 * A FileWrapper is an ordinary iterable over filelike.read(blksize) with a
 * close() that closes the file; response.c recognises one returned by the app
 * and, when the file has a real descriptor, sends it with sendfile().
 */
#include "wsgi/wsgi.h"

#include <structmember.h>

typedef struct {
	PyObject_HEAD PyObject *filelike;
	Py_ssize_t blksize;
} FileWrapperObject;

PyObject *nw_filewrapper_type;

PyObject *
nw_filewrapper_filelike(PyObject *wrapper)
{
	return ((FileWrapperObject *)wrapper)->filelike;
}

static PyObject *
fw_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"filelike", "blksize", NULL};
	FileWrapperObject *fw;
	PyObject *filelike;
	Py_ssize_t blksize = 8192;

	if (!PyArg_ParseTupleAndKeywords(
	        args, kw, "O|n:FileWrapper", kwlist, &filelike, &blksize))
		return NULL;
	if (blksize <= 0)
		blksize = 8192;
	fw = PyObject_New(FileWrapperObject, type);
	if (fw == NULL)
		return NULL;
	Py_INCREF(filelike);
	fw->filelike = filelike;
	fw->blksize = blksize;
	return (PyObject *)fw;
}

static void
fw_dealloc(PyObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(((FileWrapperObject *)self)->filelike);
	PyObject_Free(self);
	Py_DECREF(tp);
}

static PyObject *
fw_iter(PyObject *self)
{
	Py_INCREF(self);
	return self;
}

static PyObject *
fw_next(PyObject *self)
{
	FileWrapperObject *fw = (FileWrapperObject *)self;
	PyObject *data;

	data = PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);
	if (data == NULL)
		return NULL;
	if (PyBytes_Check(data) && PyBytes_Size(data) == 0) {
		Py_DECREF(data);
		return NULL; /* StopIteration */
	}
	return data;
}

static PyObject *
fw_close(PyObject *self, PyObject *unused)
{
	FileWrapperObject *fw = (FileWrapperObject *)self;
	PyObject *close, *r;

	close = PyObject_GetAttrString(fw->filelike, "close");
	if (close == NULL) {
		if (!PyErr_ExceptionMatches(PyExc_AttributeError))
			return NULL;
		PyErr_Clear();
		Py_RETURN_NONE;
	}
	r = PyObject_CallObject(close, NULL);
	Py_DECREF(close);
	return r;
}

static PyMethodDef fw_methods[] = {
    {"close", fw_close, METH_NOARGS, "close the wrapped file"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef fw_members[] = {
    {"filelike", T_OBJECT, offsetof(FileWrapperObject, filelike), READONLY,
        NULL},
    {"blksize", T_PYSSIZET, offsetof(FileWrapperObject, blksize), READONLY,
        NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot fw_slots[] = {
    {Py_tp_new, fw_new},
    {Py_tp_dealloc, fw_dealloc},
    {Py_tp_iter, fw_iter},
    {Py_tp_iternext, fw_next},
    {Py_tp_methods, fw_methods},
    {Py_tp_members, fw_members},
    {Py_tp_doc, "FileWrapper(filelike, blksize=8192): wsgi.file_wrapper"},
    {0, NULL},
};

static PyType_Spec fw_spec = {
    "narwhal_worker._http.FileWrapper",
    sizeof(FileWrapperObject),
    0,
    Py_TPFLAGS_DEFAULT,
    fw_slots,
};

int
nw_filewrapper_init(PyObject *module)
{
	nw_filewrapper_type = PyType_FromSpec(&fw_spec);
	if (nw_filewrapper_type == NULL)
		return -1;
	Py_INCREF(nw_filewrapper_type);
	return PyModule_AddObject(module, "FileWrapper", nw_filewrapper_type);
}
