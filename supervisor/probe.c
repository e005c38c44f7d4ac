/*
 * probe.c: the health gate, `GET ready_path` over a worker's private socket.
 *
 * libcurl's multi interface runs on the master's libev loop (socket and timer
 * callbacks), so a slow or silent worker never blocks the master. A probe
 * repeats every ready_interval until ready_successes 2xx answers in a row;
 * the boot deadline itself is worker.c's. libcurl is only there once a config
 * with ready_path was loaded (curl_lib.c); nw_probe_init checks that early.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "master.h"

struct nw_probe {
	struct nw_worker *worker;
	CURL *easy;          /* non-NULL while a request is in flight */
	ev_timer interval;
	int successes;
	long last_status;
	char url[1024];
};

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
	struct nw_worker *w = p->worker;
	long status = 0;

	m->libcurl.easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
	m->libcurl.multi_remove_handle(m->curl, p->easy);
	m->libcurl.easy_cleanup(p->easy);
	p->easy = NULL;
	if (result == CURLE_OK && status >= 200 && status < 300) {
		if (++p->successes >= w->gen->config->ready_successes)
			nw_worker_event(m, w, NW_EV_PROBE_OK, NULL);
		return;
	}
	p->successes = 0;
	/* Say it once per change, not every ready_interval. */
	if (status != p->last_status) {
		if (result == CURLE_OK)
			nw_info("worker %u pid %d gen %u probe: %s answered %ld",
			    w->id, (int)w->pid, w->gen->id,
			    w->gen->config->ready_path, status);
		else
			nw_info("worker %u pid %d gen %u probe: %s: %s", w->id,
			    (int)w->pid, w->gen->id,
			    w->gen->config->ready_path,
			    m->libcurl.easy_strerror(result));
	}
	p->last_status = status;
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

static size_t
discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

static void
on_interval(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_probe *p = container_of(t, struct nw_probe, interval);
	struct nw_master *m = ev_userdata(loop);
	const struct nw_libcurl *lib = &m->libcurl;
	const struct nw_config *c = p->worker->gen->config;

	if (p->easy != NULL)
		return; /* the last one is still out: its timeout will tell */
	p->easy = lib->easy_init();
	if (p->easy == NULL)
		return;
	lib->easy_setopt(p->easy, CURLOPT_URL, p->url);
	lib->easy_setopt(p->easy, CURLOPT_UNIX_SOCKET_PATH,
	    p->worker->private_path);
	lib->easy_setopt(p->easy, CURLOPT_TIMEOUT_MS,
	    (long)(c->ready_timeout * 1000));
	lib->easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
	/* A kept-alive probe connection would hold a stopping worker open. */
	lib->easy_setopt(p->easy, CURLOPT_FORBID_REUSE, 1L);
	lib->easy_setopt(p->easy, CURLOPT_USERAGENT, "narwhal-probe");
	lib->easy_setopt(p->easy, CURLOPT_PRIVATE, p);
	/* A probe body is not ours to keep. */
	lib->easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, discard);
	lib->multi_add_handle(m->curl, p->easy);
}

void
nw_probe_start(struct nw_master *m, struct nw_worker *w)
{
	const struct nw_config *c = w->gen->config;
	struct nw_probe *p;
	char err[512];

	nw_probe_stop(m, w);
	/* Every config is checked when loaded, but the cold-start fallback
	 * re-reads the file: it may have gained ready_path since. Without a
	 * probe the worker's boot deadline fails it. */
	if (nw_probe_init(m, c, err, sizeof err) < 0) {
		nw_warn("worker %u pid %d gen %u probe: %s", w->id, (int)w->pid,
		    w->gen->id, err);
		return;
	}
	p = nw_calloc(1, sizeof *p);
	p->worker = w;
	p->last_status = -1;
	snprintf(p->url, sizeof p->url, "http://localhost%s", c->ready_path);
	ev_timer_init(&p->interval, on_interval, 0., c->ready_interval);
	ev_timer_start(m->loop, &p->interval);
	w->probe = p;
}

void
nw_probe_stop(struct nw_master *m, struct nw_worker *w)
{
	struct nw_probe *p = w->probe;

	if (p == NULL)
		return;
	ev_timer_stop(m->loop, &p->interval);
	if (p->easy != NULL) {
		m->libcurl.multi_remove_handle(m->curl, p->easy);
		m->libcurl.easy_cleanup(p->easy);
	}
	free(p);
	w->probe = NULL;
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
