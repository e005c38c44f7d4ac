/*
 * shim.h: the WSGI worker's state, shared by its C files.
 *
 * One struct nw_server holds everything a worker process serves with: the
 * configuration it was started with, the epoll loop, the connections and
 * their timers, the access log and the Python objects of the app. The HTTP
 * core it builds on (http.h) stays free of Python.
 */
#ifndef NW_SHIM_H
#define NW_SHIM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <netinet/in.h>

#include "http.h"

/* Request bodies up to this size stay in memory; larger ones spill to disk. */
#define NW_BODY_MEM_MAX (1024 * 1024)

/* What an epoll event points at: the first member of each watched object. */
enum nw_watch_kind {
	NW_WATCH_LISTENER,
	NW_WATCH_CONN,
	NW_WATCH_CONTROL,
	NW_WATCH_WAKEUP,
};

struct nw_listener {
	enum nw_watch_kind kind;
	int fd;
	bool public;       /* shared by all workers: accepted only once live */
	bool registered;   /* in the epoll set */
	bool tcp;          /* TCP_NODELAY on accepted sockets */
	PyObject *environ; /* the environ keys that never change for it */
};

enum nw_conn_state {
	NW_CONN_HEAD,   /* waiting for, or reading, a request head */
	NW_CONN_BODY,   /* reading the request body */
	NW_CONN_LINGER, /* our side is shut: draining input, then close */
};

/* Each timer list has one timeout, so appending keeps it sorted. */
enum nw_timer {
	NW_TIMER_IDLE, /* keep-alive between requests */
	NW_TIMER_HEAD, /* a request head is arriving */
	NW_TIMER_BODY, /* a request body is arriving: idle time between reads */
	NW_TIMER_LINGER, /* lingering close */
	NW_TIMER_GRACE,  /* a fresh connection while stopping */
	NW_TIMER_COUNT,
	NW_TIMER_NONE = NW_TIMER_COUNT,
};

struct nw_body {
	uint64_t expected; /* Content-Length bytes still to come */
	bool chunked;
	struct nw_chunked dec;
	struct nw_buf mem; /* the body while it is small */
	int fd;            /* the unlinked file it spilled to, or -1 */
	uint64_t size;     /* decoded bytes so far */
	uint64_t raw;      /* bytes read off the wire for it */
};

struct nw_conn {
	enum nw_watch_kind kind;
	int fd;
	enum nw_conn_state state;
	struct nw_listener *listener;
	struct nw_buf in; /* bytes read; the current request at rpos */
	size_t rpos;
	struct nw_request req;
	struct nw_body body;
	uint64_t requests; /* answered on this connection */
	bool continue_sent;
	int timer;        /* which list it is on, or NW_TIMER_NONE */
	int64_t deadline; /* monotonic ms */
	struct nw_conn *prev, *next;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	PyObject *remote_addr; /* made at the first request, then reused */
	PyObject *remote_port;
	char host[64]; /* the peer's address, for the access log */
	bool trusted;  /* loopback or Unix socket: a local proxy */
	bool local;    /* on this host: see the yield in serve() */
};

struct nw_timer_list {
	struct nw_conn *head, *tail;
	int64_t timeout_ms;
};

struct nw_server {
	/* configuration, fixed after start */
	struct nw_limits limits;
	int64_t keepalive_ms; /* 0: no keep-alive */
	int64_t header_timeout_ms;
	int64_t body_timeout_ms;
	int64_t graceful_ms;
	int64_t heartbeat_ms;  /* 0: no heartbeats */
	uint64_t max_requests; /* 0: no budget */
	int control_fd;        /* -1: none */
	int wakeup_fd;         /* signal.set_wakeup_fd's pipe, or -1 */
	struct nw_writer writer;
	char *tmpdir; /* where big bodies spill */

