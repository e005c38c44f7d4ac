/*
 * ws.c: a WebSocket's socket side, for ASGI apps.
 *
 * After the 101 the engine hands the connection's bytes here
 * (nw_conn_upgrade): the core's decoder (core/ws.h) turns them into
 * messages for receive(), through a queue that pauses reading while
 * ws_max_queue messages wait; pings are answered, the close handshake is
 * completed, and every open socket gets keep-alive pings and, when the
 * worker stops, a close frame. The handshake and what the app sends are
 * ws_app.c's; frames and bytes are the core's.
 */
#include <string.h>

#include "asgi/ws.h"

/* Interned by nw_ws_init. */
static PyObject *s_connect, *s_receive, *s_disconnect, *s_text, *s_bytes,
    *s_empty_str;

static const struct nw_py_name ws_strings[] = {
    {&s_connect, "websocket.connect"},
    {&s_receive, "websocket.receive"},
    {&s_disconnect, "websocket.disconnect"},
    {&s_text, "text"},
    {&s_bytes, "bytes"},
    {&s_empty_str, ""},
};

static void
ws_arm_tick(struct nw_asgi *s)
{
	PyObject *h, *delay;
	double period = 1.0;

	if (s->ws_tick_handle != NULL || s->ws_list == NULL || s->e.closed)
		return;
	if (s->ws_ping_interval_ms > 0) {
		int64_t p = s->ws_ping_interval_ms;

		if (s->ws_ping_timeout_ms > 0 && s->ws_ping_timeout_ms < p)
			p = s->ws_ping_timeout_ms;
		period = (double)p / 4000.0;
	}
	if (period < 0.05)
		period = 0.05;
	if (period > 5.0)
		period = 5.0;
	if ((delay = PyFloat_FromDouble(period)) == NULL)
		goto fail;
	h = PyObject_CallFunctionObjArgs(
	    s->call_later, delay, s->on_ws_tick, NULL);
	Py_DECREF(delay);
	if (h == NULL)
		goto fail;
	s->ws_tick_handle = h;
	return;
fail:
	nw_py_error("cannot arm the WebSocket timer");
}

void
nw_ws_list_add(struct nw_cycle *cy)
{
	struct nw_asgi *s = cy->srv;
	struct nw_ws *ws = cy->ws;

	if (ws->counted)
		return;
	ws->counted = true;
	ws->prev = NULL;
	ws->next = s->ws_list;
	if (s->ws_list)
		s->ws_list->ws->prev = cy;
	s->ws_list = cy;
	s->e.ws_open++;
	ws_arm_tick(s);
}

static void
ws_list_remove(struct nw_cycle *cy)
{
	struct nw_asgi *s = cy->srv;
	struct nw_ws *ws = cy->ws;

	if (!ws->counted)
		return;
	ws->counted = false;
	if (ws->prev)
		ws->prev->ws->next = ws->next;
	else
		s->ws_list = ws->next;
	if (ws->next)
		ws->next->ws->prev = ws->prev;
	ws->prev = ws->next = NULL;
	s->e.ws_open--;
}

static PyObject *
disconnect_message(struct nw_ws *ws)
{
	PyObject *code = PyLong_FromLong(ws->code), *d;

	if (code == NULL)
		return NULL;
	d = Py_BuildValue("{sOsOsO}", "type", s_disconnect, "code", code,
	    "reason", ws->reason ? ws->reason : s_empty_str);
	Py_DECREF(code);
	return d;
}

/* A message for the app: to a waiting receive(), or into the queue. */
static int
deliver(struct nw_cycle *cy, PyObject *msg)
{
	struct nw_ws *ws = cy->ws;
	PyObject *f;

	if (ws->qlen == 0 && (f = nw_cycle_waiter_pop(cy)) != NULL) {
		nw_future_resolve(f, msg);
		Py_DECREF(f);
		Py_DECREF(msg);
		/* its task steps in this loop turn: hold the answers */
		cy->srv->batch_started++;
		return 0;
	}
	if (ws->qlen == ws->qcap) {
		unsigned ncap = ws->qcap ? ws->qcap * 2 : 4, i;
		PyObject **q = PyMem_Calloc(ncap, sizeof *q);

		if (q == NULL) {
			Py_DECREF(msg);
			PyErr_NoMemory();
			return -1;
		}
		for (i = 0; i < ws->qlen; i++)
			q[i] = ws->queue[(ws->qhead + i) % ws->qcap];
		PyMem_Free(ws->queue);
		ws->queue = q;
		ws->qhead = 0;
		ws->qcap = ncap;
	}
	ws->queue[(ws->qhead + ws->qlen) % ws->qcap] = msg;
	ws->qlen++;
	return 0;
}

