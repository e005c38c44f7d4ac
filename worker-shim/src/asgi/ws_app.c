/*
 * ws_app.c: a WebSocket's app side, for ASGI apps.
 *
 * An upgrade request is checked (400, 426) and becomes a Cycle with a
 * struct nw_ws beside it and a `websocket` scope. send() answers the
 * handshake (101 with the accept key, the subprotocol and
 * permessage-deflate) or denies it (403, or the app's own HTTP response
 * through send.c), frames the app's messages and starts the close; what an
 * app left undone when it returns is finished here. Reading the socket,
 * receive() and the timers are ws.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "asgi/ws.h"

/* Interned by nw_ws_app_init. */
static PyObject *s_websocket, *s_accept, *s_send, *s_close, *s_text, *s_bytes,
    *s_code, *s_reason, *s_subprotocol, *s_subprotocols, *s_extensions, *s_ws,
    *s_wss, *s_resp_start, *s_resp_body, *s_http_start, *s_http_body, *s_v2_4;
static PyObject *extensions_value;   /* {"websocket.http.response": {}} */
static PyObject *disconnected_error; /* _http.ClientDisconnected */

static const struct nw_py_name ws_strings[] = {
    {&s_websocket, "websocket"},
    {&s_accept, "websocket.accept"},
    {&s_send, "websocket.send"},
    {&s_close, "websocket.close"},
    {&s_text, "text"},
    {&s_bytes, "bytes"},
    {&s_code, "code"},
    {&s_reason, "reason"},
    {&s_subprotocol, "subprotocol"},
    {&s_subprotocols, "subprotocols"},
    {&s_extensions, "extensions"},
    {&s_ws, "ws"},
    {&s_wss, "wss"},
    {&s_resp_start, "websocket.http.response.start"},
    {&s_resp_body, "websocket.http.response.body"},
    {&s_http_start, "http.response.start"},
    {&s_http_body, "http.response.body"},
    {&s_v2_4, "2.4"},
};

static const struct nw_header *
header(struct nw_conn *c, const char *name)
{
	return nw_request_header(
	    &c->req, c->in.data + c->rpos, name, strlen(name));
}

static bool
header_lists(struct nw_conn *c, const char *name, const char *token)
{
	const char *buf = c->in.data + c->rpos;
	size_t i, n = strlen(name);

	/* every line of that name: Connection may come twice */
	for (i = 0; i < c->req.nheaders; i++) {
		const struct nw_header *h = &c->req.headers[i];

		if (h->name.len == n &&
		    strncasecmp(buf + h->name.off, name, n) == 0 &&
		    nw_ws_list_has(buf + h->value.off, h->value.len, token))
			return true;
	}
	return false;
}

/* Upgrade: websocket, and Connection: upgrade. */
bool
nw_ws_requested(struct nw_conn *c)
{
	return header_lists(c, "upgrade", "websocket") &&
	    header_lists(c, "connection", "upgrade");
}

/*
 * A short plain-text answer that closes the connection, as three pieces for
 * writev around the Date line (as nw_error_iov); extra is one more header
 * line or "". Returns the body's length.
 */
static size_t
answer_iov(struct nw_asgi *s, char *head, size_t cap, int status,
    const char *extra, struct iovec iov[3])
{
	static const struct {
		int status;
		const char *reason, *body;
	} answers[] = {
	    {400, "Bad Request", "\r\nBad WebSocket handshake\n"},
	    {403, "Forbidden", "\r\nForbidden\n"},
	    {426, "Upgrade Required", "\r\nWebSocket version 13 is required\n"},
	    {500, "Internal Server Error", "\r\nInternal Server Error\n"},
	};
	size_t i = 0, blen;

	while (i < 3 && answers[i].status != status)
		i++;
	blen = strlen(answers[i].body) - 2;
	nw_clock_update(&s->e.clock);
	iov[0].iov_base = head;
	iov[0].iov_len = (size_t)snprintf(head, cap,
	    "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n",
	    answers[i].status, answers[i].reason, extra, blen);
	iov[1].iov_base = s->e.clock.date;
	iov[1].iov_len = s->e.clock.date_len;
	iov[2].iov_base = (void *)answers[i].body;
	iov[2].iov_len = blen + 2;
	return blen;
}

