/*
 * reload.c: bringing up a new generation, and taking it back when it fails.
 *
 * A reload re-reads the whole config (an invalid one changes nothing),
 * resolves the tree, and makes a new generation the target of supervise.c,
 * which starts its workers and retires old ones as new ones go live. This
 * file judges the outcome: success once every new worker is live (and has
 * stayed up min_uptime), failure after boot_retries failed boots, in which
 * case the old generation is made whole again and the tree is put back.
 * When new workers fail their probe, the old generation's workers are asked
 * the same question: if they fail it too, a dependency is down, and the
 * report says so. Only the reconcile step calls in here: a worker's
 * transition records what happened, and this file acts on it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "master.h"

static void
set_outcome(struct nw_master *m, enum nw_reload_outcome outcome,
    const char *reason, const char *stderr_lines)
{
	m->last_outcome = outcome;
	snprintf(m->last_reason, sizeof m->last_reason, "%.*s",
	    (int)sizeof m->last_reason - 1, reason);
	free(m->last_stderr);
	m->last_stderr = stderr_lines && *stderr_lines ? nw_strdup(stderr_lines)
						       : NULL;
	m->last_reload_at = ev_now(m->loop);
	m->last_probe[0] = '\0';
}

static void
finish(struct nw_master *m)
{
	struct nw_generation *g = m->reload.gen;
	struct nw_worker *w;

	ev_timer_stop(m->loop, &m->reload.settle);
	m->reload.gen = NULL;
	m->reload.done_live = 0;
	m->reload.failed = 0;
	m->reload.old_checked = 0;
	free(m->reload.failure_stderr);
	m->reload.failure_stderr = NULL;
	TAILQ_FOREACH(w, &m->workers, entry)
		if (w->check != NW_CHECK_PENDING)
			w->check = NW_CHECK_NONE;
	nw_generation_release(m, g);
	/* READY=1 before `reload --wait` hears the result, so that when
	 * ExecReload= returns systemd has already seen the reload end. */
	nw_sd_ready(m);
	nw_control_reload_finished(m);
	nw_supervise_mark(m);
	if (m->reload_pending && m->stopping == NW_RUNNING) {
		m->reload_pending = 0;
		nw_reload_request(m, "merged request");
	}
}

static void
succeed(struct nw_master *m)
{
	struct nw_generation *g = m->reload.gen, *old = m->current;
	/* old may be freed by its release: nothing of it is read after */
	int same_tree = strcmp(g->tree, old->tree) == 0;
	char reason[768];

	nw_postlive_start(m, g);
	nw_generation_hold(g);
	m->current = g;
	m->config = g->config;
	nw_log_set_level(g->config->loglevel);
	nw_generation_release(m, old);
	nw_info("generation %u: live, %d workers, tree %s", g->id, m->target,
	    g->tree);
	snprintf(reason, sizeof reason, "generation %u live, tree %s%s", g->id,
	    g->tree, same_tree &&
	    nw_generation_is_plain(g) ? " (the same directory: chdir is "
	    "neither a symlink nor a git work tree; if narwhal was started "
	    "inside a symlinked release, set chdir to the symlink)" : "");
	set_outcome(m, NW_RELOAD_OK, reason, NULL);
	nw_state_save_good(m, g);
	nw_watch_sync(m);
	finish(m);
	nw_tree_prune(m);
}

/*
 * 1: every old worker asked failed the new generation's check. A 4xx
 * refuses the request itself (a new ready_path the old code lacks, a Host
 * the app does not serve): that is the new config's fault, not a
 * dependency's.
 */
static int
old_generation_fails(struct nw_master *m, char *detail, size_t len)
{
	struct nw_worker *w;
	int failed = 0, passed = 0;

	detail[0] = '\0';
	TAILQ_FOREACH(w, &m->workers, entry) {
		if (w->gen != m->current)
			continue;
		if (w->check == NW_CHECK_FAILED &&
		    w->probe_last.status >= 400 && w->probe_last.status < 500)
			continue;
		if (w->check == NW_CHECK_PASSED)
			passed++;
		if (w->check == NW_CHECK_FAILED && failed++ == 0) {
			char probe[384];

			nw_worker_probe_text(w, probe, sizeof probe);
			snprintf(detail, len, "old worker %u: %s", w->id,
			    probe);
		}
	}
	return failed > 0 && passed == 0;
}

