/*
 * probe.c: the gate between `booted` and live, and one-off checks of workers
 * that serve, by HTTP over each worker's private Unix socket.
 *
 * With ready_path, libcurl's multi interface (loaded only then, curl_lib.c)
 * repeats `GET ready_path` until ready_successes 2xx answers in a row. With
 * no ready_path, the warm-up gate sends one `GET warmup_path` with a few
 * lines of plain socket code, and any answer below 500 passes. Either way
 * the answer's status and the start of its body are kept on the worker for
 * the reports, failing answers back off, and after ready_failures of them
 * in a row the probe gives up and marks the worker: what happens then is
 * the reconcile step's decision (supervise.c), not this file's. The boot
 * deadline is worker.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

/* Failing answers space the next probe out by this, up to PROBE_DELAY_MAX. */
#define PROBE_BACKOFF 1.5
#define PROBE_DELAY_MAX 5.0
/* What a one-off check waits for an answer, at least. */
#define CHECK_TIMEOUT_MIN 2.0

struct nw_probe {
	struct nw_worker *worker;
	const struct nw_config *config; /* whose gate: a check may ask
					 * with a newer generation's */
	int check;           /* one request to a serving worker */
	int warmup;          /* no ready_path: any answer < 500 passes */
	double delay;        /* until the next request; grows while failing */
	int successes;
	ev_timer interval;
	char path[NW_URLPATH_MAX + 1];

	CURL *easy;          /* ready_path: non-NULL while a request is out */
	struct curl_slist *headers; /* Host: ready_host */

	int fd;              /* warm-up: -1 unless a request is out */
	ev_io io;
	ev_timer deadline;
	size_t sent;
	char request[512];

	char answer[4096];   /* the answer's start (curl: the body's) */
	size_t len;
};

static void
probe_free(struct nw_master *m, struct nw_probe *p);

/* The body's first bytes, on one line, printable ASCII. */
void
nw_probe_keep_body(char *out, size_t outlen, const char *body, size_t len)
{
	size_t j = 0;
	int space = 0;

	for (size_t i = 0; i < len && j + 1 < outlen; i++) {
		unsigned char ch = (unsigned char)body[i];

		if (ch == '\r' || ch == '\n' || ch == '\t' || ch == ' ') {
			space = j > 0;
			continue;
		}
		if (space && j + 2 < outlen)
			out[j++] = ' ';
		space = 0;
		out[j++] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
	}
	out[j] = '\0';
}

const char *
nw_probe_path(const struct nw_config *config)
{
	return config->ready_path != NULL ? config->ready_path
					  : config->warmup_path;
}

static void
schedule(struct nw_master *m, struct nw_probe *p, double after)
{
	ev_timer_stop(m->loop, &p->interval);
	ev_timer_set(&p->interval, after, 0.);
	ev_timer_start(m->loop, &p->interval);
}

