/*
 * asgi.h: the ASGI worker's state, shared by the asgi_*.c files.
 *
 * An ASGI worker runs an asyncio loop (uvloop when it can). Its sockets are
 * not the loop's business: one epoll set of our own holds the listeners and
 * every connection, and the loop sees it as a single readable fd. The loop
 * only runs the app's tasks. Each request is a Cycle, which is also the
 * coroutine its task runs, so the server sees the app's end without a done
 * callback. Everything here runs with the GIL held, on the loop's thread.
 */
#ifndef NW_ASGI_H
#define NW_ASGI_H

#include "shim.h"

/* What an epoll event points at: the first member of each watched object. */
enum nw_awatch {
	NW_AWATCH_LISTENER,
	NW_AWATCH_CONN,
};

struct nw_alistener {
	enum nw_awatch kind;
	int fd;
	bool public;     /* shared by all workers: accepted only once live */
	bool registered; /* in the epoll set */
	bool tcp;        /* TCP_NODELAY on accepted sockets */
	PyObject *scope; /* the scope keys that never change for it */
};

enum nw_aconn_state {
	NW_ACONN_WAIT,    /* no request yet, or its head is arriving */
	NW_ACONN_CYCLE,   /* a request is with the app */
	NW_ACONN_CLOSING, /* the last response is being flushed */
	NW_ACONN_LINGER,  /* our side is shut: drain input, then close */
};

#define NW_ALINGER_MS 2000 /* lingering close */
#define NW_AGRACE_MS 1000  /* see nw_aconn_stop_idle */

/* Each timer list has one timeout, so appending keeps it sorted. */
enum nw_atimer {
	NW_ATIMER_IDLE,   /* keep-alive between requests */
	NW_ATIMER_HEAD,   /* a request head is arriving */
	NW_ATIMER_BODY,   /* a request body is arriving: time between reads */
	NW_ATIMER_WRITE,  /* output is waiting for the client to read */
	NW_ATIMER_LINGER, /* lingering close */
	NW_ATIMER_GRACE,  /* a fresh connection while stopping */
	NW_ATIMER_COUNT,
	NW_ATIMER_NONE = NW_ATIMER_COUNT,
};

struct nw_cycle; /* below */

struct nw_aconn {
	enum nw_awatch kind;
	int fd;
	enum nw_aconn_state state;
	struct nw_aserver *srv;
	struct nw_alistener *listener;
	/*
	 * Input: the current request's head at rpos, then (while a cycle
	 * runs) bytes that are not its body: the next requests, pipelined.
	 */
	struct nw_buf in;
	size_t rpos;
	struct nw_request req;
	/* the running request's body, as it arrives */
	bool chunked;
	struct nw_chunked dec;
	uint64_t remaining; /* Content-Length bytes still to come */
	bool body_done;
	uint64_t body_size; /* decoded bytes so far */
	/* output the socket did not take yet */
	struct nw_buf out;
	size_t opos;
	uint32_t events; /* what the epoll set watches for it */
	bool read_paused;
	struct nw_cycle *cycle; /* a strong reference while a request runs */
	uint64_t requests;      /* answered on this connection */
	bool queued;            /* on the server's run queue */
	struct nw_aconn *qnext;
	bool held; /* out is held until the batch's release */
	struct nw_aconn *hnext;
	int timer;        /* which list it is on, or NW_ATIMER_NONE */
	int64_t deadline; /* monotonic ms */
	struct nw_aconn *prev, *next;
	struct nw_aconn *all_prev, *all_next; /* every open connection */
	PyObject *client; /* scope["client"]: (host, port), or None */
	char host[64];    /* the peer's address, for the access log */
	bool trusted;     /* loopback or Unix socket: a local proxy */
	bool local;       /* on this host: see nw_aserver_release */
};

struct nw_atimer_list {
	struct nw_aconn *head, *tail;
	int64_t timeout_ms;
};

struct nw_aserver {
	/* configuration, fixed after start */
	struct nw_limits limits;
	int64_t keepalive_ms; /* 0: no keep-alive */
	int64_t header_timeout_ms;
	int64_t write_timeout_ms;
	uint64_t max_requests; /* 0: no budget */
	int control_fd;        /* -1: none */

	/* the epoll set and its connections */
	int epfd;
	struct nw_alistener *listeners; /* [0] is the private socket */
	size_t nlisteners;
	struct nw_clock clock;
	struct nw_atimer_list timers[NW_ATIMER_COUNT];
	size_t nconns;
	struct nw_aconn *conns;      /* all open ones, linked */
	struct nw_aconn *free_conns; /* kept with their buffers, via next */
	size_t nfree;
	struct nw_aconn *limbo; /* closed during an event batch, via next */
	bool in_events;         /* on_events is running */
	struct nw_aconn *runq_head, *runq_tail; /* pipelined requests waiting */
	size_t ncycles;                         /* app tasks not finished */
	struct nw_cycle *cycles;                /* ...all of them, linked */
	uint64_t served;
	bool started;
	bool live;                   /* master said `live`: public sockets on */
	bool stopping;               /* TERM, or the master is gone */
	bool closed;                 /* quit(): everything is shut */
	bool retired;                /* `retire` sent */
	int64_t accept_paused_until; /* after EMFILE; 0: not paused */