	/* the loop */
	int epfd;
	struct nw_listener *listeners; /* [0] is the private socket */
	size_t nlisteners;
	enum nw_watch_kind control_watch;
	enum nw_watch_kind wakeup_watch;
	struct nw_clock clock;
	struct nw_timer_list timers[NW_TIMER_COUNT];
	size_t nconns;
	struct nw_conn *free_conns; /* kept with their buffers, via next */
	size_t nfree;
	uint64_t served;
	bool running;
	bool live;     /* master said `live`: public sockets on */
	bool stopping; /* TERM, or the master is gone */
	bool stop_started;
	bool quit;    /* INT/QUIT: leave the loop now */
	bool retired; /* `retire` sent */
	bool fatal;   /* a Python exception must leave serve() */
	bool answered_local; /* this batch woke a client on this host */
	int64_t stop_deadline;
	int64_t next_heartbeat;
	int64_t accept_paused_until; /* after EMFILE; 0: not paused */

	/* access log */
	char *alog_path; /* NULL: off; "-": fd 1 */
	int alog_fd;
	struct nw_buf alog;

	/* Python */
	PyObject *app;
	PyObject *errors;      /* wsgi.errors */
	PyObject *script_name; /* str, "" when unset */
	char *script_name_b;   /* its latin-1 bytes */
	size_t script_name_len;
	PyObject *start_response; /* reused while nobody else holds it */
	struct nw_buf head;       /* the response head being built */
	struct nw_buf scratch;    /* decoding PATH_INFO and the like */
};

/* server.c */
int nw_server_setup(struct nw_server *s);
PyObject *nw_server_serve(struct nw_server *s);
void nw_server_stop(struct nw_server *s);
void nw_server_free(struct nw_server *s);
void nw_server_log(struct nw_server *s, const char *fmt, ...);

/* wsgi.c: answers one complete request; returns one of these */
enum nw_handled {
	NW_HANDLED_FATAL = -1, /* a Python exception must leave serve() */
	NW_HANDLED_KEEP = 0,
	NW_HANDLED_CLOSE = 1,
};
int nw_wsgi_init(PyObject *module);
PyObject *nw_wsgi_base_environ(struct nw_server *s, struct nw_listener *l,
    PyObject *server_name, PyObject *server_port);
int nw_wsgi_handle(struct nw_server *s, struct nw_conn *c, PyObject *input);

/* headers.c: nw_head_add_header, with a refusal raised as ValueError */
int nw_head_add_py(struct nw_buf *head, PyObject *name, const char *n,
    size_t nl, PyObject *value, const char *v, size_t vl,
    struct nw_head_info *info);

/* input.c: wsgi.input */
int nw_input_init(PyObject *module);
PyObject *nw_input_from_mem(const char *p, size_t n);
PyObject *nw_input_from_fd(int fd, uint64_t size); /* owns fd */

/* filewrapper.c: wsgi.file_wrapper */
extern PyObject *nw_filewrapper_type;
int nw_filewrapper_init(PyObject *module);
PyObject *nw_filewrapper_filelike(PyObject *wrapper);

/* parser.c: RequestParser, the HTTP core for loops written in Python */
int nw_parser_init(PyObject *module);

/* asgi_server.c: the ASGIServer type (asgi.h has the rest) */
int nw_asgi_init(PyObject *module);

/* accesslog.c: the WSGI loop's log, and the pieces any loop can use */
#define NW_ALOG_FLUSH_AT (64 * 1024)
int nw_alog_open_path(const char *path);
int nw_alog_reopen_path(const char *path, int *fd);
void nw_alog_write(int fd, struct nw_buf *b);
void nw_alog_format(struct nw_buf *b, const char *host,
    const struct nw_clock *clk, const char *buf, const struct nw_request *req,
    int status, uint64_t sent);
int nw_alog_open(struct nw_server *s);
void nw_alog_request(
    struct nw_server *s, struct nw_conn *c, int status, uint64_t sent);
void nw_alog_flush(struct nw_server *s);
int nw_alog_reopen(struct nw_server *s);

#endif
