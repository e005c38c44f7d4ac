/*
 * ws.h: one WebSocket's state, shared by asgi/ws.c (the socket's side:
 * frames in and out, the close handshake, pings, stopping) and
 * asgi/ws_app.c (the app's side: the handshake, the scope, send()).
 * Nothing outside these two files looks inside struct nw_ws.
 */
#ifndef NW_ASGI_WS_H
#define NW_ASGI_WS_H

#include "asgi/asgi.h"

enum ws_state {
	WS_CONNECTING, /* the handshake waits for the app's answer */
	WS_HTTP,       /* the app answers the handshake with HTTP (a denial) */
	WS_OPEN,
	WS_CLOSING, /* our close frame is out: the client's is awaited */
	WS_CLOSED,  /* the close handshake is over, or the client is gone */
};

/* A client that never answers our close frame is dropped after this. */
#define WS_CLOSE_TIMEOUT_MS 5000

struct nw_ws {
	enum ws_state state;
	struct nw_ws_parser parser;
	struct nw_ws_pmd pmd;
	bool connect_given; /* receive() said websocket.connect */
	bool counted;       /* in e.ws_open and the server's list */
	uint16_t code;      /* for websocket.disconnect */
	PyObject *reason;   /* str, for websocket.disconnect; NULL: "" */
	PyObject **queue;   /* messages for receive(): a ring */
	unsigned qhead, qlen, qcap;
	int64_t ping_due;  /* ms: the next keep-alive ping */
	int64_t pong_due;  /* ms: its pong is late after this; 0: none owed */
	int64_t close_due; /* ms: CLOSING gives up then */
	struct nw_cycle *prev, *next; /* the server's open sockets */
	unsigned char *zbuf; /* compressed output (the core's realloc) */
	size_t zcap;
	char accept[NW_WS_ACCEPT_LEN + 1];
	char ext[160]; /* the negotiated Sec-WebSocket-Extensions, or "" */
};

/* ws.c, for ws_app.c */
int nw_ws_write_frame(
    struct nw_cycle *cy, unsigned op, bool rsv1, const void *p, size_t n);
void nw_ws_close(
    struct nw_cycle *cy, unsigned code, const char *reason, size_t len);
void nw_ws_list_add(struct nw_cycle *cy);
void nw_ws_input(struct nw_cycle *cy);

/* ws_app.c, for ws.c */
int nw_ws_app_init(PyObject *module);

#endif