/* Every answer, or its absence, ends here; p may be gone afterwards. */
static void
answered(struct nw_master *m, struct nw_probe *p, long status,
    const char *body, size_t bodylen, const char *error)
{
	struct nw_worker *w = p->worker;
	const struct nw_config *c = p->config;
	struct nw_probe_result *r = &w->probe_last, before = *r;
	int pass = p->warmup ? status > 0 && status < 500
			     : status >= 200 && status < 300;
	int counted;

	snprintf(r->path, sizeof r->path, "%s", p->path);
	snprintf(r->host, sizeof r->host, "%s", c->ready_host);
	r->status = status;
	r->at = ev_now(m->loop);
	nw_probe_keep_body(r->body, sizeof r->body, body, bodylen);
	snprintf(r->error, sizeof r->error, "%s", error ? error : "");
	if (p->check) {
		char text[512];

		w->check = pass ? NW_CHECK_PASSED : NW_CHECK_FAILED;
		nw_worker_probe_text(w, text, sizeof text);
		nw_log(pass ? NW_LOG_INFO : NW_LOG_WARNING,
		    "worker %u pid %d gen %u check %s: %s", w->id, (int)w->pid,
		    w->gen->id, pass ? "passed" : "failed", text);
		probe_free(m, p);
		w->probe = NULL;
		nw_supervise_mark(m);
		return;
	}
	if (pass) {
		w->probe_failures = 0;
		if (p->warmup || ++p->successes >= c->ready_successes) {
			char text[512] = "";

			/* Passed, but the app may be refusing ready_host:
			 * the live line says so, at warning level. */
			if (p->warmup && status == 400) {
				strcpy(text, "warm-up ");
				nw_worker_probe_text(w, text + strlen(text),
				    sizeof text - strlen(text));
			}
			nw_worker_event(m, w, NW_EV_PROBE_OK,
			    text[0] ? text : NULL);
			return;
		}
		schedule(m, p, c->ready_interval);
		return;
	}
	p->successes = 0;
	/* The warm-up retries what got no answer until boot_timeout; a
	 * 5xx is its verdict. ready_grace: answers while the app warms up. */
	counted = p->warmup ? status > 0
			    : ev_now(m->loop) - w->booted_at >= c->ready_grace;
	if (counted)
		w->probe_failures = p->warmup && c->ready_failures > 0
		    ? c->ready_failures : w->probe_failures + 1;
	/* Said when the answer changes, not at every try. */
	if (before.status != r->status || strcmp(before.body, r->body) != 0 ||
	    strcmp(before.error, r->error) != 0) {
		char text[512];

		nw_worker_probe_text(w, text, sizeof text);
		nw_warn("worker %u pid %d gen %u probe: %s%s (%d of %d "
			"failures)", w->id, (int)w->pid, w->gen->id,
		    p->path, text + strlen("GET ") + strlen(p->path),
		    w->probe_failures, c->ready_failures);
		if (w->gen == m->reload.gen)
			nw_control_progress(m, "worker %u: %s (%d of %d "
			    "failures)", w->id, text, w->probe_failures,
			    c->ready_failures);
	}
	if (c->ready_failures > 0 && w->probe_failures >= c->ready_failures) {
		w->probe_gave_up = 1;
		ev_timer_stop(m->loop, &p->interval);
		nw_supervise_mark(m);
		return;
	}
	schedule(m, p, p->delay);
	p->delay *= PROBE_BACKOFF;
	if (p->delay > PROBE_DELAY_MAX)
		p->delay = PROBE_DELAY_MAX > c->ready_interval
		    ? PROBE_DELAY_MAX : c->ready_interval;
}

/* ---- the warm-up request: plain HTTP/1.1 over the private socket ---- */

static void
raw_close(struct nw_master *m, struct nw_probe *p)
{
	if (p->fd < 0)
		return;
	ev_io_stop(m->loop, &p->io);
	ev_timer_stop(m->loop, &p->deadline);
	close(p->fd);
	p->fd = -1;
}

/*
 * The status and the body's start of an HTTP/1.x answer (its first bytes,
 * NUL-terminated in buf, which it changes): -1 when it is none.
 */
int
nw_probe_parse(char *buf, size_t len, long *status, const char **body,
    size_t *bodylen)
{
	char *end;

	*body = "";
	*bodylen = 0;
	if (sscanf(buf, "HTTP/1.%*1[01] %3ld", status) != 1 || *status < 100 ||
	    *status > 999)
		return -1;
	if ((end = strstr(buf, "\r\n\r\n")) == NULL)
		return 0; /* the head alone fit */
	*end = '\0';
	*body = end + 4;
	*bodylen = len - (size_t)(*body - buf);
	/* Chunked: skip the first chunk's size line. */
	if (strcasestr(buf, "\ntransfer-encoding: chunked") != NULL &&
	    (end = strstr(*body, "\r\n")) != NULL) {
		*bodylen -= (size_t)(end + 2 - *body);
		*body = end + 2;
	}
	return 0;
}

static void
raw_done(struct nw_master *m, struct nw_probe *p, const char *error)
{
	const char *body;
	long status = 0;
	size_t bodylen = 0;

	raw_close(m, p);
	p->answer[p->len < sizeof p->answer ? p->len
					    : sizeof p->answer - 1] = '\0';
	if (error == NULL && nw_probe_parse(p->answer, p->len, &status, &body,
				 &bodylen) < 0)
		error = p->len == 0 ? "closed without an answer"
				    : "not an HTTP answer";
	if (error != NULL) {
		answered(m, p, 0, "", 0, error);
		return;
	}
	answered(m, p, status, body, bodylen, NULL);
}

