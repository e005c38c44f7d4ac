/*
 * engine.h: the one connection engine under every driver.
 *
 * The engine owns everything a worker does with sockets: the listeners
 * (EPOLLEXCLUSIVE, the accept loop and its EMFILE pause), the connections
 * (a pool, reading, parsing with the core, request bodies and their limits,
 * keep-alive and pipelining, error answers, lingering close, the graceful
 * stop of idle connections), the deadline lists (408 on a stalled head or
 * body), output that never blocks, the access log and the counters, and the
 * worker's side of the master protocol (live, heartbeat, retire). It never
 * includes Python.h and never runs an app: a driver (wsgi/, asgi/) gets each
 * parsed request through struct nw_driver and gives the connection back with
 * nw_conn_response_done. Everything runs on one thread.
 */
#ifndef NW_ENGINE_H
#define NW_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "core/front.h"
#include "core/http.h"
#include "core/log.h"

/* Room for a listener's host: an address, or a Unix path with its '@'. */
#define NW_HOST_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) + 2)

/* What an epoll event points at: the first member of each watched object. */
enum nw_watch {
	NW_WATCH_LISTENER,
	NW_WATCH_CONN,
	NW_WATCH_CONTROL,
	NW_WATCH_WAKEUP,
};

struct nw_listener {
	enum nw_watch kind;
	int fd;
	bool public;     /* shared by all workers: accepted only once live */
	bool registered; /* in the epoll set */
	bool tcp;        /* TCP_NODELAY on accepted sockets */
	bool tls;        /* its connections speak TLS (tls.c) */
	int family;      /* AF_INET, AF_INET6, AF_UNIX */
	char host[NW_HOST_MAX]; /* its own address, or Unix path */
	int port;               /* 0 for a Unix socket */
	void *tmpl; /* the driver's per-listener template (environ, scope) */
};

enum nw_conn_state {
	NW_CONN_HEAD,     /* waiting for, or reading, a request head */
	NW_CONN_BODY,     /* reading a body the driver wants whole first */
	NW_CONN_REQUEST,  /* a request is with the driver */
	NW_CONN_CLOSING,  /* the last answer is being flushed, then close */
	NW_CONN_LINGER,   /* our side is shut: drain input, then close */
	NW_CONN_UPGRADED, /* the driver owns the bytes (after an upgrade) */
};

/* Each deadline list has one timeout, so appending keeps it sorted. */
enum nw_timer {
	NW_TIMER_IDLE,   /* keep-alive between requests */
	NW_TIMER_HEAD,   /* a request head is arriving */
	NW_TIMER_BODY,   /* a request body is arriving: time between reads */
	NW_TIMER_WRITE,  /* output waits for the client to read */
	NW_TIMER_LINGER, /* lingering close */
	NW_TIMER_GRACE,  /* a fresh or idle connection while stopping */
	NW_TIMER_COUNT,
	NW_TIMER_NONE = NW_TIMER_COUNT,
};

#define NW_LINGER_MS 2000 /* lingering close */
#define NW_GRACE_MS 1000  /* see nw_conn_stop_idle */
#define NW_BODY_GRACE_MS 10000 /* before min_body_rate applies */
/* Reading a body pauses while the driver holds this much of it. */
#define NW_BODY_HIGH (256 * 1024)
/* A driver waits while this much output waits for the client. */
#define NW_WRITE_HIGH (64 * 1024)
#define NW_WRITE_LOW (16 * 1024)

struct nw_engine;
struct ssl_st;
struct ssl_ctx_st;

/*
 * One connection. A driver that keeps state per connection makes its own
 * struct with this one first (driver.conn_size), and finds it again with a
 * cast: the engine allocates, pools and frees them.
 */
