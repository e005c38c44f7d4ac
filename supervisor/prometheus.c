/*
 * prometheus.c: `metrics_bind` serves GET /metrics in Prometheus' text format
 * from the master's loop.
 *
 * At most NW_METRICS_CLIENTS connections at once, each with a small request
 * buffer and a deadline; the answer is rendered into one bounded buffer and
 * written without blocking, then the connection closes. Labels are the
 * generation and the worker's slot in it (0..workers-1), and only live
 * generations have series, so cardinality stays bounded. It only reads
 * the master's state.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

#define NW_METRICS_CLIENTS 4
#define CLIENT_TIMEOUT 5.0
#define BODY_MAX (1024 * 1024)

struct nw_metrics_client {
	int fd;
	ev_io io;
	ev_timer timer;
	char req[2048];           /* the request head, up to its blank line */
	size_t len;
	char *out;                /* the whole answer */
	size_t outlen, sent;
	TAILQ_ENTRY(nw_metrics_client) entry;
};

/* A growing text buffer that stops growing at BODY_MAX. */
struct text {
	char *buf;
	size_t len, cap;
	int full;
};

static void
put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->full)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->full = 1;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		if (t->cap * 2 > BODY_MAX) {
			t->full = 1;
			return;
		}
		char *grown = realloc(t->buf, t->cap * 2);

		if (grown == NULL) {
			t->full = 1;
			return;
		}
		t->buf = grown;
		t->cap *= 2;
	}
}

