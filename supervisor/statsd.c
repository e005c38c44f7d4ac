/*
 * statsd.c: gunicorn's statsd metrics (statsd_host, statsd_prefix,
 * dogstatsd_tags), so that existing dashboards keep working.
 *
 * gunicorn sends one datagram per request from each worker; narwhal's
 * workers only count, so the master sends what the heartbeats added since
 * the last flush, every metrics_interval: counters with the delta, and the
 * duration histogram as one timing per latency bucket with a sample rate of
 * 1/count (the bucket's mean when all fell in one bucket, else its middle).
 * The socket is connected UDP and non-blocking: a lost datagram is counted,
 * never waited for. It reads the master's state and owns only the socket.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

/* One datagram stays below a typical MTU, as dogstatsd advises. */
#define PACKET_MAX 1432

struct packet {
	struct nw_master *m;
	char buf[PACKET_MAX];
	size_t len;
};

static void
packet_send(struct packet *p)
{
	struct nw_statsd *s = &p->m->statsd;

	if (p->len == 0)
		return;
	if (send(s->fd, p->buf, p->len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		s->dropped++;
	p->len = 0;
}

/* One line: prefix, name, value and type, then the tags. */
static void
metric(struct packet *p, const char *name, const char *value,
    const char *type)
{
	struct nw_statsd *s = &p->m->statsd;
	const char *tags = p->m->config->dogstatsd_tags;
	char line[512];
	int n;

	n = snprintf(line, sizeof line, "%s%s:%s|%s%s%s", s->prefix, name,
	    value, type, tags ? "|#" : "", tags ? tags : "");
	if (n < 0 || (size_t)n >= sizeof line)
		return;
	if (p->len > 0 && p->len + 1 + (size_t)n > sizeof p->buf)
		packet_send(p);
	if (p->len > 0)
		p->buf[p->len++] = '\n';
	memcpy(p->buf + p->len, line, (size_t)n);
	p->len += (size_t)n;
}

static void
count(struct packet *p, const char *name, unsigned long long delta)
{
	char v[32];

	if (delta == 0)
		return;
	snprintf(v, sizeof v, "%llu", delta);
	metric(p, name, v, "c|@1.0");
}

static void
durations(struct packet *p, const struct nw_counters *d)
{
	int used = 0;

	for (int i = 0; i < NW_LAT_BUCKETS; i++)
		used += d->lat[i] > 0;
	for (int i = 0; i < NW_LAT_BUCKETS; i++) {
		double lo = i > 0 ? nw_lat_bounds[i - 1] : 0;
		double hi = i < NW_LAT_BUCKETS - 1 ? nw_lat_bounds[i] : 2 * lo;
		double ms = used == 1 ? d->latsum_us / 1e3 / (double)d->lat[i]
				      : (lo + hi) / 2 * 1e3;
		char v[64], type[48];

		if (d->lat[i] == 0)
			continue;
		snprintf(v, sizeof v, "%.3f", ms);
		if (d->lat[i] == 1)
			snprintf(type, sizeof type, "ms");
		else
			snprintf(type, sizeof type, "ms|@%.6g",
			    1.0 / (double)d->lat[i]);
		metric(p, "gunicorn.request.duration", v, type);
	}
}

/* Formats and sends one flush's worth; exposed for the unit test. */
void
nw_statsd_flush(struct nw_master *m)
{
	struct packet p = { .m = m };
	struct nw_counters *d = &m->statsd.pending;
	unsigned long long other5 = d->status[5];
	unsigned inflight;
	int busy, idle;
	char v[32], name[64];

	if (m->statsd.fd < 0)
		return;
	count(&p, "gunicorn.requests", d->requests);
	for (int i = 1; i <= 4; i++) {
		snprintf(name, sizeof name, "gunicorn.request.status.%dxx", i);
		count(&p, name, d->status[i]);
	}
	count(&p, "gunicorn.request.status.500", d->s500);
	count(&p, "gunicorn.request.status.502", d->s502);
	count(&p, "gunicorn.request.status.503", d->s503);
	count(&p, "gunicorn.request.status.504", d->s504);
	other5 -= other5 >= d->s500 + d->s502 + d->s503 + d->s504
	    ? d->s500 + d->s502 + d->s503 + d->s504 : other5;
	count(&p, "gunicorn.request.status.5xx", other5);
	durations(&p, d);
	snprintf(v, sizeof v, "%d", nw_master_live_count(m, NULL));
	metric(&p, "gunicorn.workers", v, "g");
	nw_metrics_load(m, NULL, &inflight, &busy, &idle);
	snprintf(v, sizeof v, "%d", busy);
	metric(&p, "narwhal.workers.busy", v, "g");
	snprintf(v, sizeof v, "%u", inflight);
	metric(&p, "narwhal.requests.inflight", v, "g");
	packet_send(&p);
	memset(d, 0, sizeof *d);
}

void
nw_statsd_add(struct nw_master *m, const struct nw_counters *delta)
{
	if (m->statsd.fd >= 0)
		nw_metrics_add(&m->statsd.pending, delta);
}

static void
on_flush(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, statsd.flush);

	nw_statsd_flush(m);
}

/* gunicorn's rule: strip trailing dots, then add exactly one. */
static void
set_prefix(struct nw_statsd *s, const char *prefix)
{
	size_t n = prefix ? strlen(prefix) : 0;

	while (n > 0 && prefix[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof s->prefix - 1)
		s->prefix[0] = '\0';
	else
		snprintf(s->prefix, sizeof s->prefix, "%.*s.", (int)n, prefix);
}

int
nw_statsd_open(struct nw_master *m)
{
	const struct nw_config *c = m->config;
	struct addrinfo hints, *res, *ai;
	char host[256], port[16];
	const char *colon;
	int rc;

	m->statsd.fd = -1;
	ev_timer_init(&m->statsd.flush, on_flush, c->metrics_interval,
	    c->metrics_interval);
	if (c->statsd_host == NULL)
		return 0;
	set_prefix(&m->statsd, c->statsd_prefix);
	m->statsd.host = nw_strdup(c->statsd_host);
	colon = strrchr(c->statsd_host, ':');
	if (strncmp(c->statsd_host, "unix:", 5) == 0 || colon == NULL) {
		nw_error("statsd_host %s: not HOST:PORT", c->statsd_host);
		return -1;
	}
	snprintf(host, sizeof host, "%.*s", (int)(colon - c->statsd_host),
	    c->statsd_host);
	snprintf(port, sizeof port, "%s", colon + 1);
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_DGRAM;
	/* Once, at start-up: a name may be looked up (blocking) here only. */
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		nw_error("statsd_host %s: %s", c->statsd_host,
		    gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && m->statsd.fd < 0; ai = ai->ai_next) {
		int fd = socket(ai->ai_family,
		    SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			close(fd);
			continue;
		}
		m->statsd.fd = fd;
	}
	freeaddrinfo(res);
	if (m->statsd.fd < 0) {
		nw_error("statsd_host %s: %s", c->statsd_host, strerror(errno));
		return -1;
	}
	ev_timer_start(m->loop, &m->statsd.flush);
	nw_info("statsd to %s, prefix '%s'", c->statsd_host, m->statsd.prefix);
	return 0;
}

void
nw_statsd_close(struct nw_master *m)
{
	if (m->statsd.fd >= 0) {
		ev_timer_stop(m->loop, &m->statsd.flush);
		nw_statsd_flush(m);
		close(m->statsd.fd);
		m->statsd.fd = -1;
	}
	free(m->statsd.host);
	m->statsd.host = NULL;
}
