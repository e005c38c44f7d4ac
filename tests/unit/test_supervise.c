/*
 * test_supervise.c: the master's pure decisions, without processes: request
 * budgets drawn per worker stay in [max_requests, max_requests + jitter] and
 * are spread across that range; a worker that died is respawned at once
 * unless it is crash-looping (nw_supervise_respawn_delay).
 */
#include <stdlib.h>

#include "master.h"
#include "tap.h"

static void
budgets_in_range_and_spread(void)
{
	struct nw_config config = { .max_requests = 1000,
		.max_requests_jitter = 50 };
	unsigned long lo = ~0UL, hi = 0;
	int seen[51] = { 0 }, distinct = 0, in_range = 1;

	srandom(42);
	for (int i = 0; i < 200; i++) {
		unsigned long b = nw_supervise_draw_budget(&config,
		    (unsigned long)random());

		if (b < 1000 || b > 1050) {
			in_range = 0;
			continue;
		}
		lo = b < lo ? b : lo;
		hi = b > hi ? b : hi;
		if (!seen[b - 1000]++)
			distinct++;
	}
	ok(in_range, "200 budgets all lie in [1000, 1050]");
	ok(distinct >= 30, "they take %d distinct values (>= 30)", distinct);
	ok(lo <= 1005 && hi >= 1045, "they span the range: %lu..%lu", lo, hi);
}

static void
no_jitter_means_exact_budget(void)
{
	struct nw_config config = { .max_requests = 7 };

	is_int((long long)nw_supervise_draw_budget(&config, 123456), 7,
	    "jitter 0: the budget is max_requests");
}

/* A worker spawned at 100 s; live_at 0 means it never went live. */
static struct nw_worker
worker(double live_at, unsigned long requests, int crashes)
{
	struct nw_worker w = { .spawned_at = 100., .live_at = live_at,
		.requests = requests, .crashes = crashes };

	return w;
}

static void
served_workers_respawn_at_once(void)
{
	struct nw_worker w;
	double waited = 0;

	/* The case: killed 5 s after its start, having served. */
	w = worker(100.5, 300, 6);
	is_double(nw_supervise_respawn_delay(&w, 105.), 0.,
	    "served, killed 5 s after start, 6 crashes before: at once");
	is_int(w.crashes, 0, "... and the crash count is cleared");

	/* Served requests the master heard of, however quick the death. */
	w = worker(100.5, 1, 3);
	is_double(nw_supervise_respawn_delay(&w, 100.6), 0.,
	    "served 1 request, died 0.1 s after going live: at once");

	/* Live long enough, heartbeat not in yet: it was serving. */
	w = worker(100.3, 0, 4);
	is_double(nw_supervise_respawn_delay(&w, 102.), 0.,
	    "live 1.7 s (boot 0.3 s), no heartbeat yet: at once");

	/* Killed every 2 s, ten times in a row: never a backoff. */
	w = worker(100.4, 50, 0);
	for (int i = 0; i < 10; i++) {
		double now = w.spawned_at + 2.;

		waited += nw_supervise_respawn_delay(&w, now);
		w.spawned_at = now;
		w.live_at = now + 0.4;
	}
	is_double(waited, 0., "10 kills 2 s apart of a serving slot: no wait");
}

static void
crash_loops_back_off(void)
{
	struct nw_worker w = worker(0, 0, 0);
	double want[] = { 0, 1, 2, 4, 8, 16, 30, 30 };

	/* Dies while importing, again and again. */
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		double got = nw_supervise_respawn_delay(&w, 101.);

		is_double(got, want[i], "boot failure %zu: respawn in %g s",
		    i + 1, want[i]);
	}

	/* Goes live, dies at once without serving: a loop too. */
	w = worker(100.5, 0, 0);
	is_double(nw_supervise_respawn_delay(&w, 100.7), 0.,
	    "first quick death without serving: at once");
	w.live_at = 100.5;
	is_double(nw_supervise_respawn_delay(&w, 100.7), 1.,
	    "second: 1 s");
	w.live_at = 100.5;
	is_double(nw_supervise_respawn_delay(&w, 100.7), 2.,
	    "third: 2 s");

	/* A slow boot (4 s) then 1.5 s live, nothing served: still quick. */
	w = worker(104., 0, 2);
	is_double(nw_supervise_respawn_delay(&w, 105.5), 2.,
	    "live 1.5 s after a 4 s boot, nothing served: backs off");

	/* Lived 30 s before failing to boot: not a loop. */
	w = worker(0, 0, 5);
	is_double(nw_supervise_respawn_delay(&w, 131.), 0.,
	    "a boot failure after 31 s clears the count");
	is_int(w.crashes, 1, "... and counts as the first");
}

int
main(void)
{
	budgets_in_range_and_spread();
	no_jitter_means_exact_budget();
	served_workers_respawn_at_once();
	crash_loops_back_off();
	return done_testing();
}