static void
head(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, quote and newline escaped. */
static void
label_value(char *out, size_t outlen, const char *s)
{
	size_t j = 0;

	for (; *s != '\0' && j + 3 < outlen; s++) {
		if (*s == '\\' || *s == '"') {
			out[j++] = '\\';
			out[j++] = *s;
		} else if (*s == '\n') {
			out[j++] = '\\';
			out[j++] = 'n';
		} else {
			out[j++] = *s;
		}
	}
	out[j] = '\0';
}

static void
classes(struct text *t, const char *name, const char *labels,
    const struct nw_counters *c)
{
	for (int i = 1; i <= 5; i++)
		put(t, "%s{%s%scode=\"%dxx\"} %llu\n", name, labels,
		    *labels ? "," : "", i, c->status[i]);
}

static void
histogram(struct text *t, const struct nw_counters *c)
{
	unsigned long long cum = 0;
	const char *name = "narwhal_request_duration_seconds";

	head(t, name, "histogram", "Time from a request's head parsed to its "
	    "answer finished, all workers, since the master started.");
	for (int i = 0; i < NW_LAT_BUCKETS; i++) {
		cum += c->lat[i];
		if (i == NW_LAT_BUCKETS - 1)
			put(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
		else
			put(t, "%s_bucket{le=\"%g\"} %llu\n", name,
			    nw_lat_bounds[i], cum);
	}
	put(t, "%s_sum %.6f\n%s_count %llu\n", name, c->latsum_us / 1e6, name,
	    cum);
}

static const char *
role(struct nw_master *m, struct nw_generation *g)
{
	if (g == m->current)
		return "current";
	if (g == m->reload.gen)
		return m->canary.gen == g && !m->canary.passed ? "canary"
							     : "starting";
	return "old";
}

static void
generations(struct nw_master *m, struct text *t)
{
	struct nw_generation *g;
	struct nw_counters c;
	char tree[1024], labels[64];

	head(t, "narwhal_generation_info", "gauge",
	    "Generations with workers: 1, labelled with role and tree.");
	TAILQ_FOREACH(g, &m->generations, entry) {
		label_value(tree, sizeof tree, g->tree);
		put(t, "narwhal_generation_info{generation=\"%u\",role=\"%s\","
		    "tree=\"%s\"} 1\n", g->id, role(m, g), tree);
	}
	head(t, "narwhal_generation_requests_total", "counter",
	    "Answers by the workers of a generation, exited ones included.");
	TAILQ_FOREACH(g, &m->generations, entry) {
		nw_metrics_sum(m, g, &c);
		put(t, "narwhal_generation_requests_total{generation=\"%u\"} "
		    "%llu\n", g->id, c.requests);
	}
	head(t, "narwhal_generation_responses_total", "counter",
	    "Answers of a generation by status class.");
	TAILQ_FOREACH(g, &m->generations, entry) {
		nw_metrics_sum(m, g, &c);
		snprintf(labels, sizeof labels, "generation=\"%u\"", g->id);
		classes(t, "narwhal_generation_responses_total", labels, &c);
	}
}

/* Per (generation, slot): a retiring worker and its relief are summed. */
static void
slots(struct nw_master *m, struct text *t, int which)
{
	static const char *const names[] = { "narwhal_worker_requests_total",
		"narwhal_worker_5xx_total", "narwhal_worker_requests_in_flight" };
	static const char *const help[] = {
		"Answers by the worker in this slot; resets when it is replaced.",
		"5xx answers by the worker in this slot; resets when it is "
		"replaced.",
		"Requests the worker in this slot is handling.",
	};
	struct nw_generation *g;
	struct nw_worker *w;

	head(t, names[which], which == 2 ? "gauge" : "counter", help[which]);
	TAILQ_FOREACH(g, &m->generations, entry) {
		unsigned top = 0;
		int any = 0;

		TAILQ_FOREACH(w, &m->workers, entry)
			if (w->gen == g) {
				any = 1;
				top = w->slot > top ? w->slot : top;
			}
		for (unsigned s = 0; any && s <= top; s++) {
			unsigned long long v = 0;
			int seen = 0;

			TAILQ_FOREACH(w, &m->workers, entry) {
				if (w->gen != g || w->slot != s)
					continue;
				seen = 1;
				v += which == 0 ? w->counted.requests
				    : which == 1 ? w->counted.status[5]
						 : w->inflight;
			}
			if (seen)
				put(t, "%s{generation=\"%u\",slot=\"%u\"} %llu\n",
				    names[which], g->id, s, v);
		}
	}
}

/* The whole exposition; NULL when out of memory. */
char *
nw_prometheus_render(struct nw_master *m, size_t *len)
{
	struct text t = { .buf = malloc(16384), .cap = 16384 };
	struct nw_counters all;
	struct nw_worker *w;
	unsigned inflight, ws = 0;
	int busy, idle, states[NW_BACKOFF + 1] = { 0 };

	if (t.buf == NULL)
		return NULL;
	t.buf[0] = '\0';
	nw_metrics_sum(m, NULL, &all);
	nw_metrics_load(m, NULL, &inflight, &busy, &idle);
	TAILQ_FOREACH(w, &m->workers, entry) {
		states[w->state]++;
		ws += w->websockets;
	}

	head(&t, "narwhal_requests_total", "counter",
	    "Answers by all workers since the master started, exited ones "
	    "included.");
	put(&t, "narwhal_requests_total %llu\n", all.requests);
	head(&t, "narwhal_responses_total", "counter",
	    "Answers by status class.");
	classes(&t, "narwhal_responses_total", "", &all);
	head(&t, "narwhal_responses_5xx_total", "counter",
	    "5xx answers by exact code (500, 502, 503, 504; other: the rest).");
	put(&t, "narwhal_responses_5xx_total{code=\"500\"} %llu\n", all.s500);
	put(&t, "narwhal_responses_5xx_total{code=\"502\"} %llu\n", all.s502);
	put(&t, "narwhal_responses_5xx_total{code=\"503\"} %llu\n", all.s503);
	put(&t, "narwhal_responses_5xx_total{code=\"504\"} %llu\n", all.s504);
	put(&t, "narwhal_responses_5xx_total{code=\"other\"} %llu\n",
	    all.status[5] > all.s500 + all.s502 + all.s503 + all.s504
		? all.status[5] - all.s500 - all.s502 - all.s503 - all.s504
		: 0);
	histogram(&t, &all);
	head(&t, "narwhal_sent_bytes_total", "counter",
	    "Bytes of answers sent.");
	put(&t, "narwhal_sent_bytes_total %llu\n", all.bytes);
	head(&t, "narwhal_requests_in_flight", "gauge",
	    "Requests being handled, at the workers' last heartbeats.");
	put(&t, "narwhal_requests_in_flight %u\n", inflight);
	head(&t, "narwhal_workers_busy", "gauge",
	    "Serving workers handling at least one request.");
	put(&t, "narwhal_workers_busy %d\n", busy);
	head(&t, "narwhal_workers_idle", "gauge",
	    "Serving workers handling none.");
	put(&t, "narwhal_workers_idle %d\n", idle);
	head(&t, "narwhal_workers", "gauge", "Workers by lifecycle state.");
	for (int s = NW_SPAWNED; s <= NW_BACKOFF; s++)
		if (s != NW_EXITED)
			put(&t, "narwhal_workers{state=\"%s\"} %d\n",
			    nw_worker_state_name(s), states[s]);
	head(&t, "narwhal_workers_target", "gauge",
	    "Workers wanted (workers, moved by TTIN and TTOU).");
	put(&t, "narwhal_workers_target %d\n", m->target);
	head(&t, "narwhal_websockets_open", "gauge", "Open WebSockets.");
	put(&t, "narwhal_websockets_open %u\n", ws);
	head(&t, "narwhal_worker_restarts_total", "counter",
	    "Workers replaced, by cause.");
	for (int c = NW_RESTART_RECYCLED; c < NW_RESTART_CAUSES; c++)
		put(&t, "narwhal_worker_restarts_total{cause=\"%s\"} %llu\n",
		    nw_restart_cause_name(c), m->metrics.restarts[c]);
	head(&t, "narwhal_reloads_total", "counter", "Reloads by outcome.");
	put(&t, "narwhal_reloads_total{outcome=\"ok\"} %llu\n",
	    m->metrics.reloads[NW_RELOAD_OK]);
	put(&t, "narwhal_reloads_total{outcome=\"refused\"} %llu\n",
	    m->metrics.reloads[NW_RELOAD_INVALID_CONFIG]);
	put(&t, "narwhal_reloads_total{outcome=\"rolled_back\"} %llu\n",
	    m->metrics.reloads[NW_RELOAD_ROLLED_BACK]);
	put(&t, "narwhal_reloads_total{outcome=\"dependency_down\"} %llu\n",
	    m->metrics.reloads[NW_RELOAD_DEPENDENCY]);
	put(&t, "narwhal_reloads_total{outcome=\"watch_rolled_back\"} %llu\n",
	    m->metrics.reloads[NW_RELOAD_WATCH_ROLLED_BACK]);
	head(&t, "narwhal_rollbacks_total", "counter",
	    "Returns to a previous tree, by what caused them.");
	put(&t, "narwhal_rollbacks_total{trigger=\"boot\"} %llu\n",
	    m->metrics.rollbacks[NW_ROLLBACK_BOOT]);
	put(&t, "narwhal_rollbacks_total{trigger=\"watch\"} %llu\n",
	    m->metrics.rollbacks[NW_ROLLBACK_WATCH]);
	put(&t, "narwhal_rollbacks_total{trigger=\"manual\"} %llu\n",
	    m->metrics.rollbacks[NW_ROLLBACK_MANUAL]);
	head(&t, "narwhal_watch_active", "gauge",
	    "1 while a new generation is being watched (its canary, or the "
	    "whole generation after the switch).");
	put(&t, "narwhal_watch_active %d\n",
	    nw_canary_active(m) || nw_postlive_active(m));
	head(&t, "narwhal_generation", "gauge", "The current generation.");
	put(&t, "narwhal_generation %u\n", m->current->id);
	generations(m, &t);
	for (int i = 0; i < 3; i++)
		slots(m, &t, i);
	head(&t, "narwhal_scrapes_total", "counter",
	    "GET /metrics answered, this one included.");
	put(&t, "narwhal_scrapes_total %llu\n", m->prom.scrapes + 1);
	if (t.full)
		nw_warn("metrics: the exposition was cut at %zu bytes", t.len);
	*len = t.len;
	return t.buf;
}

/* ---- the HTTP side ---- */

static void on_accept(struct ev_loop *loop, ev_io *io, int revents);

static void
client_close(struct nw_master *m, struct nw_metrics_client *c)
{
	ev_io_stop(m->loop, &c->io);
	ev_timer_stop(m->loop, &c->timer);
	close(c->fd);
	free(c->out);
	TAILQ_REMOVE(&m->prom.clients, c, entry);
	free(c);
	if (m->prom.nclients-- == NW_METRICS_CLIENTS && m->prom.fd >= 0)
		ev_io_start(m->loop, &m->prom.accept_io);
}

static void
on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_metrics_client *c = container_of(t,
	    struct nw_metrics_client, timer);

	client_close(ev_userdata(loop), c);
}

static void
on_writable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_metrics_client *c = container_of(io,
	    struct nw_metrics_client, io);
	struct nw_master *m = ev_userdata(loop);

	while (c->sent < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->sent, c->outlen - c->sent,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			break;
		c->sent += (size_t)n;
	}
	shutdown(c->fd, SHUT_WR);
	client_close(m, c);
}

