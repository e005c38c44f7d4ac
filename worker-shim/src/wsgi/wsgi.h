/*
 * wsgi.h: the WSGI driver's state, shared by the files of wsgi/.
 *
 * The driver runs the engine's loop itself: it blocks in epoll_wait with
 * the GIL released (server.c) and calls the app in place once the engine
 * hands it a request whose body has come whole (body.c keeps it, in memory
 * or spilled to a temporary file). The app's answer is written in place
 * too, blocking without the GIL (response.c). With threads = N, the loop
 * hands requests to a pool of Python threads instead (threads.c), and a
 * gevent or eventlet worker runs each in a greenlet of the hub that drives
 * the loop (green.c). Nothing here re-implements what the engine does.
 */
#ifndef NW_WSGI_H
#define NW_WSGI_H

#include "engine/engine.h"
#include "py/py.h"

/* Request bodies up to this size stay in memory; larger ones spill to disk. */
#define NW_BODY_MEM_MAX (1024 * 1024)

/* A request body, kept whole for wsgi.input. */
struct nw_wsgi_body {
	struct nw_buf mem; /* the body while it is small */
	int fd;            /* the unlinked file it spilled to, or -1 */
	uint64_t size;     /* bytes kept */
	uint64_t on_disk;  /* of them, counted in nw_wsgi.spooled */
};

/*
 * What one running request writes its answer with: in place, one for the
 * server; one per pool thread; one per running green request.
 */
struct nw_wsgi_local {
	struct nw_buf head;       /* the response head being built */
	PyObject *start_response; /* reused while nobody else holds it */
	struct nw_clock *clock;   /* the Date header's */
	struct nw_clock own;      /* a pool thread's clock */
	struct nw_writer writer;  /* blocks the thread, or the greenlet */
	struct nw_wsgi_local *next; /* free list (green.c) */
};

/* What a request's answer was, for the engine's log and counters. */
struct nw_wsgi_answer {
	int status;
	uint64_t sent;
	const char *head; /* the head sent, for the log's {header}o atoms; */
	size_t headlen;   /* valid until the local runs another request */
};

/* The engine's connection, and what the driver keeps with it. */
struct nw_wsgi_conn {
	struct nw_conn c;
	struct nw_wsgi_body body;
	PyObject *remote_addr; /* made at the first request, then reused */
	PyObject *remote_port;
	/* a request away from the loop: on a pool thread, or a greenlet */
	struct nw_wsgi_conn *jnext;
	bool parked;                /* out of the loop's hands */
	int fd;                     /* the socket, as the request saw it */
	int rc;                     /* enum nw_handled */
	struct nw_wsgi_answer answer;
	/* the head a pool thread sent, kept for the loop's {header}o atoms
	 * (the thread's own buffer moves on to its next request) */
	struct nw_buf sent_head;
};

#define NW_WSGI_CONN(conn) ((struct nw_wsgi_conn *)(conn))

struct nw_wsgi {
	struct nw_engine e; /* first: the driver's callbacks get &e */
	int64_t graceful_ms;
	char *tmpdir;            /* where big bodies spill */
	uint64_t spooled;        /* on disk for bodies still arriving... */
	uint64_t spool_max;      /* ...at most: see body.c */
	bool running;
	bool quit;           /* INT/QUIT: leave the loop now */
	bool fatal;          /* a Python exception must leave serve() */

	/* Python */
	PyObject *app;
	PyObject *errors;      /* wsgi.errors */
	PyObject *script_name; /* str, "" when unset */
	char *script_name_b;   /* its latin-1 bytes */
	size_t script_name_len;
	struct nw_wsgi_local local; /* the requests answered in place */
	struct nw_buf scratch;    /* decoding PATH_INFO and the like */
	bool multithread;         /* wsgi.multithread */

	/* threads > 1: the pool (threads.c) */
	struct nw_pool *pool;
	PyThreadState *loop_ts; /* the loop's, while it runs without GIL */
	int loop_errno;         /* why the threads' loop ended, or 0 */
	struct nw_wsgi_conn *submit_head, *submit_tail; /* for the pool */

	/* gevent, eventlet: the hub drives the loop (green.c) */
	struct nw_green *green;
};

#define NW_WSGI(engine) ((struct nw_wsgi *)(engine))