/* A handshake the engine refuses for us: 400 or 426, then close. */
static void
refuse(struct nw_conn *c, int status, const char *extra)
{
	char head[256];
	struct iovec iov[3];
	size_t body = answer_iov(
	    NW_ASGI(c->engine), head, sizeof head, status, extra, iov);

	nw_conn_count(c, status, body);
	nw_conn_refuse(c, iov, 3);
}

/* The extension offers, every line of them joined with ", ". */
static int
joined_header(struct nw_asgi *s, struct nw_conn *c, const char *name)
{
	const char *buf = c->in.data + c->rpos;
	size_t i, n = strlen(name);

	s->scratch.len = 0;
	for (i = 0; i < c->req.nheaders; i++) {
		const struct nw_header *h = &c->req.headers[i];

		if (h->name.len != n ||
		    strncasecmp(buf + h->name.off, name, n) != 0)
			continue;
		if ((s->scratch.len > 0 &&
		        nw_buf_append(&s->scratch, ", ", 2) < 0) ||
		    nw_buf_append(
		        &s->scratch, buf + h->value.off, h->value.len) < 0)
			return -1;
	}
	return 0;
}

static struct nw_ws *
ws_new(struct nw_asgi *s)
{
	struct nw_ws *ws = PyMem_Calloc(1, sizeof *ws);

	if (ws == NULL)
		return NULL;
	ws->parser.max_size = s->ws_max_size;
	ws->code = NW_WS_CLOSE_ABNORMAL;
	return ws;
}

static void
ws_free(struct nw_ws *ws)
{
	while (ws->qlen > 0) {
		Py_DECREF(ws->queue[ws->qhead]);
		ws->qhead = (ws->qhead + 1) % ws->qcap;
		ws->qlen--;
	}
	PyMem_Free(ws->queue);
	Py_XDECREF(ws->reason);
	nw_ws_parser_free(&ws->parser);
	nw_ws_pmd_free(&ws->pmd);
	free(ws->zbuf); /* the core's realloc */
	PyMem_Free(ws);
}

void
nw_ws_discard(struct nw_ws *ws)
{
	if (ws != NULL)
		ws_free(ws);
}

void
nw_ws_free(struct nw_cycle *cy)
{
	if (cy->ws != NULL)
		ws_free(cy->ws);
	cy->ws = NULL;
}

/*
 * An upgrade request: checked (a 400 or 426 otherwise), its accept key and
 * extension worked out, then a Cycle starts as for any request.
 */
int
nw_ws_start(struct nw_asgi *s, struct nw_conn *c)
{
	const char *buf = c->in.data + c->rpos;
	const struct nw_header *h;
	struct nw_ws *ws;

	if (c->req.method.len != 3 ||
	    memcmp(buf + c->req.method.off, "GET", 3) != 0 ||
	    c->req.minor < 1 || c->req.content_length > 0 || c->req.chunked) {
		refuse(c, 400, "");
		return 0;
	}
	h = header(c, "sec-websocket-version");
	if (h == NULL || h->value.len != 2 ||
	    memcmp(buf + h->value.off, "13", 2) != 0) {
		refuse(c, 426, "Sec-WebSocket-Version: 13\r\n");
		return 0;
	}
	h = header(c, "sec-websocket-key");
	if (h == NULL || !nw_ws_key_valid(buf + h->value.off, h->value.len)) {
		refuse(c, 400, "");
		return 0;
	}
	if ((ws = ws_new(s)) == NULL) {
		PyErr_NoMemory();
		return -1;
	}
	if (nw_ws_accept_key(buf + h->value.off, h->value.len, ws->accept) <
	    0) {
		ws_free(ws);
		PyErr_SetString(PyExc_RuntimeError, "libcrypto: no SHA-1");
		return -1;
	}
	if (s->ws_pmd.enabled) {
		if (joined_header(s, c, "sec-websocket-extensions") < 0) {
			ws_free(ws);
			PyErr_NoMemory();
			return -1;
		}
		if (s->scratch.len > 0 &&
		    nw_ws_pmd_negotiate(&s->ws_pmd, s->scratch.data,
		        s->scratch.len, &ws->pmd, ws->ext, sizeof ws->ext) == 1)
			ws->parser.pmd = &ws->pmd;
	}
	s->batch_started++;
	return nw_cycle_start(s, c, ws); /* it owns ws, even when it fails */
}