static void
on_raw_io(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_probe *p = container_of(io, struct nw_probe, io);
	struct nw_master *m = ev_userdata(loop);
	size_t want = strlen(p->request);
	ssize_t n;

	if (p->sent < want) {
		n = send(p->fd, p->request + p->sent, want - p->sent,
		    MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n < 0) {
			raw_done(m, p, strerror(errno));
			return;
		}
		p->sent += (size_t)n;
		if (p->sent == want) {
			ev_io_stop(loop, io);
			ev_io_set(io, p->fd, EV_READ);
			ev_io_start(loop, io);
		}
		return;
	}
	n = recv(p->fd, p->answer + p->len, sizeof p->answer - 1 - p->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		raw_done(m, p, p->len > 0 ? NULL : strerror(errno));
		return;
	}
	p->len += (size_t)n;
	/* The close that ends a Connection: close answer, or enough. */
	if (n == 0 || p->len == sizeof p->answer - 1)
		raw_done(m, p, NULL);
}

static void
on_raw_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_probe *p = container_of(t, struct nw_probe, deadline);

	raw_done(ev_userdata(loop), p, "timed out");
}

static void
raw_start(struct nw_master *m, struct nw_probe *p, double timeout)
{
	struct sockaddr_un sun;

	p->len = 0;
	p->sent = 0;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s",
	    p->worker->private_path);
	p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		/* Out of fds, say: an answer we could not get, not a no. */
		answered(m, p, 0, "", 0, strerror(errno));
		return;
	}
	if (connect(p->fd, (struct sockaddr *)&sun, sizeof sun) < 0 &&
	    errno != EINPROGRESS) {
		raw_done(m, p, strerror(errno));
		return;
	}
	ev_io_init(&p->io, on_raw_io, p->fd, EV_WRITE);
	ev_io_start(m->loop, &p->io);
	ev_timer_init(&p->deadline, on_raw_deadline, timeout, 0.);
	ev_timer_start(m->loop, &p->deadline);
}

/* ---- ready_path: libcurl multi on the libev loop ---- */

struct curl_socket {
	ev_io io;
	struct nw_master *m;
};

static void
check_done(struct nw_master *m);

static void
on_curl_socket(struct ev_loop *loop, ev_io *io, int revents)
{
	struct curl_socket *cs = container_of(io, struct curl_socket, io);
	struct nw_master *m = cs->m;
	int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) |
	    (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;

	m->libcurl.multi_socket_action(m->curl, io->fd, action, &running);
	check_done(m);
}

static int
socket_function(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
	struct nw_master *m = userp;
	struct curl_socket *cs = socketp;
	int events = (what & CURL_POLL_IN ? EV_READ : 0) |
	    (what & CURL_POLL_OUT ? EV_WRITE : 0);

	if (what == CURL_POLL_REMOVE) {
		if (cs != NULL) {
			ev_io_stop(m->loop, &cs->io);
			free(cs);
			m->libcurl.multi_assign(m->curl, s, NULL);
		}
		return 0;
	}
	if (cs == NULL) {
		cs = nw_calloc(1, sizeof *cs);
		cs->m = m;
		ev_init(&cs->io, on_curl_socket);
		m->libcurl.multi_assign(m->curl, s, cs);
	}
	ev_io_stop(m->loop, &cs->io);
	ev_io_set(&cs->io, s, events);
	ev_io_start(m->loop, &cs->io);
	return 0;
}

static void
on_curl_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, curl_timer);
	int running;

	m->libcurl.multi_socket_action(m->curl, CURL_SOCKET_TIMEOUT, 0,
	    &running);
	check_done(m);
}

static int
timer_function(CURLM *multi, long timeout_ms, void *userp)
{
	struct nw_master *m = userp;

	ev_timer_stop(m->loop, &m->curl_timer);
	if (timeout_ms >= 0) {
		/* libcurl counts milliseconds; libev counts seconds. */
		ev_timer_set(&m->curl_timer, timeout_ms / 1000.0, 0.);
		ev_timer_start(m->loop, &m->curl_timer);
	}
	return 0;
}