static void
answer(struct nw_master *m, struct nw_metrics_client *c, int status,
    const char *reason, const char *body, size_t bodylen, int head_only)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof hdr,
	    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n",
	    status, reason,
	    status == 200 ? "text/plain; version=0.0.4; charset=utf-8"
			  : "text/plain",
	    bodylen);

	c->outlen = (size_t)n + (head_only ? 0 : bodylen);
	c->out = malloc(c->outlen);
	if (c->out == NULL) {
		client_close(m, c);
		return;
	}
	memcpy(c->out, hdr, (size_t)n);
	if (!head_only)
		memcpy(c->out + n, body, bodylen);
	ev_io_stop(m->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(m->loop, &c->io);
	on_writable(m->loop, &c->io, EV_WRITE);
}

static void
serve(struct nw_master *m, struct nw_metrics_client *c)
{
	int get = strncmp(c->req, "GET ", 4) == 0;
	int head_only = strncmp(c->req, "HEAD ", 5) == 0;
	const char *path = c->req + (get ? 4 : head_only ? 5 : 0);
	size_t plen = strcspn(path, " ?\r\n");

	if (!get && !head_only) {
		answer(m, c, 405, "Method Not Allowed", "GET only\n", 9, 0);
		return;
	}
	if (plen != 8 || strncmp(path, "/metrics", 8) != 0) {
		answer(m, c, 404, "Not Found", "try /metrics\n", 13, head_only);
		return;
	}
	size_t len;
	char *body = nw_prometheus_render(m, &len);

	if (body == NULL) {
		answer(m, c, 503, "Service Unavailable", "out of memory\n", 14,
		    head_only);
		return;
	}
	m->prom.scrapes++;
	answer(m, c, 200, "OK", body, len, head_only);
	free(body);
}

