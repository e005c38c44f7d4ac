/*
 * canary.c: the watch after go-live. A reload first brings up one canary
 * worker of the new generation beside the whole old one; for watch_window
 * seconds it takes its share of real traffic, and its 5xx ratio is compared
 * with the old generation's over the same time. Clearly worse: the reload is
 * rolled back (the canary stops, the old generation never left). Otherwise
 * the rest of the new generation follows as in any reload.
 *
 * Both sides are counted from the canary's first heartbeat after it went
 * live, so the old side's figures cover the same time. The master's own
 * health checks (a slow release's 503s among them) are not traffic, and
 * the workers do not count them at all.
 *
 * This file judges and holds the reload back; starting and stopping workers
 * stays in supervise.c and ending the reload in reload.c.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "master.h"

/* One-sided z: 3 standard errors, about 1 in 740 for an equal release. */
#define WATCH_Z 3.0

/*
 * 1: the canary is clearly worse; 0: not worse; -1: too few answers yet.
 * "Clearly": at least min_requests canary answers, a 5xx ratio at least
 * `margin` above the old one, and a difference of WATCH_Z standard errors
 * (pooled two-proportion test). Without a baseline of min_requests answers
 * the old ratio counts as 0 and only the canary's own error bar counts.
 */
int
nw_canary_verdict(const struct nw_counters *old, const struct nw_counters *can,
    long min_requests, double margin, char *why, size_t whylen)
{
	double n_new = (double)can->requests, e_new = (double)can->status[5];
	double n_old = (double)old->requests, e_old = (double)old->status[5];
	double p_new, p_old = 0, var, z;
	int baseline = n_old >= (double)min_requests;

	if (e_new > n_new)
		e_new = n_new;
	if (e_old > n_old)
		e_old = n_old;
	if (n_new < (double)min_requests || n_new <= 0) {
		snprintf(why, whylen, "%.0f of %ld answers needed so far",
		    n_new, min_requests);
		return -1;
	}
	p_new = e_new / n_new;
	if (baseline) {
		double p = (e_new + e_old) / (n_new + n_old);

		p_old = e_old / n_old;
		var = p * (1 - p) * (1 / n_new + 1 / n_old);
	} else {
		var = p_new * (1 - p_new) / n_new;
	}
	z = var > 0 ? (p_new - p_old) / sqrt(var)
		    : (p_new > p_old ? INFINITY : 0);
	snprintf(why, whylen,
	    "5xx %.1f%% (%.0f of %.0f) against %.1f%% (%.0f of %.0f)%s",
	    100 * p_new, e_new, n_new, 100 * p_old, e_old, n_old,
	    baseline ? "" : ", no baseline");
	return p_new - p_old >= margin && z >= WATCH_Z;
}

static struct nw_worker *
canary(struct nw_master *m)
{
	struct nw_worker *w;

	TAILQ_FOREACH(w, &m->workers, entry)
		if (w->gen == m->canary.gen && w->slot == 0 &&
		    nw_worker_counts_as_capacity(w))
			return w;
	return NULL;
}

/* Is the running reload held to one worker for now? */
static int
holding(struct nw_master *m)
{
	struct nw_generation *g = m->reload.gen;

	/* --reload is development: an edit goes live once it boots. */
	return g != NULL && g->config->watch && !g->config->reload &&
	    !m->metrics.rollback_manual &&
	    !(m->canary.gen == g && m->canary.passed);
}

/* How many workers generation g may have now; -1: as many as it wants. */
int
nw_canary_slot_limit(struct nw_master *m, struct nw_generation *g)
{
	return g == m->reload.gen && holding(m) ? 1 : -1;
}

/* The canary serves but relieves no old worker while it is watched. */
int
nw_canary_holds_back(struct nw_master *m, const struct nw_worker *w)
{
	return w->gen == m->reload.gen && holding(m);
}

static void
pass(struct nw_master *m, const char *why)
{
	struct nw_generation *g = m->canary.gen;

	ev_timer_stop(m->loop, &m->canary.window);
	m->canary.passed = 1;
	snprintf(m->canary.verdict, sizeof m->canary.verdict, "passed: %.240s", why);
	nw_info("generation %u: watch passed (%s); the rest follows", g->id,
	    why);
	nw_control_progress(m, "generation %u: watch passed (%s)", g->id, why);
	nw_supervise_mark(m);
}

/* Decided here, acted on by nw_canary_step() in the reconcile pass. */
static void
condemn(struct nw_master *m, const char *why)
{
	snprintf(m->canary.verdict, sizeof m->canary.verdict,
	    "rolled back: %.200s", why);
	snprintf(m->canary.failure, sizeof m->canary.failure, "watch: canary "
	    "worse than generation %u: %.200s", m->current->id, why);
	ev_timer_stop(m->loop, &m->canary.window);
	nw_supervise_mark(m);
}