/* The scope of an upgrade: the HTTP one, made a websocket one. */
int
nw_ws_scope(struct nw_asgi *s, struct nw_conn *c, PyObject *scope)
{
	const char *buf = c->in.data + c->rpos;
	PyObject *scheme, *asgi, *protos;
	size_t i;

	scheme = PyDict_GetItemWithError(scope, nw_str.scheme);
	if (scheme == NULL)
		return -1;
	scheme = PyUnicode_Check(scheme) &&
	        PyUnicode_CompareWithASCIIString(scheme, "https") == 0
	    ? s_wss
	    : s_ws;
	if ((protos = PyList_New(0)) == NULL)
		return -1;
	for (i = 0; i < c->req.nheaders; i++) {
		const struct nw_header *h = &c->req.headers[i];
		const char *v = buf + h->value.off;
		size_t n = h->value.len, j = 0;

		if (h->name.len != 22 ||
		    strncasecmp(
		        buf + h->name.off, "sec-websocket-protocol", 22) != 0)
			continue;
		while (j < n) {
			size_t a, b;

			while (j < n &&
			    (v[j] == ' ' || v[j] == '\t' || v[j] == ','))
				j++;
			a = j;
			while (j < n && v[j] != ',')
				j++;
			b = j;
			while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
				b--;
			if (b > a) {
				PyObject *p = PyUnicode_DecodeLatin1(
				    v + a, (Py_ssize_t)(b - a), NULL);

				if (p == NULL || PyList_Append(protos, p) < 0) {
					Py_XDECREF(p);
					Py_DECREF(protos);
					return -1;
				}
				Py_DECREF(p);
			}
		}
	}
	asgi = Py_BuildValue(
	    "{sOsO}", "version", nw_str.v3_0, "spec_version", s_v2_4);
	if (asgi == NULL ||
	    PyDict_SetItem(scope, nw_str.type, s_websocket) < 0 ||
	    PyDict_SetItem(scope, nw_str.asgi, asgi) < 0 ||
	    PyDict_SetItem(scope, nw_str.scheme, scheme) < 0 ||
	    PyDict_SetItem(scope, s_subprotocols, protos) < 0 ||
	    PyDict_SetItem(scope, s_extensions, extensions_value) < 0 ||
	    PyDict_DelItem(scope, nw_str.method) < 0) {
		Py_XDECREF(asgi);
		Py_DECREF(protos);
		return -1;
	}
	Py_DECREF(asgi);
	Py_DECREF(protos);
	return 0;
}

static PyObject *
closed_error(struct nw_ws *ws)
{
	PyErr_Format(disconnected_error,
	    ws->state == WS_CLOSED ? "the WebSocket is closed (code %d)"
	                           : "the WebSocket is closing (code %d)",
	    ws->code);
	return NULL;
}

