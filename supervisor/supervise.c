/*
 * supervise.c: decides which workers to start and which to stop.
 *
 * After any event, the master reconciles once (from an ev_prepare watcher, so
 * a burst of events costs one pass): the generation being brought up gets its
 * `workers` slots, retiring workers get replacements (at most max_recycling
 * booting at once), and a worker of an older generation is stopped only when
 * enough live workers remain without it. Capacity never drops on purpose.
 * The state changes themselves happen in worker.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "master.h"

/* A worker that lived this long since spawn was not crash-looping. */
#define STABLE_UPTIME 30.0
#define BACKOFF_CAP 30.0
/* Live at least this long (and as long as its boot took) or served: a
 * worker that died then was killed, not crash-looping. */
#define QUICK_DEATH 1.0

#define is_booting nw_worker_is_booting

/* The generation every slot should belong to. */
static struct nw_generation *
target_generation(struct nw_master *m)
{
	return m->reload.gen != NULL ? m->reload.gen : m->current;
}

/* Workers holding one of the `workers` places of generation g. */
static int
count_slots(struct nw_master *m, struct nw_generation *g)
{
	struct nw_worker *w;
	int n = 0;

	TAILQ_FOREACH(w, &m->workers, entry) {
		if (w->gen != g || w->replaces != NULL)
			continue;
		/* A hung or failed worker keeps its slot until reaped;
		 * its respawn (with backoff) replaces it. */
		if (is_booting(w) || nw_worker_counts_as_capacity(w) ||
		    w->state == NW_BACKOFF ||
		    (w->state == NW_STOPPING && (w->hung || !w->was_stopped)))
			n++;
	}
	return n;
}

int
nw_master_live_count(struct nw_master *m, struct nw_generation *g)
{
	struct nw_worker *w;
	int n = 0;

	TAILQ_FOREACH(w, &m->workers, entry)
		if ((g == NULL || w->gen == g) &&
		    nw_worker_counts_as_capacity(w))
			n++;
	return n;
}

static int
count_booting(struct nw_master *m, struct nw_generation *g, int replacements)
{
	struct nw_worker *w;
	int n = 0;

	TAILQ_FOREACH(w, &m->workers, entry)
		if (w->gen == g && (is_booting(w) || w->state == NW_BACKOFF) &&
		    (!replacements || w->replaces != NULL))
			n++;
	return n;
}

static void
start_worker(struct nw_master *m, struct nw_generation *g,
    struct nw_worker *replaces, const char *why)
{
	struct nw_worker *w = nw_worker_new(m, g, replaces);

	/* A spawn that cannot happen is an exit like any other: it counts
	 * against a reload, and a slot of the serving generation backs off. */
	if (nw_spawn(m, w) < 0)
		nw_worker_event(m, w, NW_EV_SPAWN_FAILED, NULL);
	else
		nw_worker_event(m, w, NW_EV_SPAWNED, why);
}

/* Drops surplus slots of g (TTOU): the least useful first. */
static void
shrink(struct nw_master *m, struct nw_generation *g, int surplus)
{
	static const enum nw_worker_state order[] = {
		NW_BACKOFF, NW_SPAWNED, NW_BOOTED, NW_PROBING, NW_RETIRING,
		NW_LIVE,
	};
	struct nw_worker *w, *next;

	for (size_t i = 0; i < sizeof order / sizeof *order && surplus > 0;
	     i++) {
		for (w = TAILQ_FIRST(&m->workers); w != NULL && surplus > 0;
		     w = next) {
			next = TAILQ_NEXT(w, entry);
			if (w->gen != g || w->state != order[i] ||
			    w->replaces != NULL)
				continue;
			if (w->replaced_by != NULL)
				nw_worker_event(m, w->replaced_by, NW_EV_STOP,
				    "not needed");
			nw_worker_event(m, w, NW_EV_STOP, "workers decreased");
			surplus--;
		}
	}
}

static void
replace_retiring(struct nw_master *m, struct nw_generation *g)
{
	int booting = count_booting(m, g, 1);
	int limit = g->config->max_recycling;
	struct nw_worker *w;

	TAILQ_FOREACH(w, &m->workers, entry) {
		if (booting >= limit)
			return;
		if (w->gen == g && w->state == NW_RETIRING &&
		    w->replaced_by == NULL) {
			char why[48];

			snprintf(why, sizeof why, "replaces worker %u", w->id);
			start_worker(m, g, w, why);
			booting++;
		}
	}
}