struct nw_conn {
	enum nw_watch kind;
	int fd;
	enum nw_conn_state state;
	struct nw_engine *engine;
	struct nw_listener *listener;
	/*
	 * Input: the current request's head at rpos, then (while it runs)
	 * bytes that are not its body: the next requests, pipelined.
	 */
	struct nw_buf in;
	size_t rpos;
	struct nw_request req;
	/* the current request's body, as it arrives */
	bool chunked;
	struct nw_chunked dec;
	uint64_t remaining; /* Content-Length bytes still to come */
	bool body_done;
	bool body_told;     /* the driver knows it is done */
	size_t body_ready;  /* decoded, not yet handed to the driver */
	uint64_t body_size; /* decoded bytes so far */
	uint64_t body_raw;  /* bytes read off the wire for it */
	int64_t body_window_ns; /* min_body_rate counts from here... */
	uint64_t body_window_raw; /* ...and from this many bytes */
	bool continue_sent; /* 100 Continue */
	bool client_close;  /* the client did not ask for keep-alive */
	int64_t started_ns; /* the head was parsed (CLOCK_MONOTONIC) */
	/* output the socket did not take yet */
	struct nw_buf out;
	size_t opos;
	uint32_t events;  /* what the epoll set watches for it */
	bool registered;  /* in the epoll set */
	bool read_paused; /* the driver has enough input for now */
	bool parked;      /* its request runs on another thread or in a
			   * greenlet: the engine leaves it alone */
	bool held;        /* out is held for nw_engine_release */
	struct nw_conn *hnext;
	bool queued; /* on the run queue: a pipelined request waits */
	struct nw_conn *qnext;
	int in_process;              /* nw_conn_process is on the stack */
	uint64_t requests;           /* answered on this connection */
	int timer;                   /* which list it is on, or NW_TIMER_NONE */
	int64_t deadline;            /* monotonic ms */
	struct nw_conn *prev, *next; /* its deadline list */
	struct nw_conn *all_prev, *all_next; /* every open connection */
	/* the peer */
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char host[64]; /* its address ("" for a Unix socket) */
	int port;      /* 0 for a Unix socket */
	bool trusted;  /* in forwarded_allow_ips: may say it spoke HTTPS */
	bool proxy_pending; /* a PROXY header must come first (front.c) */
	bool local;    /* on this host: see nw_engine_yield */
	/* TLS (tls.c): NULL on a plain connection, which never goes there */
	struct ssl_st *ssl;
	bool tls_handshaking;
	uint32_t tls_want; /* EPOLLOUT: a TLS read waits for room to write */
};

/*
 * What a driver gives the engine. request is the one entry point for a
 * request; the rest is optional (NULL). A driver answers in place (WSGI:
 * the app runs inside request) or later (ASGI: a task; a thread pool: a
 * parked connection), and then calls nw_conn_response_done.
 */
struct nw_driver {
	size_t conn_size; /* sizeof the driver's connection, >= nw_conn */
	/*
	 * Call request when the head is parsed (false: the driver streams the
	 * body through body()), or only once the whole body has come (true:
	 * body() still gets every byte first; errors in the body are answered
	 * by the engine before the driver ever sees the request).
	 */
	bool whole_body;
	/* 100 Continue goes out when the body is first waited for (true), or
	 * when the driver calls nw_conn_send_continue (false). */
	bool auto_continue;
	/* A connection struct was just allocated (zeroed): set it up. */
	void (*conn_init)(struct nw_conn *c);
	/*
	 * A request for the driver: c->req and its head at c->in.data +
	 * c->rpos. Returns 0, or -1: the engine answers 500 and closes.
	 */
	int (*request)(struct nw_conn *c);
	/* Decoded body bytes (copy them: they move); done with the last. */
	/* ...returns 0, or a status for the engine to answer (500: no room). */
	int (*body)(struct nw_conn *c, const char *p, size_t n, bool done);
	/*
	 * The running request lost its connection (the client went, its body
	 * broke the rules or stalled, the worker quit): let go of it; the
	 * engine answers the error itself, or closes when this returns true
	 * (a response head went out already).
	 */
	bool (*abandon)(struct nw_conn *c);
	/* Output fell to NW_WRITE_LOW while a request runs. */
	void (*drained)(struct nw_conn *c);
	/* An upgraded connection (nw_conn_upgrade) has input, or hung up. */
	void (*upgraded)(struct nw_conn *c, bool eof);
	/* c is closed: drop what the driver keeps for it (it may be reused). */
	void (*closed)(struct nw_conn *c);
	/* c is freed for good: free the driver's buffers. */
	void (*freed)(struct nw_conn *c);
	/*
	 * Run nw_engine_run_queue soon, from a fresh stack (a loop callback):
	 * pipelined requests. NULL: they run at once, in place.
	 */
	void (*schedule)(struct nw_engine *e);
	/* The engine's next deadline is at (monotonic ms): call
	 * nw_engine_tick then. NULL: the driver asks nw_engine_timeout. */
	void (*arm)(struct nw_engine *e, int64_t at);
	/* The master said stop (it went away): begin a graceful stop. */
	void (*stop_requested)(struct nw_engine *e);
	/* Access log lines wait: flush them within this loop turn. NULL:
	 * the driver flushes before it sleeps. */
	void (*log_pending)(struct nw_engine *e);
	/* The signal pipe (wakeup_fd) is readable. */
	void (*wakeup)(struct nw_engine *e);
};