/* 101 Switching Protocols, and the bytes are ours from now on. */
static PyObject *
send_accept(struct nw_cycle *cy, PyObject *msg)
{
	struct nw_asgi *s = cy->srv;
	struct nw_ws *ws = cy->ws;
	struct nw_conn *c = cy->conn;
	PyObject *sub, *headers, *tmp = NULL;
	struct iovec iov;
	int rc;

	if (ws->state != WS_CONNECTING)
		return PyErr_Format(PyExc_RuntimeError,
		    "Expected ASGI message 'websocket.send' or "
		    "'websocket.close', but got 'websocket.accept'.");
	if (c == NULL) /* the client left: receive() tells */
		return nw_wait_none();
	cy->head.len = 0;
	if (nw_buf_appendstr(&cy->head,
	        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	        "Connection: Upgrade\r\nSec-WebSocket-Accept: ") < 0 ||
	    nw_buf_appendstr(&cy->head, ws->accept) < 0 ||
	    nw_buf_append(&cy->head, "\r\n", 2) < 0)
		return PyErr_NoMemory();
	if ((sub = nw_py_item(msg, s_subprotocol)) == NULL && PyErr_Occurred())
		return NULL;
	if (sub != NULL && sub != Py_None) {
		const char *p;
		Py_ssize_t n;

		if (!PyUnicode_Check(sub) ||
		    (tmp = PyUnicode_AsASCIIString(sub)) == NULL ||
		    PyBytes_AsStringAndSize(tmp, (char **)&p, &n) < 0) {
			if (!PyErr_Occurred() ||
			    PyErr_ExceptionMatches(PyExc_UnicodeError)) {
				PyErr_Clear();
				PyErr_SetString(PyExc_ValueError,
				    "websocket.accept: the subprotocol must be "
				    "an ASCII str");
			}
			Py_XDECREF(tmp);
			Py_DECREF(sub);
			return NULL;
		}
		for (Py_ssize_t i = 0; i < n; i++)
			if (!nw_tchar[(unsigned char)p[i]]) {
				Py_DECREF(tmp);
				Py_DECREF(sub);
				return PyErr_Format(PyExc_ValueError,
				    "websocket.accept: invalid subprotocol %R",
				    sub);
			}
		rc = nw_buf_appendstr(&cy->head, "Sec-WebSocket-Protocol: ") <
		        0 ||
		    nw_buf_append(&cy->head, p, (size_t)n) < 0 ||
		    nw_buf_append(&cy->head, "\r\n", 2) < 0;
		Py_DECREF(tmp);
		if (rc) {
			Py_DECREF(sub);
			return PyErr_NoMemory();
		}
	}
	Py_XDECREF(sub);
	if (ws->ext[0] != '\0' &&
	    (nw_buf_appendstr(&cy->head, "Sec-WebSocket-Extensions: ") < 0 ||
	        nw_buf_appendstr(&cy->head, ws->ext) < 0 ||
	        nw_buf_append(&cy->head, "\r\n", 2) < 0))
		return PyErr_NoMemory();
	if ((headers = nw_py_item(msg, nw_str.headers)) == NULL && PyErr_Occurred())
		return NULL;
	rc = nw_cycle_add_headers(cy, headers);
	Py_XDECREF(headers);
	if (rc < 0)
		return NULL;
	nw_clock_update(&s->e.clock);
	if ((!cy->has_date &&
	        nw_buf_append(&cy->head, s->e.clock.date, s->e.clock.date_len) <
	            0) ||
	    nw_buf_append(&cy->head, "\r\n", 2) < 0)
		return PyErr_NoMemory();
	cy->status = 101;
	cy->started = cy->head_sent = true;
	iov.iov_base = cy->head.data;
	iov.iov_len = cy->head.len;
	if (nw_conn_write(c, &iov, 1) < 0)
		return nw_wait_none(); /* gone: receive() tells */
	nw_conn_log(c, 101, 0);
	nw_conn_upgrade(c);
	ws->state = WS_OPEN;
	ws->ping_due = s->e.clock.mono_ms + s->ws_ping_interval_ms;
	nw_ws_list_add(cy);
	if (s->e.stopping)
		nw_ws_close(cy, s->ws_stop_code, NULL, 0);
	else if (c->rpos < c->in.len)
		nw_ws_input(cy); /* frames sent right behind the handshake */
	return nw_wait_none();
}

/* Before the accept, websocket.close is a 403; or the app's own answer. */
static PyObject *
send_denial(struct nw_cycle *cy, PyObject *msg, PyObject *type, bool start)
{
	struct nw_ws *ws = cy->ws;
	PyObject *copy, *r;

	if (ws->state != WS_CONNECTING && ws->state != WS_HTTP)
		return PyErr_Format(PyExc_RuntimeError,
		    "Unexpected ASGI message %R after the handshake.", type);
	ws->state = WS_HTTP;
	cy->keep_alive = false; /* a refused upgrade closes */
	if (cy->conn == NULL)
		return nw_wait_none();
	if ((copy = PyDict_Copy(msg)) == NULL ||
	    PyDict_SetItem(
	        copy, nw_str.type, start ? s_http_start : s_http_body) < 0) {
		Py_XDECREF(copy);
		return NULL;
	}
	r = start ? nw_cycle_send_start(cy, copy, type)
	          : nw_cycle_send_body(cy, copy, type);
	Py_DECREF(copy);
	return r;
}

