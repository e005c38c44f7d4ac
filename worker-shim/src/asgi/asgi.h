/*
 * asgi.h: the ASGI driver's state, shared by the files of asgi/.
 *
 * An ASGI worker runs an asyncio loop (uvloop when it can). Its sockets are
 * the engine's: one epoll set holds the listeners, the control socket and
 * every connection, and the loop watches it as a single readable fd
 * (server.c). The loop only runs the app's tasks. Each request is a Cycle,
 * which is also the coroutine its task runs, so the driver sees the app's
 * end without a done callback. Everything here runs with the GIL held, on
 * the loop's thread.
 */
#ifndef NW_ASGI_H
#define NW_ASGI_H

#include "core/ws.h"
#include "engine/engine.h"
#include "py/py.h"

struct nw_cycle; /* below */

/* The engine's connection, and what the driver keeps with it. */
struct nw_asgi_conn {
	struct nw_conn c;
	struct nw_cycle *cycle; /* a strong reference while a request runs */
	PyObject *client;       /* scope["client"]: (host, port), or None */
};

#define NW_ASGI_CONN(conn) ((struct nw_asgi_conn *)(conn))

struct nw_asgi {
	struct nw_engine e; /* first: the driver's callbacks get &e */
	size_t ncycles;          /* app tasks not finished */
	struct nw_cycle *cycles; /* ...all of them, linked */

	/* Python */
	PyObject *self; /* the ASGIServer object (borrowed: it owns us) */
	PyObject *app;
	PyObject *loop;
	PyObject *create_task; /* loop.create_task, bound */
	PyObject *call_later;
	PyObject *call_soon;
	PyObject *create_future;
	PyObject *state;     /* the lifespan state, copied into each scope */
	PyObject *root_path; /* str, "" when unset */
	char *root_path_b;   /* its UTF-8 bytes, no trailing '/' */
	size_t root_path_len;
	PyObject *context; /* an empty contextvars.Context for our callbacks */
	PyObject *on_events; /* our bound methods, given to the loop */
	PyObject *on_tick;
	PyObject *on_runq;
	PyObject *on_flush;
	PyObject *on_release;
	PyObject *on_master_gone; /* asgi.py's: begin a graceful stop */
	PyObject *tick_handle;    /* the loop timer for the engine's tick */
	int64_t tick_due;
	bool runq_scheduled;
	bool alog_flush_scheduled;
	size_t batch_started; /* cycles started by this loop callback */
	PyObject *drained; /* a future, while stopping: resolved when idle */
	struct nw_buf scratch;

	/* WebSocket (ws.c) */
	uint64_t ws_max_size;   /* a message, after inflating; 0: no limit */
	unsigned ws_max_queue;  /* messages waiting for receive() */
	int64_t ws_ping_interval_ms; /* 0: no keep-alive pings */
	int64_t ws_ping_timeout_ms;
	struct nw_ws_pmd_config ws_pmd;
	unsigned ws_stop_code;     /* what stop() closes them with */
	struct nw_cycle *ws_list;  /* the open ones */
	PyObject *ws_tick_handle;  /* the loop timer of pings and closes */
	PyObject *on_ws_tick;
};

#define NW_ASGI(engine) ((struct nw_asgi *)(engine))

/*
 * A request: the ASGI Cycle object (cycle.c), which is also the
 * coroutine its task runs. receive.c and send.c fill in its
 * request and response halves.
 */
struct nw_ws; /* ws.c's */

struct nw_cycle {
	PyObject_HEAD struct nw_asgi *srv;
	PyObject *server;      /* the ASGIServer: srv lives as long as it */
	struct nw_conn *conn;  /* NULL once the response is done or lost */
	PyObject *scope;       /* until the app is called */
	PyObject *app_iter;    /* the app's awaitable, being driven */
	bool native;           /* app_iter is a coroutine, for iter_send */
	PyObject *task;        /* while the app runs */
	struct nw_cycle *prev, *next; /* the server's running cycles */
	bool linked;
	bool finished;  /* the app returned or raised */
	char line[120]; /* the request line (its start), for error messages */
	int line_len;
	struct nw_ws *ws; /* a WebSocket's state; NULL for HTTP */

	/* the request */
	struct nw_buf body; /* arrived, not yet given to receive() */
	bool body_done;     /* all of it arrived */
	bool body_final;    /* receive() said more_body False */
	bool expect_continue;
	bool continue_sent;
	bool disconnected;
	bool is_head;
	bool keep_alive; /* the request allows it */
	int minor;
	PyObject *waiters; /* receive() futures, a list, or NULL */
	PyObject *drain;   /* the future send() waits on, or NULL */