static void
request_done(struct nw_master *m, struct nw_probe *p, CURLcode result)
{
	long status = 0;

	m->libcurl.easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
	m->libcurl.multi_remove_handle(m->curl, p->easy);
	m->libcurl.easy_cleanup(p->easy);
	p->easy = NULL;
	if (result != CURLE_OK && status == 0) {
		answered(m, p, 0, "", 0, m->libcurl.easy_strerror(result));
		return;
	}
	answered(m, p, status, p->answer, p->len, NULL);
}

static void
check_done(struct nw_master *m)
{
	CURLMsg *msg;
	int left;

	while ((msg = m->libcurl.multi_info_read(m->curl, &left)) != NULL) {
		struct nw_probe *p;

		if (msg->msg != CURLMSG_DONE)
			continue;
		m->libcurl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
		request_done(m, p, msg->data.result);
	}
}

/* The start of the body, for the reports; the rest is dropped. */
static size_t
keep_start(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct nw_probe *p = userdata;
	size_t n = size * nmemb, room = sizeof p->answer - 1 - p->len;

	memcpy(p->answer + p->len, ptr, n < room ? n : room);
	p->len += n < room ? n : room;
	return n;
}

static void
curl_start(struct nw_master *m, struct nw_probe *p, double timeout)
{
	const struct nw_libcurl *lib = &m->libcurl;
	char url[1024];

	p->len = 0;
	if (p->headers == NULL) {
		char host[NW_READY_HOST_MAX + 8];

		snprintf(host, sizeof host, "Host: %s", p->config->ready_host);
		p->headers = lib->slist_append(NULL, host);
	}
	p->easy = p->headers != NULL ? lib->easy_init() : NULL;
	if (p->easy == NULL) {
		answered(m, p, 0, "", 0, "libcurl: cannot make a request");
		return;
	}
	/* No name is looked up: the request goes to the Unix socket. */
	snprintf(url, sizeof url, "http://localhost%s", p->path);
	lib->easy_setopt(p->easy, CURLOPT_URL, url);
	lib->easy_setopt(p->easy, CURLOPT_UNIX_SOCKET_PATH,
	    p->worker->private_path);
	lib->easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
	lib->easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
	/* A kept-alive probe connection would hold a stopping worker open. */
	lib->easy_setopt(p->easy, CURLOPT_FORBID_REUSE, 1L);
	lib->easy_setopt(p->easy, CURLOPT_USERAGENT, "narwhal-probe");
	lib->easy_setopt(p->easy, CURLOPT_HTTPHEADER, p->headers);
	lib->easy_setopt(p->easy, CURLOPT_PRIVATE, p);
	lib->easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, keep_start);
	lib->easy_setopt(p->easy, CURLOPT_WRITEDATA, p);
	lib->multi_add_handle(m->curl, p->easy);
}

/* ---- one probe ---- */

static void
on_interval(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_probe *p = container_of(t, struct nw_probe, interval);
	struct nw_master *m = ev_userdata(loop);
	const struct nw_config *c = p->config;
	struct nw_worker *w = p->worker;
	double timeout = c->ready_timeout;

	if (p->easy != NULL || p->fd >= 0)
		return; /* the last one is still out: its timeout will tell */
	if (p->check && timeout < CHECK_TIMEOUT_MIN)
		timeout = CHECK_TIMEOUT_MIN;
	if (p->warmup && !p->check) {
		/* A first request may compile templates or open pools: it has
		 * what is left of boot_timeout. */
		timeout = w->spawned_at + c->boot_timeout - ev_now(loop);
		if (timeout < c->ready_timeout)
			timeout = c->ready_timeout;
	}
	if (p->warmup || m->curl == NULL)
		raw_start(m, p, timeout);
	else
		curl_start(m, p, timeout);
}

