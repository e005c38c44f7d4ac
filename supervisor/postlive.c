/*
 * postlive.c: the watch goes on after the whole new generation is live.
 *
 * The canary judges one worker's share of traffic for watch_window; a
 * release can still pass it (too little traffic to judge, or errors that
 * only come with the full load or after a while). So for another
 * watch_window after the switch, the whole new generation's 5xx ratio is
 * compared with what the old generation answered in its last window (the
 * canary's, or its lifetime when that was too little), with the canary's
 * test. Clearly worse: `narwhal rollback` is started for it, trigger
 * "watch". The old workers are gone by then, so this costs a boot; the
 * alternative is serving the errors.
 *
 * This file only judges and asks for the rollback; history.c does it.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "master.h"

static void
stop(struct nw_master *m)
{
	ev_timer_stop(m->loop, &m->postlive.window);
	if (m->postlive.gen != NULL) {
		nw_generation_release(m, m->postlive.gen);
		nw_supervise_mark(m); /* systemd's STATUS= says it ended */
	}
	m->postlive.gen = NULL;
}

static void
on_window_end(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master,
	    postlive.window);
	struct nw_generation *g = m->postlive.gen;

	if (g == NULL)
		return;
	nw_info("generation %u: watch after go-live passed (%s)", g->id,
	    m->postlive.verdict[0] ? m->postlive.verdict : "no answers");
	stop(m);
}

/*
 * Called as g replaces the current generation after a watched reload,
 * while m->current is still the old one and m->canary holds its base.
 */
void
nw_postlive_start(struct nw_master *m, struct nw_generation *g)
{
	const struct nw_config *c = g->config;
	struct nw_counters now_old;

	stop(m);
	if (!c->watch || c->reload || c->watch_window <= 0 ||
	    m->metrics.rollback_manual || m->canary.gen != g)
		return;
	nw_metrics_sum(m, m->current, &now_old);
	if (m->canary.heartbeats >= 1)
		nw_metrics_sub(&m->postlive.old, &now_old,
		    &m->canary.old_base);
	if (m->canary.heartbeats < 1 ||
	    m->postlive.old.requests < (unsigned long long)c->watch_min_requests)
		m->postlive.old = now_old;
	nw_metrics_sum(m, g, &m->postlive.base);
	nw_generation_hold(g);
	m->postlive.gen = g;
	m->postlive.old_id = m->current->id;
	m->postlive.verdict[0] = '\0';
	ev_timer_set(&m->postlive.window, c->watch_window, 0.);
	ev_timer_start(m->loop, &m->postlive.window);
	nw_info("generation %u: watching the whole generation for %gs "
		"against generation %u's 5xx %.1f%% (%llu answers)",
	    g->id, c->watch_window, m->postlive.old_id,
	    100 * nw_metrics_ratio(&m->postlive.old), m->postlive.old.requests);
}

/* A heartbeat came in: judge the live generation since the switch. */
void
nw_postlive_heartbeat(struct nw_master *m, struct nw_worker *w)
{
	struct nw_generation *g = m->postlive.gen;
	const struct nw_config *c;
	struct nw_counters now, since;
	char why[256], failed[400];
	unsigned id;

	if (g == NULL || w->gen != g)
		return;
	/* A newer reload, or a rollback, supersedes this watch. */
	if (m->current != g || m->reload.gen != NULL) {
		stop(m);
		return;
	}
	c = g->config;
	nw_metrics_sum(m, g, &now);
	nw_metrics_sub(&since, &now, &m->postlive.base);
	if (nw_canary_verdict(&m->postlive.old, &since, c->watch_min_requests,
	    c->watch_error_margin, why, sizeof why) != 1) {
		snprintf(m->postlive.verdict, sizeof m->postlive.verdict, "%s",
		    why);
		return;
	}
	id = g->id;
	nw_error("generation %u: worse than generation %u after going live: "
		 "%s; rolling back", id, m->postlive.old_id, why);
	stop(m);
	if (nw_history_rollback(m, "watch after go-live", failed,
	    sizeof failed) < 0) {
		nw_error("generation %u: cannot roll back: %s", id, failed);
		return;
	}
	m->metrics.rollback_watched = 1;
}

int
nw_postlive_active(const struct nw_master *m)
{
	return m->postlive.gen != NULL;
}

void
nw_postlive_init(struct nw_master *m)
{
	ev_timer_init(&m->postlive.window, on_window_end, 0., 0.);
}

void
nw_postlive_free(struct nw_master *m)
{
	stop(m);
}