struct nw_timer_list {
	struct nw_conn *head, *tail;
	int64_t timeout_ms;
};

/* Cumulative since the worker started; see nw_engine_heartbeat_format. */
#define NW_LAT_BUCKETS 12
struct nw_counters {
	uint64_t served;
	uint64_t bytes;
	uint64_t status[6]; /* [1]..[5]: by class */
	uint64_t s500, s502, s503, s504;
	uint64_t lat[NW_LAT_BUCKETS];
	uint64_t latsum_us;
};

struct nw_engine {
	const struct nw_driver *drv;

	/* configuration, fixed after nw_engine_init */
	struct nw_limits limits;
	int64_t keepalive_ms; /* 0: no keep-alive */
	int64_t header_timeout_ms;
	int64_t write_timeout_ms;
	size_t max_conns;       /* worker_connections; 0: no cap */
	uint64_t min_body_rate; /* bytes/s a body must keep; 0: none */
	int64_t heartbeat_ms;  /* 0: none */
	uint64_t max_requests; /* 0: no budget */
	int accepts_per_wakeup;
	bool exclusive; /* EPOLLEXCLUSIVE on the public sockets */
	int control_fd; /* the master; -1: none */
	int wakeup_fd;  /* the driver's signal pipe; -1: none */

	/* the epoll set and its connections */
	int epfd;
	struct nw_listener *listeners; /* [0] is the private socket */
	size_t nlisteners;
	enum nw_watch control_watch;
	enum nw_watch wakeup_watch;
	struct nw_clock clock;
	struct nw_timer_list timers[NW_TIMER_COUNT];
	int64_t timer_due; /* no deadline is earlier (INT64_MAX: none) */
	size_t nconns;
	struct nw_conn *conns;      /* all open ones, linked */
	struct nw_conn *free_conns; /* kept with their buffers, via next */
	size_t nfree;
	struct nw_conn *limbo; /* closed during an event batch, via next */
	bool in_events;        /* nw_engine_dispatch is running */
	struct nw_conn *runq_head, *runq_tail; /* pipelined requests */
	struct nw_conn *held; /* output held for the release, via hnext */
	bool holding;         /* writes are held until nw_engine_release */
	bool answered_local;  /* an answer woke a client on this host */

	/* life */
	bool started;
	bool live;             /* the master said `live` */
	bool stop_requested;   /* the master went away */
	bool stopping;         /* nw_engine_stop ran */
	bool closed;           /* nw_engine_close ran */
	bool halt;             /* the driver must leave: stop processing */
	bool retired;          /* `retire` sent */
	bool restarting;       /* the master said `restart`: it replaces us */
	int64_t stop_deadline; /* 0: none */
	int64_t next_heartbeat;
	int64_t accept_paused_until; /* after EMFILE; 0: not paused */
	bool full; /* max_conns open, none idle: public sockets not watched */
	struct nw_counters counters;
	unsigned ws_open; /* open WebSockets, for the heartbeat */