static struct nw_probe *
probe_new(struct nw_master *m, struct nw_worker *w,
    const struct nw_config *c)
{
	struct nw_probe *p = nw_calloc(1, sizeof *p);
	const char *path = nw_probe_path(c);

	p->worker = w;
	p->config = c;
	p->fd = -1;
	p->warmup = c->ready_path == NULL;
	p->delay = c->ready_interval;
	snprintf(p->path, sizeof p->path, "%s", path ? path : "/");
	snprintf(p->request, sizeof p->request,
	    "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: narwhal-probe"
	    "\r\nConnection: close\r\n\r\n", p->path, c->ready_host);
	ev_timer_init(&p->interval, on_interval, 0., 0.);
	return p;
}

void
nw_probe_start(struct nw_master *m, struct nw_worker *w)
{
	const struct nw_config *c = w->gen->config;
	char err[512];

	nw_probe_stop(m, w);
	w->probe_failures = 0;
	w->probe_gave_up = 0;
	memset(&w->probe_last, 0, sizeof w->probe_last);
	/* Every config is checked when loaded, but the cold-start fallback
	 * re-reads the file: it may have gained ready_path since. Without a
	 * probe the worker's boot deadline fails it. */
	if (nw_probe_init(m, c, err, sizeof err) < 0) {
		nw_warn("worker %u pid %d gen %u probe: %s", w->id, (int)w->pid,
		    w->gen->id, err);
		return;
	}
	w->probe = probe_new(m, w, c);
	ev_timer_start(m->loop, &w->probe->interval);
}

void
nw_probe_check(struct nw_master *m, struct nw_worker *w,
    struct nw_generation *gen)
{
	const struct nw_config *c = gen->config;

	if (w->probe != NULL || nw_probe_path(c) == NULL ||
	    w->private_path[0] == '\0')
		return;
	if (c->ready_path != NULL && m->curl == NULL)
		return;
	w->probe = probe_new(m, w, c);
	w->probe->check = 1;
	w->check = NW_CHECK_PENDING;
	ev_timer_start(m->loop, &w->probe->interval);
}

static void
probe_free(struct nw_master *m, struct nw_probe *p)
{
	ev_timer_stop(m->loop, &p->interval);
	if (p->easy != NULL) {
		m->libcurl.multi_remove_handle(m->curl, p->easy);
		m->libcurl.easy_cleanup(p->easy);
	}
	if (p->headers != NULL)
		m->libcurl.slist_free_all(p->headers);
	raw_close(m, p);
	free(p);
}

void
nw_probe_stop(struct nw_master *m, struct nw_worker *w)
{
	struct nw_probe *p = w->probe;

	if (p == NULL)
		return;
	/* A check that cannot finish tells nothing; nobody waits for it. */
	if (p->check && w->check == NW_CHECK_PENDING) {
		w->check = NW_CHECK_NONE;
		nw_supervise_mark(m);
	}
	w->probe = NULL;
	probe_free(m, p);
}

/*
 * Called for every config the master loads (start-up, reload), so that a
 * missing libcurl refuses that config instead of failing its workers. A
 * config without ready_path loads nothing; once loaded, libcurl stays.
 */
int
nw_probe_init(struct nw_master *m, const struct nw_config *config, char *err,
    size_t errlen)
{
	struct nw_libcurl *lib = &m->libcurl;

	if (config->ready_path == NULL || m->curl != NULL)
		return 0;
	if (nw_libcurl_load(lib, err, errlen) < 0)
		return -1;
	if (lib->global_init(CURL_GLOBAL_NOTHING) != 0 ||
	    (m->curl = lib->multi_init()) == NULL) {
		snprintf(err, errlen, "ready_path: libcurl failed to start");
		return -1;
	}
	ev_timer_init(&m->curl_timer, on_curl_timer, 0., 0.);
	lib->multi_setopt(m->curl, CURLMOPT_SOCKETFUNCTION, socket_function);
	lib->multi_setopt(m->curl, CURLMOPT_SOCKETDATA, m);
	lib->multi_setopt(m->curl, CURLMOPT_TIMERFUNCTION, timer_function);
	lib->multi_setopt(m->curl, CURLMOPT_TIMERDATA, m);
	return 0;
}

void
nw_probe_cleanup(struct nw_master *m)
{
	if (m->curl == NULL)
		return;
	m->libcurl.multi_cleanup(m->curl);
	m->curl = NULL;
	m->libcurl.global_cleanup();
}