/* Judges now; at_end: the window is over, so "not worse" passes. */
static void
judge(struct nw_master *m, int at_end)
{
	struct nw_generation *g = m->canary.gen;
	const struct nw_config *c = g->config;
	struct nw_counters now_old, old, now_can, can;
	char why[256];
	int verdict;

	nw_metrics_sum(m, m->current, &now_old);
	nw_metrics_sub(&old, &now_old, &m->canary.old_base);
	/* Too little old traffic in the window: the old lifetime instead. */
	if (old.requests < (unsigned long long)c->watch_min_requests)
		old = now_old;
	nw_metrics_sum(m, g, &now_can);
	nw_metrics_sub(&can, &now_can, &m->canary.can_base);
	verdict = nw_canary_verdict(&old, &can, c->watch_min_requests,
	    c->watch_error_margin, why, sizeof why);
	snprintf(m->canary.verdict, sizeof m->canary.verdict, "watching: %.200s",
	    why);
	if (verdict == 1)
		condemn(m, why);
	else if (at_end && verdict == 0)
		pass(m, why);
	else if (at_end) {
		char note[300];

		snprintf(note, sizeof note, "too little traffic to judge: %s",
		    why);
		pass(m, note);
	}
}

static void
on_window_end(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, canary.window);

	ev_timer_stop(loop, t);
	if (m->canary.gen == NULL || m->canary.gen != m->reload.gen ||
	    m->canary.passed || m->canary.failure[0] != '\0')
		return;
	if (m->canary.heartbeats < 1)
		pass(m, "the canary reported no counters in the window");
	else
		judge(m, 1);
}

/* A heartbeat came in: a canary that reports may be judged now. */
void
nw_canary_heartbeat(struct nw_master *m, struct nw_worker *w)
{
	struct nw_worker *can;

	if (m->canary.gen == NULL || m->canary.gen != m->reload.gen ||
	    m->canary.passed || m->canary.started_at == 0 ||
	    m->canary.failure[0] != '\0')
		return;
	if (w->gen != m->canary.gen && w->gen != m->current)
		return;
	can = canary(m);
	if (can != NULL && can->reports_counters < 0) {
		pass(m, "workers send no counters: nothing to judge");
		return;
	}
	if (m->canary.heartbeats < 1) {
		if (w != can || ++m->canary.heartbeats < 1)
			return;
		nw_metrics_sum(m, m->current, &m->canary.old_base);
		nw_metrics_sum(m, m->canary.gen, &m->canary.can_base);
		return;
	}
	judge(m, 0);
}

/* From each reconcile pass while a reload runs: opens the window. */
void
nw_canary_step(struct nw_master *m)
{
	struct nw_generation *g = m->reload.gen;
	struct nw_worker *can;
	char what[160];

	if (!holding(m))
		return;
	if (m->canary.gen != g) {
		ev_timer_stop(m->loop, &m->canary.window);
		memset(&m->canary.old_base, 0, sizeof m->canary.old_base);
		m->canary.gen = g;
		m->canary.passed = 0;
		m->canary.started_at = 0;
		m->canary.verdict[0] = '\0';
		m->canary.failure[0] = '\0';
	}
	if (m->canary.failure[0] != '\0') {
		char why[sizeof m->canary.failure];

		memcpy(why, m->canary.failure, sizeof why);
		nw_reload_abort(m, why, NW_RELOAD_WATCH_ROLLED_BACK);
		return;
	}
	if (m->canary.started_at > 0 || (can = canary(m)) == NULL)
		return;
	m->canary.started_at = ev_now(m->loop);
	m->canary.heartbeats = 0;
	ev_timer_set(&m->canary.window, g->config->watch_window, 0.);
	ev_timer_start(m->loop, &m->canary.window);
	snprintf(m->canary.verdict, sizeof m->canary.verdict, "watching");
	nw_info("generation %u: canary worker %u live beside generation %u, "
		"watching for %gs", g->id, can->id, m->current->id,
	    g->config->watch_window);
	nw_control_progress(m, "generation %u: canary worker %u live, "
	    "watching for %gs", g->id, can->id, g->config->watch_window);
	snprintf(what, sizeof what, "generation %u: canary worker %u live, "
	    "watching for %gs", g->id, can->id, g->config->watch_window);
	nw_control_watching(m, what);
	if (can->reports_counters < 0)
		pass(m, "workers send no counters: nothing to judge");
}

/* Every reload's end, whatever the outcome: nothing is watched any more. */
void
nw_canary_reload_finished(struct nw_master *m)
{
	ev_timer_stop(m->loop, &m->canary.window);
	m->canary.gen = NULL;
	m->canary.started_at = 0;
	m->canary.passed = 0;
	m->canary.failure[0] = '\0';
}

int
nw_canary_active(struct nw_master *m)
{
	return m->canary.gen != NULL && m->canary.gen == m->reload.gen &&
	    !m->canary.passed && m->canary.started_at > 0;
}

void
nw_canary_init(struct nw_master *m)
{
	ev_timer_init(&m->canary.window, on_window_end, 0., 0.);
}