static int
old_check_pending(struct nw_master *m)
{
	struct nw_worker *w;

	TAILQ_FOREACH(w, &m->workers, entry)
		if (w->check == NW_CHECK_PENDING && w->gen == m->current)
			return 1;
	return 0;
}

void
nw_reload_check_old(struct nw_master *m)
{
	struct nw_worker *w;

	if (m->reload.gen == NULL || m->reload.old_checked)
		return;
	m->reload.old_checked = 1;
	TAILQ_FOREACH(w, &m->workers, entry)
		if (w->gen == m->current && nw_worker_counts_as_capacity(w))
			nw_probe_check(m, w, m->reload.gen);
}

static void
abort_reload(struct nw_master *m, const char *why, const char *stderr_lines,
    enum nw_reload_outcome outcome)
{
	struct nw_generation *g = m->reload.gen;
	char reason[1024], note[256] = "", old[512];
	int dependency = old_generation_fails(m, old, sizeof old);

	if (dependency)
		nw_error("generation %u: failed: %s; the old generation fails "
			 "the same check: a dependency is down (%s); "
			 "generation %u keeps serving, tree %s",
		    g->id, why, old, m->current->id, m->current->tree);
	else
		nw_error("generation %u: failed: %s; generation %u keeps "
			 "serving, tree %s",
		    g->id, why, m->current->id, m->current->tree);
	m->target = m->reload.old_target;
	nw_rollback_tree(m, g, m->current, note, sizeof note);
	snprintf(reason, sizeof reason, "generation %u failed: %s%s%s%s%s",
	    g->id, why,
	    dependency ? "; the old generation fails the same check: a "
			 "dependency is down: " : "",
	    dependency ? old : "", *note ? "; " : "", note);
	/* A boot failure may be the dependency's; the watch's is its own. */
	if (outcome == NW_RELOAD_ROLLED_BACK && dependency)
		outcome = NW_RELOAD_DEPENDENCY;
	set_outcome(m, outcome, reason, stderr_lines);
	snprintf(m->last_probe, sizeof m->last_probe, "%s",
	    m->reload.failure_probe);
	nw_rollback_hook(m, g, m->current, reason);
	/* supervise.c now stops g's booting workers and keeps its live ones
	 * serving until the current generation is whole again. */
	finish(m);
}

static void
on_settled(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, reload.settle);

	if (m->reload.gen != NULL)
		nw_supervise_mark(m);
}

void
nw_reload_step(struct nw_master *m)
{
	struct nw_generation *g = m->reload.gen;
	struct nw_worker *w;
	double youngest = 0, settle_at;
	int live = 0;

	if (m->reload.failed) {
		/* The old generation's answer is part of the report. */
		if (old_check_pending(m))
			return;
		abort_reload(m, m->reload.failure, m->reload.failure_stderr,
		    NW_RELOAD_ROLLED_BACK);
		return;
	}
	TAILQ_FOREACH(w, &m->workers, entry) {
		if (w->gen != g)
			continue;
		if (w->state == NW_LIVE) {
			live++;
			if (w->live_at > youngest)
				youngest = w->live_at;
		}
	}
	if (live < m->target) {
		/* Wake up when the first one ends its probation. */
		double first = 0;

		TAILQ_FOREACH(w, &m->workers, entry)
			if (w->gen == g && w->state == NW_LIVE &&
			    w->live_at + g->config->min_uptime > ev_now(m->loop) &&
			    (first == 0 ||
			     w->live_at + g->config->min_uptime < first))
				first = w->live_at + g->config->min_uptime;
		if (first > 0 && !ev_is_active(&m->reload.settle)) {
			ev_timer_set(&m->reload.settle,
			    first - ev_now(m->loop) + 0.01, 0.);
			ev_timer_start(m->loop, &m->reload.settle);
		}
		return;
	}
	settle_at = youngest + g->config->min_uptime;
	if (settle_at > ev_now(m->loop)) {
		if (!m->reload.done_live) {
			m->reload.done_live = 1;
			nw_control_progress(m,
			    "all %d workers live, waiting min_uptime %gs", live,
			    g->config->min_uptime);
		}
		ev_timer_stop(m->loop, &m->reload.settle);
		ev_timer_set(&m->reload.settle,
		    settle_at - ev_now(m->loop) + 0.01, 0.);
		ev_timer_start(m->loop, &m->reload.settle);
		return;
	}
	succeed(m);
}