	/* access log */
	char *alog_path; /* NULL: off; "-": fd 1 */
	int alog_fd;
	struct nw_buf alog;
	bool alog_flush_scheduled;

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
	PyObject *tick_handle; /* the loop timer for our timer lists */
	int64_t tick_due;
	bool runq_scheduled;
	/* answers written while a batch of requests takes its first step */
	struct nw_aconn *held; /* connections with held output, via hnext */
	size_t batch_started;  /* cycles started by this callback */
	bool release_scheduled;
	PyObject *drained; /* a future, while stopping: resolved when idle */
	struct nw_buf scratch;
};

/*
 * A request: the ASGI Cycle object (asgi_cycle.c), which is also the
 * coroutine its task runs. asgi_receive.c and asgi_send.c fill in its
 * request and response halves.
 */
struct nw_cycle {
	PyObject_HEAD struct nw_aserver *srv;
	PyObject *server;      /* the ASGIServer: srv lives as long as it */
	struct nw_aconn *conn; /* NULL once the response is done or lost */
	PyObject *scope;       /* until the app is called */
	PyObject *app_iter;    /* the app's awaitable, being driven */
	bool native;           /* app_iter is a coroutine, for iter_send */
	PyObject *task;        /* while the app runs */
	struct nw_cycle *prev, *next; /* the server's running cycles */
	bool linked;
	bool finished;  /* the app returned or raised */
	char line[120]; /* the request line (its start), for error messages */
	int line_len;

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

/* asgi_server.c: the server's own services */
void nw_aserver_log(const char *fmt, ...);
void nw_aserver_print_error(const char *what);
void nw_aserver_control(struct nw_aserver *s, const char *msg);
void nw_aserver_check_drained(struct nw_aserver *s);
void nw_aserver_cycle_ended(struct nw_aserver *s);
void nw_aserver_alog(
    struct nw_aserver *s, struct nw_aconn *c, int status, uint64_t sent);

/* asgi_timer.c */
void nw_atimer_set(struct nw_aserver *s, struct nw_aconn *c, int timer);
void nw_atimer_unlink(struct nw_aserver *s, struct nw_aconn *c);
void nw_atimers_arm(struct nw_aserver *s);
void nw_atimers_expire(struct nw_aserver *s);

/* asgi_listen.c */
int nw_alistener_init(
    struct nw_aserver *s, struct nw_alistener *l, int fd, bool public);
void nw_alisteners_update(struct nw_aserver *s);
void nw_alistener_accept(struct nw_aserver *s, struct nw_alistener *l);

/* asgi_conn.c */
struct nw_aconn *nw_aconn_new(
    struct nw_aserver *s, int fd, struct nw_alistener *l);
void nw_aconn_free(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_free_all(struct nw_aserver *s);
void nw_aconn_close(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_lost(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_linger(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_finish(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_update_events(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_readable(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_process(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_next(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_body_timer(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_stop_idle(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_timed_out(struct nw_aserver *s, struct nw_aconn *c, int timer);
/* ...what a cycle may ask of its connection */
void nw_aconn_response_done(struct nw_aconn *c, bool close);
void nw_aconn_abort(struct nw_aconn *c);
void nw_aconn_resume_reading(struct nw_aconn *c);

/* asgi_output.c */
int nw_aconn_write(struct nw_aconn *c, struct iovec *iov, int cnt);
size_t nw_aconn_pending(const struct nw_aconn *c);
int nw_aconn_queue(struct nw_aconn *c, struct iovec *iov, int cnt, size_t skip);
int nw_aconn_flush(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_unhold(struct nw_aserver *s, struct nw_aconn *c);
void nw_aconn_writable(struct nw_aserver *s, struct nw_aconn *c);
void nw_aserver_release_schedule(struct nw_aserver *s);
void nw_aserver_release(struct nw_aserver *s);

/* asgi_cycle.c */
int nw_cycle_init(PyObject *module);
int nw_cycle_start(struct nw_aserver *s, struct nw_aconn *c);
void nw_cycle_cancel(struct nw_cycle *cy);
struct nw_cycle *nw_cycle_next(const struct nw_cycle *cy);

/* asgi_receive.c */
PyObject *nw_cycle_receive(PyObject *self, PyObject *unused);
void nw_cycle_body(struct nw_cycle *cy, const char *p, size_t n, bool done);
void nw_cycle_disconnected(struct nw_cycle *cy);
void nw_cycle_detach(struct nw_cycle *cy);
size_t nw_cycle_buffered(const struct nw_cycle *cy);

/* asgi_send.c */
PyObject *nw_cycle_send(PyObject *self, PyObject *msg);
void nw_cycle_drained(struct nw_cycle *cy);
bool nw_cycle_head_sent(const struct nw_cycle *cy);

/* asgi_scope.c */
int nw_scope_init(void);
PyObject *nw_scope_template(struct nw_aserver *s, PyObject *server);
PyObject *nw_scope_build(struct nw_aserver *s, struct nw_aconn *c);

/* asgi_wait.c */
int nw_wait_init(void);
PyObject *nw_wait_new(PyObject *value, PyObject *future);
PyObject *nw_wait_none(void);
PyObject *nw_wait_future(struct nw_cycle *cy, PyObject **fut);
void nw_future_resolve(PyObject *fut, PyObject *value);
PyObject *nw_raise_thrown(PyObject *args);

/* Reading stops while this much of a request body waits for receive(). */
#define NW_ASGI_BODY_HIGH (256 * 1024)
/* send() waits while this much output waits for the client. */
#define NW_ASGI_WRITE_HIGH (64 * 1024)
#define NW_ASGI_WRITE_LOW (16 * 1024)

#endif