/* The connection is over for the app: wake receive() and send(). */
static void
wake_closed(struct nw_cycle *cy)
{
	struct nw_ws *ws = cy->ws;
	PyObject *f;

	while (ws->qlen == 0 && (f = nw_cycle_waiter_pop(cy)) != NULL) {
		PyObject *msg = disconnect_message(ws);

		if (msg == NULL)
			PyErr_WriteUnraisable(f);
		else
			nw_future_resolve(f, msg);
		Py_XDECREF(msg);
		Py_DECREF(f);
	}
	nw_cycle_drained(cy);
}

int
nw_ws_write_frame(
    struct nw_cycle *cy, unsigned op, bool rsv1, const void *p, size_t n)
{
	unsigned char h[NW_WS_HEADER_MAX];
	struct iovec iov[2];

	if (cy->conn == NULL)
		return -1;
	iov[0].iov_base = h;
	iov[0].iov_len = nw_ws_header(h, op, true, rsv1, n, NULL);
	iov[1].iov_base = (void *)p;
	iov[1].iov_len = n;
	return nw_conn_write(cy->conn, iov, n > 0 ? 2 : 1);
}

static int
write_close(struct nw_cycle *cy, unsigned code, const char *reason, size_t len)
{
	unsigned char payload[NW_WS_CONTROL_MAX];
	size_t n = nw_ws_close_payload(payload, code, reason, len);

	return nw_ws_write_frame(cy, NW_WS_OP_CLOSE, false, payload, n);
}

/*
 * The close handshake is over (or failed): the connection closes once the
 * last frame is out, and the app's receive() says websocket.disconnect.
 */
static void
ws_end(struct nw_cycle *cy, unsigned code, PyObject *reason)
{
	struct nw_ws *ws = cy->ws;
	struct nw_conn *c = cy->conn;

	if (ws->state != WS_CLOSED) {
		ws->state = WS_CLOSED;
		ws->code = (uint16_t)code;
		Py_XINCREF(reason);
		Py_XDECREF(ws->reason);
		ws->reason = reason;
	}
	ws_list_remove(cy);
	if (c != NULL) {
		struct nw_asgi_conn *ac = NW_ASGI_CONN(c);

		cy->conn = NULL;
		if (ac->cycle == cy) {
			ac->cycle = NULL;
			Py_DECREF(cy); /* the caller holds one */
		}
		if (c->fd >= 0) {
			if (c->out.len > c->opos) {
				c->state = NW_CONN_CLOSING;
				nw_conn_pause_reading(c);
			} else {
				nw_conn_finish(c);
			}
		}
		if (cy->srv->e.stopping)
			nw_asgi_check_drained(cy->srv);
	}
	wake_closed(cy);
}

/* Starts the close handshake: our close frame, then wait for the peer's. */
void
nw_ws_close(struct nw_cycle *cy, unsigned code, const char *reason, size_t len)
{
	struct nw_ws *ws = cy->ws;

	if (ws->state != WS_OPEN)
		return;
	ws->state = WS_CLOSING;
	ws->code = (uint16_t)code;
	nw_clock_update(&cy->srv->e.clock);
	ws->close_due = cy->srv->e.clock.mono_ms + WS_CLOSE_TIMEOUT_MS;
	if (write_close(cy, code, reason, len) < 0)
		return; /* gone: nw_ws_lost ran */
}

/* The client broke the protocol: its close code, and the end. */
static void
ws_fail(struct nw_cycle *cy, unsigned code, const char *why)
{
	PyObject *reason = PyUnicode_FromString(why);

	if (cy->ws->state == WS_OPEN)
		write_close(cy, code, why, strlen(why));
	if (reason == NULL)
		PyErr_Clear();
	ws_end(cy, code, reason);
	Py_XDECREF(reason);
}

