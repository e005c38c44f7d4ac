/*
 * metrics.c: what the workers counted, added up by the master.
 *
 * A worker's heartbeat carries its cumulative counters (the format below);
 * the master keeps each worker's last values, and when a worker exits folds
 * them into its generation's and the master's totals, so that a recycled
 * worker's requests are never lost. Prometheus, statsd, status and the watch
 * read these sums. Nothing here decides anything about workers.
 *
 *   hb <served> inflight=N bytes=N s1=N ... s5=N s500=N s502=N s503=N
 *      s504=N lat=C0,...,C11 latsum_us=N ws=N
 *
 * Keys come in any order and unknown keys are ignored: room to grow.
 * A worker counts only traffic: the master's own health checks and warm-up
 * (on the private socket) are in neither `<served>` nor the classes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "master.h"

const double nw_lat_bounds[NW_LAT_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 0 /* +Inf */
};

static const char *const cause_names[] = {
	[NW_RESTART_NONE] = "none",
	[NW_RESTART_RECYCLED] = "recycled",
	[NW_RESTART_LIFETIME] = "lifetime",
	[NW_RESTART_MEMORY] = "memory",
	[NW_RESTART_CRASHED] = "crashed",
	[NW_RESTART_TIMED_OUT] = "timed_out",
	[NW_RESTART_BOOT] = "boot_failed",
};

const char *
nw_restart_cause_name(enum nw_restart_cause cause)
{
	return cause_names[cause];
}

static int
parse_ull(const char *s, size_t len, unsigned long long *out)
{
	unsigned long long v = 0;

	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long long)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static int
parse_lat(const char *s, size_t len, unsigned long long *lat)
{
	size_t i = 0, start = 0;
	int n = 0;

	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != ',')
			continue;
		if (n < NW_LAT_BUCKETS &&
		    parse_ull(s + start, i - start, &lat[n]) < 0)
			return -1;
		n++;
		start = i + 1;
	}
	return 0;
}

/*
 * 1: counters parsed into c; 0: only `<served>` (a worker that counts
 * nothing more); -1: malformed, c untouched.
 */
int
nw_metrics_parse_hb(const char *msg, struct nw_counters *out,
    unsigned *inflight, unsigned *ws)
{
	struct nw_counters c;
	unsigned long long v, infl = 0, sockets = 0;
	const char *p = msg, *end;
	int keyed = 0;

	memset(&c, 0, sizeof c);
	end = p + strcspn(p, " ");
	if (parse_ull(p, (size_t)(end - p), &c.requests) < 0)
		return -1;
	for (p = end; *p != '\0'; p = end) {
		const char *eq;
		size_t klen, vlen;

		p += strspn(p, " ");
		if (*p == '\0')
			break;
		end = p + strcspn(p, " ");
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq == NULL)
			return -1;
		klen = (size_t)(eq - p);
		vlen = (size_t)(end - eq - 1);
#define KEY(name) (klen == sizeof(name) - 1 && memcmp(p, name, klen) == 0)
		if (KEY("lat")) {
			if (parse_lat(eq + 1, vlen, c.lat) < 0)
				return -1;
			keyed = 1;
			continue;
		}
		if (parse_ull(eq + 1, vlen, &v) < 0)
			continue; /* an unknown key may hold anything */
		keyed = 1;
		if (KEY("inflight"))
			infl = v;
		else if (KEY("bytes"))
			c.bytes = v;
		else if (klen == 2 && p[0] == 's' && p[1] >= '1' && p[1] <= '5')
			c.status[p[1] - '0'] = v;
		else if (KEY("s500"))
			c.s500 = v;
		else if (KEY("s502"))
			c.s502 = v;
		else if (KEY("s503"))
			c.s503 = v;
		else if (KEY("s504"))
			c.s504 = v;
		else if (KEY("latsum_us"))
			c.latsum_us = v;
		else if (KEY("ws"))
			sockets = v;
#undef KEY
	}
	if (keyed)
		c.requests = c.status[1] + c.status[2] + c.status[3] +
		    c.status[4] + c.status[5];
	*out = c;
	*inflight = infl > 1000000 ? 1000000 : (unsigned)infl;
	*ws = sockets > 1000000 ? 1000000 : (unsigned)sockets;
	return keyed;
}