static void
on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_metrics_client *c = container_of(io,
	    struct nw_metrics_client, io);
	struct nw_master *m = ev_userdata(loop);
	ssize_t n;

	if (revents & EV_WRITE) {
		on_writable(loop, io, revents);
		return;
	}
	n = recv(c->fd, c->req + c->len, sizeof c->req - 1 - c->len,
	    MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(m, c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") != NULL ||
	    strstr(c->req, "\n\n") != NULL) {
		serve(m, c);
		return;
	}
	if (c->len == sizeof c->req - 1)
		answer(m, c, 431, "Request Header Fields Too Large", "", 0, 0);
}

static void
on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	struct nw_master *m = container_of(io, struct nw_master,
	    prom.accept_io);
	struct nw_metrics_client *c;
	int fd;

	while (m->prom.nclients < NW_METRICS_CLIENTS) {
		fd = accept4(m->prom.fd, NULL, NULL,
		    SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		c = nw_calloc(1, sizeof *c);
		c->fd = fd;
		ev_io_init(&c->io, on_readable, fd, EV_READ);
		ev_io_start(loop, &c->io);
		ev_timer_init(&c->timer, on_timeout, CLIENT_TIMEOUT, 0.);
		ev_timer_start(loop, &c->timer);
		TAILQ_INSERT_TAIL(&m->prom.clients, c, entry);
		m->prom.nclients++;
	}
	/* Full: the kernel's backlog holds the rest until one closes. */
	ev_io_stop(loop, io);
}