static PyObject *
data_message(const struct nw_ws_event *ev)
{
	PyObject *d = PyDict_New(), *v;

	if (d == NULL)
		return NULL;
	if (ev->type == NW_WS_EV_TEXT)
		v = PyUnicode_DecodeUTF8(
		    (const char *)ev->data, (Py_ssize_t)ev->len, "strict");
	else
		v = PyBytes_FromStringAndSize(
		    (const char *)ev->data, (Py_ssize_t)ev->len);
	if (v == NULL || PyDict_SetItem(d, nw_str.type, s_receive) < 0 ||
	    PyDict_SetItem(d, ev->type == NW_WS_EV_TEXT ? s_text : s_bytes, v) <
	        0) {
		Py_XDECREF(v);
		Py_DECREF(d);
		return NULL;
	}
	Py_DECREF(v);
	return d;
}

/* A close frame from the client: the close handshake's second half. */
static void
peer_closed(struct nw_cycle *cy, const struct nw_ws_event *ev)
{
	struct nw_ws *ws = cy->ws;
	PyObject *reason;

	reason = PyUnicode_DecodeUTF8(
	    (const char *)ev->data, (Py_ssize_t)ev->len, "replace");
	if (reason == NULL)
		PyErr_Clear();
	if (ws->state == WS_OPEN) {
		/* echo its code (RFC 6455 5.5.1), none for none */
		write_close(cy, ev->code, NULL, 0);
	}
	ws_end(cy, ev->code, reason);
	Py_XDECREF(reason);
}

/* Decodes what the connection has read, as far as the queue allows. */
void
nw_ws_input(struct nw_cycle *cy)
{
	struct nw_asgi *s = cy->srv;
	struct nw_ws *ws = cy->ws;
	struct nw_conn *c;

	Py_INCREF(cy);
	while ((c = cy->conn) != NULL && c->rpos < c->in.len &&
	    ws->state != WS_CLOSED) {
		struct nw_ws_event ev;
		enum nw_ws_result r;
		size_t used;

		if (ws->qlen >= s->ws_max_queue) {
			nw_conn_pause_reading(c);
			break;
		}
		r = nw_ws_parse(&ws->parser,
		    (unsigned char *)c->in.data + c->rpos, c->in.len - c->rpos,
		    &used, &ev);
		c->rpos += used;
		if (r == NW_WS_AGAIN)
			break;
		if (r == NW_WS_ERROR) {
			ws_fail(cy, ws->parser.close_code, ws->parser.error);
			break;
		}
		switch (ev.type) {
		case NW_WS_EV_TEXT:
		case NW_WS_EV_BINARY:
			if (ws->state == WS_OPEN) {
				PyObject *msg = data_message(&ev);

				if (msg == NULL || deliver(cy, msg) < 0) {
					nw_py_error("cannot pass a message on");
					ws_fail(cy, NW_WS_CLOSE_INTERNAL,
					    "internal error");
				}
			}
			break;
		case NW_WS_EV_PING:
			if (ws->state == WS_OPEN)
				nw_ws_write_frame(
				    cy, NW_WS_OP_PONG, false, ev.data, ev.len);
			break;
		case NW_WS_EV_PONG:
			ws->pong_due = 0;
			break;
		case NW_WS_EV_CLOSE:
			peer_closed(cy, &ev);
			break;
		}
	}
	if ((c = cy->conn) != NULL && c->rpos == c->in.len)
		c->rpos = c->in.len = 0;
	Py_DECREF(cy);
}

/* The engine's callback: an upgraded connection has input, or hung up. */
void
nw_ws_upgraded(struct nw_conn *c, bool eof)
{
	struct nw_cycle *cy = NW_ASGI_CONN(c)->cycle;

	if (cy == NULL || cy->ws == NULL) {
		nw_conn_close(c);
		return;
	}
	if (eof) {
		nw_conn_close(c); /* nw_ws_lost tells the app: 1006 */
		return;
	}
	nw_ws_input(cy);
}

