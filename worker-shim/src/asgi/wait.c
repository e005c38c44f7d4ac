/*
 * wait.c: the awaitable that ASGI receive() and send() return.
 *
 * A Wait has its result already, or a future of the loop to wait on (a body
 * still arriving, a client reading slower than the app writes). Either way
 * it is a coroutine by asyncio's rules (send, throw, close, __await__), so
 * create_task(receive()) works too. It knows nothing of HTTP.
 */
#include "asgi/asgi.h"

/*
 * A Wait: what receive() and send() return. It has a result already, or a
 * future to wait for.
 */
typedef struct {
	PyObject_HEAD PyObject *value; /* the result, if there is no future */
	PyObject *future;
	bool yielded;
} WaitObject;

static PyObject *wait_type;
static PyObject *wait_none; /* a Wait for None, shared: it has no state */

PyObject *
nw_wait_new(PyObject *value, PyObject *future)
{
	WaitObject *w = PyObject_New(WaitObject, (PyTypeObject *)wait_type);

	if (w == NULL) {
		Py_XDECREF(value);
		Py_XDECREF(future);
		return NULL;
	}
	w->value = value; /* both stolen */
	w->future = future;
	w->yielded = false;
	return (PyObject *)w;
}

static void
wait_dealloc(PyObject *self)
{
	WaitObject *w = (WaitObject *)self;
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(w->value);
	Py_XDECREF(w->future);
	PyObject_Free(self);
	Py_DECREF(tp);
}

/* Ends the await with value as its result (StopIteration(value)). */
static PyObject *
stop_with(PyObject *value)
{
	if (value == Py_None) {
		Py_DECREF(value);
		return NULL; /* no exception: the result is None */
	}
	if (PyTuple_Check(value) || PyExceptionInstance_Check(value)) {
		PyObject *e = PyObject_CallFunctionObjArgs(
		    PyExc_StopIteration, value, NULL);

		if (e != NULL) {
			PyErr_SetObject(PyExc_StopIteration, e);
			Py_DECREF(e);
		}
	} else {
		PyErr_SetObject(PyExc_StopIteration, value);
	}
	Py_DECREF(value);
	return NULL;
}

static PyObject *
wait_iternext(PyObject *self)
{
	WaitObject *w = (WaitObject *)self;
	PyObject *r, *v;

	if (w->future == NULL) {
		if (w->value == NULL)
			return NULL;
		v = w->value;
		w->value = NULL;
		return stop_with(v);
	}
	if (!w->yielded) {
		if ((r = PyObject_CallMethodObjArgs(
		         w->future, nw_str.done, NULL)) == NULL)
			return NULL;
		v = r;
		if (v == Py_False) {
			Py_DECREF(v);
			/* as Future.__await__ does: the task waits on it */
			if (PyObject_SetAttr(
			        w->future, nw_str.blocking, Py_True) < 0)
				return NULL;
			w->yielded = true;
			Py_INCREF(w->future);
			return w->future;
		}
		Py_DECREF(v);
	}
	r = PyObject_CallMethodObjArgs(w->future, nw_str.result, NULL);
	Py_CLEAR(w->future);
	if (r == NULL)
		return NULL;
	return stop_with(r);
}

static PyObject *
wait_await(PyObject *self)
{
	Py_INCREF(self);
	return self;
}

static PyObject *
wait_send(PyObject *self, PyObject *arg)
{
	return wait_iternext(self);
}

/* throw(exc) or throw(type[, value[, tb]]): raised where the await is. */
PyObject *
nw_raise_thrown(PyObject *args)
{
	PyObject *typ = NULL, *val = NULL, *tb = NULL;

	if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb))
		return NULL;
	if (PyExceptionInstance_Check(typ)) {
		PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
	} else if (PyExceptionClass_Check(typ)) {
		if (val != NULL && val != Py_None)
			PyErr_SetObject(typ, val);
		else
			PyErr_SetNone(typ);
	} else {
		PyErr_SetString(PyExc_TypeError,
		    "exceptions must be classes or instances deriving from "
		    "BaseException");
	}
	return NULL;
}

static PyObject *
wait_throw(PyObject *self, PyObject *args)
{
	WaitObject *w = (WaitObject *)self;

	Py_CLEAR(w->value);
	Py_CLEAR(w->future);
	return nw_raise_thrown(args);
}

static PyObject *
wait_close(PyObject *self, PyObject *unused)
{
	WaitObject *w = (WaitObject *)self;

	Py_CLEAR(w->value);
	Py_CLEAR(w->future);
	Py_RETURN_NONE;
}

static PyMethodDef wait_methods[] = {
    {"send", wait_send, METH_O, NULL},
    {"throw", wait_throw, METH_VARARGS, NULL},
    {"close", wait_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot wait_slots[] = {
    {Py_tp_dealloc, wait_dealloc},
    {Py_tp_iter, wait_await},
    {Py_tp_iternext, wait_iternext},
    {Py_am_await, wait_await},
    {Py_tp_methods, wait_methods},
    {Py_tp_doc, "what ASGI receive() and send() return: await it"},
    {0, NULL},
};

static PyType_Spec wait_spec = {
    "narwhal_worker._http.ASGIWait",
    sizeof(WaitObject),
    0,
    Py_TPFLAGS_DEFAULT,
    wait_slots,
};

/* A Wait on a new future of the loop; the future goes to *fut too. */
PyObject *
nw_wait_future(struct nw_cycle *cy, PyObject **fut)
{
	PyObject *f =
	    PyObject_CallFunctionObjArgs(cy->srv->create_future, NULL);

	if (f == NULL)
		return NULL;
	Py_INCREF(f);
	*fut = f;
	return nw_wait_new(NULL, f);
}

/* Resolves fut with value unless it is done (cancelled) already. */
void
nw_future_resolve(PyObject *fut, PyObject *value)
{
	PyObject *r = PyObject_CallMethodObjArgs(fut, nw_str.done, NULL);

	if (r == Py_False)
		r = PyObject_CallMethodObjArgs(
		    fut, nw_str.set_result, value, NULL);
	if (r == NULL)
		PyErr_WriteUnraisable(fut);
	Py_XDECREF(r);
}

/* A Wait for None, done already: send()'s usual answer. */
PyObject *
nw_wait_none(void)
{
	Py_INCREF(wait_none);
	return wait_none;
}

int
nw_wait_init(void)
{
	if ((wait_type = PyType_FromSpec(&wait_spec)) == NULL)
		return -1;
	wait_none = nw_wait_new(NULL, NULL);
	return wait_none ? 0 : -1;
}