	/* behind a proxy (front.c), gunicorn's settings */
	struct nw_iplist forwarded;        /* may claim HTTPS */
	struct nw_scheme_headers secure;   /* the headers that claim it */
	int proxy_protocol;                /* 0: off; else PROXY v1 or v2 */
	struct nw_iplist proxy_allow;      /* must send a PROXY header */
	struct nw_alogfmt *alogfmt;        /* NULL: gunicorn's default line */
	struct ssl_ctx_st *tls;            /* certfile's; NULL: no TLS */

	/* access log */
	char *alog_path; /* NULL: off; "-": fd 1 */
	int alog_fd;
	struct nw_buf alog;
};

/* engine.c: life of the engine */
int nw_engine_init(struct nw_engine *e, const struct nw_driver *drv);
void nw_engine_bounds(struct nw_engine *e);
int nw_engine_start(struct nw_engine *e);
void nw_engine_go_live(struct nw_engine *e);
void nw_engine_dispatch(
    struct nw_engine *e, const struct epoll_event *events, int n);
void nw_engine_tick(struct nw_engine *e);
int64_t nw_engine_next_deadline(const struct nw_engine *e);
int nw_engine_timeout(const struct nw_engine *e);
void nw_engine_arm_driver(struct nw_engine *e);
void nw_engine_stop(struct nw_engine *e, int64_t graceful_ms);
bool nw_engine_drained(const struct nw_engine *e);
void nw_engine_close(struct nw_engine *e);
void nw_engine_free(struct nw_engine *e);
void nw_engine_run_queue(struct nw_engine *e);
void nw_engine_yield(struct nw_engine *e);
size_t nw_engine_inflight(const struct nw_engine *e);

/* master.c: the worker's side of the master protocol, and the counters */
void nw_engine_control_readable(struct nw_engine *e);
void nw_engine_control_send(struct nw_engine *e, const char *msg);
void nw_engine_heartbeat(struct nw_engine *e, bool force);
size_t nw_engine_heartbeat_format(char *out, size_t cap,
    const struct nw_counters *k, size_t inflight, unsigned ws);
void nw_engine_count(
    struct nw_engine *e, int status, uint64_t sent, int64_t started_ns);
int64_t nw_engine_now_ns(void);
int nw_engine_alog_open(struct nw_engine *e, const char *path);
int nw_engine_alog_reopen(struct nw_engine *e);

/* front.c: behind a proxy: gunicorn's settings from the environment */
int nw_engine_front_setup(struct nw_engine *e, char *why, size_t whylen);
void nw_engine_front_free(struct nw_engine *e);
bool nw_engine_claims_https(const struct nw_engine *e, const char *name,
    size_t namelen, const char *value, size_t valuelen);
int nw_conn_proxy_header(struct nw_conn *c);

/* tls.c: TLS on the public sockets (certfile), only where c->ssl is set */
int nw_engine_tls_setup(struct nw_engine *e, char *why, size_t whylen);
void nw_engine_tls_free(struct nw_engine *e);
int nw_tls_accept(struct nw_conn *c);
void nw_tls_free(struct nw_conn *c);
ssize_t nw_tls_read(struct nw_conn *c);
int nw_tls_flush(struct nw_conn *c);
void nw_tls_shutdown(struct nw_conn *c);
int nw_tls_writev_all(
    const struct nw_writer *w, struct nw_conn *c, struct iovec *iov, int cnt);

/* listen.c: listeners, accepting, the peer */
int nw_listener_init(struct nw_listener *l, int fd, bool public);
void nw_listeners_update(struct nw_engine *e);
void nw_listener_accept(struct nw_engine *e, struct nw_listener *l);
void nw_listeners_accept_queued(struct nw_engine *e);
void nw_conn_describe_peer(struct nw_conn *c);