/* The connection is gone (closed by the engine, or the client left). */
void
nw_ws_lost(struct nw_cycle *cy)
{
	struct nw_ws *ws = cy->ws;

	cy->conn = NULL;
	ws_list_remove(cy);
	if (ws->state != WS_CLOSED) {
		ws->state = WS_CLOSED;
		ws->code = NW_WS_CLOSE_ABNORMAL;
	}
	wake_closed(cy);
}

PyObject *
nw_ws_receive(struct nw_cycle *cy)
{
	struct nw_ws *ws = cy->ws;
	PyObject *fut, *w;

	if (!ws->connect_given) {
		ws->connect_given = true;
		return nw_wait_new(
		    Py_BuildValue("{sO}", "type", s_connect), NULL);
	}
	if (ws->qlen > 0) {
		PyObject *msg = ws->queue[ws->qhead];

		ws->qhead = (ws->qhead + 1) % ws->qcap;
		ws->qlen--;
		if (cy->conn != NULL && cy->conn->read_paused &&
		    ws->state != WS_CLOSED) {
			nw_conn_resume_reading(cy->conn);
			nw_ws_input(cy); /* what was read but not decoded */
		}
		return nw_wait_new(msg, NULL);
	}
	if (ws->state == WS_CLOSED || ws->state == WS_HTTP || cy->conn == NULL)
		return nw_wait_new(disconnect_message(ws), NULL);
	if (cy->waiters == NULL && (cy->waiters = PyList_New(0)) == NULL)
		return NULL;
	if ((w = nw_wait_future(cy, &fut)) == NULL)
		return NULL;
	if (PyList_Append(cy->waiters, fut) < 0) {
		Py_DECREF(fut);
		Py_DECREF(w);
		return NULL;
	}
	Py_DECREF(fut);
	return w;
}

/* Every open socket: a ping due, a pong late, a close unanswered. */
PyObject *
nw_ws_tick(struct nw_asgi *s)
{
	struct nw_cycle *cy, *next;
	int64_t now;

	Py_CLEAR(s->ws_tick_handle);
	nw_clock_update(&s->e.clock);
	now = s->e.clock.mono_ms;
	for (cy = s->ws_list; cy != NULL; cy = next) {
		struct nw_ws *ws = cy->ws;

		next = ws->next; /* cy may leave the list */
		Py_INCREF(cy);
		if (ws->state == WS_CLOSING && now >= ws->close_due) {
			ws_end(cy, NW_WS_CLOSE_ABNORMAL, NULL);
		} else if (ws->state == WS_OPEN && s->ws_ping_interval_ms > 0) {
			if (ws->pong_due && now >= ws->pong_due) {
				ws_fail(cy, NW_WS_CLOSE_INTERNAL,
				    "keepalive ping timeout");
			} else if (!ws->pong_due && now >= ws->ping_due) {
				ws->ping_due = now + s->ws_ping_interval_ms;
				if (s->ws_ping_timeout_ms > 0)
					ws->pong_due =
					    now + s->ws_ping_timeout_ms;
				nw_ws_write_frame(
				    cy, NW_WS_OP_PING, false, "nw", 2);
			}
		}
		Py_DECREF(cy);
	}
	nw_conn_free_limbo(&s->e);
	nw_engine_arm(&s->e);
	ws_arm_tick(s);
	Py_RETURN_NONE;
}

/*
 * The worker stops: every open socket gets a close frame (1012 for a
 * restart, 1001 otherwise) and the app sees the disconnect once the client
 * answers; the drain waits for that, within graceful_timeout.
 */
void
nw_ws_stop(struct nw_asgi *s)
{
	struct nw_cycle *cy, *next;
	const char *why = s->ws_stop_code == NW_WS_CLOSE_RESTART
	    ? "server restart"
	    : "going away";

	for (cy = s->ws_list; cy != NULL; cy = next) {
		next = cy->ws->next;
		Py_INCREF(cy);
		nw_ws_close(cy, s->ws_stop_code, why, strlen(why));
		Py_DECREF(cy);
	}
	ws_arm_tick(s);
}

int
nw_ws_init(PyObject *module)
{
	if (NW_PY_INTERN(ws_strings) < 0)
		return -1;
	return nw_ws_app_init(module);
}