/* A 403 (the app closed before accepting) or a 500, and the end. */
static void
deny(struct nw_cycle *cy, int status)
{
	struct nw_conn *c = cy->conn;
	struct iovec iov[3];
	char head[256];
	size_t body;

	cy->ws->state = WS_HTTP;
	if (c == NULL)
		return;
	body = answer_iov(cy->srv, head, sizeof head, status, "", iov);
	cy->status = status;
	cy->head_sent = true;
	if (nw_conn_write(c, iov, 3) == 0 && cy->conn != NULL) {
		nw_conn_log(c, status, body);
		nw_cycle_detach(cy);
		nw_asgi_conn_done(c, true);
	}
}

static PyObject *
send_close(struct nw_cycle *cy, PyObject *msg)
{
	struct nw_ws *ws = cy->ws;
	PyObject *code_o, *reason_o, *tmp = NULL;
	const char *reason = NULL;
	Py_ssize_t rlen = 0;
	long code = NW_WS_CLOSE_NORMAL;

	if (ws->state == WS_CONNECTING) {
		deny(cy, 403);
		return nw_wait_none();
	}
	if (ws->state != WS_OPEN)
		return nw_wait_none(); /* closing or closed already: no-op */
	if ((code_o = nw_py_item(msg, s_code)) == NULL && PyErr_Occurred())
		return NULL;
	if (code_o != NULL && code_o != Py_None) {
		code = PyLong_AsLong(code_o);
		if (code == -1 && PyErr_Occurred()) {
			Py_DECREF(code_o);
			return NULL;
		}
	}
	Py_XDECREF(code_o);
	if (!nw_ws_close_code_valid((unsigned)code) || code < 1000)
		return PyErr_Format(PyExc_ValueError,
		    "websocket.close: invalid code %ld", code);
	if ((reason_o = nw_py_item(msg, s_reason)) == NULL && PyErr_Occurred())
		return NULL;
	if (reason_o != NULL && reason_o != Py_None) {
		if (!PyUnicode_Check(reason_o) ||
		    (tmp = PyUnicode_AsUTF8String(reason_o)) == NULL) {
			Py_DECREF(reason_o);
			if (!PyErr_Occurred())
				PyErr_SetString(PyExc_TypeError,
				    "websocket.close: reason must be a str");
			return NULL;
		}
		reason = PyBytes_AsString(tmp);
		rlen = PyBytes_Size(tmp);
	}
	Py_XDECREF(reason_o);
	nw_ws_close(cy, (unsigned)code, reason, (size_t)rlen);
	Py_XDECREF(tmp);
	return nw_wait_none();
}