/*
 * A worker of the generation being started is on probation until it has been
 * live min_uptime: it serves, but relieves no old worker yet, so that its
 * crash costs no capacity.
 */
static int
on_probation(struct nw_master *m, const struct nw_worker *w)
{
	return m->reload.gen != NULL && w->gen == m->reload.gen &&
	    nw_worker_counts_as_capacity(w) &&
	    (w->live_at + w->gen->config->min_uptime > ev_now(m->loop) ||
	    nw_canary_holds_back(m, w));
}

/*
 * Workers of other generations: the ones not serving go now; the serving
 * ones go one by one, oldest first, while the rest still cover `target`.
 */
static void
retire_leftovers(struct nw_master *m, struct nw_generation *g)
{
	struct nw_worker *w, *next;
	int live = nw_master_live_count(m, NULL);

	TAILQ_FOREACH(w, &m->workers, entry)
		if (on_probation(m, w))
			live--;

	for (w = TAILQ_FIRST(&m->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->gen == g || w->state == NW_STOPPING)
			continue;
		if (is_booting(w) || w->state == NW_BACKOFF) {
			nw_worker_event(m, w, NW_EV_STOP, "old generation");
			continue;
		}
		if (nw_worker_counts_as_capacity(w) && live > m->target) {
			char why[48];

			snprintf(why, sizeof why, "generation %u took over",
			    g->id);
			nw_worker_event(m, w, NW_EV_STOP, why);
			live--;
		}
	}
}

static void
grow(struct nw_master *m, struct nw_generation *g)
{
	int slots = count_slots(m, g);
	int missing = m->target - slots;
	int batch = missing, limit = nw_canary_slot_limit(m, g);

	if (limit >= 0 && slots + missing > limit)
		missing = limit - slots; /* a canary first, see watch.c */

	if (m->reload.gen == g && g->config->reload_batch > 0)
		batch = g->config->reload_batch - count_booting(m, g, 0);
	for (int i = 0; i < missing && i < batch; i++)
		start_worker(m, g, NULL, m->reload.gen == g ? "reload" : NULL);
}

static void
announce_first_live(struct nw_master *m)
{
	struct nw_generation *g = m->current;

	if (m->first_live || nw_master_live_count(m, g) < m->target)
		return;
	m->first_live = 1;
	nw_info("generation %u: live, %d workers, tree %s", g->id, m->target,
	    g->tree);
	nw_state_save_good(m, g);
	nw_sd_ready(m);
	nw_hook_call(m, "when_ready", NULL);
	if (m->reload_pending) {
		m->reload_pending = 0;
		nw_reload_request(m, "requested during start-up");
	}
}

/* Exits recorded by worker.c since the last pass: respawn or drop. */
static void
settle_exits(struct nw_master *m)
{
	struct nw_worker *w, *next;

	for (w = TAILQ_FIRST(&m->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->state == NW_EXITED)
			nw_worker_settle(m, w, nw_supervise_exit_plan(m, w));
	}
}

/* A replacement that went live relieves the worker it replaces. */
static void
hand_over(struct nw_master *m)
{
	struct nw_worker *w, *old;
	char why[48];

	TAILQ_FOREACH(w, &m->workers, entry) {
		if ((old = w->replaces) == NULL ||
		    !nw_worker_counts_as_capacity(w))
			continue;
		w->replaces = NULL;
		old->replaced_by = NULL;
		m->recycle_held[0] = '\0';
		snprintf(why, sizeof why, "replaced by worker %u", w->id);
		nw_worker_event(m, old, NW_EV_STOP, why);
	}
}

/*
 * A booting worker whose probe answers keep failing. In a new generation it
 * fails (reload.c tells a broken release from a broken dependency). In the
 * serving generation, which already proved itself, it may be the check
 * that fails, not the worker: if the live workers fail the same check (or
 * none is left to ask), it goes live, so that an outage of a dependency
 * does not also cost capacity for as long as it lasts.
 */