double
nw_reload_exit_plan(struct nw_master *m, struct nw_worker *w)
{
	struct nw_generation *g = m->reload.gen;
	char how[512], lines[4096];

	if (m->reload.failed)
		return -1; /* already lost: the next pass ends it */
	if (w->live_at > 0)
		snprintf(how, sizeof how, "worker %u died %.1fs after going "
		    "live (min_uptime %gs)", w->id, ev_now(m->loop) - w->live_at,
		    g->config->min_uptime);
	else
		snprintf(how, sizeof how, "worker %u %s", w->id,
		    w->boot_failure[0] ? w->boot_failure : "failed to boot");
	m->reload.failures++;
	nw_worker_last_stderr(w, lines, sizeof lines);
	if (m->reload.failures <= g->config->boot_retries) {
		nw_warn("generation %u: %s, retry %d of %d", g->id, how,
		    m->reload.failures, g->config->boot_retries);
		nw_control_progress(m, "%s, retrying", how);
		return 0.5;
	}
	/* Decided here, acted on by nw_reload_step() in the same pass. */
	m->reload.failed = 1;
	snprintf(m->reload.failure, sizeof m->reload.failure, "%s", how);
	nw_worker_probe_text(w, m->reload.failure_probe,
	    sizeof m->reload.failure_probe);
	free(m->reload.failure_stderr);
	m->reload.failure_stderr = lines[0] ? nw_strdup(lines) : NULL;
	return -1;
}

static void
start(struct nw_master *m, const char *why)
{
	char err[1024];
	struct nw_config *config;
	struct nw_generation *g;

	nw_sd_reloading(m);
	nw_hook_call(m, "on_reload", NULL);
	nw_info("reload (%s): reading %s", why,
	    m->config->path ? m->config->path : "the command line");
	config = nw_config_load(m->argc, m->argv, err, sizeof err);
	if (config != NULL &&
	    (nw_listen_match(m, config, err, sizeof err) < 0 ||
	    nw_probe_init(m, config, err, sizeof err) < 0)) {
		nw_config_free(config);
		config = NULL;
	}
	g = config ? nw_generation_new(m, config, m->reload_tree, err,
	    sizeof err) : NULL;
	if (g == NULL) {
		if (config != NULL)
			nw_config_free(config);
		nw_error("reload refused, nothing changed: %s", err);
		set_outcome(m, NW_RELOAD_INVALID_CONFIG, err, NULL);
		nw_control_reload_finished(m);
		nw_sd_ready(m);
		return;
	}
	for (size_t i = 0; i < g->config->nnotes; i++)
		nw_warn("%s", g->config->notes[i]);
	m->reload.gen = g;
	m->reload.started_at = ev_now(m->loop);
	m->reload.failures = 0;
	m->reload.done_live = 0;
	m->reload.old_target = m->target;
	if (g->config->workers != m->current->config->workers) {
		nw_hook_nworkers_changed(m, g->config->workers, m->target);
		m->target = g->config->workers;
	}
	nw_info("generation %u: starting %d workers, tree %s", g->id,
	    m->target, g->tree);
	nw_generation_describe(m, g);
	nw_control_progress(m, "generation %u: starting %d workers, tree %s",
	    g->id, m->target, g->tree);
	nw_supervise_mark(m);
}

void
nw_reload_request(struct nw_master *m, const char *why)
{
	if (m->stopping != NW_RUNNING)
		return;
	if (m->reload.gen != NULL || !m->first_live) {
		/* One reload at a time; any number of requests make one more. */
		if (!m->reload_pending)
			nw_info("reload (%s): queued behind the running one",
			    why);
		m->reload_pending = 1;
		return;
	}
	start(m, why);
}

void
nw_reload_abort(struct nw_master *m, const char *why,
    enum nw_reload_outcome outcome)
{
	if (m->reload.gen != NULL)
		abort_reload(m, why, NULL, outcome);
}

void
nw_reload_init(struct nw_master *m)
{
	ev_timer_init(&m->reload.settle, on_settled, 0., 0.);
}