static PyObject *
send_data(struct nw_cycle *cy, PyObject *msg)
{
	struct nw_ws *ws = cy->ws;
	PyObject *text, *bytes, *tmp = NULL;
	const char *p;
	Py_ssize_t n;
	unsigned op;
	int rc;

	if (ws->state == WS_CONNECTING)
		return PyErr_Format(PyExc_RuntimeError,
		    "Expected ASGI message 'websocket.accept' or "
		    "'websocket.close', but got 'websocket.send'.");
	if (ws->state != WS_OPEN || cy->conn == NULL)
		return closed_error(ws);
	if ((text = nw_py_item(msg, s_text)) == NULL && PyErr_Occurred())
		return NULL;
	if (text != NULL && text != Py_None) {
		if (!PyUnicode_Check(text)) {
			Py_DECREF(text);
			return PyErr_Format(PyExc_TypeError,
			    "websocket.send: text must be a str");
		}
		tmp = PyUnicode_AsUTF8String(text);
		Py_DECREF(text);
		if (tmp == NULL)
			return NULL;
		op = NW_WS_OP_TEXT;
	} else {
		Py_XDECREF(text);
		if ((bytes = nw_py_item(msg, s_bytes)) == NULL && PyErr_Occurred())
			return NULL;
		if (bytes == NULL || bytes == Py_None) {
			Py_XDECREF(bytes);
			return PyErr_Format(PyExc_ValueError,
			    "websocket.send needs text or bytes");
		}
		if (PyBytes_Check(bytes))
			tmp = bytes;
		else {
			tmp = PyBytes_FromObject(bytes);
			Py_DECREF(bytes);
			if (tmp == NULL)
				return NULL;
		}
		op = NW_WS_OP_BINARY;
	}
	if (PyBytes_AsStringAndSize(tmp, (char **)&p, &n) < 0) {
		Py_DECREF(tmp);
		return NULL;
	}
	if (ws->pmd.on && (size_t)n >= ws->pmd.min_size) {
		long z = nw_ws_pmd_deflate(
		    &ws->pmd, p, (size_t)n, &ws->zbuf, &ws->zcap);

		if (z < 0) {
			Py_DECREF(tmp);
			return PyErr_NoMemory();
		}
		rc = nw_ws_write_frame(cy, op, true, ws->zbuf, (size_t)z);
		if (ws->zcap > 256 * 1024) {
			free(ws->zbuf);
			ws->zbuf = NULL;
			ws->zcap = 0;
		}
	} else {
		rc = nw_ws_write_frame(cy, op, false, p, (size_t)n);
	}
	Py_DECREF(tmp);
	if (rc < 0 || cy->conn == NULL)
		return nw_wait_none(); /* gone: receive() tells */
	if (nw_conn_pending(cy->conn) > NW_WRITE_HIGH) {
		PyObject *fut, *w;

		/* flow control: wait until the client has read some */
		if ((w = nw_wait_future(cy, &fut)) == NULL)
			return NULL;
		Py_XDECREF(cy->drain);
		cy->drain = fut;
		return w;
	}
	return nw_wait_none();
}

PyObject *
nw_ws_send(struct nw_cycle *cy, PyObject *msg)
{
	PyObject *type, *r;

	if ((type = nw_py_item(msg, nw_str.type)) == NULL) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_ValueError,
			    "an ASGI message needs a \"type\"");
		return NULL;
	}
	if (!PyUnicode_Check(type))
		r = PyErr_Format(PyExc_RuntimeError,
		    "Unexpected ASGI message type %R.", type);
	else if (PyUnicode_Compare(type, s_send) == 0)
		r = send_data(cy, msg);
	else if (PyUnicode_Compare(type, s_accept) == 0)
		r = send_accept(cy, msg);
	else if (PyUnicode_Compare(type, s_close) == 0)
		r = send_close(cy, msg);
	else if (PyUnicode_Compare(type, s_resp_start) == 0)
		r = send_denial(cy, msg, type, true);
	else if (PyUnicode_Compare(type, s_resp_body) == 0)
		r = send_denial(cy, msg, type, false);
	else
		r = PyErr_Format(PyExc_RuntimeError,
		    "Unexpected ASGI message type %R.", type);
	Py_DECREF(type);
	return r;
}

/*
 * The app returned or raised. Returns true if the WebSocket winds the
 * connection down itself (the close handshake), false if the HTTP answer
 * of a request that was never accepted is left to the Cycle.
 */
bool
nw_ws_finish(struct nw_cycle *cy, bool raised)
{
	struct nw_ws *ws = cy->ws;

	switch (ws->state) {
	case WS_CONNECTING:
		if (raised)
			return false; /* a 500 */
		deny(cy, 403);
		return true;
	case WS_HTTP:
		return cy->complete || cy->conn == NULL;
	case WS_OPEN:
		if (raised)
			nw_ws_close(cy, NW_WS_CLOSE_INTERNAL, NULL, 0);
		else
			nw_ws_close(cy, NW_WS_CLOSE_NORMAL, NULL, 0);
		return true;
	default:
		return true;
	}
}

int
nw_ws_app_init(PyObject *module)
{
	if (NW_PY_INTERN(ws_strings) < 0)
		return -1;
	extensions_value = Py_BuildValue("{s{}}", "websocket.http.response");
	if (extensions_value == NULL)
		return -1;
	disconnected_error = PyErr_NewException(
	    "narwhal_worker._http.ClientDisconnected", PyExc_OSError, NULL);
	if (disconnected_error == NULL)
		return -1;
	Py_INCREF(disconnected_error);
	return PyModule_AddObject(
	    module, "ClientDisconnected", disconnected_error);
}