static int
tcp_listen(const char *spec, char *name, size_t namelen)
{
	char host[256], port[16];
	struct addrinfo hints, *res, *ai;
	const char *colon = strrchr(spec, ':');
	int fd = -1, one = 1, rc;

	if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
		return -1;
	snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
	snprintf(port, sizeof port, "%s", colon + 1);
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	/* Start-up only (and a reload that changes it): may read /etc/hosts. */
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		errno = EINVAL;
		nw_error("metrics_bind %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
		    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
		    listen(fd, 16) < 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		char h[128], p[16];

		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
		    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, p,
			sizeof p, NI_NUMERICHOST | NI_NUMERICSERV) == 0)
			snprintf(name, namelen, strchr(h, ':') ? "[%s]:%s"
							       : "%s:%s",
			    h, p);
	}
	return fd;
}

int
nw_prometheus_open(struct nw_master *m)
{
	const char *spec = m->config->metrics_bind;
	char name[300] = "";

	TAILQ_INIT(&m->prom.clients);
	m->prom.fd = -1;
	if (spec == NULL)
		return 0;
	m->prom.bind = nw_strdup(spec);
	if (strncmp(spec, "unix:", 5) == 0) {
		mode_t old = umask(0077);

		m->prom.fd = nw_unix_listen(spec + 5, 16);
		umask(old);
		if (m->prom.fd >= 0) {
			m->prom.unix_path = nw_strdup(spec + 5);
			fcntl(m->prom.fd, F_SETFL, O_NONBLOCK);
			nw_set_cloexec(m->prom.fd, 1);
			snprintf(name, sizeof name, "%s", spec);
		}
	} else {
		m->prom.fd = tcp_listen(spec, name, sizeof name);
	}
	if (m->prom.fd < 0) {
		nw_error("metrics_bind %s: %s", spec, strerror(errno));
		free(m->prom.bind);
		m->prom.bind = NULL;
		return -1;
	}
	ev_io_init(&m->prom.accept_io, on_accept, m->prom.fd, EV_READ);
	ev_io_start(m->loop, &m->prom.accept_io);
	nw_info("metrics at %s%s/metrics",
	    strncmp(name, "unix:", 5) == 0 ? "" : "http://", name);
	return 0;
}

void
nw_prometheus_close(struct nw_master *m)
{
	struct nw_metrics_client *c;

	while ((c = TAILQ_FIRST(&m->prom.clients)) != NULL)
		client_close(m, c);
	if (m->prom.fd >= 0) {
		ev_io_stop(m->loop, &m->prom.accept_io);
		close(m->prom.fd);
		m->prom.fd = -1;
	}
	if (m->prom.unix_path != NULL)
		unlink(m->prom.unix_path);
	free(m->prom.unix_path);
	free(m->prom.bind);
	m->prom.unix_path = m->prom.bind = NULL;
}