	/* the response */
	bool started;
	bool head_sent;
	bool complete;
	bool chunked;
	bool no_body;
	bool close;
	bool app_close;
	bool has_date;
	int status;
	int64_t content_length; /* the app's, or -1 */
	uint64_t sent;          /* body bytes sent */
	struct nw_buf head;
};

/* The strings the ASGI side uses as keys and values, interned once. */
struct nw_astr {
	PyObject *type, *http, *asgi, *version, *spec_version, *http_version,
	    *method, *scheme, *path, *raw_path, *query_string, *root_path,
	    *headers, *client, *server, *state, *body, *more_body, *status,
	    *http_request, *http_disconnect, *v1_0, *v1_1, *v3_0, *v2_3, *https,
	    *await_, *send, *throw, *close, *done, *set_result, *result,
	    *blocking, *cancel;
	PyObject *empty; /* b"" */
};
extern struct nw_astr nw_str;

/* server.c: the ASGIServer type */
int nw_asgi_init(PyObject *module);
void nw_asgi_check_drained(struct nw_asgi *s);
void nw_asgi_cycle_ended(struct nw_asgi *s);
void nw_asgi_release_schedule(struct nw_asgi *s);
extern const struct nw_driver nw_asgi_driver;

/* conn.c: the driver's side of a connection */
void nw_asgi_conn_done(struct nw_conn *c, bool close);
void nw_asgi_conn_abort(struct nw_conn *c);

/* cycle.c */
int nw_cycle_init(PyObject *module);
int nw_cycle_start(struct nw_asgi *s, struct nw_conn *c, struct nw_ws *ws);
void nw_cycle_cancel(struct nw_cycle *cy);
struct nw_cycle *nw_cycle_next(const struct nw_cycle *cy);

/* receive.c */
PyObject *nw_cycle_receive(PyObject *self, PyObject *unused);
void nw_cycle_body(struct nw_cycle *cy, const char *p, size_t n, bool done);
void nw_cycle_disconnected(struct nw_cycle *cy);
void nw_cycle_detach(struct nw_cycle *cy);
size_t nw_cycle_buffered(const struct nw_cycle *cy);
/* the oldest receive() future (a new reference), or NULL */
PyObject *nw_cycle_waiter_pop(struct nw_cycle *cy);

/* send.c */
PyObject *nw_cycle_send(PyObject *self, PyObject *msg);
PyObject *nw_cycle_send_start(
    struct nw_cycle *cy, PyObject *msg, PyObject *type);
PyObject *nw_cycle_send_body(
    struct nw_cycle *cy, PyObject *msg, PyObject *type);
int nw_cycle_add_headers(struct nw_cycle *cy, PyObject *headers);
void nw_cycle_drained(struct nw_cycle *cy);
bool nw_cycle_head_sent(const struct nw_cycle *cy);

/* scope.c */
int nw_scope_init(void);
PyObject *nw_scope_template(struct nw_asgi *s, PyObject *server, bool tls);
PyObject *nw_scope_build(struct nw_asgi *s, struct nw_conn *c);

/* ws.c */
int nw_ws_init(PyObject *module);
bool nw_ws_requested(struct nw_conn *c);
int nw_ws_start(struct nw_asgi *s, struct nw_conn *c);
int nw_ws_scope(struct nw_asgi *s, struct nw_conn *c, PyObject *scope);
PyObject *nw_ws_receive(struct nw_cycle *cy);
PyObject *nw_ws_send(struct nw_cycle *cy, PyObject *msg);
bool nw_ws_finish(struct nw_cycle *cy, bool raised);
void nw_ws_upgraded(struct nw_conn *c, bool eof);
void nw_ws_lost(struct nw_cycle *cy);
void nw_ws_free(struct nw_cycle *cy);
void nw_ws_discard(struct nw_ws *ws);
PyObject *nw_ws_tick(struct nw_asgi *s);
void nw_ws_stop(struct nw_asgi *s);

/* wait.c */
int nw_wait_init(void);
PyObject *nw_wait_new(PyObject *value, PyObject *future);
PyObject *nw_wait_none(void);
PyObject *nw_wait_future(struct nw_cycle *cy, PyObject **fut);
void nw_future_resolve(PyObject *fut, PyObject *value);
PyObject *nw_raise_thrown(PyObject *args);

#endif