/* conn.c: one connection's life */
void nw_conn_readable(struct nw_conn *c);
void nw_conn_process(struct nw_conn *c);
void nw_conn_close(struct nw_conn *c);
void nw_conn_linger(struct nw_conn *c);
void nw_conn_finish(struct nw_conn *c);
void nw_conn_next(struct nw_conn *c);
void nw_conn_free_limbo(struct nw_engine *e);
void nw_conn_free_pool(struct nw_engine *e);
void nw_conn_stop_idle(struct nw_conn *c);
void nw_conn_timed_out(struct nw_conn *c, int timer);
int nw_conn_update_events(struct nw_conn *c);
void nw_conn_body_timer(struct nw_conn *c);
/* ...what a driver asks of the connection of its request */
void nw_conn_count(struct nw_conn *c, int status, uint64_t sent);
void nw_conn_log(struct nw_conn *c, int status, uint64_t sent);
void nw_conn_park(struct nw_conn *c);
void nw_conn_parked_event(struct nw_conn *c);
void nw_conn_log_answer(struct nw_conn *c, int status, uint64_t sent,
    const char *head, size_t headlen);
void nw_conn_response_done(struct nw_conn *c, bool close);
void nw_conn_abort(struct nw_conn *c);
void nw_conn_error(struct nw_conn *c, int status);
void nw_conn_refuse(struct nw_conn *c, struct iovec *iov, int cnt);
void nw_conn_pause_reading(struct nw_conn *c);
void nw_conn_resume_reading(struct nw_conn *c);
int nw_conn_send_continue(struct nw_conn *c);
void nw_conn_upgrade(struct nw_conn *c);

/* output.c: writing without blocking */
int nw_conn_write(struct nw_conn *c, struct iovec *iov, int cnt);
int nw_conn_queue(struct nw_conn *c, struct iovec *iov, int cnt, size_t skip);
size_t nw_conn_pending(const struct nw_conn *c);
int nw_conn_flush(struct nw_conn *c);
void nw_conn_writable(struct nw_conn *c);
void nw_conn_unhold(struct nw_conn *c);
void nw_engine_release(struct nw_engine *e);

/* timer.c: the deadline lists */
void nw_timer_set(struct nw_conn *c, int timer);
void nw_timer_unlink(struct nw_conn *c);
void nw_timers_expire(struct nw_engine *e);

/* net.c: socket plumbing */
#define NW_ACCEPT_STOP (-1)
#define NW_ACCEPT_RETRY (-2)
#define NW_ACCEPT_BUSY (-3)
int nw_accept(
    int lfd, bool tcp, struct sockaddr_storage *peer, socklen_t *plen);
int nw_sock_name(int fd, char host[NW_HOST_MAX], int *port);
bool nw_peer_is_local(int fd, const struct sockaddr_storage *peer);

/* Inline: the hot path of every request goes through these. */

/* Tells a driver with a timer of its own when to tick. */
static inline void
nw_engine_arm(struct nw_engine *e)
{
	if (e->drv->arm != NULL)
		nw_engine_arm_driver(e);
}

/* May an answer keep its connection? Not without keep-alive, nor stopping. */
static inline bool
nw_engine_keeps_alive(const struct nw_engine *e)
{
	return e->keepalive_ms > 0 && !e->stopping && !e->stop_requested;
}

/*
 * The blocking writers of a driver that answers in place (core/write.c),
 * for a connection that may speak TLS.
 */
static inline int
nw_conn_writev_all(
    const struct nw_writer *w, struct nw_conn *c, struct iovec *iov, int cnt)
{
	if (c->ssl != NULL)
		return nw_tls_writev_all(w, c, iov, cnt);
	return nw_writev_all(w, c->fd, iov, cnt);
}

static inline int
nw_conn_send_all(
    const struct nw_writer *w, struct nw_conn *c, const void *p, size_t n)
{
	struct iovec iov = {(void *)p, n};

	return nw_conn_writev_all(w, c, &iov, 1);
}

/* Buffered access log lines go out (once per loop turn). */
static inline void
nw_engine_alog_flush(struct nw_engine *e)
{
	if (e->alog.len > 0)
		nw_accesslog_write(e->alog_fd, &e->alog);
}

#endif