void
nw_metrics_add(struct nw_counters *sum, const struct nw_counters *c)
{
	sum->requests += c->requests;
	for (int i = 0; i < 6; i++)
		sum->status[i] += c->status[i];
	sum->s500 += c->s500;
	sum->s502 += c->s502;
	sum->s503 += c->s503;
	sum->s504 += c->s504;
	for (int i = 0; i < NW_LAT_BUCKETS; i++)
		sum->lat[i] += c->lat[i];
	sum->latsum_us += c->latsum_us;
	sum->bytes += c->bytes;
}

/* a - b, field by field, never below 0 (a counter went backwards: 0). */
void
nw_metrics_sub(struct nw_counters *out, const struct nw_counters *a,
    const struct nw_counters *b)
{
#define D(f) out->f = a->f > b->f ? a->f - b->f : 0
	D(requests);
	for (int i = 0; i < 6; i++)
		D(status[i]);
	D(s500);
	D(s502);
	D(s503);
	D(s504);
	for (int i = 0; i < NW_LAT_BUCKETS; i++)
		D(lat[i]);
	D(latsum_us);
	D(bytes);
#undef D
}

void
nw_metrics_heartbeat(struct nw_master *m, struct nw_worker *w,
    const char *msg)
{
	struct nw_counters c, delta;
	unsigned inflight, ws;
	int keyed = nw_metrics_parse_hb(msg, &c, &inflight, &ws);

	if (keyed < 0) {
		nw_debug("worker %u pid %d: malformed heartbeat '%.60s'", w->id,
		    (int)w->pid, msg);
		return;
	}
	w->requests = strtoul(msg, NULL, 10);
	if (!keyed) {
		/* Only the count: keep what it means, and nothing else. */
		c = w->counted;
		c.requests = w->requests;
		inflight = ws = 0;
	}
	w->reports_counters = keyed ? 1 : -1;
	nw_metrics_sub(&delta, &c, &w->counted);
	w->counted = c;
	w->inflight = inflight;
	w->websockets = ws;
	nw_statsd_add(m, &delta);
	nw_canary_heartbeat(m, w);
	nw_postlive_heartbeat(m, w);
}

static enum nw_restart_cause
exit_cause(const struct nw_worker *w)
{
	if (w->hung)
		return NW_RESTART_TIMED_OUT;
	if (!w->was_stopped)
		return w->live_at > 0 ? NW_RESTART_CRASHED : NW_RESTART_BOOT;
	return w->retire_cause;
}

/*
 * Called on a worker's exit, before its control socket closes: the last
 * heartbeat (sent after its last request) may still be queued there.
 */
void
nw_metrics_worker_exited(struct nw_master *m, struct nw_worker *w)
{
	enum nw_restart_cause cause = exit_cause(w);
	char msg[512];
	ssize_t n;

	while (w->control_fd >= 0 &&
	    (n = recv(w->control_fd, msg, sizeof msg - 1, MSG_DONTWAIT)) > 0) {
		while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
			n--;
		msg[n] = '\0';
		if (strncmp(msg, "hb ", 3) == 0)
			nw_metrics_heartbeat(m, w, msg + 3);
	}
	nw_metrics_add(&w->gen->exited, &w->counted);
	nw_metrics_add(&m->metrics.exited, &w->counted);
	memset(&w->counted, 0, sizeof w->counted);
	w->inflight = w->websockets = 0;
	w->retire_cause = NW_RESTART_NONE;
	if (cause != NW_RESTART_NONE && m->stopping == NW_RUNNING)
		m->metrics.restarts[cause]++;
}

/* g: one generation's totals; NULL: everything since the master started. */
void
nw_metrics_sum(struct nw_master *m, struct nw_generation *g,
    struct nw_counters *out)
{
	struct nw_worker *w;