/* _http.Server */
typedef struct {
	PyObject_HEAD struct nw_wsgi s;
} ServerObject;

#define SERVER(self) (&((ServerObject *)(self))->s)

/* server.c: the Server type and its loop */
int nw_wsgi_server_init(PyObject *module);

/* body.c: a request body, kept whole */
int nw_wsgi_body_add(struct nw_wsgi *s, struct nw_wsgi_body *b,
    const char *p, size_t n, uint64_t expected);
PyObject *nw_wsgi_body_input(struct nw_wsgi_body *b);
void nw_wsgi_body_release(struct nw_wsgi *s, struct nw_wsgi_body *b);
void nw_wsgi_body_reset(struct nw_wsgi *s, struct nw_wsgi_body *b);
void nw_wsgi_body_free(struct nw_wsgi *s, struct nw_wsgi_body *b);

/* environ.c */
int nw_wsgi_environ_init(void);
PyObject *nw_wsgi_base_environ(struct nw_wsgi *s, PyObject *server_name,
    PyObject *server_port, bool tls);
PyObject *nw_wsgi_environ(struct nw_wsgi *s, struct nw_conn *c,
    PyObject *input);

/* response.c: answers one complete request; returns one of these */
enum nw_handled {
	NW_HANDLED_FATAL = -1, /* a Python exception must leave serve() */
	NW_HANDLED_KEEP = 0,
	NW_HANDLED_CLOSE = 1,
};
int nw_wsgi_response_init(void);
int nw_wsgi_handle(struct nw_wsgi *s, struct nw_wsgi_local *l,
    struct nw_conn *c, int fd, PyObject *input, struct nw_wsgi_answer *a);
void nw_wsgi_local_init(struct nw_wsgi *s, struct nw_wsgi_local *l,
    struct nw_clock *clock);
void nw_wsgi_local_free(struct nw_wsgi_local *l);
/* The writer's wait for a full socket, without the GIL: 0, or -1 with
 * errno (ETIMEDOUT after timeout_ms). Calls nothing of the engine. */
int nw_wsgi_wait_writable(void *arg, int fd, int timeout_ms);
/* ...one request of a connection, its body made wsgi.input first */
int nw_wsgi_run(struct nw_wsgi *s, struct nw_wsgi_local *l,
    struct nw_wsgi_conn *wc, int fd, struct nw_wsgi_answer *a);

/* threads.c: threads = N */
int nw_threads_setup(struct nw_wsgi *s, int nthreads);
int nw_threads_request(struct nw_wsgi *s, struct nw_wsgi_conn *wc);
PyObject *nw_threads_serve(struct nw_wsgi *s);
PyObject *nw_threads_thread(struct nw_wsgi *s);
void nw_threads_free(struct nw_wsgi *s);
bool nw_threads_rescuing(struct nw_wsgi *s);
void nw_threads_reopen_logs(struct nw_wsgi *s);

/* green.c: gevent and eventlet */
int nw_green_init(PyObject *module);
int nw_green_setup(struct nw_wsgi *s, PyObject *self, PyObject *hub,
    long limit);
int nw_green_request(struct nw_wsgi *s, struct nw_wsgi_conn *wc);
void nw_green_free(struct nw_wsgi *s);
/* ...Server's methods for the hub (see green.py) */
PyObject *nw_green_start(PyObject *self, PyObject *unused);
PyObject *nw_green_on_events(PyObject *self, PyObject *unused);
PyObject *nw_green_on_timer(PyObject *self, PyObject *unused);
PyObject *nw_green_run_queue(PyObject *self, PyObject *unused);
PyObject *nw_green_begin_stop(PyObject *self, PyObject *unused);
PyObject *nw_green_close(PyObject *self, PyObject *unused);
PyObject *nw_green_get_state(PyObject *self, void *closure);

/* input.c: wsgi.input */
int nw_input_init(PyObject *module);
PyObject *nw_input_from_mem(const char *p, size_t n);
PyObject *nw_input_from_fd(int fd, uint64_t size); /* owns fd */

/* filewrapper.c: wsgi.file_wrapper */
extern PyObject *nw_filewrapper_type;
int nw_filewrapper_init(PyObject *module);
PyObject *nw_filewrapper_filelike(PyObject *wrapper);

#endif