static void
judge_probes(struct nw_master *m)
{
	struct nw_worker *w, *peer;

	TAILQ_FOREACH(w, &m->workers, entry) {
		int pending = 0, failed = 0, passed = 0;
		char why[256];

		if (w->state != NW_PROBING || !w->probe_gave_up)
			continue;
		if (m->reload.gen == w->gen) {
			nw_reload_check_old(m);
			nw_worker_event(m, w, NW_EV_PROBE_FAILED, NULL);
			continue;
		}
		if (w->gen != m->current || !m->first_live) {
			nw_worker_event(m, w, NW_EV_PROBE_FAILED, NULL);
			continue;
		}
		TAILQ_FOREACH(peer, &m->workers, entry) {
			if (peer->gen != w->gen ||
			    !nw_worker_counts_as_capacity(peer))
				continue;
			if (peer->check == NW_CHECK_NONE)
				nw_probe_check(m, peer, w->gen);
			pending += peer->check == NW_CHECK_PENDING;
			failed += peer->check == NW_CHECK_FAILED;
			passed += peer->check == NW_CHECK_PASSED;
		}
		if (pending > 0)
			continue; /* a check's answer marks dirty again */
		if (passed > 0) {
			nw_worker_event(m, w, NW_EV_PROBE_FAILED, NULL);
			continue;
		}
		snprintf(why, sizeof why, failed > 0
		    ? "the live workers fail the same check: a dependency is "
		      "down; serving to keep capacity"
		    : "no live worker left to compare: serving to keep "
		      "capacity");
		nw_worker_event(m, w, NW_EV_PROBE_OK, why);
	}
	/* Checks are one-offs: once every answer is in and used, the next
	 * failure asks again (during a reload, reload.c clears them). */
	if (m->reload.gen != NULL)
		return;
	TAILQ_FOREACH(w, &m->workers, entry)
		if (w->check == NW_CHECK_PENDING)
			return;
	TAILQ_FOREACH(w, &m->workers, entry)
		w->check = NW_CHECK_NONE;
}

static void
reconcile(struct nw_master *m)
{
	struct nw_generation *g = target_generation(m);
	int slots;

	settle_exits(m);
	if (m->stopping != NW_RUNNING) {
		if (TAILQ_EMPTY(&m->workers))
			ev_break(m->loop, EVBREAK_ALL);
		return;
	}
	hand_over(m);
	judge_probes(m);
	/* A failed reload ends before its generation gets another worker. */
	if (m->reload.gen != NULL && m->reload.failed)
		nw_reload_step(m);
	g = target_generation(m);
	grow(m, g);
	slots = count_slots(m, g);
	if (slots > m->target && m->reload.gen == NULL)
		shrink(m, g, slots - m->target);
	if (m->reload.gen == NULL)
		replace_retiring(m, g);
	retire_leftovers(m, g);
	announce_first_live(m);
	if (m->reload.gen != NULL)
		nw_canary_step(m);
	if (m->reload.gen != NULL)
		nw_reload_step(m);
	nw_sd_status(m);
}

void
nw_supervise_reconcile(struct nw_master *m)
{
	/* Reconciling may cause more events; each marks dirty again. */
	for (int pass = 0; m->dirty && pass < 8; pass++) {
		m->dirty = 0;
		reconcile(m);
	}
}

void
nw_supervise_mark(struct nw_master *m)
{
	m->dirty = 1;
}

unsigned long
nw_supervise_draw_budget(const struct nw_config *config,
    unsigned long random_value)
{
	unsigned long spread = (unsigned long)config->max_requests_jitter;

	return (unsigned long)config->max_requests +
	    (spread ? random_value % (spread + 1) : 0);
}

/*
 * A crash loop is a worker that dies before it goes live, or dies live
 * quickly (before QUICK_DEATH, and before it was live as long as its boot
 * took) without having served a request: each respawn would cost a boot for
 * nothing, so those back off, 0, 1, 2, 4 ... 30 s. A worker that served and
 * died (an operator's kill, the OOM killer, a bug on one request) is
 * replaced at once and clears the count: killing it costs its requests, not
 * capacity. Respawning it costs at most one boot per life it lived.
 */
double
nw_supervise_respawn_delay(struct nw_worker *w, double now)
{
	double uptime = now - w->spawned_at, live = 0;
	int served;

	if (w->live_at > 0)
		live = now - w->live_at;
	served = w->live_at > 0 &&
	    (w->requests > 0 ||
		(live >= QUICK_DEATH && live >= w->live_at - w->spawned_at));
	if (served || uptime >= STABLE_UPTIME)
		w->crashes = 0;
	if (served)
		return 0;
	w->crashes++;
	return nw_supervise_backoff(w->crashes);
}