	*out = g != NULL ? g->exited : m->metrics.exited;
	TAILQ_FOREACH(w, &m->workers, entry)
		if (g == NULL || w->gen == g)
			nw_metrics_add(out, &w->counted);
}

/* Requests in progress and busy workers now, of g (NULL: all). */
void
nw_metrics_load(struct nw_master *m, struct nw_generation *g,
    unsigned *inflight, int *busy, int *idle)
{
	struct nw_worker *w;

	*inflight = 0;
	*busy = *idle = 0;
	TAILQ_FOREACH(w, &m->workers, entry) {
		if ((g != NULL && w->gen != g) ||
		    !nw_worker_counts_as_capacity(w))
			continue;
		*inflight += w->inflight;
		if (w->inflight > 0)
			(*busy)++;
		else
			(*idle)++;
	}
}

/*
 * The lowest place no worker of g holds; a replacement takes the place of
 * the worker it relieves, so labels stay 0..workers-1.
 */
unsigned
nw_metrics_slot(struct nw_master *m, struct nw_generation *g,
    const struct nw_worker *replaces)
{
	struct nw_worker *w;
	unsigned slot;

	if (replaces != NULL)
		return replaces->slot;
	for (slot = 0;; slot++) {
		int used = 0;

		TAILQ_FOREACH(w, &m->workers, entry)
			if (w->gen == g && w->slot == slot &&
			    w->state != NW_STOPPING && w->state != NW_EXITED)
				used = 1;
		if (!used)
			return slot;
	}
}

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Every reload ends here (control.c), whatever its outcome. */
/*
 * A reload that went live applies the new metrics_bind (a changed address
 * is bound anew; one that cannot be bound leaves /metrics off, said in the
 * log) and statsd_host and statsd_prefix (re-opened: pending counts are
 * sent first).
 */
static void
apply_sinks(struct nw_master *m, const struct nw_config *c)
{
	if (!same(c->metrics_bind, m->prom.bind)) {
		nw_info("reload: metrics_bind %s -> %s",
		    m->prom.bind ? m->prom.bind : "none",
		    c->metrics_bind ? c->metrics_bind : "none");
		nw_prometheus_close(m);
		if (nw_prometheus_open(m) < 0)
			nw_warn("/metrics is off until a reload with a "
			    "metrics_bind that can be bound");
	}
	if (c->statsd_host != NULL || m->statsd.host != NULL) {
		nw_statsd_close(m);
		if (nw_statsd_open(m) < 0)
			nw_warn("statsd is off until a reload with a "
			    "statsd_host that resolves");
	}
}

void
nw_metrics_reload_finished(struct nw_master *m)
{
	enum nw_reload_outcome o = m->last_outcome;

	const struct nw_config *c = m->current->config;
	int manual = m->metrics.rollback_manual;

	m->metrics.reloads[o]++;
	if (o == NW_RELOAD_OK && manual == 1)
		m->metrics.rollbacks[m->metrics.rollback_watched
			? NW_ROLLBACK_WATCH : NW_ROLLBACK_MANUAL]++;
	else if (o == NW_RELOAD_ROLLED_BACK || o == NW_RELOAD_DEPENDENCY)
		m->metrics.rollbacks[manual == 2 ? NW_ROLLBACK_MANUAL
						 : NW_ROLLBACK_BOOT]++;
	else if (o == NW_RELOAD_WATCH_ROLLED_BACK)
		m->metrics.rollbacks[NW_ROLLBACK_WATCH]++;
	nw_history_reload_finished(m);
	m->metrics.rollback_manual = 0;
	m->metrics.rollback_watched = 0;
	free(m->reload_tree);
	m->reload_tree = NULL;
	nw_canary_reload_finished(m);
	if (o == NW_RELOAD_OK)
		apply_sinks(m, c);
}

double
nw_metrics_ratio(const struct nw_counters *c)
{
	return c->requests > 0 ? (double)c->status[5] / (double)c->requests
			       : 0.;
}