double
nw_supervise_exit_plan(struct nw_master *m, struct nw_worker *w)
{
	struct nw_generation *g = target_generation(m);

	if (m->stopping != NW_RUNNING || w->was_stopped || w->gen != g)
		return -1;
	if (w->replaced_by != NULL) {
		/* Its replacement, still booting, inherits the slot. */
		w->replaced_by->replaces = NULL;
		w->replaced_by = NULL;
		return -1;
	}
	if (m->reload.gen == g)
		return nw_reload_exit_plan(m, w);
	if (!m->first_live && nw_coldstart_exit_plan(m, w) < 0)
		return -1;
	if (w->replaces != NULL && w->boot_failure[0] != '\0')
		snprintf(m->recycle_held, sizeof m->recycle_held,
		    "replacement worker %u for worker %u: %.180s", w->id,
		    w->replaces->id, w->boot_failure);
	return nw_supervise_respawn_delay(w, ev_now(m->loop));
}

double
nw_supervise_backoff(int crashes)
{
	if (crashes <= 1)
		return 0;
	return fmin(BACKOFF_CAP, ldexp(1., crashes - 2));
}

/*
 * A worker booting at a low priority (spawn.c) is meant to use spare CPU
 * only. When there is none (the serving workers, or anything else, keep
 * every core busy), it waits on the run queue and its boot does not move:
 * an import of 2 s of CPU (eventlet's) then took 5 s more per recycle, and
 * the worker it relieves kept serving past its budget. So each check looks
 * at how long it waited for a CPU since the last one: starved for more
 * than STARVED of that second, it is raised at once. BOOST_AFTER is the
 * bound where the kernel keeps no such count.
 */
#define BOOST_AFTER 5.0
#define STARVED     0.5

static int
boot_starved(struct nw_worker *w)
{
	long long queued = nw_proc_queued_ns(w->pid);
	long long before = w->queued_ns;

	w->queued_ns = queued;
	if (queued < 0 || before < 0)
		return 0;
	/* the check runs every second (nw_supervise_init) */
	return (double)(queued - before) / 1e9 >= STARVED;
}

/* max_worker_lifetime and max_worker_memory: reasons to recycle; and slow
 * boots at a low priority. */
static void
on_limits_check(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct nw_master *m = container_of(t, struct nw_master, memory_check);
	double now = ev_now(loop);
	struct nw_worker *w;

	TAILQ_FOREACH(w, &m->workers, entry) {
		const struct nw_config *c = w->gen->config;
		char why[96];

		if (w->low_priority && nw_worker_is_booting(w) &&
		    (boot_starved(w) || now - w->spawned_at >=
			fmin(BOOST_AFTER, c->boot_timeout / 4))) {
			nw_debug("worker %u pid %d: booting for %.1fs, no "
				 "spare CPU: raising its priority", w->id,
			    (int)w->pid, now - w->spawned_at);
			nw_spawn_raise_priority(m, w);
		}
		if (w->state != NW_LIVE || w->gen != m->current)
			continue;
		if (w->lifetime > 0 && now - w->spawned_at >= w->lifetime) {
			snprintf(why, sizeof why,
			    "max_worker_lifetime %.0fs reached", w->lifetime);
			w->retire_cause = NW_RESTART_LIFETIME;
			nw_worker_event(m, w, NW_EV_RETIRE, why);
			continue;
		}
		if (c->max_worker_memory > 0) {
			long long rss = nw_proc_rss(w->pid);

			if (rss > c->max_worker_memory) {
				snprintf(why, sizeof why,
				    "max_worker_memory: rss %lld > %lld", rss,
				    c->max_worker_memory);
				w->retire_cause = NW_RESTART_MEMORY;
				nw_worker_event(m, w, NW_EV_RETIRE, why);
			}
		}
	}
}

void
nw_supervise_init(struct nw_master *m)
{
	ev_timer_init(&m->memory_check, on_limits_check, 1., 1.);
	ev_timer_start(m->loop, &m->memory_check);
	m->dirty = 1;
}
